#!/usr/bin/env bash
# The repository's one GPU script (README: recorded results): run on a machine with an NVIDIA GPU, offline.
#
#   OUT=/path/to/output bash scripts/gpu_check.sh      # OUT defaults to ./gpu-out
#
# Steps (each logged to $OUT/<step>.log, summarised at the end and in $OUT/summary.txt):
#   gpu_info    nvidia-smi, nvcc --version
#   deps        Catch2 v2 in .deps/catch2 (headers, cmake/ and lib/libCatch2WithMain.a; copied
#               from /usr if missing; the GPU machine is offline, so .deps/ travels along)
#   configure   cmake --preset gpu -DCatch2_DIR=$PWD/.deps/catch2/lib/cmake/Catch2
#   build       ninja -j16
#   gpu_tests   ctest -L gpu (a [gpu] test reported "Skipped" here fails the step)
#   compare     pagedkv compare <op> --json $OUT/compare/<op>.json --commit <sha>, one op after the
#               other (every op of `pagedkv list`), merged into $OUT/results.json; an op cut by
#               the step's limit (COMPARE_STEP_S, default 300 s) is named in the summary.
#               All ops take about 15 minutes on an H100 (the attention ops
#               check every point against a float64 CPU reference): split them over calls
#   cpu_tests   ctest -L cpu
#   memcheck    the [gpu] Catch2 tests under compute-sanitizer --tool memcheck, then a short
#               fuzzer run ([fuzz][gpu], PAGEDKV_FUZZ_CASES=60) under it too
#   initcheck   the [gpu] tests under --tool initcheck (reads of device memory never written)
#   synccheck   the [gpu] tests under --tool synccheck (barriers that not every thread reaches)
#   ptxas       nvcc -Xptxas -v over every kernel file with the build's flags: registers, spills,
#               stack frames, shared memory ($OUT/ptxas.log)
#   racecheck   compute-sanitizer --tool racecheck on the [gpu][<op>] tests of each op whose
#               kernels use shared memory (from the sources and the ptxas report)
#               Every sanitizer run appends one line to $OUT/sanitizers.tsv: tool, test spec,
#               errors reported (compute-sanitizer's ERROR SUMMARY), Catch2 test cases and
#               assertions, exit status. The file is recorded beside results.json.
#   fuzz        the fuzzer (tests/fuzz) on CPU, naive and optimized with a larger budget than CI's:
#               PAGEDKV_FUZZ_CASES (default here 1500 registry calls per op), PAGEDKV_FUZZ_SEED
#   large       the [large] Catch2 test: every op on a case whose largest tensor passes 2^31
#               bytes (64-bit offsets; several GB per op, so not in gpu_tests)
#   python      the Python package's CUDA tests, when the package exists: scripts/gpu_python.sh
#               if present (it also records the notebook's GPU output into $OUT/notebooks/,
#               to be committed under results/notebooks/), else pip install into build/gpu-python-site and
#               python3 -m pytest tests/python -m cuda (skipped cleanly without a package)
# Every step runs even if an earlier one failed (those that need the build are not run without
# it); the script exits non-zero if any step failed. Each step has a time limit, cut to what is
# left of a 570 s budget (GPU_CHECK_BUDGET_S), so the whole run stays under 10 minutes.
#
# The commit recorded in results.json: $PAGEDKV_COMMIT, else `git rev-parse HEAD`, else "unknown"
# (the GPU machine may get a copy of the tree without .git: pass PAGEDKV_COMMIT then).
#
# When one run no longer fits 10 minutes, split it over calls on the same machine (the build
# stays in build/gpu between calls):
#   GPU_CHECK_STEPS   the steps to run, by name (default: all), e.g. "gpu_info deps configure
#                     build gpu_tests"; the others are reported as skipped
#   GPU_CHECK_BUILD   the build folder (default build/gpu)
#   GPU_CHECK_COMPARE the ops to compare instead of all of them, e.g.
#                     "concat_and_cache_mla convert_fp8"; give each call its own OUT, since each
#                     writes its own results.json
#   GPU_CHECK_MEMCHECK the Catch2 test spec memcheck, initcheck and synccheck run (default "[gpu]";
#                     memcheck then also runs the short fuzzer), e.g.
#                     "[gpu][convert_fp8],[gpu][concat_and_cache_mla]" (a comma is "or")
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
OUT=${OUT:-./gpu-out}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export OUT
command -v nvcc >/dev/null 2>&1 || export PATH=/usr/local/cuda/bin:$PATH
export CMAKE_BUILD_PARALLEL_LEVEL=16
commit=${PAGEDKV_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
build=${GPU_CHECK_BUILD:-build/gpu}
tests_bin=$build/tests/pagedkv_tests
compare_bin=$build/tools/compare/pagedkv

declare -a summary=()
failed=0
script_start=$SECONDS
# Whole-run budget: each step's time limit is cut to what is left of it, so the script ends in
# under 10 minutes (a device machine's command may run 10).
budget=${GPU_CHECK_BUDGET_S:-570}

# step NAME TIMEOUT_S FUNCTION: runs FUNCTION (in a fresh copy of this script, so that `timeout`
# can stop it) with its output in $OUT/NAME.log; never stops the script. A function may print
# "STEP-NOTE: ..." lines for the summary, and exit 99 to say that it was skipped.
step() {
  local name=$1 limit=$2 fn=$3 start=$SECONDS rc status notes left
  if [ -n "${GPU_CHECK_STEPS:-}" ] && [[ " $GPU_CHECK_STEPS " != *" $name "* ]]; then
    summary+=("$(printf '%-10s %-32s' "$name" "skipped (not in GPU_CHECK_STEPS)")")
    return 0
  fi
  left=$((budget - (SECONDS - script_start)))
  if [ $left -lt 20 ]; then
    summary+=("$(printf '%-10s %-32s' "$name" "NOT RUN (time budget spent)")")
    failed=1
    echo "=== $name: not run, the ${budget} s budget is spent"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "=== $name"
  # STEP_LIMIT_S: the step's own limit, for a step that divides it (compare).
  STEP_LIMIT_S=$limit timeout -k 10 "$limit" bash "$root/scripts/gpu_check.sh" __step "$fn" \
    >"$OUT/$name.log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    99) status=skipped ;;
    124 | 137) status="FAILED (timed out after ${limit} s)"; failed=1 ;;
    *) status="FAILED (exit $rc)"; failed=1 ;;
  esac
  notes=$(grep '^STEP-NOTE: ' "$OUT/$name.log" | sed 's/^STEP-NOTE: //' | paste -sd ';' -)
  summary+=("$(printf '%-10s %-32s %4d s  %s' "$name" "$status" $((SECONDS - start)) "$notes")")
  echo "=== $name: $status ($((SECONDS - start)) s)"
  tail -n 12 "$OUT/$name.log" | sed 's/^/    /'
  return 0
}

