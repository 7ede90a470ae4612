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

import api_pages  # noqa: E402
import op_table  # noqa: E402
import performance  # noqa: E402
import po_autofill  # noqa: E402

REPO = HERE.parents[1]
FIXTURE_OPS = json.loads((FIXTURES / "pagedkv_list.json").read_text())["ops"]


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
    assert [op["name"] for op in ops] == ["swap_blocks", "reshape_and_cache", "reshape_and_cache_flash",
                                          "rms_norm", "fused_add_rms_norm"]
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


def test_fixture_listing_has_arguments():
    for op in FIXTURE_OPS:
        assert op["arguments"] and op["workload_notes"], op["name"]
        for arg in op["arguments"]:
            assert arg["kind"] in ("input", "output", "inout", "optional_input", "optional_inout",
                                   "int", "float", "bool", "str")
            assert arg["schema_type"] in ("Tensor", "Tensor!", "Tensor?", "Tensor!?", "int",
                                          "float", "bool", "str")


def test_schema_line_and_arguments_table():
    by_name = {op["name"]: op for op in FIXTURE_OPS}
    assert api_pages.schema_line(by_name["reshape_and_cache_flash"]) == (
        "reshape_and_cache_flash(Tensor key, Tensor value, Tensor! key_cache, Tensor! value_cache, "
        "Tensor slot_mapping, str kv_cache_dtype, Tensor k_scale, Tensor v_scale) -> ()")
    assert api_pages.schema_line(by_name["fused_add_rms_norm"]).startswith(
        "fused_add_rms_norm(Tensor! input, Tensor! residual, Tensor weight, float epsilon)")
    op = {"name": "toy", "arguments": [
        {"name": "a", "kind": "input", "schema_type": "Tensor", "doc": "one | two\n  three"},
        {"name": "n", "kind": "int", "schema_type": "int", "doc": ""}]}
    lines = api_pages.render_arguments(op)
    assert "toy(Tensor a, int n) -> ()" in lines
    assert "| 0 | `a` | `Tensor` | one \\| two three |" in lines
    assert "| 1 | `n` | `int` | — |" in lines


def _doxygen_xml(tmp_path: Path, src: Path = FIXTURES / "api_src") -> Path:
    """Doxygen XML of the fixture tree docs/tests/fixtures/api_src (paths relative to it)."""
    if not shutil.which("doxygen"):
        pytest.skip("doxygen not installed")
    import subprocess
    out = tmp_path / "dox"
    out.mkdir()
    doxyfile = tmp_path / "Doxyfile"
    doxyfile.write_text("\n".join([
        f"INPUT = {src}/include {src}/core {src}/reference_cpu {src}/kernels", "RECURSIVE = YES",
        "FILE_PATTERNS = *.h *.cpp *.cu", "EXTENSION_MAPPING = cu=C++",
        f"STRIP_FROM_PATH = {src}", "FULL_PATH_NAMES = YES", f"OUTPUT_DIRECTORY = {out}",
        "GENERATE_XML = YES", "GENERATE_HTML = NO", "GENERATE_LATEX = NO", "QUIET = YES",
        "EXTRACT_STATIC = YES", "ENABLE_PREPROCESSING = YES", "MACRO_EXPANSION = YES",
        "EXPAND_ONLY_PREDEF = YES", "PREDEFINED = __global__=", "XML_PROGRAMLISTING = NO", ""]))
    subprocess.run(["doxygen", str(doxyfile)], check=True, capture_output=True, cwd=tmp_path)
    return out / "xml"


def _sections(page: str) -> dict[str, str]:
    parts = {}
    for chunk in page.split("\n## ")[1:]:
        title, _, body = chunk.partition("\n")
        parts[title] = body
    return parts


