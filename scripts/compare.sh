#!/usr/bin/env bash
# The README's comparison command: builds the comparison tool and runs every op side by side.
#
#   scripts/compare.sh [options of `pagedkv compare`]      e.g. --json out.json, --workload W1
#
# Where nvidia-smi works it uses the gpu preset (build/gpu: CPU reference, naive and optimized
# kernels, a size-matched copy and Thrust, timed, with bit-exact agreement checks); elsewhere the
# cpu preset (build/cpu: the CPU reference on the small sizes; the tool says why the GPU rows
# were skipped), followed by the newest recorded GPU results of the same ops
# (scripts/recorded_results.py), labelled as recorded. Run scripts/setup.sh once first on a
# fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nvcc >/dev/null 2>&1 || export PATH=/usr/local/cuda/bin:$PATH
export CCACHE_DIR=${CCACHE_DIR:-$PWD/.ccache}

preset=cpu
nvidia-smi >/dev/null 2>&1 && preset=gpu

# Catch2 (for the tests in the same build tree) comes from Debian's package, or from .deps/ on
# an offline machine (see scripts/gpu_check.sh).
configure_args=()
[ -f .deps/catch2/lib/cmake/Catch2/Catch2Config.cmake ] &&
  configure_args+=("-DCatch2_DIR=$PWD/.deps/catch2/lib/cmake/Catch2")

echo "compare: building the comparison tool (preset $preset)" >&2
cmake --preset "$preset" "${configure_args[@]}" >/dev/null
cmake --build --preset "$preset" --target pagedkv_compare >&2

commit=${PAGEDKV_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
if [ "$preset" = gpu ]; then
  exec "build/$preset/tools/compare/pagedkv" compare --all --commit "$commit" "$@"
fi
# Without a GPU: the CPU rows, then what the kernels did on a GPU, from the newest committed
# results (labelled with their GPU, commit and date; scripts/recorded_results.py).
status=0
"build/$preset/tools/compare/pagedkv" compare --all --commit "$commit" "$@" || status=$?
python3 scripts/recorded_results.py "$@" || status=$?
exit "$status"
