"""Measured numbers in the prose, read from the committed results instead of retyped.

Three roles and a block directive; docs/tools/check_measured.py fails on a measured number
written outside them.

``{measured}`SELECTOR` `` renders one value of the committed results (results/*.json), e.g.

    {measured}`op=swap_blocks direction=H2D blocks=2048 impl=optimized value=pct_of_copy`
    -> 92.6 %

  SELECTOR is `key=value` pairs separated by spaces. Keys that pick rows (each must match):
    op, workload, impl, slots     the row's keys (results/README.md)
    layout, dtype, direction,     the parts of the row's `variant`: "NHD fp8_e4m3" is layout=NHD
    hidden, policy, heads         dtype=fp8_e4m3, "hidden 7168 bf16" is hidden=7168 dtype=bf16,
                                  "D2H" is direction=D2H, "policy 8" is policy=8, "heads 128,
                                  output_lse" is heads=128 dtype=output_lse
    tokens, blocks                the size, under the key that names its unit
  Keys that say what to show:
    value     median_us (µs), gbps (GB/s, TB/s from 1000 GB/s), pct_of_copy (%), rel_err,
              tolerance, speedup (×: the time of the `base` row over this row's time), or a
              run's own number: copy_bandwidth_gbps (the run's device-copy bandwidth)
    base      for value=speedup: the impl of the slower row (same selector otherwise)
    agg       min, max or range over all the rows the selector matches (range: "91.2–95.3 %");
              without agg the selector must match exactly one row
    run       a results file by name (run=h100-2026-12-06a for results/h100-2026-12-06a.json);
              default: the newest committed file, the one the tables and plots are drawn from
  A selector that matches no row, or several rows without agg, or names an unknown key or
  value, is a build error that quotes the selector.
  Precision: % one decimal; µs two decimals under 10, one under 1000, none from 1000; GB/s
  one decimal, from 1000 GB/s TB/s with two; × one decimal; rel_err and tolerance two
  significant digits. The value carries class pagedkv-measured and a tooltip naming the file,
  GPU, date and commit.

``{lab}`VALUE <DATE, GPU>` `` is a one-off measurement that no results file holds (a dropped
  variant, a development run, a profiler reading): VALUE as written, followed by a small
  "lab note, DATE, GPU". DATE (YYYY-MM-DD, the day the figure was written down) and GPU are
  required. Re-recording does not refresh it, and the rendering says so.

A ``{lab-note}`` block (```{lab-note}``` or :::{lab-note}, options :date: YYYY-MM-DD and
  :gpu:, both required) holds paragraphs or tables of such one-off measurements, e.g. a
  ledger's development figures or a profiler session: a box titled "Lab note, DATE, GPU"
  saying that re-recording does not refresh it. Numbers inside it need no role.

``{spec}`TEXT` `` is a number that is not a measurement: a hardware specification (the H100's
  3.35 TB/s), a target (85 % of a copy), a definition (the 100 % line) or an exercise's
  assumption (a link of 50 GB/s). It renders TEXT unchanged; the role only tells the check,
  and the reader of the source, that nothing here comes from a run.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))  # docs/tools
import results_files  # noqa: E402

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results"

ROW_KEYS = ("op", "workload", "impl", "slots", "layout", "dtype", "direction", "hidden",
            "policy", "heads", "tokens", "blocks")
NUMBERED = ("hidden", "policy", "heads")  # variant words followed by their number
SHOW_KEYS = ("value", "base", "agg", "run")
ROW_VALUES = ("median_us", "gbps", "pct_of_copy", "rel_err", "tolerance", "speedup")
RUN_VALUES = ("copy_bandwidth_gbps",)
AGGREGATES = ("min", "max", "range")
LAYOUTS = ("NHD", "HND")
DIRECTIONS = ("H2D", "D2H", "D2D")
NBSP = "\u00a0"  # between a number and its unit: no line break inside "92.6 %"


class SelectorError(ValueError):
    """A {measured} selector that is malformed or does not pick what it must."""


# -- results files --------------------------------------------------------------------------------

def committed_results(root: Path = REPO) -> list[Path]:
    """results/*.json known to git (all of them when git cannot tell, e.g. in an export)."""
    return results_files.committed_results(root)


def load(path: Path) -> dict:
    data = results_files.load(path)
    if data is None:
        raise SelectorError(f"results/{path.name} cannot be read as a results file")
    return data


def run_file(name: str | None, root: Path = REPO, op: str | None = None) -> Path:
    """The results file `name` (without .json); else the newest committed one with rows of
    `op` (each op's numbers come from the newest run that measured it, as on the performance
    page: docs/tools/results_files.py), or the newest of all when no op is named."""
    paths = committed_results(root)
    if name:
        for path in paths:
            if path.stem == name:
                return path
        known = ", ".join(sorted(p.stem for p in paths)) or "none"
        raise SelectorError(f"run={name}: no committed results/{name}.json (committed: {known})")
    found = results_files.newest_for_op(paths, op) if op else results_files.newest(paths)
    if found is None:
        what = f" with rows of {op}" if op else ""
        raise SelectorError(f"no committed results/*.json{what} to read measured values from")
    return found[0]


def describe_run(path: Path, data: dict, language: str = "en") -> str:
    """The tooltip: which file, GPU, date and commit a value comes from."""
    gpu = data.get("gpu") or "—"
    date = str(data.get("date") or "—")[:10]
    commit = str(data.get("commit") or "—")[:7]
    rel = f"results/{path.name}"
    if language.startswith("zh"):
        return f"存档的测量结果：{rel}（{gpu}，{date}，提交 {commit}）"
    return f"measured: {rel} ({gpu}, {date}, commit {commit})"


# -- selectors ------------------------------------------------------------------------------------

def parse_selector(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in text.split():
        key, sep, value = part.partition("=")
        if not sep or not key or not value:
            raise SelectorError(f"'{part}' is not key=value")
        if key not in ROW_KEYS + SHOW_KEYS:
            raise SelectorError(f"unknown key '{key}' (row keys: {', '.join(ROW_KEYS)}; "
                                f"others: {', '.join(SHOW_KEYS)})")
        if key in fields:
            raise SelectorError(f"key '{key}' given twice")
        fields[key] = value
    value = fields.get("value")
    if value is None:
        raise SelectorError("value= is required (" + ", ".join(ROW_VALUES + RUN_VALUES) + ")")
    if value not in ROW_VALUES + RUN_VALUES:
        raise SelectorError(f"unknown value '{value}' ({', '.join(ROW_VALUES + RUN_VALUES)})")
    if (value == "speedup") != ("base" in fields):
        raise SelectorError("base= goes with value=speedup, and value=speedup needs base=")
    if fields.get("agg", "min") not in AGGREGATES:
        raise SelectorError(f"unknown agg '{fields['agg']}' ({', '.join(AGGREGATES)})")
    if value in RUN_VALUES and set(fields) & set(ROW_KEYS):
        raise SelectorError(f"value={value} belongs to the run: no row keys")
    return fields


def row_fields(row: dict) -> dict[str, str]:
    """A row's selectable keys as strings, the variant split into its parts."""
    fields = {key: str(row.get(key, "")) for key in ("op", "workload", "impl", "slots")}
    if "tokens" in row:
        fields["tokens"] = str(row["tokens"])
    if "blocks" in row:
        fields["blocks"] = str(row["blocks"])
    words = str(row.get("variant", "")).replace(",", " ").split()
    for i, word in enumerate(words):
        if word in LAYOUTS:
            fields["layout"] = word
        elif word in DIRECTIONS:
            fields["direction"] = word
        elif word in NUMBERED and i + 1 < len(words):
            fields[word] = words[i + 1]
        elif not (i > 0 and words[i - 1] in NUMBERED):
            fields["dtype"] = word
    return fields


def select(rows: list[dict], wanted: dict[str, str]) -> list[dict]:
    picks = {k: v for k, v in wanted.items() if k in ROW_KEYS}
    return [r for r in rows if all(row_fields(r).get(k) == v for k, v in picks.items())]


def _ambiguity(rows: list[dict]) -> str:
    """The keys in which the matched rows differ, with their values: what to add."""
    table = [row_fields(r) for r in rows]
    keys = [k for k in ROW_KEYS if len({t.get(k, "") for t in table}) > 1]
    return "; ".join(f"{k}: {', '.join(sorted({t.get(k, '') or '(none)' for t in table}))}"
                     for k in keys)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def row_value(row: dict, value: str, rows: list[dict], fields: dict[str, str]) -> float:
    if value == "speedup":
        base_fields = dict(fields, impl=fields["base"])
        base = select(rows, base_fields)
        if len(base) != 1:
            raise SelectorError(f"base={fields['base']}: {len(base)} rows match, not one")
        mine, theirs = row.get("median_us"), base[0].get("median_us")
        if not (_finite(mine) and _finite(theirs)) or mine <= 0:
            raise SelectorError("speedup: a median_us is missing")
        return float(theirs) / float(mine)
    number = row.get(value)
    if not _finite(number):
        raise SelectorError(f"the row has no {value} ({number!r})")
    return float(number)


# -- formatting -----------------------------------------------------------------------------------

def format_number(value: float, kind: str) -> tuple[str, str]:
    """(number, unit) of a value of the given kind, at the precision the docstring lists."""
    if kind == "pct_of_copy":
        return f"{value:.1f}", "%"
    if kind == "median_us":
        digits = 2 if value < 10 else (1 if value < 1000 else 0)
        return f"{value:.{digits}f}", "µs"
    if kind in ("gbps", "copy_bandwidth_gbps"):
        if value >= 1000:
            return f"{value / 1000:.2f}", "TB/s"
        return f"{value:.1f}", "GB/s"
    if kind == "speedup":
        return f"{value:.1f}", "×"
    if kind in ("rel_err", "tolerance"):
        return f"{value:.1e}", ""
    raise SelectorError(f"no format for {kind}")


def _join(number: str, unit: str) -> str:
    if not unit:
        return number
    return number + unit if unit == "×" else number + NBSP + unit


def measure(selector: str, root: Path = REPO) -> tuple[str, Path, dict]:
    """(rendered text, results file, its data) of a {measured} selector; SelectorError naming
    what is wrong otherwise."""
    fields = parse_selector(selector)
    path = run_file(fields.get("run"), root, fields.get("op"))
    data = load(path)
    value = fields["value"]
    if value in RUN_VALUES:
        number = data.get(value)
        if not _finite(number):
            raise SelectorError(f"results/{path.name} has no {value}")
        return _join(*format_number(float(number), value)), path, data
    rows = data.get("rows", [])
    matched = select(rows, fields)
    if not matched:
        raise SelectorError(f"no row of results/{path.name} matches")
    agg = fields.get("agg")
    if agg is None and len(matched) > 1:
        raise SelectorError(f"{len(matched)} rows of results/{path.name} match; they differ in "
                            f"{_ambiguity(matched)} (name one, or use agg=min|max|range)")
    values = [row_value(r, value, rows, fields) for r in matched]
    if agg in (None, "min"):
        shown = min(values)
    elif agg == "max":
        shown = max(values)
    else:
        low, unit = format_number(min(values), value)
        high, _ = format_number(max(values), value)
        return _join(low if low == high else f"{low}–{high}", unit), path, data
    return _join(*format_number(shown, value)), path, data


# -- the roles ------------------------------------------------------------------------------------

LAB = re.compile(r"^(?P<value>.*\S)\s*<\s*(?P<date>\d{4}-\d{2}-\d{2})\s*,\s*(?P<gpu>[^<>]*\S)\s*>$",
                 re.S)


def parse_lab(text: str) -> tuple[str, str, str]:
    """(value, date, GPU) of a {lab} role's text `VALUE <YYYY-MM-DD, GPU>`."""
    match = LAB.match(text.strip())
    if not match:
        raise ValueError("write {lab}`VALUE <YYYY-MM-DD, GPU>`: the date and the GPU are required")
    if not re.search(r"\d", match["value"]):
        raise ValueError("a lab note's VALUE holds the measured number")
    return match["value"], match["date"], match["gpu"]


def _language(inliner) -> str:
    return inliner.document.settings.env.config.language or "en"


def _error(inliner, lineno, rawtext, message):
    msg = inliner.reporter.error(message, line=lineno)
    return [inliner.problematic(rawtext, rawtext, msg)], [msg]


def measured_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    env = inliner.document.settings.env
    try:
        shown, path, data = measure(text)
    except SelectorError as e:
        return _error(inliner, lineno, rawtext, f"{{measured}}`{text}`: {e}")
    env.note_dependency(str(path))
    tip = describe_run(path, data, _language(inliner))
    node = nodes.abbreviation(shown, shown, explanation=tip, classes=["pagedkv-measured"])
    return [node], []


def lab_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    try:
        value, date, gpu = parse_lab(text)
    except ValueError as e:
        return _error(inliner, lineno, rawtext, f"{{lab}}`{text}`: {e}")
    zh = _language(inliner).startswith("zh")
    tag = f"实验记录，{date}，{gpu}" if zh else f"lab note, {date}, {gpu}"
    tip = ("一次性测量，重新存档测量结果不会更新它" if zh
           else "a one-off measurement; re-recording the results does not refresh it")
    node = nodes.inline(classes=["pagedkv-lab"])
    node += nodes.Text(value)
    node += nodes.abbreviation(tag, tag, explanation=tip, classes=["pagedkv-lab-tag"])
    return [node], []


class LabNote(SphinxDirective):
    """A block of one-off measurements, dated, with the GPU they ran on."""

    has_content = True
    option_spec = {"date": directives.unchanged_required, "gpu": directives.unchanged_required}

    def run(self) -> list[nodes.Node]:
        date, gpu = self.options.get("date", "").strip(), self.options.get("gpu", "").strip()
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date) or not gpu:
            raise self.error("lab-note: :date: (YYYY-MM-DD) and :gpu: are required")
        zh = (self.config.language or "en").startswith("zh")
        title = (f"实验记录，{date}，{gpu}：一次性测量，重新存档测量结果不会更新这些数字" if zh
                 else f"Lab note, {date}, {gpu}: one-off measurements; re-recording the results "
                      "does not refresh them")
        box = nodes.admonition(classes=["pagedkv-lab-note", "note"])
        self.set_source_info(box)
        # Written in the page's language here, so it stays out of the catalogs.
        box += nodes.title(title, title, translatable=False)
        self.state.nested_parse(self.content, self.content_offset, box)
        return [box]


def spec_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    return [nodes.inline(text, text, classes=["pagedkv-spec"])], []


def setup(app):
    app.add_role("measured", measured_role)
    app.add_role("lab", lab_role)
    app.add_role("spec", spec_role)
    app.add_directive("lab-note", LabNote)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
