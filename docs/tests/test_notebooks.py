"""Tests of the notebooks' machinery: the cell reader and the catalog (notebooks/notebook_support.py),
the GPU recorder (scripts/record_notebook.py) and the pages' recorded GPU output, downloads and
language (docs/_ext/pagedkv_notebooks.py).

The recording used here, fixtures/notebooks/fixture_notebook.fixture-2026-01-01.json, is test
data for fixtures/notebooks/fixture_notebook.md ("FIXTURE GPU"), not a run on a GPU; the site
never reads this folder.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "docs" / "tests" / "fixtures" / "notebooks"
FIXTURE_NOTEBOOK = FIXTURES / "fixture_notebook.md"
sys.path.insert(0, str(REPO / "notebooks"))
sys.path.insert(0, str(REPO / "docs" / "_ext"))
sys.path.insert(0, str(REPO / "docs" / "tools"))

import notebook_support  # noqa: E402


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ext():
    return load(REPO / "docs" / "_ext" / "pagedkv_notebooks.py", "pagedkv_notebooks")


def test_cells_options_and_hashes():
    cells = notebook_support.read_cells(FIXTURE_NOTEBOOK)
    assert [c["tags"] for c in cells] == [["gpu", "hide-input"], [], ["gpu"]]
    assert cells[0]["source"].startswith("import matplotlib.pyplot as plt")
    assert ":tags:" not in cells[0]["source"]
    assert cells[2]["sha256"] == notebook_support.source_hash(cells[2]["source"] + "\n")


def test_messages_must_be_literals():
    assert notebook_support.messages_in_code('%matplotlib inline\nprint(_("a {b}").format(b=1))') == [
        ("a {b}", 2)]
    with pytest.raises(ValueError, match="one string literal"):
        notebook_support.messages_in_code('name = "x"\nprint(_(f"{name}"))')


def test_po_reader_skips_fuzzy_and_untranslated(tmp_path):
    po = tmp_path / "x.po"
    po.write_text('msgid ""\nmsgstr ""\n"Language: zh_CN\\n"\n\n'
                  '#: a.md:1\nmsgid "one"\nmsgstr "一"\n\n'
                  '#, fuzzy\nmsgid "two"\nmsgstr "二"\n\n'
                  'msgid "three"\nmsgstr ""\n\n'
                  'msgid ""\n"four "\n"lines"\nmsgstr "四\\"行\\""\n', encoding="utf-8")
    assert notebook_support.read_po(po) == {"one": "一", "four lines": '四"行"'}


def test_every_notebook_message_is_translated():
    """The docs' translation gate checks this too; here it fails before a docs build."""
    import notebook_messages

    zh = notebook_support.Translation("zh_CN")
    missing = sorted({m for m, _, _ in notebook_messages.collect() if m not in zh.messages})
    assert not missing, f"untranslated in docs/locales/zh_CN/LC_MESSAGES/notebooks/output.po: {missing}"
    assert zh.gettext("block tables") == "块表"
    assert notebook_support.Translation("en").gettext("block tables") == "block tables"


