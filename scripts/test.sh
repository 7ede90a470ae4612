#!/usr/bin/env bash
# The one test command: installs what is missing, then runs every check pagedkv has on this
# machine. Without a GPU the [gpu] tests are reported as skipped; on a GPU machine they run.
#   1. C++ tests (Catch2 via CTest): CPU tests, [gpu] tests, install + find_package consumer
#   2. the CPU tests again under AddressSanitizer + UBSan; the library's kernels built for sm_80
#      too (a compile check: a break on a non-Hopper architecture shows without a GPU)
#   3. the Python package: pip install, pytest (CUDA tests skip without a GPU)
#   4. the docs in English and 简体中文 with the translation gate, then the browser check
#   5. the README's results table is the one the newest results/*.json gives
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || exit 1
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
export CCACHE_DIR=${CCACHE_DIR:-$PWD/.ccache} CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}

passed=0
failed=0
failed_steps=()
step() {  # step NAME COMMAND...: runs one step, keeps going on failure
  local name=$1
  shift
  echo
  echo "=== $name"
  local start=$SECONDS
  if "$@"; then
    passed=$((passed + 1))
    echo "=== $name: ok ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1))
    failed_steps+=("$name")
    echo "=== $name: FAILED ($((SECONDS - start)) s)"
  fi
}

preset=cpu
nvidia-smi >/dev/null 2>&1 && preset=gpu
# CPU tests run in parallel; [gpu] tests one at a time (they share the device's memory).
ctest_jobs=$(nproc)
[ "$preset" = gpu ] && ctest_jobs=1

cxx_tests() {
  cmake --preset "$preset" >/dev/null && cmake --build --preset "$preset" &&
    ctest --preset "$preset" -j "$ctest_jobs"
}
ampere_build() {  # the kernels must also compile for a non-Hopper GPU (sm_80, A100 / RTX 30)
  cmake --preset sm80 >/dev/null && cmake --build --preset sm80
}
asan_tests() {
  cmake --preset asan >/dev/null && cmake --build --preset asan --target pagedkv_tests &&
    ctest --preset asan -j "$(nproc)"
}
python_tests() {
  CMAKE_CUDA_COMPILER_LAUNCHER=ccache .venv/bin/python -m pip install -q --no-build-isolation \
    --no-deps . && .venv/bin/python -m pytest -q tests/python
}
docs() {
  PAGEDKV_BIN=$PWD/build/$preset/tools/compare/pagedkv scripts/docs.sh
}
browser() {
  .venv/bin/python scripts/browser_check.py site
}

step "C++ tests ($preset preset)" cxx_tests
step "C++ CPU tests under ASan + UBSan" asan_tests
step "kernels compile for sm_80 (Ampere)" ampere_build
step "Python package and pytest" python_tests
step "docs (en, zh_CN, translation gate)" docs
step "browser check of the built site" browser
step "README results table matches results/" .venv/bin/python scripts/readme_results.py --check

echo
((failed)) && echo "failed steps: ${failed_steps[*]}"
echo "steps: $passed passed, $failed failed"
((failed == 0))
