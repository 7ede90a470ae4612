"""Tests of docs/tools/make_figures.py: the chapters' pictures and results tables (CPU only)."""

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "docs" / "tools" / "make_figures.py"


@pytest.fixture(scope="module")
def mf():
    spec = importlib.util.spec_from_file_location("make_figures", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_writes_every_figure_and_table_deterministically(mf, tmp_path):
    empty_results = tmp_path / "results"
    empty_results.mkdir()
    first, second = tmp_path / "a", tmp_path / "b"
    assert mf.main(["--out", str(first), "--results", str(empty_results)]) == 0
    assert mf.main(["--out", str(second), "--results", str(empty_results)]) == 0
    for name in mf.FIGURES:
        png = (first / "figures" / name).read_bytes()
        assert png.startswith(b"\x89PNG"), name
        assert png == (second / "figures" / name).read_bytes(), f"{name} differs between runs"
    for op in mf.TABLE_OPS:
        text = (first / "tables" / f"{op}.md").read_text(encoding="utf-8")
        assert "No recorded results yet" in text


def test_slot_formula_matches_the_chapter_example(mf):
    # chapters/what_is_a_paged_kv_cache.md: A6 -> 6, B4 -> 24, C4, C5 -> 0, 1, padding -> -1.
    assert mf.batch_slot_mapping() == [6, 24, 0, 1, -1, -1]


@pytest.mark.parametrize("layout", ["NHD", "HND", "legacy key", "legacy value"])
def test_every_layout_is_a_permutation_of_one_block(mf, layout):
    nb, bs, nh, hs, x = 2, 4, 3, 8, 4
    seen = set()
    for b in range(nb):
        for o in range(bs):
            for h in range(nh):
                for d in range(hs):
                    if layout == "NHD":
                        off = mf.nhd_offset(b, o, h, d, bs, nh, hs)
                    elif layout == "HND":
                        off = mf.hnd_offset(b, o, h, d, bs, nh, hs)
                    elif layout == "legacy key":
                        off = mf.legacy_key_offset(b, o, h, d, bs, nh, hs, x)
                    else:
                        off = mf.legacy_value_offset(b, o, h, d, bs, nh, hs)
                    seen.add(off)
    assert seen == set(range(nb * bs * nh * hs))


def test_padding_token_writes_nothing(mf):
    for layout in ("NHD", "HND", "legacy key", "legacy value"):
        owners = {who[0] for who in mf.placement_owner(layout) if who is not None}
        padded = {t for t, s in enumerate(mf.PLACEMENT_SLOTS) if s < 0}
        assert owners.isdisjoint(padded)
        assert owners == set(range(len(mf.PLACEMENT_SLOTS))) - padded


def test_table_reports_only_recorded_rows(mf, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    # No file, then an unreadable file: still "no recorded results yet".
    assert "No recorded results yet" in mf.results_table("swap_blocks", results)
    (results / "broken.json").write_text("{", encoding="utf-8")
    assert "No recorded results yet" in mf.results_table("swap_blocks", results)
