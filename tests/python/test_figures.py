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
    # Without PAGEDKV_BIN, make_figures reads the registry from the installed package.
    module.TABLE_OPS = module.table_ops()
    module.W8_OPS = module.w8_ops()
    return module


@pytest.fixture(scope="module")
def two_runs(mf, tmp_path_factory):
    """Two runs of the script into two folders, with no recorded results."""
    tmp_path = tmp_path_factory.mktemp("figures")
    empty_results = tmp_path / "results"
    empty_results.mkdir()
    first, second = tmp_path / "a", tmp_path / "b"
    assert mf.main(["--out", str(first), "--results", str(empty_results)]) == 0
    assert mf.main(["--out", str(second), "--results", str(empty_results)]) == 0
    return first, second


def test_writes_every_figure_and_table_deterministically(mf, two_runs):
    first, second = two_runs
    for name in mf.FIGURES:
        for lang in mf.LANGUAGES:
            file = mf.figure_file(name, lang)
            png = (first / "figures" / file).read_bytes()
            assert png.startswith(b"\x89PNG"), file
            assert png == (second / "figures" / file).read_bytes(), f"{file} differs between runs"
    for op in mf.table_ops():
        text = mf.table_path(first, op).read_text(encoding="utf-8")
        assert "No recorded results yet" in text
    for op in mf.W9_OPS:
        text = mf.w9_table_path(first, op).read_text(encoding="utf-8")
        assert "No recorded W9 rows yet" in text and "{figure}" not in text
    assert mf.W8_OPS and not set(mf.W8_OPS) & set(mf.TABLE_OPS)
    for op in mf.W8_OPS:
        text = mf.w8_table_path(first, op).read_text(encoding="utf-8")
        assert "No recorded W8 rows yet" in text and "{figure}" not in text
    assert not (first / mf.W9_FIGURE_DIR).exists()  # no W9 or W8 rows: no plot


def test_every_figure_has_a_chinese_variant(mf, two_runs):
    """<name>.zh_CN.png beside every <name>.png (the name docs/conf.py's
    figure_language_filename looks for), and it is a different picture."""
    first, _ = two_runs
    assert mf.LANGUAGES == ("en", "zh_CN")
    written = sorted(p.name for p in (first / "figures").iterdir())
    expected = sorted([name for name in mf.FIGURES]
                      + [name[:-len(".png")] + ".zh_CN.png" for name in mf.FIGURES])
    assert written == expected
    conf = (REPO / "docs" / "conf.py").read_text(encoding="utf-8")
    assert 'figure_language_filename = "{root}.{language}{ext}"' in conf
    for name in mf.FIGURES:
        en = (first / "figures" / name).read_bytes()
        zh = (first / "figures" / mf.figure_file(name, "zh_CN")).read_bytes()
        assert zh.startswith(b"\x89PNG") and zh != en, name


def _placeholders(text):
    return sorted(re.findall(r"\{[^{}]*\}", text))


def _code_names(text):
    """Words a translation must keep: snake_case names, CUDA calls and shape letters."""
    return sorted(re.findall(r"[A-Za-z]\w*_\w+|cuda\w+|\bNHD\b|\bHND\b|\[[^\]]*\]", text))


def _flat(labels, prefix=""):
    for key, value in labels.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


def test_chinese_labels_translate_every_english_one(mf):
    en, zh = dict(_flat(mf.LABELS["en"])), dict(_flat(mf.LABELS["zh_CN"]))
    assert en.keys() == zh.keys()
    # Labels made of code, symbols and "token" (which the Chinese chapters keep in English).
    no_words = {"list_sep", "token", "token_t", "flashinfer_note", "flashattention_note",
                "placement_layouts.NHD", "placement_layouts.HND", "offset_cell",
                "mla_kv_c", "mla_k_pe", "skew_warp",  # "warp" stays English in Chinese
                "tm_data"}  # a head, K or V, rows × bytes
    for key, text in en.items():
        assert _placeholders(zh[key]) == _placeholders(text), key
        assert _code_names(zh[key]) == _code_names(text), key  # code stays English
        has_chinese = bool(re.search(r"[\u4e00-\u9fff]", zh[key]))
        assert has_chinese != (key in no_words), key
        if key not in no_words:
            assert zh[key] != text, key


