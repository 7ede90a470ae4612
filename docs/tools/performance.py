"""The performance page: tables and plots from the newest committed results/*.json.

Writes docs/_generated/performance_body.md (pulled into docs/performance.md with
```{include}```) and one plot per op, docs/_generated/perf/<op>.png, plus <op>.zh_CN.png with
Chinese axis labels (Sphinx picks it for the zh_CN build: figure_language_filename). Every number
shown comes from the results file; without one the page says that nothing was recorded yet.

Results schema (written by the GPU results script):
  {"gpu", "driver", "cuda", "commit", "date", "copy_bandwidth_gbps",
   "rows": [{"op", "workload", "variant", "slots", "impl", "tokens" | "blocks", "bytes",
             "median_us", "gbps", "pct_of_copy", "bit_exact", "max_abs_err",
             "rel_err", "tolerance", "agrees"}]}
pct_of_copy = 100 × (time of the size-matched copy) / (time of the row), at the same byte count:
on device memory a copy of bytes / 2 (read + written = bytes), timed as one cudaMemcpyAsync
(rows "copy") and as pagedkv's 16-byte copy kernel (rows "copy_kernel", newer files), the
faster of the two being the baseline; for H2D / D2H swaps one bulk pinned cudaMemcpyAsync of
bytes. copy_bandwidth_gbps is a separate 256 MiB cudaMemcpyAsync taken at the start of the run,
shown for reference only.
rel_err, tolerance and agrees (reductions' agreement; results/README.md) are absent from files
written before they existed: there bit_exact is the agreement rule.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections import OrderedDict
from pathlib import Path

# "% of copy" (pct_of_copy) compares a row with a size-matched copy measured in the same run
# (results/README.md), not with one device-copy bandwidth: the axis label says so.
PLOT_LABELS = {
    "en": {"pct": "% of a size-matched copy (same run)", "tokens": "tokens", "blocks": "blocks"},
    "zh_CN": {"pct": "占同次运行等量拷贝的 %", "tokens": "token 数",
              "blocks": "块数"},
}
IMPL_STYLE = {"naive": ("tab:orange", "o"), "optimized": ("tab:blue", "s")}
SLOT_DASH = {"random": "-", "contiguous": "--", "": "-"}


def committed_results(root: Path) -> list[Path]:
    """results/*.json known to git (all of them when git cannot tell, e.g. in an export)."""
    try:
        out = subprocess.run(["git", "ls-files", "--", "results/*.json"], cwd=root, check=True,
                             capture_output=True, text=True).stdout.split()
        return [root / p for p in out if (root / p).is_file()]
    except (OSError, subprocess.CalledProcessError):
        return sorted((root / "results").glob("*.json"))


def newest(paths: list[Path]) -> tuple[Path, dict] | None:
    """The results file with the latest "date" (file name breaks ties)."""
    best = None
    for path in paths:
        data = json.loads(path.read_text())
        key = (str(data.get("date", "")), path.name)
        if best is None or key > best[0]:
            best = (key, path, data)
    return None if best is None else (best[1], best[2])


def _num(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def _sig(value) -> str:
    if value is None:
        return "—"
    if value == 0:
        return "0"
    if abs(value) >= 0.01 and abs(value) < 1e5:
        return f"{value:.3g}"
    return f"{value:.2e}"


def _size(row: dict) -> tuple[str, int]:
    if "tokens" in row:
        return "tokens", int(row["tokens"])
    return "blocks", int(row.get("blocks", 0))


def _check(row: dict, detail: bool = False) -> str:
    """✓ or ✗ under the op's agreement rule; with `detail`, a reduction's rel_err ≤ tolerance."""
    agrees = row.get("agrees")
    if agrees is None:  # older files, and bit-exact ops: bit_exact is the rule
        agrees = row.get("bit_exact")
    if agrees is None:
        return "—"
    mark = "✓" if agrees else "✗"
    if detail and row.get("tolerance") is not None:
        rel = row.get("rel_err")
        rel_text = "inf" if rel is None else f"{rel:.1e}"
        sign = "≤" if rel is not None and rel <= row["tolerance"] else ">"
        return f"{mark} {rel_text} {sign} {row['tolerance']:.1e}"
    return mark


def _code(text) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return f"`{text}`" if text else "—"


def _rows_by_op(rows: list[dict]) -> "OrderedDict[str, list[dict]]":
    by_op: OrderedDict[str, list[dict]] = OrderedDict()
    for row in rows:
        by_op.setdefault(row["op"], []).append(row)
    return by_op


def _plot(op: str, rows: list[dict], out_dir: Path, language: str) -> int:
    """Draws the plot of `op`; returns its number of panels (0: nothing to draw)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if r.get("impl") in IMPL_STYLE and r.get("pct_of_copy") is not None]
    if not points:
        return 0
    panels: OrderedDict[tuple[str, str], list[dict]] = OrderedDict()
    for r in points:
        panels.setdefault((r["workload"], r.get("variant", "")), []).append(r)
    labels = PLOT_LABELS[language]
    plt.rcParams["font.sans-serif"] = ["Noto Sans CJK SC", "DejaVu Sans"]
    plt.rcParams["svg.hashsalt"] = "pagedkv"
    columns = min(3, len(panels))
    rows_n = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows_n, columns, figsize=(4.2 * columns, 3.2 * rows_n),
                             squeeze=False, sharey=True)
    unit = _size(points[0])[0]
    for ax, ((workload, variant), panel) in zip(axes.flat, panels.items()):
        lines: OrderedDict[tuple[str, str], list[tuple[int, float]]] = OrderedDict()
        for r in panel:
            lines.setdefault((r["impl"], r.get("slots", "")), []).append(
                (_size(r)[1], float(r["pct_of_copy"])))
        for (impl, slots), xy in lines.items():
            xy.sort()
            color, marker = IMPL_STYLE[impl]
            ax.plot([x for x, _ in xy], [y for _, y in xy], SLOT_DASH.get(slots, ":"),
                    color=color, marker=marker, markersize=3.5, linewidth=1.4,
                    label=f"{impl} ({slots})" if slots else impl)
        ax.set_xscale("log", base=2)
        ax.set_title(f"{workload} · {variant}" if variant else workload, fontsize=10)
        ax.set_xlabel(labels[unit])
        ax.axhline(100, color="0.6", linewidth=0.8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(labels["pct"])
    fig.tight_layout()
    suffix = ".png" if language == "en" else f".{language}.png"
    fig.savefig(out_dir / f"{op}{suffix}", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return columns


def render(results_path: Path, data: dict, root: Path, figure_dir: Path) -> str:
    rel = results_path.relative_to(root).as_posix()
    # Every label used below is also in the legend of docs/performance.md, so its translation
    # lives in the catalog even while no results file exists.
    run = [("GPU", _code(data.get("gpu", "?"))), ("Driver", _code(data.get("driver", "?"))),
           ("CUDA", _code(data.get("cuda", "?"))), ("Commit", _code(data.get("commit", "?"))),
           ("Date", _code(data.get("date", "?"))),
           ("Device copy bandwidth (GB/s)", _num(data.get("copy_bandwidth_gbps"))),
           ("Results file", _code(rel))]
    lines = ["<!-- generated by docs/tools/performance.py: do not edit -->", "",
             ":::{list-table}", ":header-rows: 0", ""]
    for label, value in run:
        lines += [f"* - {label}", f"  - {value}"]
    lines += [":::", ""]
    for op, rows in _rows_by_op(data.get("rows", [])).items():
        unit = _size(rows[0])[0]
        unit_title = "Tokens" if unit == "tokens" else "Blocks"
        lines += [f"### `{op}`", ""]
        # Summary: the largest size of each (workload, variant, slots), naive next to optimized.
        largest: OrderedDict[tuple, dict] = OrderedDict()
        for r in rows:
            key = (r["workload"], r.get("variant", ""), r.get("slots", ""))
            size = _size(r)[1]
            if key not in largest or size > largest[key]["size"]:
                largest[key] = {"size": size, "impls": {}}
            if size == largest[key]["size"]:
                largest[key]["impls"][r["impl"]] = r
        lines += [f"| Workload | Variant | Slots | {unit_title} | Naive GB/s | Naive % of copy "
                  f"| Optimized GB/s | Optimized % of copy | Bit-exact |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for (workload, variant, slots), entry in largest.items():
            naive = entry["impls"].get("naive", {})
            opt = entry["impls"].get("optimized", {})
            exact = " ".join(filter(None, [_check(naive) if naive else "",
                                           _check(opt) if opt else ""])) or "—"
            lines.append(f"| {_code(workload)} | {_code(variant)} | {_code(slots)} | "
                         f"{entry['size']} | {_num(naive.get('gbps'))} | "
                         f"{_num(naive.get('pct_of_copy'))} | {_num(opt.get('gbps'))} | "
                         f"{_num(opt.get('pct_of_copy'))} | {exact} |")
        lines.append("")
        columns = [_plot(op, rows, figure_dir, lang) for lang in PLOT_LABELS]
        if all(columns):
            width = min(100, 45 * columns[0])  # one panel should not fill the whole page
            lines += [f":::{{figure}} /docs/_generated/perf/{op}.png", f":alt: {op}",
                      f":width: {width}%", "", f"`{op}`", ":::", ""]
        # A plain sub-heading, not a dropdown: the table cells inside a sphinx-design dropdown
        # never reached the translation catalogs, so the zh_CN page showed them in English.
        lines += [f"#### All measurements: `{op}`", "",
                  f"| Workload | Variant | Slots | Impl | {unit_title} | Bytes | Median (µs) "
                  f"| GB/s | % of copy | Bit-exact | Max abs err |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(
                f"| {_code(r['workload'])} | {_code(r.get('variant', ''))} | "
                f"{_code(r.get('slots', ''))} | {_code(r['impl'])} | {_size(r)[1]} | "
                f"{r.get('bytes', '—')} | {_sig(r.get('median_us'))} | {_num(r.get('gbps'))} | "
                f"{_num(r.get('pct_of_copy'))} | {_check(r, detail=True)} | "
                f"{_sig(r.get('max_abs_err'))} |")
        lines += [""]
    return "\n".join(lines)


NO_RESULTS = """<!-- generated by docs/tools/performance.py: do not edit -->

:::{note}
No GPU results have been recorded yet: the `results/` folder holds no results file. The tables
and plots of this page appear once a run on a GPU machine has committed one.
:::
"""


def build(root: Path, out_dir: Path, results: list[Path] | None = None) -> Path | None:
    """Write the snippet (and plots); returns the results file used, or None."""
    figure_dir = out_dir / "perf"
    figure_dir.mkdir(parents=True, exist_ok=True)
    for old in figure_dir.glob("*.png"):
        old.unlink()
    found = newest(committed_results(root) if results is None else results)
    if found is None:
        (out_dir / "performance_body.md").write_text(NO_RESULTS)
        return None
    path, data = found
    (out_dir / "performance_body.md").write_text(render(path, data, root, figure_dir))
    return path
