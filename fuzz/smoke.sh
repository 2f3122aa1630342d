#!/usr/bin/env bash
# Short smoke run of every fuzz target: builds them, runs each for a while from its seed corpus,
# and exits non-zero if any target crashes (libFuzzer leaves the input in fuzz/artifacts/).
#
#   fuzz/smoke.sh                 # every target, 20 s each
#   FUZZ_SECONDS=300 fuzz/smoke.sh ingest_ops
#   FUZZ_SEED=7 fuzz/smoke.sh     # another seed (default 1)
#
# The run is reproducible: a fixed libFuzzer seed makes the inputs tried a fixed sequence, at
# most FUZZ_RUNS (100000) of them per target, of which a slower machine runs a prefix. So a smoke run that passes here passes in CI, and a new
# finding comes from a deliberate change of seed or time, never from chance in CI.
#
# Toolchain: cargo-fuzz passes nightly-only flags (-Zsanitizer=address, ...). Machines of this
# project carry only the stable toolchain, so the script sets RUSTC_BOOTSTRAP=1, which lets
# stable rustc accept them (harmless on a nightly). New inputs found during the run go to a
# scratch directory, never into the committed seed corpora in fuzz/corpus/.
set -euo pipefail

cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-20}"
seed="${FUZZ_SEED:-1}"
runs="${FUZZ_RUNS:-100000}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "smoke: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

echo "smoke: building ${targets[*]}" >&2
for t in "${targets[@]}"; do
    cargo fuzz build "$t"
done

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
passed=0
failed=0
failures=()
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t" "corpus/$t"
    echo "smoke: fuzzing $t for ${seconds}s" >&2
    # The first corpus directory receives new inputs: the scratch one.
    if cargo fuzz run "$t" "$scratch/$t" "corpus/$t" -- \
        -seed="$seed" -runs="$runs" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failures+=("$t")
    fi
done

if [ "$failed" -gt 0 ]; then
    echo "smoke: crashed: ${failures[*]} (inputs in fuzz/artifacts/; replay with" >&2
    echo "       RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <artifact>)" >&2
fi
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
