"""Tests of the {measured}/{lab}/{spec} roles (docs/_ext/pagedkv_measured.py) and of the
measured-number check (docs/tools/check_measured.py)."""

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "docs" / "_ext"))
sys.path.insert(0, str(REPO / "docs" / "tools"))

import check_measured as cm  # noqa: E402
import pagedkv_measured as pm  # noqa: E402


def _row(**kw):
    row = {"op": "swap_blocks", "workload": "W6", "variant": "H2D", "slots": "random",
           "impl": "optimized", "blocks": 2048, "median_us": 1308.86, "gbps": 51.3,
           "pct_of_copy": 92.6}
    row.update(kw)
    return row


@pytest.fixture()
def root(tmp_path):
    """A folder outside git with two results files: old (2026-11-21) and new (2026-12-06)."""
    (tmp_path / "results").mkdir()
    old = {"gpu": "NVIDIA H100 80GB HBM3", "date": "2026-11-21T12:21:37Z", "commit": "ae5a4e6",
           "copy_bandwidth_gbps": 3004.74,
           "rows": [_row(median_us=1315.0, pct_of_copy=92.5), _row(impl="naive", median_us=6620.3)]}
    new = {"gpu": "NVIDIA H100 80GB HBM3", "date": "2026-12-06T15:00:09Z", "commit": "a1a7b3e9",
           "copy_bandwidth_gbps": 3021.2,
           "rows": [_row(), _row(impl="naive", median_us=6586.62, pct_of_copy=18.4),
                    _row(variant="D2D", median_us=48.28, pct_of_copy=95.7, gbps=2779.9),
                    _row(op="rms_norm", workload="W9", variant="hidden 7168 bf16", slots="",
                         blocks=None, tokens=1024, median_us=9.871, pct_of_copy=88.44,
                         rel_err=1.234e-3),
                    _row(op="rms_norm", workload="W9", variant="hidden 4096 f16", slots="",
                         blocks=None, tokens=1024, median_us=5.0, pct_of_copy=97.64)]}
    for row in new["rows"]:
        if row.get("blocks") is None:
            row.pop("blocks", None)
    (tmp_path / "results" / "h100-2026-11-21.json").write_text(json.dumps(old))
    (tmp_path / "results" / "h100-2026-12-06b.json").write_text(json.dumps(new))
    return tmp_path


def text(selector, root):
    return pm.measure(selector, root)[0].replace(pm.NBSP, " ")


def test_newest_file_by_default_and_an_older_one_by_name(root):
    sel = "op=swap_blocks direction=H2D blocks=2048 impl=optimized value=pct_of_copy"
    assert text(sel, root) == "92.6 %"
    assert text(sel + " run=h100-2026-11-21", root) == "92.5 %"


def test_formats(root):
    h2d = "op=swap_blocks direction=H2D blocks=2048"
    assert text(f"{h2d} impl=naive value=median_us", root) == "6587 µs"
    assert text(f"{h2d} impl=optimized value=gbps", root) == "51.3 GB/s"
    assert text("op=swap_blocks direction=D2D impl=optimized value=gbps", root) == "2.78 TB/s"
    assert text("op=swap_blocks direction=D2D impl=optimized value=median_us", root) == "48.3 µs"
    assert text("op=rms_norm hidden=7168 tokens=1024 value=median_us", root) == "9.87 µs"
    assert text("op=rms_norm hidden=7168 dtype=bf16 value=rel_err", root) == "1.2e-03"
    assert text(f"{h2d} impl=optimized value=speedup base=naive", root) == "5.0×"
    assert text("value=copy_bandwidth_gbps", root) == "3.02 TB/s"


def test_aggregates(root):
    sel = "op=rms_norm tokens=1024 impl=optimized value=pct_of_copy"
    assert text(sel + " agg=range", root) == "88.4–97.6 %"
    assert text(sel + " agg=min", root) == "88.4 %"
    assert text(sel + " agg=max", root) == "97.6 %"


