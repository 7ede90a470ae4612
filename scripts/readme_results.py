#!/usr/bin/env python3
"""Rewrites the results table of README.md (between the `results` markers) from the committed
results/*.json, each op's rows from the newest GPU run that measured it (the docs' rule:
docs/tools/results_files.py), so the README never shows a number no run produced.

    scripts/readme_results.py           # rewrite README.md
    scripts/readme_results.py --check   # exit 1 if README.md is not what the results say
"""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs" / "tools"))
import results_files  # noqa: E402
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def gpu_runs():
    """(data, path, ops) of the GPU runs the table uses, newest first, each with the ops whose
    rows it supplies."""
    paths = [p for p in results_files.committed_results(ROOT)
             if (results_files.load(p) or {}).get("gpu")]  # GPU runs only
    return [(data, path, ops) for path, data, ops in results_files.runs_by_op(paths)]


def agreement(naive, opt):
    """The agreement cell: bit-exact / NO, for a reduction the optimized row's rel_err ≤ tolerance,
    for an ulp-bounded op (the activations) its max_ulp ≤ ulp_bound.
    Files written before rel_err, tolerance and agrees existed lack them: bit_exact is the rule."""
    def agrees(row):
        return row.get("bit_exact") if row.get("agrees") is None else row["agrees"]
    ok = all(agrees(r) for r in (naive, opt))
    if opt.get("ulp_bound") is not None:  # element-wise ops with transcendentals (silu, gelu)
        worst = opt.get("max_ulp")
        worst_text = "inf" if worst is None else f"{worst:.3g}"
        sign = "≤" if worst is not None and worst <= opt["ulp_bound"] else ">"
        return f"{'' if ok else 'NO, '}{worst_text} {sign} {opt['ulp_bound']:g} ulp"
    if opt.get("tolerance") is None:
        return "bit-exact" if ok else "NO"
    rel = opt.get("rel_err")
    rel_text = "inf" if rel is None else f"{rel:.1e}"
    sign = "≤" if rel is not None and rel <= opt["tolerance"] else ">"
    return f"{'' if ok else 'NO, '}rel {rel_text} {sign} {opt['tolerance']:.1e}"


def tables(runs):
    if not runs:
        return "No GPU results are recorded yet (results/ holds none)."
    return "\n\n".join(table(run, path, ops) for run, path, ops in runs)


def table(run, path, ops):
    rows = [r for r in run["rows"] if r["op"] in ops]
    # For each op, workload, variant and slot pattern: the largest size.
    largest = {}
    for row in rows:
        key = (row["op"], row["workload"], row["variant"], row.get("slots") or "")
        largest[key] = max(largest.get(key, 0), row["size"])
    lines = [
        f"Recorded on **{run['gpu']}** (driver {run['driver']}, {run['cuda']}), commit "
        f"`{run['commit'][:12]}`, {run['date']}, from [`{path.relative_to(ROOT)}`]"
        f"({path.relative_to(ROOT)}). Largest size of each standard workload; "
        "% of copy = time of a size-matched copy measured in the same run / time of the op"
        + (" (the copy: the faster of cudaMemcpyAsync and a plain copy kernel)."
           if any(r["impl"] == "copy_kernel" for r in rows) else "."),
        "",
        "| op | workload | variant | slots | size | naive | optimized | optimized GB/s | agreement |",
        "|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    for (op, workload, variant, slots), size in largest.items():
        point = [r for r in rows if (r["op"], r["workload"], r["variant"], r.get("slots") or "",
                                     r["size"]) == (op, workload, variant, slots, size)]
        by_impl = {r["impl"]: r for r in point}
        naive, opt = by_impl.get("naive"), by_impl.get("optimized")
        if not naive or not opt:
            continue
        lines.append(
            f"| {op} | {workload} | {variant} | {slots} | {size} {point[0]['size_unit']} | "
            f"{naive['pct_of_copy']:.1f} % | **{opt['pct_of_copy']:.1f} %** | {opt['gbps']:.0f} | "
            f"{agreement(naive, opt)} |")
    return "\n".join(lines)


def main():
    readme = ROOT / "README.md"
    text = readme.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    new = f"{head}{BEGIN}\n{tables(gpu_runs())}\n{END}{tail}"
    if "--check" in sys.argv:
        if new != text:
            print("README.md's results table is stale: run scripts/readme_results.py")
            return 1
        print("README.md's results table matches the newest results of every op")
        return 0
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
