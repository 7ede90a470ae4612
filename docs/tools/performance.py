"""The performance page: tables and plots from the committed results/*.json, each op's from the
newest file that measured it (docs/tools/results_files.py).

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

import math
from collections import OrderedDict
from pathlib import Path

from results_files import committed_results, readable, runs_by_op

# "% of copy" (pct_of_copy) compares a row with a size-matched copy measured in the same run
# (results/README.md), not with one device-copy bandwidth: the axis label says so.
PLOT_LABELS = {
    "en": {"pct": "% of a size-matched copy (same run)", "tokens": "tokens", "blocks": "blocks",
           "launch": "launch-bound (copy < 5 µs)"},
    "zh_CN": {"pct": "等量拷贝占比 (%，同次运行)", "tokens": "token 数",
              "blocks": "块数", "launch": "受启动开销限制 (拷贝 < 5 µs)"},
}
IMPL_STYLE = {"naive": ("tab:orange", "o"), "optimized": ("tab:blue", "s")}
SLOT_DASH = {"random": "-", "contiguous": "--", "": "-"}


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


def _us(value) -> str:
    """A time in µs: one decimal from 10 µs on, two below."""
    if value is None:
        return "—"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _size(row: dict) -> tuple[str, int]:
    if row.get("size_unit") and "size" in row:  # every file written since size_unit existed
        return row["size_unit"], int(row["size"])
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
    if detail and row.get("ulp_bound") is not None:  # the activations: max_ulp ≤ ulp_bound
        worst = row.get("max_ulp")
        worst_text = "inf" if worst is None else f"{worst:.3g}"
        sign = "≤" if worst is not None and worst <= row["ulp_bound"] else ">"
        return f"{mark} {worst_text} {sign} {row['ulp_bound']:g} ulp"
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


# The plots share one y range so that ops can be compared at a glance; points above it are
# drawn as triangles on the top edge (the caption says so).
Y_MAX = 110.0
# A size is "launch-bound" when the size-matched copy itself takes less than this: the launch,
# not the memory, sets the time there (shaded in the plots, read from the run's copy rows).
LAUNCH_BOUND_US = 5.0
COPY_IMPLS = ("copy", "copy_kernel")
# The tool the "reproduce this row" command runs: the comparison tool of the gpu preset.
TOOL = "build/gpu/tools/compare/pagedkv"


def _copy_us(rows: list[dict]) -> "OrderedDict[tuple, dict[int, float]]":
    """(workload, variant) -> size -> median µs of the size-matched copy (the faster of `copy`
    and `copy_kernel`, over every slot pattern: the copy moves the same bytes)."""
    copies: OrderedDict[tuple, dict[int, float]] = OrderedDict()
    for r in rows:
        if r.get("impl") in COPY_IMPLS and r.get("median_us") is not None:
            sizes = copies.setdefault((r["workload"], r.get("variant", "")), {})
            size = _size(r)[1]
            sizes[size] = min(sizes.get(size, math.inf), float(r["median_us"]))
    return copies


def launch_bound_limit(copy_us: dict[int, float], limit_us: float = LAUNCH_BOUND_US):
    """The size below which the size-matched copy takes under `limit_us`: interpolated on log
    axes between the last size under the limit and the first one over it; None when even the
    smallest copy takes `limit_us` or more; the largest size when every copy is under it."""
    points = sorted(copy_us.items())
    if not points or points[0][1] >= limit_us:
        return None
    for (x0, t0), (x1, t1) in zip(points, points[1:]):
        if t1 >= limit_us:
            if t1 <= t0:
                return float(x1)
            f = (math.log(limit_us) - math.log(t0)) / (math.log(t1) - math.log(t0))
            return float(math.exp(math.log(x0) + f * (math.log(x1) - math.log(x0))))
    return float(points[-1][0])


def _plot(op: str, rows: list[dict], out_dir: Path, language: str, stem: str = "") -> int:
    """Draws the plot of `op` into <stem or op>.png (<stem>.<language>.png for another language);
    returns its number of panels (0: nothing to draw)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if r.get("impl") in IMPL_STYLE and r.get("pct_of_copy") is not None]
    if not points:
        return 0
    panels: OrderedDict[tuple[str, str], list[dict]] = OrderedDict()
    for r in points:
        panels.setdefault((r["workload"], r.get("variant", "")), []).append(r)
    copies = _copy_us(rows)
    labels = PLOT_LABELS[language]
    plt.rcParams["font.sans-serif"] = ["Noto Sans CJK SC", "DejaVu Sans"]
    plt.rcParams["svg.hashsalt"] = "pagedkv"
    columns = min(3, len(panels))
    rows_n = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows_n, columns, figsize=(4.2 * columns, 3.2 * rows_n),
                             squeeze=False, sharey=True)
    unit = _size(points[0])[0]
    for ax, ((workload, variant), panel) in zip(axes.flat, panels.items()):
        sizes = sorted({_size(r)[1] for r in panel})
        lo, hi = sizes[0] / 1.5, sizes[-1] * 1.5
        limit = launch_bound_limit(copies.get((workload, variant), {}))
        if limit is not None:
            ax.axvspan(lo, min(max(limit, lo), hi), color="0.85", alpha=0.6, linewidth=0,
                       label=labels["launch"])
        lines: OrderedDict[tuple[str, str], list[tuple[int, float]]] = OrderedDict()
        for r in panel:
            lines.setdefault((r["impl"], r.get("slots", "")), []).append(
                (_size(r)[1], float(r["pct_of_copy"])))
        for (impl, slots), xy in lines.items():
            xy.sort()
            color, marker = IMPL_STYLE[impl]
            ax.plot([x for x, _ in xy], [min(y, Y_MAX) for _, y in xy], SLOT_DASH.get(slots, ":"),
                    color=color, marker=marker, markersize=3.5, linewidth=1.4,
                    label=f"{impl} ({slots})" if slots else impl, clip_on=False)
            over = [x for x, y in xy if y > Y_MAX]
            if over:
                ax.plot(over, [Y_MAX] * len(over), "^", color=color, markersize=7, clip_on=False)
        ax.set_xscale("log", base=2)
        ax.set_xlim(lo, hi)
        ax.set_ylim(0, Y_MAX)
        ax.set_title(f"{workload} · {variant}" if variant else workload, fontsize=10)
        ax.set_xlabel(labels[unit])
        ax.axhline(100, color="0.6", linewidth=0.8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(labels["pct"])
    fig.tight_layout()
    suffix = ".png" if language == "en" else f".{language}.png"
    fig.savefig(out_dir / f"{stem or op}{suffix}", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return columns


def representative_sizes(sizes) -> list[int]:
    """The smallest, a middle and the largest of the sizes (fewer when there are fewer)."""
    ordered = sorted(set(sizes))
    if len(ordered) <= 3:
        return ordered
    return [ordered[0], ordered[len(ordered) // 2], ordered[-1]]


def _list_table(title: str, header: list[str], body: list[list[str]]) -> list[str]:
    """A MyST list-table. List tables, unlike pipe tables, still reach the translation
    catalogs when they sit inside a dropdown (see render())."""
    lines = [f":::{{list-table}} {title}".rstrip(), ":header-rows: 1", ""]
    for cells in [header] + body:
        lines.append(f"* - {cells[0]}")
        lines += [f"  - {cell}" for cell in cells[1:]]
    return lines + [":::", ""]


def reproduce_command(op: str, row: dict) -> str:
    """The comparison tool's command line that measures `row` again (tools/compare/main.cpp)."""
    parts = [TOOL, "compare", op, "--workload", row["workload"]]
    if row.get("variant"):
        parts += ["--variant", f'"{row["variant"]}"']
    if row.get("slots") and row["workload"] != "W6":
        parts += ["--slots", row["slots"]]
    parts += ["--size", str(_size(row)[1])]
    return " ".join(parts)


# Captions and sentences are fixed text, so that their translation does not change with the
# data: one caption per size unit, with or without the slot patterns' line styles.
CAPTIONS = {
    ("tokens", True): (
        "Plotted: the % of a size-matched copy of the naive (orange) and optimized (blue) kernels against "
        "the number of tokens (log scale), one panel per workload variant. Solid lines: random "
        "slots; dashed lines: contiguous slots; grey line: 100 %. The y axis runs from 0 to "
        "110 % in every plot; points above it are drawn as triangles on the top edge. Shaded: "
        "the launch-bound sizes, where the size-matched copy itself takes under 5 µs in this "
        "run (read from its copy rows)."),
    ("tokens", False): (
        "Plotted: the % of a size-matched copy of the naive (orange) and optimized (blue) kernels against "
        "the number of tokens (log scale), one panel per workload variant; grey line: 100 %. "
        "The y axis runs from 0 to 110 % in every plot; points above it are drawn as triangles "
        "on the top edge. Shaded: the launch-bound sizes, where the size-matched copy itself "
        "takes under 5 µs in this run (read from its copy rows)."),
    ("blocks", False): (
        "Plotted: the % of a size-matched copy of the naive (orange) and optimized (blue) kernels against "
        "the number of blocks (log scale), one panel per copy direction; grey line: 100 %. "
        "The y axis runs from 0 to 110 % in every plot; points above it are drawn as triangles "
        "on the top edge. Shaded: the launch-bound sizes, where the size-matched copy itself "
        "takes under 5 µs in this run (read from its copy rows)."),
}
CAPTIONS[("blocks", True)] = CAPTIONS[("blocks", False)]
SUMMARY_TITLE = ("% of a size-matched copy at the smallest, a middle and the largest size of "
                 "each workload variant")
REPRODUCE = ("Reproduce a row on a GPU machine (here the first row of the table; change "
             "`--variant`, `--slots` and `--size` for another):")


# Said above each run's table when the page draws on more than one results file.
SEVERAL_RUNS = ("Each op's numbers come from the newest results file that measured it. The ops "
                "below come from this run:")


def render(results_path: Path, data: dict, root: Path, figure_dir: Path,
           ops: list[str] | None = None, header: bool = True, several: bool = False,
           other_gpu: str = "") -> str:
    """The run's table, then a section per op of `ops` (default: every op of the file).
    `other_gpu`: the run is of a GPU other than the page's first, whose sections come first; its
    op headings are one level lower and name the GPU, its plots are <op>.<slug>.png."""
    rel = results_path.relative_to(root).as_posix()
    # Every label used below is also in the legend of docs/performance.md, so its translation
    # lives in the catalog even while no results file exists.
    run = [("GPU", _code(data.get("gpu", "?"))), ("Driver", _code(data.get("driver", "?"))),
           ("CUDA", _code(data.get("cuda", "?"))), ("Commit", _code(data.get("commit", "?"))),
           ("Date", _code(data.get("date", "?"))),
           ("Device copy bandwidth (GB/s)", _num(data.get("copy_bandwidth_gbps"))),
           ("Results file", _code(rel))]
    lines = ["<!-- generated by docs/tools/performance.py: do not edit -->", ""] if header else []
    if several:  # the sentence alone: the list of ops (code spans) needs no translation
        lines += [SEVERAL_RUNS, "", ", ".join(_code(op) for op in ops or []), ""]
    lines += [":::{list-table}", ":header-rows: 0", ""]
    for label, value in run:
        lines += [f"* - {label}", f"  - {value}"]
    lines += [":::", ""]
    for op, rows in _rows_by_op(data.get("rows", [])).items():
        if ops is not None and op not in ops:
            continue
        unit = _size(rows[0])[0]
        unit_title = "Tokens" if unit == "tokens" else "Blocks"
        copies = _copy_us(rows)
        lines += [f"#### `{op}` — `{other_gpu}`" if other_gpu else f"### `{op}`", ""]
        # Summary: per (workload, variant, slots), the kernels at a few representative sizes.
        groups: OrderedDict[tuple, dict[int, dict[str, dict]]] = OrderedDict()
        for r in rows:
            key = (r["workload"], r.get("variant", ""), r.get("slots", ""))
            groups.setdefault(key, {}).setdefault(_size(r)[1], {})[r["impl"]] = r
        body, first = [], None
        for (workload, variant, slots), by_size in groups.items():
            for size in representative_sizes(by_size):
                impls = by_size[size]
                naive, opt = impls.get("naive", {}), impls.get("optimized", {})
                if not (naive or opt):
                    continue
                first = first or (opt or naive)
                agrees = " ".join(filter(None, [_check(opt) if opt else "",
                                                _check(naive) if naive else ""])) or "—"
                copy_us = copies.get((workload, variant), {}).get(size)
                body.append([_code(workload), _code(variant), _code(slots), str(size),
                             _us(copy_us), _num(opt.get("pct_of_copy")),
                             _num(naive.get("pct_of_copy")), agrees])
        if body:
            lines += _list_table(SUMMARY_TITLE, [
                "Workload", "Variant", "Slots", unit_title, "Copy (µs)",
                "Optimized % of copy", "Naive % of copy", "Agrees"], body)
            lines += [REPRODUCE, "", "```console", reproduce_command(op, first), "```", ""]
        stem = f"{op}.{gpu_slug(other_gpu)}" if other_gpu else op
        columns = [_plot(op, rows, figure_dir, lang, stem) for lang in PLOT_LABELS]
        if all(columns):
            width = min(100, 45 * columns[0])  # one panel should not fill the whole page
            has_slots = any(r.get("slots") == "contiguous" for r in rows)
            lines += [f":::{{figure}} /docs/_generated/perf/{stem}.png", f":alt: {op}",
                      f":width: {width}%", "", CAPTIONS[(unit, has_slots)], ":::", ""]
        # (A list-table cell starting with "%" would be a MyST comment: hence "\\%".)
        # A sphinx-design dropdown holding a list-table. The cells of a pipe table inside a
        # dropdown never reach the translation catalogs (MyST's nested parse gives them no
        # source line, and Sphinx's gettext skips such nodes), so the zh_CN page showed them in
        # English; a list-table inside it is extracted and translated like any other.
        full = [[_code(r["workload"]), _code(r.get("variant", "")), _code(r.get("slots", "")),
                 _code(r["impl"]), str(_size(r)[1]), str(r.get("bytes", "—")),
                 _us(r.get("median_us")), _num(r.get("gbps")), _num(r.get("pct_of_copy")),
                 _check(r, detail=True), _sig(r.get("max_abs_err"))] for r in rows]
        lines += ["::::{dropdown} All measurements", ""]
        lines += _list_table("", ["Workload", "Variant", "Slots", "Impl", unit_title, "Bytes",
                                  "Median (µs)", "GB/s", "\\% of copy", "Agrees", "Max abs err"],
                             full)
        lines += ["::::", ""]
    return "\n".join(lines)


NO_RESULTS = """<!-- generated by docs/tools/performance.py: do not edit -->

:::{note}
No GPU results have been recorded yet: the `results/` folder holds no results file. The tables
and plots of this page appear once a run on a GPU machine has committed one.
:::
"""


# Said at the top of the page when runs of more than one GPU are recorded (the list of GPUs,
# links with code-span titles, needs no translation).
SEVERAL_GPUS = ("Results of more than one GPU are recorded. The sections of the first GPU come "
                "first; each other GPU has a section of its own, in which each op's numbers come "
                "from that GPU's newest results file. Pick a GPU:")


def gpu_slug(gpu: str) -> str:
    """A GPU name as a file-name and label part: "NVIDIA H200" -> "nvidia-h200"."""
    return "-".join("".join(c if c.isalnum() else " " for c in gpu.lower()).split()) or "gpu"


def gpus_newest_first(paths: list[Path]) -> "OrderedDict[str, list[Path]]":
    """The results files grouped by the GPU that made them, the GPU of the newest file first."""
    groups: OrderedDict[str, list[Path]] = OrderedDict()
    for path, data in readable(paths):  # newest first
        groups.setdefault(str(data.get("gpu", "?")), []).append(path)
    return groups


def build(root: Path, out_dir: Path, results: list[Path] | None = None) -> Path | None:
    """Write the snippet (and plots); returns the newest results file used, or None.
    One GPU: each op from its newest file. Several: the newest file's GPU first, as with one;
    then a section per other GPU, each op from that GPU's newest file (issue: the reader picks
    the GPU)."""
    figure_dir = out_dir / "perf"
    figure_dir.mkdir(parents=True, exist_ok=True)
    for old in figure_dir.glob("*.png"):
        old.unlink()
    gpus = gpus_newest_first(committed_results(root) if results is None else results)
    if not gpus:
        (out_dir / "performance_body.md").write_text(NO_RESULTS)
        return None
    parts, first_used = [], None
    for g, (gpu, paths) in enumerate(gpus.items()):
        runs = runs_by_op(paths)
        first_used = first_used or runs[0][0]
        label = f"performance-gpu-{gpu_slug(gpu)}"
        section = []
        if g == 0 and len(gpus) > 1:
            section += ["<!-- generated by docs/tools/performance.py: do not edit -->", "",
                        SEVERAL_GPUS, ""]
            section += [f"- {{ref}}`{name} <performance-gpu-{gpu_slug(name)}>`" for name in gpus]
            section += ["", f"({label})=", ""]
        elif g > 0:
            section += [f"({label})=", f"### `{gpu}`", ""]
        section += [render(path, data, root, figure_dir, ops,
                           header=(g == 0 and i == 0 and len(gpus) == 1),
                           several=len(runs) > 1, other_gpu=gpu if g > 0 else "")
                    for i, (path, data, ops) in enumerate(runs)]
        parts.append("\n".join(section))
    (out_dir / "performance_body.md").write_text("\n".join(parts))
    return first_used
