#!/usr/bin/env python3
"""Runs a notebook's code cells on the GPU machine and records what each cell printed and drew.

    python3 scripts/record_notebook.py notebooks/paged_kv_cache_hands_on.md --out DIR

No Jupyter: the code cells (MyST-NB text format) run in order in one namespace, once per
language (English, then Chinese where its catalog exists), each in a fresh Python process. Per
cell it keeps the standard output and error, the value of a last bare expression, and the
figures shown (as PNG) — figures only for cells tagged `gpu`, whose output is the one the docs
show; other cells keep their text, enough to follow a failure. Needs the standard library and
what the notebook imports; matplotlib is optional: without it, a stand-in takes the plot calls
and the file records that the plot was not drawn.

Writes DIR/<notebook>.<gpu>-<YYYY-MM-DD>.json (format below, README of results/: notebook
recordings); commit it as results/notebooks/<the same name>. The docs, built without a GPU,
show the output of the newest committed file under each `gpu` cell (docs/_ext/pagedkv_notebooks.py).

Exit status 1 when a cell raised (the file is still written, with "complete": false and the
traceback, and the docs will not use it) or when no CUDA device is visible (unless
--allow-no-gpu, for the tests: the file then says gpu "none (test run without a GPU)").

The commit: $PAGEDKV_COMMIT, else `git rev-parse HEAD`, else "unknown".
"""

from __future__ import annotations

import argparse
import ast
import base64
import datetime
import io
import json
import os
import platform
import re
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "notebooks"))
import notebook_support  # noqa: E402

FORMAT = "pagedkv-notebook-recording/1"
NO_GPU = "none (test run without a GPU)"


# -- One language, in this process ---------------------------------------------------------------

class Recorder:
    """The outputs of the running cell, in order; text of one stream is merged."""

    def __init__(self, keep_figures: bool) -> None:
        self.outputs: list[dict] = []
        self.keep_figures = keep_figures

    def text(self, name: str, text: str) -> None:
        if not text:
            return
        last = self.outputs[-1] if self.outputs else None
        if last and last["type"] == "stream" and last["name"] == name:
            last["text"] += text
        else:
            self.outputs.append({"type": "stream", "name": name, "text": text})

    def figure(self, png: bytes | None, reason: str = "") -> None:
        if png is None:
            self.outputs.append({"type": "figure_not_drawn", "reason": reason})
        elif self.keep_figures:
            self.outputs.append({"type": "image/png",
                                 "data": base64.b64encode(png).decode("ascii")})
        else:
            self.outputs.append({"type": "figure_not_kept",
                                 "reason": "only the figures of cells tagged gpu are kept"})


class Stream(io.TextIOBase):
    def __init__(self, recorder_of, name: str) -> None:
        self.recorder_of, self.name = recorder_of, name

    def write(self, text: str) -> int:
        self.recorder_of().text(self.name, text)
        return len(text)


class StandIn:  # takes every plot call when matplotlib is missing
    def __getattr__(self, name):
        return StandIn()

    def __call__(self, *args, **kwargs):
        return StandIn()

    def __iter__(self):
        return iter(())

    def __getitem__(self, key):
        return StandIn()

    def __setitem__(self, key, value):
        pass


