#!/usr/bin/env bash
# Regenerates include/berth.h into a temporary file and fails (exit 1, with a diff) if the
# checked-in header differs: the header must always be what cbindgen makes of src/.
# Fix drift with:  cbindgen -q --config cbindgen.toml --crate berth-ffi --output include/berth.h
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if ! command -v cbindgen >/dev/null 2>&1; then
    echo "check-header: cbindgen is not installed (cargo install cbindgen --locked)" >&2
    exit 1
fi

# The checked-in header was made by this version; another may format it differently.
made_with="0.29.4"
have="$(cbindgen --version | awk '{print $2}')"
if [[ "$have" != "$made_with" ]]; then
    echo "check-header: warning: cbindgen $have here, the header was made with $made_with" \
        "(cargo install cbindgen --locked --version $made_with)" >&2
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cbindgen -q --config cbindgen.toml --crate berth-ffi --output "$tmp/berth.h"

if ! diff -u include/berth.h "$tmp/berth.h" >"$tmp/diff"; then
    echo "check-header: include/berth.h is out of date ($(cbindgen --version));" \
        "regenerate it with:" >&2
    echo "  (cd bindings && cbindgen -q --config cbindgen.toml --crate berth-ffi --output include/berth.h)" >&2
    cat "$tmp/diff" >&2
    exit 1
fi
echo "check-header: include/berth.h is up to date"
