"""Unit tests of the docs page generators (docs/tools), on the fixtures in docs/tests/fixtures.

The fixtures are made up and labelled as such; they never go into results/.
Run: .venv/bin/python -m pytest -q docs/tests   (scripts/docs.sh runs them on every build)
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
sys.path.insert(0, str(HERE.parent / "tools"))

import op_table  # noqa: E402
import performance  # noqa: E402
import po_autofill  # noqa: E402


def test_registry_needs_pagedkv_bin():
    with pytest.raises(SystemExit, match="PAGEDKV_BIN is not set"):
        op_table.read_registry("")
    with pytest.raises(SystemExit, match="does not exist"):
        op_table.read_registry("/nonexistent/pagedkv")


def test_op_table_from_registry(tmp_path):
    root = tmp_path
    (root / "reference_cpu").mkdir()
    (root / "reference_cpu" / "swap_blocks.cpp").write_text("// cpu\n")
    api_dir = root / "docs" / "api"
    api_dir.mkdir(parents=True)
    (api_dir / "swap_blocks.md").write_text("# swap_blocks\n")
    ops = op_table.build(str(FIXTURES / "fake_pagedkv"), root, root / "out", api_dir)
    assert [op["name"] for op in ops] == ["swap_blocks", "reshape_and_cache", "reshape_and_cache_flash"]
    table = (root / "out" / "op_table.md").read_text()
    # The op with an API page links to it; the other is shown as code.
    assert "{doc}`swap_blocks </docs/api/swap_blocks>`" in table
    assert "`reshape_and_cache_flash`" in table
    # An existing source file links to its listing page; a missing one is shown as code.
    assert "{doc}`cpu </docs/_generated/sources/reference_cpu/swap_blocks.cpp>`" in table
    assert "naive: `kernels/swap_blocks/naive.cu`" in table
    # Prose stays prose (translatable), pipes are escaped.
    assert "FIXTURE role \\| with a pipe" in table
    measurement = (root / "out" / "op_measurement.md").read_text()
    assert "FIXTURE: blocks x block bytes" in measurement and "W6" in measurement


def test_performance_without_results(tmp_path):
    assert performance.build(tmp_path, tmp_path / "out", results=[]) is None
    body = (tmp_path / "out" / "performance_body.md").read_text()
    assert "No GPU results have been recorded yet" in body
    assert not list((tmp_path / "out" / "perf").glob("*.png"))


def test_performance_picks_newest_and_draws(tmp_path):
    root = tmp_path
    (root / "results").mkdir()
    for name in ("results_fixture.json", "results_older_fixture.json"):
        shutil.copy(FIXTURES / name, root / "results" / name)
    files = sorted((root / "results").glob("*.json"))
    used = performance.build(root, root / "out", results=files)
    assert used.name == "results_fixture.json"
    body = (root / "out" / "performance_body.md").read_text()
    assert "`FIXTURE GPU`" in body and "OLDER" not in body
    assert "`2000-01-02T00:00:00Z`" in body and "`fixture`" in body
    assert "3000.0" in body
    # One section per op, a figure per op in both languages, every row in the "All measurements" table.
    assert "### `reshape_and_cache_flash`" in body and "### `swap_blocks`" in body
    for op in ("reshape_and_cache_flash", "swap_blocks"):
        assert (root / "out" / "perf" / f"{op}.png").stat().st_size > 1000
        assert (root / "out" / "perf" / f"{op}.zh_CN.png").stat().st_size > 1000
    rows = json.loads((FIXTURES / "results_fixture.json").read_text())["rows"]
    assert body.count("| `W1` | `NHD bf16` |") == sum(r["op"] != "swap_blocks" for r in rows) + 2
    assert "| Tokens |" in body or "| Tokens | Naive" in body
    assert "Blocks" in body


@pytest.mark.parametrize("msgid, needs", [
    ("`slot_mapping`", False),
    ("$$ s = b \\cdot B + o $$", False),
    ("{doc}`naive.cu </docs/_generated/sources/kernels/naive.cu>`", False),
    ("3.14", False),
    ("1.2e-03", False),
    ("✓ ✗", False),
    ("`W1` · `NHD bf16`", False),
    ("\\mathrm{slot} = \\mathrm{block} \\times \\mathrm{block\\_size} + \\mathrm{offset},\n", False),
    ("B = 16 \\times 8 \\times 128 \\times 2 = 32768 \\text{ bytes} = 32 \\text{ KiB}", False),
    ("t_\\text{naive} \\approx N \\cdot \\left(c + \\frac{B}{W}\\right)", False),
    ("The slot \\(s\\) names a block", True),
    ("key.size(1)", False),
    ("pagedkv::cpu", False),
    ("Values:", True),
    ("Returns", True),
    ("Contract", True),
    ("Source of `slot_mapping`", True),
    ("GB/s", True),
])
def test_autofill_rule(msgid, needs):
    assert po_autofill.needs_translation(msgid) is needs
