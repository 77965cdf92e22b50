#!/usr/bin/env bash
# The whole test suite: release build + tests, AddressSanitizer and
# UndefinedBehaviorSanitizer build + tests, and a project outside the tree
# built against the installed tacit package.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=$(nproc)
start=$SECONDS

echo "== release build and tests"
bash tools/bootstrap.sh
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== AddressSanitizer + UndefinedBehaviorSanitizer build and tests"
# -O1 with line tables: sanitizer reports keep their stacks, and the build stays quick.
# Tests that sample heavily scale themselves down under the sanitizers (__SANITIZE_ADDRESS__).
cmake -S . -B build-sanitize -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
  -DTACIT_SANITIZE=address,undefined -DTACIT_BUILD_BENCH=OFF
cmake --build build-sanitize -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-sanitize --output-on-failure -j"$jobs"

echo "== installed package used from another project"
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install build --prefix "$prefix/install" > /dev/null
cmake -S tests/consumer -B "$prefix/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$prefix/install"
cmake --build "$prefix/consumer"
"$prefix/consumer/consumer"
"$prefix/install/bin/tacit" --help > /dev/null

echo "== all tests passed in $((SECONDS - start)) s"
