"""Which committed results file each op's numbers come from: one rule for every page and the
README (performance.py, make_figures.py, docs/_ext/pagedkv_measured.py,
scripts/readme_results.py).

A results file (results/README.md) holds the rows of the ops one GPU run measured: all of them
(`pagedkv compare --all`) or some (a family's run, e.g. `pagedkv compare <op> <op>`, when the
whole set no longer fits one run). So the rule is per op: **an op's numbers come from the newest
committed file that has rows of that op** (latest "date"; the file name breaks ties). A file
with the newest date for one family never hides an older full run's numbers of the others.
"""

from __future__ import annotations

import json
import subprocess
from collections import OrderedDict
from pathlib import Path

_CACHE: dict[tuple[Path, float], dict] = {}


def committed_results(root: Path) -> list[Path]:
    """results/*.json known to git (all of them when git cannot tell, e.g. in an export).

    Only files directly in results/: a run waiting for its second machine start lies in
    results/pending/ and feeds no page until it is confirmed (results/README.md)."""
    try:
        out = subprocess.run(["git", "ls-files", "--", "results/*.json"], cwd=root, check=True,
                             capture_output=True, text=True).stdout.split()
        return [root / p for p in out if p.count("/") == 1 and (root / p).is_file()]
    except (OSError, subprocess.CalledProcessError):
        return sorted((root / "results").glob("*.json"))


def load(path: Path) -> dict | None:
    """The file's JSON object, or None when it cannot be read or is not an object."""
    try:
        key = (path.resolve(), path.stat().st_mtime)
        if key not in _CACHE:
            _CACHE[key] = json.loads(path.read_text(encoding="utf-8"))
        data = _CACHE[key]
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def age_key(path: Path, data: dict) -> tuple[str, str]:
    """Sort key of a run: its recorded date, then its file name."""
    return str(data.get("date", "")), path.name


def ops_of(data: dict) -> list[str]:
    """The ops a file has rows of, in the order of their first row."""
    seen: OrderedDict[str, None] = OrderedDict()
    for row in data.get("rows", []) if isinstance(data.get("rows"), list) else []:
        if isinstance(row, dict) and row.get("op"):
            seen.setdefault(str(row["op"]), None)
    return list(seen)


def readable(paths: list[Path]) -> list[tuple[Path, dict]]:
    """(path, data) of the readable files, newest first."""
    found = [(p, d) for p in paths if (d := load(p)) is not None]
    return sorted(found, key=lambda pd: age_key(*pd), reverse=True)


def newest(paths: list[Path]) -> tuple[Path, dict] | None:
    """The newest readable file, whatever it holds."""
    found = readable(paths)
    return found[0] if found else None


def newest_for_op(paths: list[Path], op: str) -> tuple[Path, dict] | None:
    """The newest readable file with rows of `op`."""
    for path, data in readable(paths):
        if op in ops_of(data):
            return path, data
    return None


def runs_by_op(paths: list[Path]) -> list[tuple[Path, dict, list[str]]]:
    """The files the pages use, newest first, each with the ops whose numbers it supplies (the
    ops for which it is the newest file with rows); files that supply none are left out."""
    taken: set[str] = set()
    result = []
    for path, data in readable(paths):
        ops = [op for op in ops_of(data) if op not in taken]
        if ops:
            taken.update(ops)
            result.append((path, data, ops))
    return result