def test_api_pages_from_doxygen(tmp_path):
    xml = _doxygen_xml(tmp_path)
    api_dir = tmp_path / "api"
    api_dir.mkdir()
    (api_dir / "index.md").write_text("# API\n")
    stale = api_dir / "gone_op.md"
    stale.write_text(api_pages.GENERATED_MARK + " ...\n# gone_op\n")
    toy = {"name": "toy_op", "role": "FIXTURE role of toy_op.", "cpu_source": "reference_cpu/toy_op.cpp",
           "naive_source": "kernels/toys/toy_op/naive.cu",
           "optimized_source": "kernels/toys/toy_op/optimized.cu",
           "arguments": [{"name": "out", "kind": "output", "schema_type": "Tensor!", "doc": "FIXTURE out"},
                         {"name": "scale", "kind": "float", "schema_type": "float", "doc": "FIXTURE scale"}]}
    problems = api_pages.build(xml, [toy], tmp_path / "out", api_dir)
    assert problems == []
    assert not stale.exists() and (api_dir / "index.md").is_file()
    page = (api_dir / "toy_op.md").read_text()
    assert page.startswith(api_pages.GENERATED_MARK)
    assert "\n# toy_op\n\nFIXTURE role of toy_op.\n" in page
    assert "toy_op(Tensor! out, float scale) -> ()" in page
    s = _sections(page)
    assert list(s) == ["Arguments", "Contract", "CPU reference", "Naive CUDA", "Optimized CUDA"]
    # Contract: the op struct once, without the members shown in the other sections; the nested
    # structs and their members are listed so that Breathe shows them; core/ files of the op.
    members = next(line for line in s["Contract"].splitlines() if line.startswith(":members:"))
    listed = {m.strip() for m in members[len(":members:"):].split(",")}
    assert {"name", "arguments", "validate", "Args", "out", "scale", "Plan", "rows"} <= listed
    assert not listed & {"cpu", "naive", "optimized", "tile_width"}
    assert "```{doxygenstruct} pagedkv::ToyOp\n" in s["Contract"]
    assert "pagedkv::ToyOp::Args" not in page  # nested: rendered by the op struct's directive
    assert "### `core/toy_op.cpp`" in s["Contract"]
    # Each implementation: its member first, then its files and their entities.
    assert s["CPU reference"].index("{doxygenfunction} pagedkv::ToyOp::cpu") < \
        s["CPU reference"].index("### `reference_cpu/toy_op.cpp`") < \
        s["CPU reference"].index("pagedkv::cpu::toy_cpu_helper")
    assert "{doxygenfunction} pagedkv::ToyOp::naive" in s["Naive CUDA"]
    assert "pagedkv::kernels::toy_naive_kernel" in s["Naive CUDA"]
    for target in ("pagedkv::ToyOp::optimized", "pagedkv::ToyOp::tile_width",
                   "pagedkv::optimized::toy_strategy", "pagedkv::kernels::toy_optimized_kernel"):
        assert target in s["Optimized CUDA"], target
    assert page.count("{doxygenfunction} pagedkv::ToyOp::optimized") == 1
    # Shared files go to the common snippet, not to the op page.
    common = (tmp_path / "out" / "api_common.md").read_text()
    assert "pagedkv::shared_helper" in common and "shared_helper" not in page
    assert "toy_op" not in common
    # A hand-written page is not overwritten: reported.
    (api_dir / "toy_op.md").write_text("# toy_op\nhand-written\n")
    problems = api_pages.build(xml, [toy], tmp_path / "out", api_dir)
    assert problems and "hand-written" in problems[0]
    assert "hand-written" in (api_dir / "toy_op.md").read_text()
    # An op header without a registry entry is reported; a registry entry without arguments too.
    (api_dir / "toy_op.md").unlink()
    problems = api_pages.build(xml, [], tmp_path / "out", api_dir)
    assert any("not in `pagedkv list --json`" in p for p in problems)
    problems = api_pages.build(xml, [{k: v for k, v in toy.items() if k != "arguments"}],
                               tmp_path / "out", api_dir)
    assert any("no \"arguments\"" in p for p in problems)


