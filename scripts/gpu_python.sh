#!/usr/bin/env bash
# The Python package on the GPU machine: build it offline, run its tests (the CUDA ones must run,
# not skip) and record the notebook's output on the GPU (scripts/record_notebook.py).
#
#   scripts/gpu_python.sh
#
# Needs python3 with numpy, torch (CUDA), nanobind, scikit-build-core and pytest, plus cmake and
# nvcc; no network. Called by scripts/gpu_check.sh. Environment:
#   PYTHON     the interpreter (default python3)
#   CUDAARCHS  CUDA architectures to build for (default 90: H100/H200)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
python=${PYTHON:-python3}
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
export CUDAARCHS=${CUDAARCHS:-90}

# 1. `pip install .` without network: the build backend and nanobind come from this machine
#    (--no-build-isolation), and --target keeps the system site-packages untouched (no PEP 668
#    "externally managed" refusal). Fallback: the same CMake project built by hand.
site=$root/build/gpu-python-site
rm -rf "$site"
echo "gpu_python: pip install --no-build-isolation --no-deps --target $site ."
if "$python" -m pip install --no-build-isolation --no-deps --target "$site" .; then
  export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
else
  echo "gpu_python: the pip build failed; building the module with CMake instead"
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  cmake -S . -B build/gpu-python "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DPAGEDKV_BUILD_PYTHON=ON -DPAGEDKV_BUILD_TESTS=OFF -DPAGEDKV_BUILD_TOOLS=OFF \
    -DCMAKE_CUDA_ARCHITECTURES="$CUDAARCHS" -DPython_EXECUTABLE="$(command -v "$python")" \
    -Dnanobind_DIR="$("$python" -m nanobind --cmake_dir)"
  cmake --build build/gpu-python --target _core -j "$(nproc)"
  export PYTHONPATH=$root/build/gpu-python/python${PYTHONPATH:+:$PYTHONPATH}
fi

# 2. The CUDA tests must run here: refuse to report a pass made of skips.
"$python" - <<'EOF'
import pagedkv, torch
print(f"gpu_python: pagedkv {pagedkv.__version__} from {pagedkv.__file__}")
print(f"gpu_python: sm_{pagedkv.cuda_architectures}, torch {torch.__version__}, "
      f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device'}")
assert pagedkv.cuda_available(), "pagedkv sees no CUDA device"
assert torch.cuda.is_available(), "torch sees no CUDA device"
EOF

# 3. Every Python test of the package (CPU tests, torch CPU tests, CUDA tests): every
#    tests/python/test_*.py but the docs figures' (it needs packages this machine lacks), so a
#    new op's tests run here without a line added.
tests=()
for file in tests/python/test_*.py; do
  [ "$file" = tests/python/test_figures.py ] || tests+=("$file")
done
tests_ok=0  # a failing test must not keep the notebooks (step 4) from being recorded
"$python" -m pytest -q -rs -p no:cacheprovider "${tests[@]}" || tests_ok=1
echo "gpu_python: the CUDA tests alone:"
"$python" -m pytest -q -p no:cacheprovider -m cuda "${tests[@]}" || tests_ok=1

# 4. Every notebook, GPU path included, recorded for the docs (no Jupyter here: its code cells run
#    in order as a script, in English and in Chinese; matplotlib is optional). The recording goes
#    to $OUT/notebooks/ (gpu_check.sh's output folder), else build/notebooks/; commit it as
#    results/notebooks/<its name> (results/README.md: notebook recordings).
recordings=${OUT:-$root/build}/notebooks
recorded_all=0
for notebook in notebooks/*.md; do  # each one even if another fails
  echo "gpu_python: $notebook, recorded into $recordings"
  PAGEDKV_COMMIT=${PAGEDKV_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)} MPLBACKEND=Agg \
    "$python" scripts/record_notebook.py "$notebook" --out "$recordings" || recorded_all=1
done
"$python" -c "import matplotlib" 2>/dev/null ||
  echo "STEP-NOTE: matplotlib missing: the notebook recording has no plots"
[ $recorded_all -eq 0 ] || { echo "gpu_python: a notebook raised (see above)"; exit 1; }
[ $tests_ok -eq 0 ] || { echo "gpu_python: some Python tests failed (see above)"; exit 1; }
echo "gpu_python: ok"