gpu_info() {
  nvidia-smi && nvcc --version
}

deps() {
  # Catch2's CMake package needs its headers, its cmake/ folder and lib/libCatch2WithMain.a
  # (Catch2Targets.cmake checks that the library file exists even if nothing links it).
  local catch=.deps/catch2
  local -a need=(include/catch2/catch.hpp lib/cmake/Catch2/Catch2Config.cmake lib/libCatch2WithMain.a)
  local missing=0 file
  for file in "${need[@]}"; do [ -f "$catch/$file" ] || missing=1; done
  if [ $missing -eq 1 ]; then
    [ -f /usr/include/catch2/catch.hpp ] && [ -d /usr/lib/cmake/Catch2 ] &&
      [ -f /usr/lib/libCatch2WithMain.a ] || {
      echo "Catch2 v2 is neither complete in .deps/catch2 nor in /usr: carry .deps/ to this machine"
      return 1
    }
    mkdir -p "$catch/include" "$catch/lib/cmake"
    cp -r /usr/include/catch2 "$catch/include/"
    cp -r /usr/lib/cmake/Catch2 "$catch/lib/cmake/"
    cp /usr/lib/libCatch2WithMain.a "$catch/lib/"
    echo "copied Catch2 from /usr into $catch"
  fi
  find "$catch" -maxdepth 3 | sort
}

configure() {
  cmake --preset gpu -DCatch2_DIR="$root/.deps/catch2/lib/cmake/Catch2" \
    -DCMAKE_EXPORT_COMPILE_COMMANDS=ON
}

