"""The notebook pages: recorded GPU output, downloads, and the notebooks' language.

The docs are built without a GPU, so MyST-NB's execution shows the CPU path. For every code cell
tagged ``gpu`` (``:tags: [gpu]``) this extension adds, below the cell, that cell's output from
the newest recording of a GPU run (results/notebooks/<notebook>.<gpu>-<date>.json, written by
scripts/record_notebook.py through scripts/gpu_check.sh), labelled with the GPU, the commit and
the date; in the zh_CN build, the recording's Chinese run. Without a recording it adds a note
saying so and how to make one; a recording is never made up.

Cells are matched by their place among the ``gpu`` cells, and the source of each is compared
with the recorded one: a cell whose code changed since the run says so in its label.

It also
- adds, under the notebook's title, links to download it as a Jupyter notebook (.ipynb, made
  by jupytext at the end of the build) and as its MyST Markdown source (.md);
- sets PAGEDKV_NB_LANGUAGE to the build's language, so the notebooks' ``_()``
  (notebooks/notebook_support.py) prints and draws in it: MyST-NB's kernel inherits the build's
  environment;
- words MyST-NB's prompts of hidden code in the build's language.

Every word it adds comes from the notebooks' output catalog (notebooks/output.po), whose
messages docs/tools/notebook_messages.py extracts from the notebooks, notebook_support.py and
this file.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import sys
from pathlib import Path

from docutils import nodes

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "notebooks"))
import notebook_support  # noqa: E402

RECORDINGS = ROOT / "results" / "notebooks"


def _(message: str) -> str:
    """Marks a message for docs/tools/notebook_messages.py; translated where it is used."""
    return message


# -- Recordings ----------------------------------------------------------------------------------

def is_real_run(data: dict) -> bool:
    """A complete recording of a run on a GPU (not a test run without one)."""
    runs = data.get("runs") or {}
    return (data.get("format") == "pagedkv-notebook-recording/1" and bool(data.get("gpu"))
            and not str(data["gpu"]).startswith("none") and runs.get("en", {}).get("complete"))


def newest_recording(folder: Path, notebook: str) -> tuple[Path, dict] | None:
    """The newest complete GPU recording of `notebook` (its stem) in `folder`: by the recorded
    date, then by file name."""
    found = []
    for path in sorted(Path(folder).glob(f"{notebook}.*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and is_real_run(data):
            found.append((str(data.get("date", "")), path.name, path, data))
    return max(found, key=lambda item: item[:2])[2:] if found else None


def _figures(cell: dict | None) -> list[dict]:
    return [o for o in (cell or {}).get("outputs", []) if o["type"] in ("image/png", "figure_not_drawn")]


def outputs_html(cell: dict, english_cell: dict | None, tr) -> str:
    """HTML of a recorded cell's outputs. A figure the Chinese run could not draw (no CJK font on
    the GPU machine) is taken from the English run."""
    parts = []
    figure_number = 0
    for output in cell["outputs"]:
        kind = output["type"]
        if kind in ("stream", "result", "error"):
            css = "stderr" if output.get("name") == "stderr" or kind == "error" else "stdout"
            parts.append(f'<pre class="pagedkv-recorded-{css}">{html.escape(output["text"])}</pre>')
            continue
        if kind not in ("image/png", "figure_not_drawn"):
            continue
        figure = output
        if kind == "figure_not_drawn" and "CJK" in output.get("reason", ""):
            english = _figures(english_cell)
            if figure_number < len(english):
                figure = english[figure_number]
        figure_number += 1
        if figure["type"] == "image/png":
            alt = html.escape(tr.gettext(_("Figure drawn on the GPU machine")))
            parts.append(f'<img class="pagedkv-recorded-figure" alt="{alt}" '
                         f'src="data:image/png;base64,{figure["data"]}">')
        else:
            parts.append('<p class="pagedkv-recorded-note">'
                         + html.escape(tr.gettext(_("(plot not drawn on the GPU machine: "
                                                    "matplotlib was not installed there)")))
                         + "</p>")
    return "".join(parts)


def recorded_html(recording: tuple[Path, dict], ordinal: int, source_sha: str, tr) -> str:
    """The block under the `ordinal`-th gpu cell (0-based) of a page: label and outputs."""
    path, data = recording
    runs = data["runs"]
    run = runs.get(tr.language) if runs.get(tr.language, {}).get("complete") else runs["en"]

    def gpu_cells(r):
        return [c for c in (r or {}).get("cells", []) if "gpu" in c.get("tags", [])]

    cells = gpu_cells(run)
    english = gpu_cells(runs["en"])
    label = tr.gettext(_("Output of this cell on a GPU, recorded on {gpu}, commit {commit}, "
                         "{date}")).format(gpu=data["gpu"], commit=str(data.get("commit"))[:10],
                                           date=str(data.get("date", "?"))[:10])
    details = tr.gettext(_("driver {driver}, CUDA {cuda}, torch {torch}, pagedkv {pagedkv}; "
                           "file results/notebooks/{file}")).format(
        **{key: data.get(key) or "–" for key in ("driver", "cuda", "torch", "pagedkv")},
        file=path.name)
    notes = []
    if ordinal >= len(cells):
        body = ""
        notes.append(tr.gettext(_("This recording has no output for this cell: the notebook "
                                  "gained cells after the run.")))
    else:
        cell = cells[ordinal]
        if cell.get("source_sha256") != source_sha:
            notes.append(tr.gettext(_("The code of this cell has changed since this run.")))
        body = outputs_html(cell, english[ordinal] if ordinal < len(english) else None, tr)
    notes_html = "".join(f'<p class="pagedkv-recorded-note">{html.escape(n)}</p>' for n in notes)
    return (f'<div class="pagedkv-recorded-label"><strong>{html.escape(label)}</strong> '
            f'<span class="pagedkv-recorded-details">({html.escape(details)})</span></div>'
            f'{notes_html}<div class="pagedkv-recorded-output">{body}</div>')


def missing_html(notebook: str, first: bool, tr) -> str:
    """The note under a gpu cell while no GPU run of the notebook is recorded."""
    if first:
        text = tr.gettext(_("Output on a GPU: no GPU run of this notebook is recorded yet. Run "
                            "scripts/gpu_check.sh on a machine with a GPU and commit the "
                            "{file} it writes under its output folder as "
                            "results/notebooks/{file} (results/README.md says how).")).format(
            file=f"{notebook}.<gpu>-<date>.json")
    else:
        text = tr.gettext(_("Output on a GPU: no GPU run recorded yet (see the note under the "
                            "first such cell)."))
    return f'<p class="pagedkv-recorded-label">{html.escape(text)}</p>'


# -- Sphinx --------------------------------------------------------------------------------------

def _translation(app) -> notebook_support.Translation:
    return notebook_support.Translation(app.config.language or "en")


def notebook_source(app, docname: str) -> Path | None:
    """The source of a MyST-NB text notebook (a .md whose front matter has a kernelspec)."""
    path = Path(app.env.doc2path(docname))
    if path.suffix != ".md" or not path.is_file():
        return None
    head = path.read_text(encoding="utf-8")[:2000]
    return path if head.startswith("---") and "\nkernelspec:" in head.split("\n---", 1)[0] else None


def _config_inited(app, config) -> None:
    os.environ[notebook_support.LANGUAGE_VARIABLE] = config.language or "en"
    tr = notebook_support.Translation(config.language or "en")
    config.nb_code_prompt_show = tr.gettext(_("Show the code"))
    config.nb_code_prompt_hide = tr.gettext(_("Hide the code"))


def _doctree_read(app, doctree) -> None:
    if app.builder.format != "html":
        return
    source = notebook_source(app, app.env.docname)
    if source is None:
        return
    tr = _translation(app)

    # Downloads, under the title.
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is not None:
        links = nodes.paragraph(classes=["pagedkv-nb-downloads"])
        intro = tr.gettext(_("Download this notebook (its English source):"))
        links += nodes.Text(intro if intro.endswith("：") else intro + " ")
        links += nodes.reference("", tr.gettext(_("Jupyter notebook (.ipynb)")),
                                 refuri=f"{source.stem}.ipynb", classes=["pagedkv-nb-ipynb"])
        links += nodes.Text(" · ")
        links += nodes.reference("", tr.gettext(_("MyST Markdown (.md)")),
                                 refuri=f"{source.stem}.md", classes=["pagedkv-nb-md"])
        section.insert(1, links)

    # Recorded GPU output under each gpu cell.
    gpu_sources = [c for c in notebook_support.read_cells(source) if "gpu" in c["tags"]]
    cells = [n for n in doctree.findall(nodes.container)
             if n.get("nb_element") == "cell_code" and "tag_gpu" in n["classes"]]
    if len(cells) != len(gpu_sources):
        raise RuntimeError(f"{source}: {len(cells)} gpu cells rendered, {len(gpu_sources)} read")
    recording = newest_recording(Path(app.config.pagedkv_notebook_recordings), source.stem)
    for ordinal, cell in enumerate(cells):
        if recording:
            text = recorded_html(recording, ordinal, gpu_sources[ordinal]["sha256"], tr)
        else:
            text = missing_html(source.stem, ordinal == 0, tr)
        block = nodes.container(classes=["pagedkv-recorded"] + ([] if recording else
                                                               ["pagedkv-recorded-missing"]))
        block += nodes.raw("", text, format="html")
        cell.parent.insert(cell.parent.index(cell) + 1, block)


def _page_context(app, pagename, templatename, context, doctree) -> None:
    """MyST-NB writes the aria label of a hidden cell's toggle in English, outside any catalog."""
    if _translation(app).chinese and "body" in context:
        context["body"] = context["body"].replace(
            'aria-label="Toggle hidden content"',
            f'aria-label="{html.escape(_translation(app).gettext(_("Show or hide the code")))}"')


def _build_finished(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    import jupytext

    for docname in sorted(app.env.found_docs):
        source = notebook_source(app, docname)
        if source is None:
            continue
        target = Path(app.outdir) / Path(docname).parent
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target / source.name)
        jupytext.write(jupytext.read(source), target / f"{source.stem}.ipynb", fmt="ipynb")


def setup(app):
    app.add_config_value("pagedkv_notebook_recordings", str(RECORDINGS), "env")
    # Before MyST-NB reads its nb_* settings (at builder-inited).
    app.connect("config-inited", _config_inited)
    app.connect("doctree-read", _doctree_read)
    app.connect("html-page-context", _page_context)
    app.connect("build-finished", _build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