def install_matplotlib(recorder_of, cjk_missing: bool):
    """Real matplotlib (Agg) whose show() records the open figures, or a stand-in module."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        import types
        plt = types.ModuleType("matplotlib.pyplot")
        plt.__getattr__ = lambda name: StandIn()

        def subplots(nrows=1, ncols=1, **kwargs):
            n = nrows * ncols
            return StandIn(), (StandIn() if n == 1 else tuple(StandIn() for _ in range(n)))

        def show(*args, **kwargs):
            recorder_of().figure(None, "matplotlib is not installed on the GPU machine")

        plt.subplots, plt.show, plt.rcParams = subplots, show, StandIn()
        mpl = types.ModuleType("matplotlib")
        mpl.pyplot, mpl.use = plt, lambda *a, **k: None
        sys.modules["matplotlib"], sys.modules["matplotlib.pyplot"] = mpl, plt
        return lambda: None

    def flush(*args, **kwargs):
        for number in plt.get_fignums():
            figure = plt.figure(number)
            if cjk_missing:
                recorder_of().figure(None, "no CJK font on the GPU machine")
            else:
                buffer = io.BytesIO()
                figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
                recorder_of().figure(buffer.getvalue())
            plt.close(figure)

    plt.show = flush
    return flush  # also run after each cell, as Jupyter's inline backend does


def run_cells(notebook: Path, language: str) -> dict:
    """Runs every code cell in this process; returns {"language", "complete", "cells"}."""
    os.environ[notebook_support.LANGUAGE_VARIABLE] = language
    notebook_support.translation = notebook_support.Translation(language)
    chinese = notebook_support.translation.chinese
    cjk_missing = chinese and not notebook_support.cjk_font_available()
    if cjk_missing:  # record the Chinese text anyway; the docs fall back to the English figures
        notebook_support.setup_plots = lambda: None
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
    current: list[Recorder] = []
    flush = install_matplotlib(lambda: current[-1], cjk_missing)
    out, err = sys.stdout, sys.stderr
    namespace = {"__name__": "__main__"}
    cells, complete = [], True
    os.chdir(notebook.parent)  # as Jupyter does: the notebook's folder is the working directory
    sys.path.insert(0, str(notebook.parent))
    for cell in notebook_support.read_cells(notebook):
        recorder = Recorder(keep_figures="gpu" in cell["tags"])
        current.append(recorder)
        sys.stdout = Stream(lambda: current[-1], "stdout")
        sys.stderr = Stream(lambda: current[-1], "stderr")
        try:
            code = "\n".join("" if l.lstrip().startswith("%") else l
                             for l in cell["source"].splitlines())
            tree = ast.parse(code, f"{notebook.name}:cell{cell['index']}")
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            exec(compile(tree, f"{notebook.name}, cell {cell['index'] + 1}", "exec"), namespace)
            if last is not None:
                value = eval(compile(ast.Expression(last.value), f"{notebook.name}", "eval"),
                             namespace)
                if value is not None:
                    recorder.outputs.append({"type": "result", "text": repr(value)})
            flush()
        except BaseException:  # noqa: BLE001 - recorded, and the run stops here
            recorder.outputs.append({"type": "error", "text": traceback.format_exc()})
            complete = False
        finally:
            sys.stdout, sys.stderr = out, err
        cells.append({"index": cell["index"], "line": cell["line"], "tags": cell["tags"],
                      "source_sha256": cell["sha256"], "outputs": recorder.outputs})
        if not complete:
            break
    result = {"language": language, "complete": complete, "cells": cells}
    if cjk_missing:
        result["figures"] = ("not drawn: no CJK font on the GPU machine "
                             "(the docs show the English ones)")
    return result


# -- The whole recording -------------------------------------------------------------------------

def command_output(args: list[str]) -> str | None:
    try:
        return subprocess.run(args, capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def header(allow_no_gpu: bool) -> dict:
    versions = {}
    for module in ("pagedkv", "torch", "numpy", "matplotlib"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = None
    gpu, cuda = None, None
    try:
        import torch
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name()
        cuda = torch.version.cuda
    except ImportError:
        pass
    if gpu is None and not allow_no_gpu:
        raise SystemExit("record_notebook: no CUDA device visible to torch: nothing to record "
                         "(the docs show GPU output only)")
    driver = command_output(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    commit = (os.environ.get("PAGEDKV_COMMIT")
              or command_output(["git", "-C", str(ROOT), "rev-parse", "HEAD"]) or "unknown")
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return {"format": FORMAT, "gpu": gpu or NO_GPU,
            "driver": driver.splitlines()[0] if driver else None, "cuda": cuda,
            "torch": versions["torch"], "pagedkv": versions["pagedkv"],
            "numpy": versions["numpy"], "matplotlib": versions["matplotlib"],
            "python": platform.python_version(), "commit": commit,
            "date": now.isoformat().replace("+00:00", "Z"), "host": platform.node()}


def gpu_slug(gpu: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'h100', as results/ names its files."""
    name = gpu.lower().replace("nvidia", "")
    words = re.findall(r"[a-z]+\d+\w*", name)
    return words[0] if words else re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "gpu"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "notebooks")
    parser.add_argument("--languages", default="en,zh_CN",
                        help="comma-separated; a language without a catalog is left out")
    parser.add_argument("--allow-no-gpu", action="store_true",
                        help="record without a CUDA device (tests only; never commit such a file)")
    parser.add_argument("--one-language", help=argparse.SUPPRESS)  # the child process:
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)  # its answer
    args = parser.parse_args()
    notebook = args.notebook.resolve()

    if args.one_language:  # a file, not stdout: native code may print to file descriptor 1
        run = run_cells(notebook, args.one_language)
        args.result_file.write_text(json.dumps(run), encoding="utf-8")
        return 0

    recording = header(args.allow_no_gpu)
    recording["notebook"] = (notebook.relative_to(ROOT).as_posix()
                             if notebook.is_relative_to(ROOT) else notebook.name)
    recording["runs"] = {}
    status = 0
    for language in args.languages.split(","):
        if language != "en" and not notebook_support.Translation(language).messages:
            print(f"record_notebook: no {language} catalog: {language} not recorded")
            continue
        answer = args.out / f".{notebook.stem}.{language}.part.json"
        args.out.mkdir(parents=True, exist_ok=True)
        answer.unlink(missing_ok=True)
        child = subprocess.run([sys.executable, __file__, str(notebook), "--one-language",
                                language, "--result-file", str(answer)],
                               capture_output=True, text=True)
        if child.returncode != 0 or not answer.is_file():
            print(child.stdout[-4000:], child.stderr[-4000:], file=sys.stderr)
            recording["runs"][language] = {"language": language, "complete": False, "cells": [],
                                           "error": (child.stdout + child.stderr)[-4000:]}
        else:
            recording["runs"][language] = json.loads(answer.read_text(encoding="utf-8"))
            answer.unlink()
        run = recording["runs"][language]
        if not run["complete"]:
            status = 1
        print(f"record_notebook: {language}: {len(run['cells'])} cells, "
              f"{'complete' if run['complete'] else 'STOPPED BY AN ERROR'}")
    date = recording["date"][:10]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{notebook.stem}.{gpu_slug(recording['gpu'])}-{date}.json"
    path.write_text(json.dumps(recording, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"record_notebook: wrote {path} ({path.stat().st_size // 1024} KiB; "
          f"gpu {recording['gpu']}, "
          f"commit {recording['commit'][:10]})")
    return status


if __name__ == "__main__":
    sys.exit(main())
