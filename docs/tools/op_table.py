"""The op mapping table, from the op registry (`pagedkv list --json`).

Writes docs/_generated/op_table.md, pulled into docs/ops.md with ```{include}```. The prose
strings of the registry (family, role, byte model, agreement rule) become ordinary table cells
of that page, so they reach the translation catalogs like any other sentence.

Op map and chapters link both ways. A chapter marks the section that teaches an op with the
MyST label `(op-<name>)=` right above its heading; the table's Chapter column links there
with {ref} (so a label that goes missing is a Sphinx error), and docs/_ext/pagedkv_links.py
gives each row of the first table of docs/ops.md whose first column lists the registry's ops
the id `op-map-<name>` and puts a link back to that row under the section's
heading. An op that a chapter's title names must have its label: `build` stops otherwise.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from api_pages import source_docname


def read_registry(pagedkv_bin: str) -> list[dict]:
    """The ops of `pagedkv list --json`; raises SystemExit with a clear message on failure."""
    if not pagedkv_bin:
        raise SystemExit(
            "docs: PAGEDKV_BIN is not set. It must name the comparison tool, e.g.\n"
            "  cmake --preset cpu && cmake --build build/cpu --target pagedkv_compare\n"
            "  PAGEDKV_BIN=$PWD/build/cpu/tools/compare/pagedkv scripts/docs.sh")
    path = Path(pagedkv_bin)
    if not path.is_file():
        raise SystemExit(f"docs: PAGEDKV_BIN={pagedkv_bin} does not exist; build the comparison "
                         "tool first (cmake --build build/<preset> --target pagedkv_compare)")
    try:
        out = subprocess.run([str(path), "list", "--json"], check=True, capture_output=True,
                             text=True, timeout=60).stdout
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"docs: `{pagedkv_bin} list --json` failed (exit {e.returncode}):\n"
                         f"{e.stderr}") from None
    try:
        ops = json.loads(out)["ops"]
    except (ValueError, KeyError) as e:
        raise SystemExit(f"docs: `{pagedkv_bin} list --json` did not print "
                         f"{{\"ops\": [...]}} ({e}); output was:\n{out[:2000]}") from None
    for op in ops:
        missing = [k for k in ("name", "family", "role", "upstream") if k not in op]
        if missing:
            raise SystemExit(f"docs: op entry {op.get('name', op)} lacks {missing}")
    return ops


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(text: str) -> str:
    text = _cell(text)
    return f"`{text}`" if text and "`" not in text else text


def _source(label: str, path: str, root: Path) -> str:
    if not path:
        return ""
    if (root / path).is_file():
        return f"{{doc}}`{label} <{source_docname(path)}>`"
    return f"{label}: {_code(path)}"  # not written yet: named, not linked


OP_LABEL = re.compile(r"^\(op-(?P<op>[A-Za-z0-9_]+)\)=\s*$", re.M)


def _names(text: str, op: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(op)}(?![A-Za-z0-9_])", text) is not None


TOCTREE = re.compile(r"^```\{toctree\}\s*\n(?P<body>.*?)^```", re.M | re.S)


def _toctree_pages(text: str, chapter: Path, root: Path) -> set[str]:
    """The chapters/*.md paths that a chapter's toctrees list (its op pages)."""
    pages = set()
    for match in TOCTREE.finditer(text):
        for entry in match["body"].splitlines():
            entry = entry.strip()
            if entry and not entry.startswith(":"):
                page = (chapter.parent / f"{entry}.md").resolve()
                if page.is_file():
                    pages.add(page.relative_to(root.resolve()).as_posix())
    return pages


def chapter_sections(ops: list[dict], root: Path) -> dict[str, str]:
    """{op: chapter path} of the `(op-<name>)=` labels in chapters/*.md. An op that a chapter's
    title names without such a label (on the chapter or on one of the op pages its toctree
    lists), and a label of no op, stop the build."""
    known = {op["name"] for op in ops}
    found: dict[str, str] = {}
    problems = []
    titles: list[tuple[str, str, set[str]]] = []
    for chapter in sorted((root / "chapters").glob("*.md")):
        text = chapter.read_text(encoding="utf-8")
        rel = chapter.relative_to(root).as_posix()
        for op in (m["op"] for m in OP_LABEL.finditer(text)):
            if op not in known:
                problems.append(f"{rel}: label (op-{op})= names no op of the registry")
            elif op in found:
                problems.append(f"{rel}: label (op-{op})= is also in {found[op]}")
            else:
                found[op] = rel
        title = next((line[2:] for line in text.splitlines() if line.startswith("# ")), "")
        titles.append((rel, title, {rel} | _toctree_pages(text, chapter, root)))
    for rel, title, pages in titles:
        for op in sorted(known):
            if _names(title, op) and found.get(op) not in pages:
                problems.append(f"{rel}: the title names {op} but no section carries the label "
                                f"(op-{op})= (put it above the heading of the op's section, "
                                f"here or on an op page of this chapter's toctree)")
    if problems:
        raise SystemExit("docs: op map <-> chapters:\n  " + "\n  ".join(problems))
    return found


def render(ops: list[dict], root: Path, api_dir: Path) -> str:
    sections = chapter_sections(ops, root)
    lines = ["<!-- generated by docs/tools/op_table.py from `pagedkv list --json`: do not edit -->",
             ""]
    lines += ["| Op | Family | Role in inference | Chapter | Sources | Upstream |",
              "|---|---|---|---|---|---|"]
    for op in ops:
        name = op["name"]
        if (api_dir / f"{name}.md").is_file():
            name_cell = f"{{doc}}`{name} </docs/api/{name}>`"
        else:
            name_cell = _code(name)
        # The link texts are the implementation names used everywhere (Impl::cpu/naive/optimized).
        sources = " · ".join(filter(None, [
            _source("cpu", op.get("cpu_source", ""), root),
            _source("naive", op.get("naive_source", ""), root),
            _source("optimized", op.get("optimized_source", ""), root)])) or "—"
        # The link text is the section's own title (translated with the chapter).
        chapter = f"{{ref}}`op-{name}`" if name in sections else "—"
        lines.append("| " + " | ".join([
            name_cell, _cell(op["family"]), _cell(op["role"]), chapter, sources,
            _code(op["upstream"])]) + " |")
    lines.append("")
    return "\n".join(lines)


def render_measurement(ops: list[dict]) -> str:
    lines = ["<!-- generated by docs/tools/op_table.py from `pagedkv list --json`: do not edit -->",
             ""]
    lines += ["| Op | Bytes counted | Agreement with the CPU reference | Workloads |",
              "|---|---|---|---|"]
    for op in ops:
        workloads = ", ".join(f"`{w}`" for w in op.get("workloads", [])) or "—"
        lines.append("| " + " | ".join([
            _code(op["name"]), _cell(op.get("byte_model", "—")),
            _cell(op.get("agreement_rule", "—")), _cell(workloads)]) + " |")
    lines.append("")
    return "\n".join(lines)


def build(ops: list[dict] | str, root: Path, out_dir: Path, api_dir: Path) -> list[dict]:
    """Write the two tables for `ops` (the registry's list, or the path of the tool to ask)."""
    if isinstance(ops, str):
        ops = read_registry(ops)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "op_table.md").write_text(render(ops, root, api_dir))
    (out_dir / "op_measurement.md").write_text(render_measurement(ops))
    (out_dir / "ops.json").write_text(json.dumps({"ops": ops}, indent=1))
    return ops
