#!/bin/bash
# test.sh - the whole test suite, as CI runs it (as root, on Debian 12):
# house rules (fmt, clippy, core stays IO-free), every crate's tests (unit, conformance on the fake
# host and both drivers, proptests, end-to-end with the real ctr + docker-registry + berthd, C ABI
# tests under AddressSanitizer with the header drift check), then a short fuzz smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export CARGO_TERM_COLOR=never
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== core/ stays IO-free"
if grep -rnE 'std::(fs|net|process|thread|env)\b|Instant::now|SystemTime::now|\bunsafe\b|tokio::|smol::|async_io::|rand::' core/src | grep -vE '^\S+:\s*//'; then
  echo "core/ must not do IO (DESIGN.md §2)"; exit 1
fi
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace --no-fail-fast
echo "== fuzz smoke"
fuzz/smoke.sh
