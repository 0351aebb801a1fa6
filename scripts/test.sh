#!/usr/bin/env bash
# Installs what is missing, then builds three ways and runs the tests:
#   1. AddressSanitizer + UndefinedBehaviorSanitizer: the whole ctest suite;
#   2. Release (no sanitizers), tests included: builds only (its ctest is not run, to keep CI
#      time), so -O3's extra warnings stay errors in the tests too;
#   3. ThreadSanitizer: the tests labelled `concurrency`.
# Every tree is configured with EDGERT_WERROR=ON: warnings are errors here and in CI. The
# sanitizer trees compile the test programs' own code at -O0 (EDGERT_TEST_COMPILE_OPTIONS; the
# library keeps -O2): test_comms.cpp alone took 226 s of CPU at -O2 with ASan and UBSan, 46 s at
# -O0. The Release tree still builds the tests at -O3, so -O3-only warnings stay errors.
# Build trees: build-asan/, build-release/ and build-tsan/. Extra arguments go to both ctest runs
# (e.g. ./scripts/test.sh -R queue).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh

jobs=$(nproc 2>/dev/null || echo 2)
# TSan (gcc 12) cannot map its shadow memory when the kernel randomizes mmap bases
# with 32 bits of entropy; running without ASLR sidesteps that.
no_aslr=()
if setarch "$(uname -m)" -R true 2>/dev/null; then no_aslr=(setarch "$(uname -m)" -R); fi

echo "== ASan + UBSan: build"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDGERT_SANITIZE=address,undefined -DEDGERT_WERROR=ON \
      -DEDGERT_TEST_COMPILE_OPTIONS=-O0 >/dev/null
cmake --build build-asan -j"$jobs"
echo "== ASan + UBSan: ctest"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
(cd build-asan && ctest --output-on-failure -j"$jobs" "$@")

echo "== Release: build everything, tests included (warnings are errors at -O3 too; its ctest is not run)"
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DEDGERT_BUILD_TESTS=ON -DEDGERT_WERROR=ON >/dev/null
cmake --build build-release -j"$jobs"

echo "== TSan: build the concurrency tests"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDGERT_SANITIZE=thread -DEDGERT_WERROR=ON \
      -DEDGERT_TEST_COMPILE_OPTIONS=-O0 -DEDGERT_BUILD_BENCH=OFF -DEDGERT_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build-tsan -j"$jobs" --target concurrency_tests
echo "== TSan: ctest -L concurrency"
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp}
(cd build-tsan && "${no_aslr[@]}" ctest --output-on-failure -L concurrency "$@")

echo "== all tests passed"