def test_api_pages_report_links_that_are_no_web_links(tmp_path):
    # Doxygen links every word with a URL scheme, even inside `code`: "file:line" in a comment
    # became a link to "file:line" on the common API page. Such a link is reported, a web link
    # is not.
    src = tmp_path / "api_src"
    shutil.copytree(FIXTURES / "api_src", src)
    header = src / "include" / "pagedkv" / "shared.h"
    header.write_text(header.read_text().replace("int shared_helper();", "\n".join([
        "int shared_helper();",
        "/// \\brief FIXTURE error: the message holds file:line, see https://example.com/x.",
        "int linked_helper();"])))
    xml = _doxygen_xml(tmp_path, src)
    problems = api_pages.build(xml, [], tmp_path / "out", tmp_path / "api")
    linked = [p for p in problems if "Doxygen made a link" in p]
    assert len(linked) == 1, problems
    assert linked[0].startswith("include/pagedkv/shared.h:") and '"file:line"' in linked[0]
    # The same comment without the link: nothing to report.
    header.write_text(header.read_text().replace("file:line", "its file and line"))
    (tmp_path / "again").mkdir()
    xml = _doxygen_xml(tmp_path / "again", src)
    problems = api_pages.build(xml, [], tmp_path / "out", tmp_path / "api")
    assert not [p for p in problems if "Doxygen made a link" in p], problems


def _op_names() -> set[str]:
    names = {op["name"] for op in FIXTURE_OPS}
    names |= {p.stem for p in (REPO / "include" / "pagedkv" / "ops").glob("*.h")}
    return names


@pytest.mark.parametrize("path", [
    "docs/conf.py", "docs/api/index.md", "docs/api/common.md", "docs/tools/generate.py",
    "docs/tools/api_pages.py", "docs/tools/op_table.py", "docs/tools/performance.py",
    "docs/tools/po_autofill.py", "docs/tools/check_catalogs.py", "docs/tools/doxygen_report.py",
    "docs/_ext/pagedkv_breathe.py", "docs/_ext/pagedkv_i18n.py", "docs/_ext/pagedkv_links.py"])
def test_hand_written_docs_name_no_op(path):
    """Ops are listed once, in the registry: hand-written docs tooling and pages never name one."""
    import re
    text = (REPO / path).read_text()
    named = [op for op in _op_names() if re.search(rf"(?<![\w]){op}(?![\w])", text)]
    assert not named, f"{path} names {named}"


def test_performance_without_results(tmp_path):
    assert performance.build(tmp_path, tmp_path / "out", results=[]) is None
    body = (tmp_path / "out" / "performance_body.md").read_text()
    assert "No GPU results have been recorded yet" in body
    assert not list((tmp_path / "out" / "perf").glob("*.png"))


def test_performance_picks_newest_and_draws(tmp_path):
    root = tmp_path
    (root / "results").mkdir()
    shutil.copy(FIXTURES / "results_fixture.json", root / "results" / "results_fixture.json")
    # The older run on the same GPU (the fixture's own GPU name would make it another GPU's).
    older = json.loads((FIXTURES / "results_older_fixture.json").read_text())
    older["gpu"] = "FIXTURE GPU"
    (root / "results" / "results_older_fixture.json").write_text(json.dumps(older))
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
    # Every row once in the collapsed "All measurements" list-table (a dropdown per op).
    full_rows = body.count("* - `W1`\n  - `NHD bf16`\n")
    summary_rows = 2 * 3  # two slot patterns x smallest, middle, largest size
    assert full_rows == sum(r["op"] != "swap_blocks" for r in rows) + summary_rows
    assert body.count("::::{dropdown} All measurements") == 2
    assert "| `W1` |" not in body  # no pipe table: inside a dropdown it would not be translated
    assert "Tokens" in body and "Blocks" in body
    # Captions say what is plotted, the same text for every op of a unit.
    assert performance.CAPTIONS[("tokens", True)] in body
    assert performance.CAPTIONS[("blocks", False)] in body
    assert body.count(performance.SUMMARY_TITLE) == 2
    # The summary's first row can be measured again.
    assert ('build/gpu/tools/compare/pagedkv compare reshape_and_cache_flash --workload W1 '
            '--variant "NHD bf16" --slots random --size 16') in body
    assert 'compare swap_blocks --workload W6 --variant "H2D" --size 16' in body


