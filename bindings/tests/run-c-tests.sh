#!/usr/bin/env bash
# Builds berth-ffi's staticlib, compiles and runs the C tests against it under ASan and UBSan,
# checks that berth.h compiles as C++, and checks the header for drift.
# The C tests are every tests/c/test_*.c: test_digest.c, test_image.c (references and
# platforms), test_ingest.c and test_snapshot.c (the snapshot tree).
#
#   bindings/tests/run-c-tests.sh
#
# Environment:
#   BERTH_FFI_STATICLIB  path of an already built libberth_ffi.a: skips `cargo build`
#                        (the Rust test tests/c_abi.rs passes the one cargo just built)
#   CC, CXX              compilers (default gcc, g++)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bindings="$(dirname "$here")"
workspace="$(dirname "$bindings")"
CC="${CC:-gcc}"
CXX="${CXX:-g++}"

if [[ -n "${BERTH_FFI_STATICLIB:-}" ]]; then
    lib="$BERTH_FFI_STATICLIB"
else
    (cd "$workspace" && cargo build -p berth-ffi)
    target="${CARGO_TARGET_DIR:-$workspace/target}"
    lib="$target/debug/libberth_ffi.a"
fi
if [[ ! -f "$lib" ]]; then
    echo "run-c-tests: staticlib not found at $lib" >&2
    exit 1
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

cflags=(-std=c11 -Wall -Wextra -Werror -pedantic -fsanitize=address,undefined
    -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -I "$bindings/include")
libs=("$lib" -lpthread -ldl -lm)

passed=0
failed=0
for src in "$here"/c/test_*.c; do
    name="$(basename "$src" .c)"
    echo "run-c-tests: $name"
    "$CC" "${cflags[@]}" "$src" -o "$out/$name" "${libs[@]}"
    if ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        "$out/$name"; then
        passed=$((passed + 1))
    else
        echo "run-c-tests: $name FAILED" >&2
        failed=$((failed + 1))
    fi
done

echo "run-c-tests: header_cxx.cpp (C++17 syntax check)"
if "$CXX" -std=c++17 -Wall -Wextra -Werror -pedantic -fsyntax-only -I "$bindings/include" \
    "$here/c/header_cxx.cpp"; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
fi

echo "run-c-tests: header drift"
if "$bindings/check-header.sh"; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
fi

echo "run-c-tests: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