build() {
  ninja -C "$build" -j16
}

gpu_tests() {
  local log
  log=$(ctest --preset gpu -L gpu -j 2 2>&1)
  local rc=$?
  echo "$log"
  if grep -q '(Skipped)' <<<"$log"; then
    echo "STEP-NOTE: [gpu] tests were SKIPPED on the GPU machine (no CUDA device visible?)"
    return 1
  fi
  echo "STEP-NOTE: $(grep -E 'tests passed|tests failed' <<<"$log" | tail -1)"
  return $rc
}

compare() {
  # One `pagedkv compare <op>` per op, each writing its own JSON under $OUT/compare/, merged into
  # $OUT/results.json at the end: an op that runs out of time (paged attention's float64 CPU
  # reference takes seconds per point) costs its own rows, not everyone's. Each op gets the step's
  # time left, less COMPARE_RESERVE_S per op still to come (default 0: in order until the time is
  # spent; all 29 ops take about 15 minutes on an H100, so split them over calls with
  # GPU_CHECK_COMPARE).
  local -a ops=() cut=() failed_ops=()
  local op rc=0 left limit reserve=${COMPARE_RESERVE_S:-0} start=$SECONDS budget_s
  budget_s=$((${STEP_LIMIT_S:-300} - 10))  # 10 s for the merge
  mkdir -p "$OUT/compare"
  if [ -n "${GPU_CHECK_COMPARE:-}" ]; then
    # shellcheck disable=SC2206  # a list of words on purpose
    ops=(${GPU_CHECK_COMPARE})
  else
    mapfile -t ops < <("$compare_bin" list | awk '/^[a-z0-9_]+  \(/ {print $1}')
  fi
  local i
  for ((i = 0; i < ${#ops[@]}; ++i)); do
    op=${ops[i]}
    left=$((budget_s - (SECONDS - start) - reserve * (${#ops[@]} - i - 1)))
    if [ "$left" -lt 15 ]; then cut+=("$op"); continue; fi
    echo "--- compare $op (limit $left s)"
    timeout -k 5 "$left" "$compare_bin" compare "$op" --json "$OUT/compare/$op.json" \
      --commit "$commit"
    case $? in
      0) ;;
      124 | 137) cut+=("$op"); rm -f "$OUT/compare/$op.json" ;;
      *) failed_ops+=("$op"); rc=1 ;;
    esac
  done
  # The merged file: the first op's header (GPU, driver, commit, date...), every op's rows, the
  # notes of all of them (each op adds its workload's).
  python3 - "$OUT/results.json" "$OUT"/compare/*.json <<'PY' || rc=1
import json, sys
out, parts = sys.argv[1], [p for p in sys.argv[2:] if not p.endswith("*.json")]
if not parts:
    sys.exit("no op finished its comparison")
runs = [json.load(open(p, encoding="utf-8")) for p in parts]
merged = {k: v for k, v in runs[0].items() if k != "rows"}
merged["notes"] = list(dict.fromkeys(n for r in runs for n in r.get("notes", [])))
merged["rows"] = [row for r in runs for row in r["rows"]]
json.dump(merged, open(out, "w", encoding="utf-8"), indent=2, ensure_ascii=False)
print(f"merged {len(parts)} ops, {len(merged['rows'])} rows into {out}")
PY
  [ ${#cut[@]} -gt 0 ] && echo "STEP-NOTE: out of time, not compared: ${cut[*]}" && rc=1
  [ ${#failed_ops[@]} -gt 0 ] && echo "STEP-NOTE: compare failed: ${failed_ops[*]}"
  if grep -q 'GPU rows skipped' "$OUT/compare.log" 2>/dev/null; then
    echo "STEP-NOTE: GPU rows were skipped"
    return 1
  fi
  return $rc
}

cpu_tests() {
  ctest --preset gpu -L cpu -j 16
}

# sanitize TOOL SPEC [EXTRA ARGS...]: the Catch2 tests matching SPEC under compute-sanitizer
# --tool TOOL; one line in $OUT/sanitizers.tsv (tool, spec, errors, test cases, assertions, rc).
sanitize() {
  local tool=$1 spec=$2 log rc errors cases assertions
  shift 2
  command -v compute-sanitizer >/dev/null || { echo "compute-sanitizer not found"; return 1; }
  log=$(mktemp)
  compute-sanitizer --tool "$tool" --error-exitcode 1 --print-limit 20 "$@" \
    "$tests_bin" "$spec" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  # "========= ERROR SUMMARY: 0 errors"; racecheck says "RACECHECK SUMMARY: 0 hazards ...".
  errors=$(grep -oE '(ERROR|RACECHECK) SUMMARY: [0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  # Catch2: "All tests passed (N assertions in M test cases)" or "test cases: M | ... ".
  cases=$(grep -oE '[0-9]+ test cases|test cases: *[0-9]+' "$log" | grep -oE '[0-9]+' | tail -1)
  assertions=$(grep -oE '[0-9]+ assertions|assertions: *[0-9]+' "$log" | grep -oE '[0-9]+' | tail -1)
  [ -f "$OUT/sanitizers.tsv" ] ||
    printf 'tool\tspec\terrors\ttest_cases\tassertions\texit\n' >"$OUT/sanitizers.tsv"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$spec" "${errors:-?}" "${cases:-?}" \
    "${assertions:-?}" "$rc" >>"$OUT/sanitizers.tsv"
  echo "STEP-NOTE: $tool $spec: ${errors:-?} errors, ${cases:-?} test cases"
  rm -f "$log"
  return "$rc"
}

memcheck() {
  local rc=0
  sanitize memcheck "${GPU_CHECK_MEMCHECK:-[gpu]}" || rc=1
  # The fuzzer's invalid calls (rejected before any launch) and valid ones (random shapes,
  # misaligned views) under memcheck: a short budget, memcheck is slow.
  if [ -z "${GPU_CHECK_MEMCHECK:-}" ]; then
    PAGEDKV_FUZZ_CASES=60 sanitize memcheck "[fuzz][gpu]" || rc=1
  fi
  return $rc
}

initcheck() {
  sanitize initcheck "${GPU_CHECK_MEMCHECK:-[gpu]}"
}

synccheck() {
  sanitize synccheck "${GPU_CHECK_MEMCHECK:-[gpu]}"
}

# The ops whose kernels use shared memory: a kernel file that declares __shared__ memory or
# uses CUB block/warp collectives, or whose ptxas report shows static shared memory. The op is
# the folder name (kernels/<family>/<op>/*.cu or kernels/<op>/*.cu), which is also its test tag.
shared_memory_ops() {
  {
    grep -rlE '__shared__|cub::Block|cub::Warp' --include='*.cu' kernels
    [ -f "$OUT/ptxas.log" ] &&
      awk '/^### /{file=$2} / [1-9][0-9]* bytes smem/{print file}' "$OUT/ptxas.log"
  } | while read -r file; do basename "$(dirname "$file")"; done | grep -v '^common$' | sort -u
}

racecheck() {
  command -v compute-sanitizer >/dev/null || { echo "compute-sanitizer not found"; return 1; }
  local ops tags op rc=0
  ops=$(shared_memory_ops)
  if [ -z "$ops" ]; then
    echo "no kernel uses shared memory: nothing to racecheck"
    echo "STEP-NOTE: no kernel uses shared memory"
    return 0
  fi
  tags=$("$tests_bin" --list-tags)
  # One racecheck process per op, all at once: racecheck is slow, and they share the GPU well
  # (three ops took 80 s together on an H100, more than 90 s one after the other).
  local -a pids=()
  for op in $ops; do
    if ! grep -q "\[$op\]" <<<"$tags"; then
      echo "op $op uses shared memory but has no [$op] tests"
      rc=1
      continue
    fi
    sanitize racecheck "[gpu][$op]" --racecheck-report hazard >"$OUT/racecheck_$op.txt" 2>&1 &
    pids+=("$!:$op")
  done
  local entry
  for entry in "${pids[@]}"; do
    if wait "${entry%%:*}"; then echo "--- racecheck [gpu][${entry#*:}]: ok"; else
      echo "--- racecheck [gpu][${entry#*:}]: FAILED"; rc=1; fi
    tail -n 3 "$OUT/racecheck_${entry#*:}.txt"
  done
  echo "STEP-NOTE: racecheck on: $(echo $ops)"
  return $rc
}

ptxas() {
  # Recompile every kernel file with the build's own flags plus -Xptxas -v (object discarded).
  local text rc
  text=$(python3 - "$build/compile_commands.json" <<'PY'
import concurrent.futures, json, os, shlex, subprocess, sys

def report(entry):
    path = entry["file"]
    args = shlex.split(entry["command"])
    while args and not args[0].endswith("nvcc"):  # drop a compiler launcher (ccache)
        args.pop(0)
    if "-o" in args:  # discard the object: only the resource report is wanted
        i = args.index("-o")
        del args[i:i + 2]
    args += ["-Xptxas", "-v", "-o", "/dev/null"]
    r = subprocess.run(args, cwd=entry["directory"], capture_output=True, text=True)
    lines = [l for l in (r.stdout + r.stderr).splitlines() if "Compile time" not in l]
    return path[path.index("/kernels/") + 1:], r.returncode, lines

entries = [e for e in json.load(open(sys.argv[1]))
           if "/kernels/" in e["file"] and e["file"].endswith(".cu")]
failed = 0
with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 4) as pool:
    for rel, rc, lines in sorted(pool.map(report, entries)):
        print(f"### {rel}")
        print("\n".join(lines))
        failed |= rc != 0
sys.exit(failed)
PY
  )
  rc=$?
  echo "$text"
  echo
  echo "--- kernels with a stack frame or spills"
  grep -B1 -E '[1-9][0-9]* bytes (spill stores|spill loads|stack frame)' <<<"$text" || echo "none"
  return $rc
}

python_tests() {
  if [ ! -f pyproject.toml ] || [ ! -d tests/python ] || [ ! -d python ]; then
    echo "no Python package in this tree"
    return 99
  fi
  python3 -m pytest --version >/dev/null 2>&1 || { echo "pytest is not installed here"; return 99; }
  local site=$root/build/gpu-python-site cc rc
  cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)
  # The package's own GPU script, where it has one (build offline, CUDA tests, notebook code).
  if [ -f scripts/gpu_python.sh ]; then
    CUDAARCHS=$cc bash scripts/gpu_python.sh
    return $?
  fi
  # Otherwise: installed into a folder of the build tree, not into python3's environment.
  rm -rf "$site"
  CUDAARCHS=$cc python3 -m pip install -q --no-build-isolation --no-deps --no-index \
    --target "$site" . || return 1
  PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH} python3 -m pytest -q -rs tests/python -m cuda
  rc=$?
  if [ $rc -eq 5 ]; then
    echo "STEP-NOTE: no cuda-marked Python tests"
    return 0
  fi
  grep -q 'SKIPPED' "$OUT/python.log" && echo "STEP-NOTE: some cuda tests were skipped (see python.log)"
  return $rc
}

large() {
  "$tests_bin" "[large]"
}

fuzz() {
  PAGEDKV_FUZZ_CASES=${PAGEDKV_FUZZ_CASES:-1500} "$tests_bin" "[fuzz][gpu]"
}

# Run one step's function when called as `gpu_check.sh __step FUNCTION` (see step()).
if [ "${1:-}" = __step ]; then
  "$2"
  exit $?
fi

step gpu_info 30 gpu_info
step deps 30 deps
step configure 120 configure
step build 300 build
if [ -x "$tests_bin" ] && [ -x "$compare_bin" ]; then
  step gpu_tests 150 gpu_tests
  step compare "${COMPARE_STEP_S:-300}" compare
  step cpu_tests 90 cpu_tests
  step memcheck 150 memcheck
  step initcheck 150 initcheck
  step synccheck 120 synccheck
  step ptxas 60 ptxas
  step racecheck 120 racecheck
  step fuzz 120 fuzz
  step large 300 large
else
  summary+=("(no build in $build: tests, compare and sanitizers not run)")
  failed=1
fi
step python 200 python_tests

{
  echo
  echo "=== summary ($((SECONDS - script_start)) s; logs in $OUT)"
  printf '%s\n' "${summary[@]}"
  [ -f "$OUT/results.json" ] && echo "results: $OUT/results.json (commit $commit)"
  [ $failed -eq 0 ] && echo "ALL STEPS OK" || echo "SOME STEPS FAILED"
} | tee "$OUT/summary.txt"
exit $failed