def test_drawing_leaves_the_global_matplotlib_settings_alone(tmp_path):
    """Other generators (docs/tools/performance.py) may plot in the same process: neither
    importing the script nor drawing changes their fonts."""
    import matplotlib

    before = dict(matplotlib.rcParams)
    spec = importlib.util.spec_from_file_location("make_figures_again", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for lang in module.LANGUAGES:
        module.draw_figure(module.draw_kv_allocation, tmp_path / f"kv.{lang}.png", lang)
    after = dict(matplotlib.rcParams)
    changed = {k: v for k, v in after.items() if before.get(k) != v
               and not k.startswith("backend")}
    assert changed == {}  # the backend: the script asks for Agg, as every headless run does


def test_figure_file_names(mf):
    assert mf.figure_file("paged_cache.png", "en") == "paged_cache.png"
    assert mf.figure_file("paged_cache.png", "zh_CN") == "paged_cache.zh_CN.png"


def test_missing_cjk_font_is_a_clear_error(mf, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(mf.FONTS, "zh_CN", {"sans": "No Such Font CJK", "mono": "DejaVu Sans Mono"})
    assert mf.main(["--out", str(tmp_path / "out"), "--results", str(tmp_path)]) == 1
    message = capsys.readouterr().err
    assert "No Such Font CJK" in message and "fonts-noto-cjk" in message
    with pytest.raises(mf.MissingFontError):
        mf.require_fonts("zh_CN")


def test_a_glyph_missing_from_the_font_is_an_error(mf, tmp_path, monkeypatch):
    """A font without Chinese glyphs would draw empty boxes: that fails instead."""
    monkeypatch.setitem(mf.FONTS, "zh_CN", {"sans": "DejaVu Sans", "mono": "DejaVu Sans Mono"})
    with pytest.raises(UserWarning, match="missing from font"):
        mf.draw_figure(mf.draw_kv_allocation, tmp_path / "kv.zh_CN.png", "zh_CN")


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
                mf.table_path(Path("."), op).name for op in mf.TABLE_OPS} | {
                mf.w9_table_path(Path("."), op).name for op in mf.W9_OPS} | {
                mf.w8_table_path(Path("."), op).name for op in mf.W8_OPS}, target
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


# ------------------------------------------------------------------------------------------------
# Workload W9 (chapters/normalizing_hidden_states.md)
# ------------------------------------------------------------------------------------------------

def _w9_rows(op="rms_norm", variants=("hidden 4096 bf16", "hidden 4096 f32", "hidden 8192 bf16"),
             tokens=(1, 2, 16, 64, 256, 1024, 16384)):
    rows = []
    for variant in variants:
        for t in tokens:
            for impl, us, pct in (("cpu", 900.0, None), ("naive", 40.0, 20.0),
                                  ("optimized", 10.0, 80.0)):
                row = {"op": op, "workload": "W9", "variant": variant, "slots": "",
                       "impl": impl, "tokens": t, "size": t, "size_unit": "tokens",
                       "bytes": (2 * t + 1) * 4096 * 2, "median_us": us, "gbps": 1.0,
                       "pct_of_copy": pct, "bit_exact": None, "max_abs_err": None}
                if impl != "cpu":
                    row.update(rel_err=1e-3, tolerance=7.84e-3)
                rows.append(row)
    return rows


def test_w9_variant_names(mf):
    assert mf.w9_variant("hidden 4096 bf16") == (4096, "bf16")
    assert mf.w9_variant("hidden 128 f32") == (128, "f32")
    assert mf.w9_variant("NHD bf16") == (None, "NHD bf16")


def test_w9_table_lists_decode_and_largest_sizes(mf, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    rows = _w9_rows()
    rows[-1] = dict(rows[-1], rel_err=float("inf"))  # optimized, hidden 8192 bf16, 16384 tokens
    rows.append({"op": "rms_norm", "workload": "W1", "variant": "hidden 4096 bf16",
                 "impl": "naive", "tokens": 4, "median_us": 1.0})  # another workload: ignored
    _results_file(results, "r.json", "2027-01-01", rows)
    text = mf.w9_table("rms_norm", results, plot="/docs/_generated/results_figures/x.png")
    lines = [line for line in text.splitlines() if line.startswith("| `hidden")]
    # 1, 16, 64, 1024 and the largest (16384) of each variant; 2 and 256 are left out.
    assert [int(line.split(" | ")[1]) for line in lines] == [1, 16, 64, 1024, 16384] * 3
    # Variants sorted by hidden size, then bf16 before f32.
    assert [line.split(" | ")[0] for line in lines[::5]] == [
        "| `hidden 4096 bf16`", "| `hidden 4096 f32`", "| `hidden 8192 bf16`"]
    assert "| 4.00× | 20.0 | 80.0 | 1.00e-03 | 1.00e-03 | 7.84e-03 | ✓ |" in lines[0]
    assert lines[-1].endswith("| ∞ | 7.84e-03 | ✗ |")
    assert "| 4 |" not in text  # the W1 row
    assert ":::{figure} /docs/_generated/results_figures/x.png" in text
    assert "No recorded W9 rows yet" in mf.w9_table("fused_add_rms_norm", results)


def test_w9_agreement_follows_the_agrees_key(mf, tmp_path):
    """"agrees" (results/README.md) is the verdict: it also covers fused_add_rms_norm's
    residual, and it is there when rel_err is null (a NaN or an infinity in the output)."""
    results = tmp_path / "results"
    results.mkdir()
    rows = _w9_rows("fused_add_rms_norm", variants=("hidden 4096 bf16",), tokens=(1, 16))
    for r in rows:
        if r["impl"] != "cpu":
            r["agrees"] = True
    rows[2]["agrees"] = False  # optimized, 1 token: rel_err fine, residual differs
    rows[5].update(rel_err=None, agrees=False)  # optimized, 16 tokens: a NaN in the output
    _results_file(results, "r.json", "2027-01-01", rows)
    lines = [line for line in mf.w9_table("fused_add_rms_norm", results).splitlines()
             if line.startswith("| `hidden")]
    assert lines[0].endswith("| 1.00e-03 | 1.00e-03 | 7.84e-03 | ✗ |")
    assert lines[1].endswith("| 1.00e-03 | – | 7.84e-03 | ✗ |")


def test_w9_rows_without_agreement_fields_show_a_dash(mf, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    rows = [{k: v for k, v in r.items() if k not in ("rel_err", "tolerance")}
            for r in _w9_rows(variants=("hidden 4096 bf16",), tokens=(1,))]
    _results_file(results, "r.json", "2027-01-01", rows)
    line = next(line for line in mf.w9_table("rms_norm", results).splitlines()
                if line.startswith("| `hidden"))
    assert line.endswith("| – | – | – | – |")


def test_w9_plots_in_both_languages_deterministically(mf, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    _results_file(results, "r.json", "2027-01-01", _w9_rows() + _w9_rows("fused_add_rms_norm"))
    first, second = tmp_path / "a", tmp_path / "b"
    assert mf.main(["--out", str(first), "--results", str(results)]) == 0
    assert mf.main(["--out", str(second), "--results", str(results)]) == 0
    for op in mf.W9_OPS:
        en = mf.w9_plot_path(first, op, "en").read_bytes()
        zh = mf.w9_plot_path(first, op, "zh_CN").read_bytes()
        assert en.startswith(b"\x89PNG") and zh.startswith(b"\x89PNG") and en != zh
        assert en == mf.w9_plot_path(second, op, "en").read_bytes(), op
        text = mf.w9_table_path(first, op).read_text(encoding="utf-8")
        assert f":::{{figure}} /docs/_generated/results_figures/{op}_W9.png" in text
        # The chapters' figures stay exactly FIGURES: the plots live in a folder of their own.
        assert not list((first / "figures").glob("*_W9*"))
    # A later run without W9 rows removes the plots and the figure directive.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert mf.main(["--out", str(first), "--results", str(empty)]) == 0
    for op in mf.W9_OPS:
        assert not mf.w9_plot_path(first, op, "en").exists()
        assert "{figure}" not in mf.w9_table_path(first, op).read_text(encoding="utf-8")


def test_w9_table_cells_need_no_translation(mf, tmp_path):
    """As for the other tables: run-dependent cells are code spans, numbers or symbols."""
    pytest.importorskip("babel")
    results = tmp_path / "results"
    results.mkdir()
    rows = _w9_rows(variants=("hidden 4096 bf16",), tokens=(1, 16384))
    rows[-1] = dict(rows[-1], rel_err=float("inf"))
    _results_file(results, "r.json", "2027-01-01", rows)
    spec = importlib.util.spec_from_file_location("po_autofill",
                                                  REPO / "docs" / "tools" / "po_autofill.py")
    autofill = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(autofill)
    for line in mf.w9_table("rms_norm", results).splitlines():
        if line.startswith("| `hidden"):
            for cell in line.strip("|").split(" | "):
                assert not autofill.needs_translation(cell.strip()), cell


# ------------------------------------------------------------------------------------------------
# Workload W8 (chapters/attention.md)
# ------------------------------------------------------------------------------------------------

def _w8_rows(op="paged_attention_v2", dtypes=("bf16", "fp8_e4m3"), contexts=(512, 2048, 32768),
             batches=(1, 4, 64)):
    rows = []
    for dtype in dtypes:
        for context in contexts:
            for batch in batches:
                for impl, us, gbps, pct in (("cpu", 9e5, None, None), ("naive", 400.0, 300.0, 10.0),
                                            ("optimized", 40.0, 2600.0, 86.0)):
                    row = {"op": op, "workload": "W8", "variant": f"{dtype}, context {context}",
                           "slots": "random", "impl": impl, "size": batch,
                           "size_unit": "sequences", "bytes": batch * context * 4096,
                           "median_us": us, "gbps": gbps, "pct_of_copy": pct,
                           "bit_exact": None, "max_abs_err": None}
                    if impl != "cpu":
                        row.update(rel_err=2e-3, tolerance=1.2e-2, agrees=True)
                    rows.append(row)
    return rows


def test_w8_variant_names(mf):
    assert mf.w8_variant("bf16, context 2048") == ("bf16", 2048)
    assert mf.w8_variant("fp8_e4m3, context 512") == ("fp8_e4m3", 512)
    assert mf.w8_variant("hidden 4096 bf16") == ("hidden 4096 bf16", None)


def test_w8_table_and_roofline(mf, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    out = tmp_path / "out"
    assert mf.write_w8(out, "paged_attention_v1", results) == 0  # no rows: no plot
    assert "No recorded W8 rows yet" in mf.w8_table_path(out, "paged_attention_v1").read_text()
    _results_file(results, "r.json", "2027-01-01", _w8_rows() + _w8_rows("paged_attention_v1"))
    for op in ("paged_attention_v1", "paged_attention_v2"):
        assert mf.write_w8(out, op, results) == 2  # en and zh_CN
        text = mf.w8_table_path(out, op).read_text(encoding="utf-8")
        assert f":::{{figure}} /docs/_generated/results_figures/{op}_W8.png" in text
        lines = [line for line in text.splitlines() if line.startswith("| `")]
        assert len(lines) == 2 * 3 * 3  # dtypes × contexts × batches
        assert lines[0].startswith("| `bf16, context 512` | 1 |") and lines[0].endswith("| ✓ |")
        assert mf.w8_plot_path(out, op, "en").read_bytes().startswith(b"\x89PNG")
        assert mf.w8_plot_path(out, op, "zh_CN").is_file()
    # Results without W8 rows of the op: the plots and the figure directive are removed.
    other = tmp_path / "other"
    other.mkdir()
    _results_file(other, "s.json", "2027-02-01", _w9_rows())
    assert mf.write_w8(out, "paged_attention_v2", other) == 0
    assert not mf.w8_plot_path(out, "paged_attention_v2", "en").exists()
    assert "{figure}" not in mf.w8_table_path(out, "paged_attention_v2").read_text()


def test_w8_table_cells_need_no_translation(mf, tmp_path):
    pytest.importorskip("babel")
    results = tmp_path / "results"
    results.mkdir()
    _results_file(results, "r.json", "2027-01-01", _w8_rows(dtypes=("bf16",), contexts=(512,)))
    spec = importlib.util.spec_from_file_location("po_autofill",
                                                  REPO / "docs" / "tools" / "po_autofill.py")
    autofill = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(autofill)
    for line in mf.w8_table("paged_attention_v2", results).splitlines():
        if line.startswith("| `bf16"):
            for cell in line.strip("|").split(" | "):
                assert not autofill.needs_translation(cell.strip()), cell


# ------------------------------------------------------------------------------------------------
# The words of the pictures are the glossary's (docs/glossary.md): a slot is global
# (block × block_size + offset), a position inside a block is an offset.
# ------------------------------------------------------------------------------------------------

GLOSSARY = REPO / "docs" / "glossary.md"
# The glossary terms the pictures use: English word (regex) -> (glossary row, Chinese term).
LABEL_TERMS = {
    r"slots?": ("slot", "槽位"),
    r"offsets?": ("offset", "块内偏移"),
    r"blocks?": ("block", "块"),
    r"strides?": ("stride", "步长"),
    r"heads?": ("head", "头"),
    r"size-matched copy": ("size-matched copy", "等量拷贝"),
}
LABEL_TERMS_BY_TERM = {term: chinese for term, chinese in LABEL_TERMS.values()}
# Labels that name a position inside one block: each must call it an offset, never a slot.
IN_BLOCK_POSITION_LABELS = {"nhd_row", "chunk_row", "offset_cell"}
SLOT_WORD = {"en": "slot", "zh_CN": "槽位"}
OFFSET_WORD = {"en": "offset", "zh_CN": "块内偏移"}
# Phrases that call an in-block position a slot, or compare with one device-copy bandwidth.
WRONG_PHRASES = [r"slots? (in|inside|within|of) (the|a|one) block", "块内槽位", "块内的槽位",
                 r"device-copy bandwidth", "设备拷贝带宽"]


def _glossary_rows():
    """{English term: Chinese term} of the glossary's table (the first two columns)."""
    rows = {}
    for line in GLOSSARY.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] not in ("English", "") and not cells[0].startswith("-"):
            for term in cells[0].split(", "):
                rows[term] = cells[1]
    return rows


def _words(text):
    """A label without its {placeholders} (whose names are code, like {num_heads})."""
    return re.sub(r"\{[^{}]*\}", " ", text)


def test_glossary_defines_every_term_the_labels_use(mf):
    glossary = _glossary_rows()
    en, zh = dict(_flat(mf.LABELS["en"])), dict(_flat(mf.LABELS["zh_CN"]))
    used = set()
    for key, text in en.items():
        for pattern, (term, chinese) in LABEL_TERMS.items():
            if re.search(rf"(?<![\w-]){pattern}(?![\w-])", _words(text)):
                used.add(term)
                # The Chinese label says the glossary's Chinese term for the same word.
                assert chinese in zh[key], (key, term, zh[key])
    for term in used:
        assert term in glossary, f"docs/glossary.md has no row for {term!r}"
        assert LABEL_TERMS_BY_TERM[term] in glossary[term], (term, glossary[term])
    assert {"slot", "offset"} <= used



def test_glossary_defines_the_slot_patterns_and_the_copy_baseline():
    glossary = _glossary_rows()
    for term in ("slot", "offset", "random slots", "contiguous slots", "size-matched copy",
                 "% of copy"):
        assert term in glossary, term
    text = GLOSSARY.read_text(encoding="utf-8")
    assert "block id × `block_size` + offset" in text


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_labels_call_in_block_positions_offsets(mf, lang):
    labels = dict(_flat(mf.LABELS[lang]))
    slot, offset = SLOT_WORD[lang], OFFSET_WORD[lang]
    for key in IN_BLOCK_POSITION_LABELS:
        assert slot not in labels[key], (key, labels[key])
        assert "{offset}" in labels[key], (key, labels[key])
    for key, text in labels.items():
        for phrase in WRONG_PHRASES:
            assert not re.search(phrase, text), (key, text)
        # A {slot} value is announced as a slot, an {offset} value as an offset (or, for the
        # short cell label "o{offset}", by the legend of its picture).
        if "{slot}" in text:
            assert re.search(rf"{slot}\s*\{{slot\}}", text), (key, text)
        if re.search(r"\{offset[:}]", text) and key != "offset_cell":
            assert re.search(rf"{offset}\s*\{{offset[:}}]", text), (key, text)
    assert "oN" in labels["legacy_note"] and offset in labels["legacy_note"]


@pytest.mark.parametrize("lang", ["en", "zh_CN"])
def test_one_block_pictures_say_no_slot(mf, lang, tmp_path, monkeypatch):
    """The pictures of one block show positions inside it: every word drawn is an offset."""
    import matplotlib.axes
    import matplotlib.figure

    drawn = []
    for cls in (matplotlib.axes.Axes, matplotlib.figure.Figure):
        original = cls.text

        def text(self, x, y, s, *args, _original=original, **kwargs):
            drawn.append(str(s))
            return _original(self, x, y, s, *args, **kwargs)

        monkeypatch.setattr(cls, "text", text)
    for name in ("nhd_hnd.png", "legacy_layout.png"):
        drawn.clear()
        mf.draw_figure(mf.FIGURES[name], tmp_path / mf.figure_file(name, lang), lang)
        assert drawn, name
        for s in drawn:
            assert SLOT_WORD[lang] not in s and not re.fullmatch(r"s\d+", s), (name, s)
        assert any(OFFSET_WORD[lang] in s for s in drawn), name


def test_nhd_title_has_as_many_dimensions_as_strides(mf):
    for lang in mf.LANGUAGES:
        words = mf.LABELS[lang]
        title = words["nhd_title"].format(layout="NHD", strides=words["strides"].format(
            s0=32, s1=8, s2=4))
        shape = re.search(r"\[([^\]]*)\]", title).group(1)
        strides = re.search(r"\(([^)]*)\)", title).group(1)
        assert len(shape.split(",")) == len(strides.split(",")) == 4, title


def test_copy_baseline_is_named_size_matched(mf, tmp_path):
    """Plot axes and generated captions compare with a size-matched copy of the same run."""
    import sys
    sys.path.insert(0, str(REPO / "docs" / "tools"))
    try:
        import performance
    finally:
        sys.path.pop(0)
    for labels, lang in ((performance.PLOT_LABELS["en"], "en"),
                         (performance.PLOT_LABELS["zh_CN"], "zh_CN"),
                         ({"pct": mf.LABELS["en"]["w9_pct"]}, "en"),
                         ({"pct": mf.LABELS["zh_CN"]["w9_pct"]}, "zh_CN")):
        expected = "size-matched copy" if lang == "en" else "等量拷贝"
        assert expected in labels["pct"], labels["pct"]
        for phrase in WRONG_PHRASES:
            assert not re.search(phrase, labels["pct"]), labels["pct"]
    results = tmp_path / "results"
    results.mkdir()
    _results_file(results, "r.json", "2026-02-01", [
        {"op": "swap_blocks", "workload": "W6", "variant": "D2D", "slots": "random",
         "impl": "naive", "blocks": 16, "median_us": 3.0, "gbps": 1.0, "pct_of_copy": 50.0,
         "bit_exact": True}])
    text = mf.results_table("swap_blocks", results, plot="/docs/_generated/perf/swap_blocks.png")
    assert "size-matched copy measured in the same run" in text
    assert "device-copy bandwidth" not in text


# ------------------------------------------------------------------------------------------------
# The start page (docs/index.md): the three-versions picture and the headline table
# ------------------------------------------------------------------------------------------------

def test_three_versions_workers_cover_every_element_once(mf):
    for version, workers in (("cpu", 1), ("naive", mf.THREE_ELEMENTS),
                             ("optimized", mf.THREE_ELEMENTS // mf.THREE_VECTOR)):
        groups = mf.three_versions_groups(version)
        assert len(groups) == workers, version
        assert sorted(i for g in groups for i in g) == list(range(mf.THREE_ELEMENTS)), version
    # 8 bf16 elements = one 16-byte vector per thread of the optimized kernel
    assert mf.THREE_VECTOR * 2 == 16


def test_headline_table_one_line_per_op_from_the_newest_run(mf, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    assert "No recorded results yet" in mf.headline_table(results)

    def row(op, variant, size, impl, pct):
        return {"op": op, "workload": "W1", "variant": variant, "slots": "random", "impl": impl,
                "tokens": size, "median_us": 1.0, "pct_of_copy": pct}
    _results_file(results, "old.json", "2026-01-01",
                  [row("reshape_and_cache_flash", "NHD bf16", 64, "optimized", 10.0)])
    _results_file(results, "new.json", "2026-02-01", [
        row("reshape_and_cache_flash", "NHD bf16", 64, "optimized", 50.0),
        row("reshape_and_cache_flash", "NHD bf16", 128, "optimized", 90.0),  # largest size
        row("reshape_and_cache_flash", "HND bf16", 128, "optimized", 80.0),
        row("reshape_and_cache_flash", "HND bf16", 128, "naive", 20.0),  # not the optimized
    ])
    text = mf.headline_table(results)
    lines = [l for l in text.splitlines() if l.startswith("| `reshape_and_cache_flash`")]
    assert lines == ["| `reshape_and_cache_flash` | `W1` | 128 | 80.0 | 90.0 "
                     "| `HND bf16 random` | 2 |"]
    assert "`new.json`" in text or "new.json" in text
    assert "`swap_blocks`" not in text  # ops without rows are left out
    # every cell that changes with the run is a code span or a number (no new translation)
    for line in text.splitlines():
        if line.startswith("| `"):
            for cell in line.strip("|").split(" | "):
                cell = cell.strip()
                assert re.fullmatch(r"(`[^`]*`(, `[^`]*`)*|[\d.]+)", cell), cell


def test_start_page_includes_the_figure_and_the_headline(mf):
    index = (REPO / "docs" / "index.md").read_text(encoding="utf-8")
    assert "_generated/figures/three_versions.png" in index
    assert "three_versions.png" in mf.FIGURES
    assert "{include} _generated/results_headline.md" in index
    assert mf.headline_path(Path("x")).name == "results_headline.md"
    for command in ("scripts/compare.sh", "scripts/test.sh"):
        assert command in index


@pytest.mark.parametrize("kind, total", [("auto", 1152), ("fp8", 576), ("fp8_ds_mla", 656)])
def test_mla_entries_tile_the_entry_without_gaps(mf, kind, total):
    """The byte bars of the MLA chapter: parts follow each other and fill the entry exactly."""
    parts = mf.mla_entry_parts(kind)
    end = 0
    for first, size, _, _ in parts:
        assert first == end
        end += size
    assert end == total


def test_fp8_ds_mla_byte_map(mf):
    """The 656-byte entry: four 128-byte e4m3 tiles, the four fp32 scales at byte 512, the 64
    bf16 RoPE values at byte 528 (vLLM's layout, which the kernels and tests follow)."""
    parts = {(key, fields.get("tile")): (first, size)
             for first, size, key, fields in mf.mla_entry_parts("fp8_ds_mla")}
    assert [parts[("mla_tile", t)] for t in range(4)] == [(0, 128), (128, 128), (256, 128),
                                                          (384, 128)]
    assert parts[("mla_scales", None)] == (512, 16)
    assert parts[("mla_k_pe", None)] == (528, 128)


def test_notes_in_chinese_pictures_are_not_slanted(mf):
    """Chinese has no italic: a slanted CJK glyph is a faux italic."""
    assert mf.note_style("en") == "italic"
    assert mf.note_style("zh_CN") == "normal"
    assert 'style="italic"' not in SCRIPT.read_text()