@pytest.mark.parametrize("selector, message", [
    ("op=swap_blocks impl=optimized value=pct_of_copy", "rows of results/h100-2026-12-06b.json "
                                                        "match; they differ in direction"),
    ("op=swap_blocks direction=D2H value=pct_of_copy", "no row"),
    ("op=swap_blocks direction=H2D impl=optimized", "value= is required"),
    ("op=swap_blocks colour=red value=gbps", "unknown key 'colour'"),
    ("op=swap_blocks direction=H2D impl=optimized value=speed", "unknown value 'speed'"),
    ("op=swap_blocks direction=H2D impl=optimized value=speedup", "needs base="),
    ("op=swap_blocks value=pct_of_copy agg=mean", "unknown agg"),
    ("op=swap_blocks direction=H2D impl=naive value=pct_of_copy run=h100-2027-01-01",
     "no committed results/h100-2027-01-01.json"),
    ("value=copy_bandwidth_gbps op=rms_norm", "belongs to the run"),
    ("op swap_blocks", "is not key=value"),
])
def test_bad_selectors_name_the_problem(root, selector, message):
    with pytest.raises(pm.SelectorError, match=None) as error:
        pm.measure(selector, root)
    assert message in str(error.value)


def test_lab_needs_date_and_gpu():
    assert pm.parse_lab("55 % <2026-11-21, H100>") == ("55 %", "2026-11-21", "H100")
    assert pm.parse_lab("5433 µs (3.3 %) <2026-11-21, H100 80GB HBM3>")[2] == "H100 80GB HBM3"
    for bad in ("55 %", "55 % <2026-11-21>", "55 % <H100>", "55 % <21.11.2026, H100>",
                "fast <2026-11-21, H100>"):
        with pytest.raises(ValueError):
            pm.parse_lab(bad)


PAGE = """---
kernelspec:
  name: python3
---
# A chapter

The kernel takes 6620 µs, 18 % of a copy.
It is 5.0× faster, 1.12 times faster, at 3.0 TB/s.
Quoted: {measured}`op=a value=pct_of_copy`, {lab}`55 % <2026-11-21, H100>`, {spec}`3.35 TB/s`.
Code `12 %` and math $1217 / 2048 = 0.594$ µs and 1024 × 4 vectors are fine.

```{figure} x.png
:width: 100%

A caption at 42 %.
```

```cpp
int pct = 100 %  7;
```

:::{lab-note}
:date: 2026-11-21
:gpu: H100

Development: 94.3 % and 144.0 µs.
:::

| version | time (µs) | what |
|---|---:|---|
| naive | 630 | one thread per element, 2 % |
| optimized | {measured}`op=a value=median_us` | 16-byte vectors |
"""


def test_the_check_finds_retyped_numbers_and_nothing_else():
    problems = cm.check_text(PAGE, "page.md")
    found = [(p.split(":")[1], p.split(": ")[1].split(":")[0]) for p in problems
             if "a measured number" in p]
    assert ("7", "'6620 µs'") in found and ("7", "'18 %'") in found
    assert ("8", "'5.0×'") in found and ("8", "'1.12 times faster'") in found
    assert ("8", "'3.0 TB/s'") in found
    assert any(p.startswith("page.md:15: '42 %'") for p in problems)  # a caption is prose
    assert any(p.startswith("page.md:31: '630' in a column with a unit") for p in problems)
    assert any(p.startswith("page.md:31: '2 %'") for p in problems)
    # not flagged: roles, code, math, a product, directive options, a code block, a lab-note
    flagged_lines = {p.split(":")[1] for p in problems if "a measured number" in p}
    assert flagged_lines == {"7", "8", "15", "31"}
    # the {measured} roles of this page name no real op: reported as selectors that fail
    assert any(p.startswith("page.md:9: {measured}`op=a value=pct_of_copy`") for p in problems)


def test_the_repository_pages_pass():
    assert cm.check_pages(REPO) == []


@pytest.mark.parametrize("msgid, msgstr, ok", [
    ("takes {measured}`op=a value=x`.", "需要 {measured}`op=a value=x`。", True),
    ("takes {measured}`op=a value=x`.", "需要 {measured}`op=b value=x`。", False),
    ("takes {measured}`op=a value=x`.", "需要 6620 µs。", False),
    ("took {lab}`55 % <2026-11-21, H100>`.", "为 {lab}`55 % <2026-11-21, H100>`。", True),
    ("took {lab}`55 % <2026-11-21, H100>`.", "为 55 %。", False),
    ("took 195 instead of 180 µs", "耗时 195 µs 而不是 180 µs", True),
    ("$c \\approx 2.6$ µs", "$c$ 约为 2.6 µs", True),
    ("at {spec}`3 TB/s`", "在 {spec}`3 TB/s` 下，约 45 µs", False),
    ("a table", "", True),
])
def test_catalog_messages(msgid, msgstr, ok):
    assert (cm.check_message(msgid, msgstr) == []) == ok