def test_recorder_runs_cells_and_records_outputs(tmp_path):
    """scripts/record_notebook.py end to end, without a GPU (--allow-no-gpu): both languages,
    text per cell, figures of gpu cells as PNG, the value of a last expression."""
    pytest.importorskip("matplotlib")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "record_notebook.py"), str(FIXTURE_NOTEBOOK),
         "--out", str(tmp_path), "--allow-no-gpu"],
        capture_output=True, text=True, timeout=120,
        env={**{k: v for k, v in os.environ.items() if k != "PAGEDKV_NB_LANGUAGE"},
             "PAGEDKV_COMMIT": "abc"})
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = tmp_path.glob("fixture_notebook.*.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["gpu"].startswith("none") and data["commit"] == "abc"
    assert data["format"] == "pagedkv-notebook-recording/1" and data["date"].endswith("Z")
    en, zh = data["runs"]["en"], data["runs"]["zh_CN"]
    assert en["complete"] and zh["complete"]
    assert en["cells"][0]["outputs"][0]["text"] == "implementations that run here: cpu\n"
    assert zh["cells"][0]["outputs"][0]["text"] == "本机能运行的实现：cpu\n"
    kinds = [o["type"] for o in en["cells"][1]["outputs"]]
    assert kinds == ["stream", "figure_not_kept"]  # a figure of a cell without the gpu tag
    third = en["cells"][2]["outputs"]
    assert [o["type"] for o in third] == ["image/png", "result"] and third[1]["text"] == "42"
    assert [c["source_sha256"] for c in en["cells"]] == [
        c["sha256"] for c in notebook_support.read_cells(FIXTURE_NOTEBOOK)]
    ext = load(REPO / "docs" / "_ext" / "pagedkv_notebooks.py", "pagedkv_notebooks_check")
    assert not ext.is_real_run(data), "a run without a GPU must never reach the site"


def test_recorder_without_matplotlib_records_that_plots_were_not_drawn(tmp_path):
    """The GPU machine may lack matplotlib: a stand-in takes the plot calls."""
    hide = tmp_path / "hide" / "matplotlib"
    hide.mkdir(parents=True)
    (hide / "__init__.py").write_text('raise ImportError("hidden by the test")\n')
    env = {k: v for k, v in os.environ.items() if k != "PAGEDKV_NB_LANGUAGE"}
    env["PYTHONPATH"] = str(hide.parent) + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "record_notebook.py"), str(FIXTURE_NOTEBOOK),
         "--out", str(tmp_path / "out"), "--allow-no-gpu", "--languages", "en"],
        capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    (path,) = (tmp_path / "out").glob("*.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["matplotlib"] is None
    third = data["runs"]["en"]["cells"][2]["outputs"]
    assert third[0] == {"type": "figure_not_drawn",
                        "reason": "matplotlib is not installed on the GPU machine"}


def test_recording_names_follow_results_names():
    recorder = load(REPO / "scripts" / "record_notebook.py", "record_notebook")
    assert recorder.gpu_slug("NVIDIA H100 80GB HBM3") == "h100"
    assert recorder.gpu_slug("NVIDIA A100-SXM4-80GB") == "a100"
    assert recorder.gpu_slug("NVIDIA GeForce RTX 4090") == "geforce-rtx-4090"


def test_newest_recording_ignores_test_runs_and_incomplete_ones(ext, tmp_path):
    fixture = json.loads((FIXTURES / "fixture_notebook.fixture-2026-01-01.json").read_text("utf-8"))
    newer = dict(fixture, date="2026-02-01T00:00:00Z", gpu="none (test run without a GPU)")
    broken = dict(fixture, date="2026-03-01T00:00:00Z",
                  runs={"en": dict(fixture["runs"]["en"], complete=False)})
    for name, data in (("a", fixture), ("b", newer), ("c", broken)):
        (tmp_path / f"fixture_notebook.{name}.json").write_text(json.dumps(data), "utf-8")
    path, data = ext.newest_recording(tmp_path, "fixture_notebook")
    assert path.name == "fixture_notebook.a.json"
    assert ext.newest_recording(tmp_path, "other_notebook") is None


def sphinx_build(tmp_path: Path, language: str, recordings: Path) -> str:
    """Builds a one-page site of the fixture notebook (not executed) with the extension; returns
    the page's HTML."""
    from sphinx.application import Sphinx

    src = tmp_path / "src"
    (src / "notebooks").mkdir(parents=True, exist_ok=True)
    (src / "notebooks" / "fixture_notebook.md").write_text(
        FIXTURE_NOTEBOOK.read_text(encoding="utf-8"), encoding="utf-8")
    (src / "index.md").write_text("# Index\n\n```{toctree}\nnotebooks/fixture_notebook\n```\n")
    (src / "conf.py").write_text(
        "extensions = ['myst_nb', 'pagedkv_notebooks']\n"
        "nb_execution_mode = 'off'\n"
        f"pagedkv_notebook_recordings = {str(recordings)!r}\n"
        "exclude_patterns = ['_build']\n")
    out = tmp_path / f"out-{language}"
    app = Sphinx(str(src), str(src), str(out), str(tmp_path / f"doctrees-{language}"), "html",
                 confoverrides={"language": language}, status=None, warning=None,
                 freshenv=True)
    app.build()
    assert (out / "notebooks" / "fixture_notebook.ipynb").is_file()
    assert (out / "notebooks" / "fixture_notebook.md").is_file()
    nb = json.loads((out / "notebooks" / "fixture_notebook.ipynb").read_text(encoding="utf-8"))
    assert [c["metadata"].get("tags") for c in nb["cells"] if c["cell_type"] == "code"] == [
        ["gpu", "hide-input"], None, ["gpu"]]
    return (out / "notebooks" / "fixture_notebook.html").read_text(encoding="utf-8")


def test_pages_show_the_recorded_gpu_output(tmp_path):
    """The fixture recording under the gpu cells of a built page, in both languages."""
    pytest.importorskip("myst_nb")
    en = sphinx_build(tmp_path, "en", FIXTURES)
    assert en.count('class="pagedkv-recorded docutils container"') == 2  # the two gpu cells
    assert "Output of this cell on a GPU, recorded on FIXTURE GPU (test data, not a real run), " \
           "commit f1x7ure000, 2026-01-01" in en
    assert "implementations that run here: cpu, naive, optimized" in en
    assert en.count('src="data:image/png;base64,') == 1 and "<pre class=\"pagedkv-recorded-stdout\">42" in en
    assert "has changed since this run" not in en
    assert 'href="fixture_notebook.ipynb"' in en and 'href="fixture_notebook.md"' in en
    assert "Show the code" in en

    zh = sphinx_build(tmp_path, "zh_CN", FIXTURES)
    assert "本单元在 GPU 上的输出，存档的运行结果：FIXTURE GPU" in zh
    assert "本机能运行的实现：cpu, naive, optimized" in zh
    # The Chinese run drew no figure (no CJK font there): the English run's figure is shown.
    fixture = json.loads((FIXTURES / "fixture_notebook.fixture-2026-01-01.json").read_text("utf-8"))
    assert fixture["runs"]["en"]["cells"][2]["outputs"][0]["data"] in zh
    assert "下载本笔记本" in zh and "显示代码" in zh and "Toggle hidden content" not in zh


def test_pages_say_when_no_gpu_run_is_recorded(tmp_path):
    pytest.importorskip("myst_nb")
    empty = tmp_path / "no-recordings"
    empty.mkdir()
    en = sphinx_build(tmp_path, "en", empty)
    assert en.count("pagedkv-recorded-missing") == 2
    assert "no GPU run of this notebook is recorded yet" in en and "scripts/gpu_check.sh" in en
    assert "data:image/png" not in en