def test_performance_one_section_per_gpu(tmp_path):
    """Runs of two GPUs: the newest file's GPU first, as with one GPU; the other GPU in a section
    of its own (a label, a heading naming it, its ops' headings and plots naming it too), and a
    list at the top that links both."""
    root = tmp_path
    (root / "results").mkdir()
    shutil.copy(FIXTURES / "results_fixture.json", root / "results" / "results_fixture.json")
    # Another GPU's older run of one op, with rows to plot: the fixture's rows, renamed.
    other = json.loads((FIXTURES / "results_fixture.json").read_text())
    other.update(gpu="OLDER FIXTURE GPU", date="1999-01-01T00:00:00Z")
    other["rows"] = [r for r in other["rows"] if r["op"] == "reshape_and_cache_flash"]
    (root / "results" / "results_older_fixture.json").write_text(json.dumps(other))
    files = sorted((root / "results").glob("*.json"))
    used = performance.build(root, root / "out", results=files)
    assert used.name == "results_fixture.json"
    body = (root / "out" / "performance_body.md").read_text()
    assert performance.SEVERAL_GPUS in body
    assert "- {ref}`FIXTURE GPU <performance-gpu-fixture-gpu>`" in body
    assert "- {ref}`OLDER FIXTURE GPU <performance-gpu-older-fixture-gpu>`" in body
    first, other = body.split("(performance-gpu-older-fixture-gpu)=")
    assert "(performance-gpu-fixture-gpu)=" in first and "### `swap_blocks`" in first
    assert "`1999-01-01T00:00:00Z`" not in first and "`1999-01-01T00:00:00Z`" in other
    assert other.lstrip().startswith("### `OLDER FIXTURE GPU`")
    assert "#### `reshape_and_cache_flash` — `OLDER FIXTURE GPU`" in other
    assert "/docs/_generated/perf/reshape_and_cache_flash.older-fixture-gpu.png" in other
    perf = root / "out" / "perf"
    for stem in ("reshape_and_cache_flash", "reshape_and_cache_flash.older-fixture-gpu"):
        assert (perf / f"{stem}.png").stat().st_size > 1000
        assert (perf / f"{stem}.zh_CN.png").stat().st_size > 1000
    assert performance.gpu_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"


def _row(impl, size, median_us, pct=None, variant="v", slots="random"):
    return {"op": "op_x", "workload": "W1", "variant": variant, "slots": slots, "impl": impl,
            "tokens": size, "size": size, "bytes": 1000 * size, "median_us": median_us,
            "gbps": 1.0, "pct_of_copy": pct, "bit_exact": True, "agrees": True}


def test_performance_summary_uses_representative_sizes_and_copy_time(tmp_path):
    rows = []
    for size, copy_us in [(1, 1.0), (16, 2.0), (256, 4.0), (4096, 20.0), (65536, 300.0)]:
        rows += [_row("copy", size, copy_us, 100), _row("copy_kernel", size, copy_us * 1.5, 100),
                 _row("naive", size, copy_us * 4, 25.0), _row("optimized", size, copy_us, 100.0)]
    data = {"gpu": "G", "rows": rows}
    (tmp_path / "results").mkdir()
    body = performance.render(tmp_path / "results" / "r.json", data, tmp_path, tmp_path)
    # smallest, middle and largest size, each with its copy time (the faster copy)
    for size, copy_us in [("1", "1.00"), ("256", "4.00"), ("65536", "300.0")]:
        assert f"  - `random`\n  - {size}\n  - {copy_us}\n  - 100.0\n  - 25.0\n  - ✓ ✓\n" in body
    assert "  - 16\n  - 2.00\n  - 100.0" not in body


@pytest.mark.parametrize("sizes, expected", [
    ([1], [1]), ([16, 256, 2048], [16, 256, 2048]), ([1, 16, 256, 4096], [1, 256, 4096]),
    ([1, 16, 64, 256, 1024, 4096, 16384], [1, 256, 16384]),
])
def test_performance_representative_sizes(sizes, expected):
    assert performance.representative_sizes(sizes) == expected


