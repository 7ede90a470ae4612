"""Tests of docs/tools/make_figures.py: the chapters' pictures and results tables (CPU only)."""

import importlib.util
import json
import re
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
        text = mf.table_path(first, op).read_text(encoding="utf-8")
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


def _results_file(folder, name, date, rows):
    data = {"gpu": "NVIDIA H100 80GB HBM3", "driver": "570.00", "cuda": "12.8",
            "commit": "0123456789abcdef", "date": date, "copy_bandwidth_gbps": 3000.0,
            "rows": rows}
    (folder / name).write_text(json.dumps(data), encoding="utf-8")


def test_table_shows_the_newest_run_of_the_op(mf, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    row = {"op": "swap_blocks", "workload": "W6", "variant": "H2D", "slots": "random",
           "blocks": 2048, "bytes": 67108864, "gbps": 10.0, "pct_of_copy": 20.0,
           "bit_exact": True, "max_abs_err": 0.0}
    _results_file(results, "old.json", "2026-01-01", [dict(row, impl="naive", median_us=999.0)])
    _results_file(results, "new.json", "2026-02-01", [
        dict(row, impl="optimized", median_us=100.0),
        dict(row, impl="naive", median_us=400.0),
        dict(row, op="reshape_and_cache", impl="naive", median_us=1.0, tokens=16),
    ])
    text = mf.results_table("swap_blocks", results)
    assert "`new.json`" in text and "999" not in text
    lines = [line for line in text.splitlines() if line.startswith("| `W6`")]
    assert [("`naive`" in line, "`optimized`" in line) for line in lines] == [
        (True, False), (False, True)]  # naive first, then optimized
    assert "| 4.00× |" in lines[1] and "| 1.00× |" in lines[0]
    assert all("✓" in line for line in lines)
    assert "No recorded results yet" in mf.results_table("reshape_and_cache_flash", results)


def test_table_cells_need_no_translation(mf, tmp_path):
    """Run-dependent values are code spans or numbers, so the translation catalogs do not
    change when a new results file is committed (docs/tools/po_autofill.py fills them)."""
    results = tmp_path / "results"
    results.mkdir()
    _results_file(results, "r.json", "2026-02-01", [
        {"op": "reshape_and_cache", "workload": "W1", "variant": "bf16", "slots": "contiguous",
         "impl": impl, "tokens": 65536, "median_us": us, "gbps": 1.5, "pct_of_copy": 50.0,
         "bit_exact": exact}
        for impl, us, exact in (("naive", 300.0, True), ("optimized", 100.0, False))])
    spec = importlib.util.spec_from_file_location("po_autofill",
                                                  REPO / "docs" / "tools" / "po_autofill.py")
    if spec is None or not (REPO / "docs" / "tools" / "po_autofill.py").is_file():
        pytest.skip("docs/tools/po_autofill.py not present")
    autofill = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(autofill)
    text = mf.results_table("reshape_and_cache", results)
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue  # fixed header rows are translated once
        for cell in line.strip("|").split(" | "):
            assert not autofill.needs_translation(cell.strip()), cell
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| `") and "---" not in line:
            # Row labels of the run table: fixed words.
            label = line.split("|")[1].strip()
            assert label in {"Run", "GPU", "CUDA", "Commit", "Date",
                             "Device copy bandwidth (GB/s)", "Results file", "Workload"}, label


def _includes(chapter):
    """(path, options) of every {literalinclude} / {include} / {figure} in a chapter."""
    text = chapter.read_text(encoding="utf-8")
    found = []
    for match in re.finditer(r"```\{(literalinclude|include|figure)\} (\S+)\n((?::[^\n]*\n)*)",
                             text):
        options = dict(re.findall(r":([\w-]+):[ ]?(.*)", match.group(3)))
        found.append((match.group(1), match.group(2), options))
    return found


@pytest.mark.parametrize("chapter", sorted((REPO / "chapters").glob("*.md")), ids=lambda p: p.name)
def test_chapter_includes_resolve(mf, chapter):
    """Every file a chapter includes exists (figures and results snippets once generated), and
    every :start-at: / :end-before: marker is still in the source it names, in that order."""
    for kind, target, options in _includes(chapter):
        path = (chapter.parent / target).resolve()
        if "_generated" in target:
            name = path.name
            assert name in mf.FIGURES or name in {
                mf.table_path(Path("."), op).name for op in mf.TABLE_OPS}, target
            continue
        assert path.is_file(), f"{chapter.name}: {target} does not exist"
        source = path.read_text(encoding="utf-8")
        start = 0
        for key in ("start-at", "start-after"):
            if key in options:
                start = source.find(options[key])
                assert start >= 0, f"{chapter.name}: {key} {options[key]!r} not in {target}"
        if "end-before" in options:
            assert source.find(options["end-before"], start + 1) > start, (
                f"{chapter.name}: end-before {options['end-before']!r} not after the start in "
                f"{target}")