def test_performance_launch_bound_limit():
    limit = performance.launch_bound_limit
    assert limit({}) is None
    assert limit({16: 11.9, 256: 154.0}) is None  # even the smallest copy takes over 5 µs
    assert limit({1: 1.0, 16: 2.0}) == 16.0  # every copy is launch-bound
    # log-log interpolation between 256 (2.5 µs) and 1024 (10 µs): 5 µs at 512
    assert limit({1: 1.0, 256: 2.5, 1024: 10.0, 4096: 40.0}) == pytest.approx(512.0)


def test_performance_plot_axes_are_shared_and_shade_launch_bound(tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    seen = []
    monkeypatch.setattr(plt, "close", lambda fig: seen.append(fig))
    rows = []
    for size, copy_us in [(1, 1.0), (256, 2.5), (1024, 10.0)]:
        rows += [_row("copy", size, copy_us, 100), _row("naive", size, copy_us * 4, 25.0),
                 _row("optimized", size, copy_us / 1.3, 130.0)]
    assert performance._plot("op_x", rows, tmp_path, "en") == 1
    ax = seen[0].axes[0]
    assert ax.get_ylim() == (0.0, performance.Y_MAX) and ax.get_xscale() == "log"
    spans = [p for p in ax.patches]
    assert len(spans) == 1
    span = spans[0]  # a Rectangle (newer matplotlib) or a Polygon
    right = (span.get_x() + span.get_width() if hasattr(span, "get_width")
             else max(v[0] for v in span.get_xy()))
    assert right == pytest.approx(512.0)
    # a point above the y range is drawn on the top edge
    assert all(max(line.get_ydata(), default=0) <= performance.Y_MAX for line in ax.lines)


def test_performance_reproduce_flags_exist_in_the_tool():
    usage = (REPO / "tools" / "compare" / "main.cpp").read_text()
    command = performance.reproduce_command(
        "op_x", _row("optimized", 4096, 1.0, variant="hidden 4096 bf16", slots="contiguous"))
    assert command == ('build/gpu/tools/compare/pagedkv compare op_x --workload W1 '
                       '--variant "hidden 4096 bf16" --slots contiguous --size 4096')
    for flag in ("--workload", "--variant", "--slots", "--size"):
        assert f"  {flag} " in usage
    assert (REPO / "CMakePresets.json").read_text().count('"name": "gpu"') >= 1


@pytest.mark.parametrize("msgid, needs", [
    ("`slot_mapping`", False),
    ("$$ s = b \\cdot B + o $$", False),
    ("{doc}`naive.cu </docs/_generated/sources/kernels/naive.cu>`", False),
    ("3.14", False),
    ("1.2e-03", False),
    ("✓ ✗", False),
    ("`W1` · `NHD bf16`", False),
    ("\\mathrm{slot} = \\mathrm{block} \\times \\mathrm{block\\_size} + \\mathrm{offset},\n", False),
    # Word labels in a formula are translated; subscripts and \\mathrm names are symbols.
    ("B = 16 \\times 8 \\times 128 \\times 2 = 32768 \\text{ bytes} = 32 \\text{ KiB}", True),
    ("\\text{slot} = \\text{block} \\times \\mathrm{block\\_size} + \\text{offset}", True),
    ("t_\\text{naive} \\approx N \\cdot \\left(c + \\frac{B}{W}\\right)", False),
    ("\\mathrm{out}_i = x_i \\cdot w_i + s_\\text{page} \\text{ }", False),
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


def test_autofill_drops_the_brace_format_flag_where_chinese_sits_in_braces(tmp_path):
    po = tmp_path / "page.po"
    po.write_text('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
                  '#, python-brace-format\nmsgid "\\\\text{bytes} = 2"\n'
                  'msgstr "\\\\text{字节数} = 2"\n\n'
                  '#, python-brace-format\nmsgid "See {doc}`intro`."\n'
                  'msgstr "见 {doc}`intro`。"\n', encoding="utf-8")
    po_autofill.autofill(po)
    text = po.read_text(encoding="utf-8")
    # msgfmt --check-format rejects "{字节数}" as a brace field; the flag of that entry goes,
    # the other entry (same fields in both) keeps it.
    assert text.count("python-brace-format") == 1
    assert '#, python-brace-format\nmsgid "See {doc}`intro`."' in text
