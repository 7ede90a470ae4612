"""API reference snippets from the Doxygen XML: every documented entity rendered exactly once.

Each entity (function, struct/class, enum, typedef, variable, macro, file description) is given
to exactly one page by where it is declared:

- an op's page (docs/api/<op>.md) gets its contract header include/pagedkv/ops/<op>.h, its CPU
  reference and its kernel files (the registry's cpu/naive/optimized sources, and any other file
  in a kernels/ or reference_cpu/ folder named after the op); inside the page the entities are
  grouped as Contract, CPU reference, Naive CUDA and Optimized CUDA;
- docs/api/common.md gets everything else, one section per file.

Output: docs/_generated/api_<op>.md and api_common.md, pulled into the hand-written pages with
```{include}```, and one source listing page per input file under docs/_generated/sources/.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

SECTION_TITLES = {
    "contract": "Contract",
    "cpu": "CPU reference",
    "naive": "Naive CUDA",
    "optimized": "Optimized CUDA",
    "other": "Other files",
}
SECTION_ORDER = ["contract", "cpu", "naive", "optimized", "other"]
LANGUAGE_BY_SUFFIX = {".h": "cpp", ".hpp": "cpp", ".cpp": "cpp", ".cu": "cuda", ".cuh": "cuda"}


@dataclass
class Entity:
    directive: str  # doxygenfunction, doxygenstruct, ...
    target: str  # what the directive is given
    file: str  # repository-relative declaration file
    line: int
    namespace: str = ""
    options: list[str] = field(default_factory=list)


@dataclass
class FileDoc:
    path: str
    documented: bool


def _text(element) -> str:
    return "" if element is None else "".join(element.itertext()).strip()


def _documented(element) -> bool:
    return any(_text(element.find(tag)) for tag in
               ("briefdescription", "detaileddescription", "inbodydescription"))


def _location(element) -> tuple[str, int]:
    loc = element.find("location")
    path = loc.get("declfile") or loc.get("file")
    line = loc.get("declline") or loc.get("line") or "0"
    return path, int(line)


def _strip_template(name: str) -> str:
    return name.split("<", 1)[0].strip()


def read_doxygen(xml_dir: Path) -> tuple[list[Entity], dict[str, FileDoc]]:
    """Documented entities and all input files of a Doxygen XML tree."""
    index = ET.parse(xml_dir / "index.xml").getroot()
    entities: list[Entity] = []
    files: dict[str, FileDoc] = {}
    for compound in index.findall("compound"):
        kind = compound.get("kind")
        if kind not in ("namespace", "struct", "class", "union", "file"):
            continue
        root = ET.parse(xml_dir / f"{compound.get('refid')}.xml").getroot()
        cdef = root.find("compounddef")
        name = cdef.findtext("compoundname")
        if kind in ("struct", "class", "union"):
            if "<" in name or not _documented(cdef):
                continue  # specialisations are shown with their primary template
            path, line = _location(cdef)
            entities.append(Entity(f"doxygen{kind}", name, path, line,
                                   options=[":members:"]))
            continue
        if kind == "file":
            path, _ = _location(cdef)
            files[path] = FileDoc(path, _documented(cdef))
        namespace = name if kind == "namespace" else ""
        if kind == "namespace" and ("anonymous_namespace" in name or name == "std"):
            continue
        members = list(cdef.iter("memberdef"))
        base_counts: dict[str, int] = {}
        for m in members:
            base = _strip_template(m.findtext("name"))
            base_counts[base] = base_counts.get(base, 0) + 1
        for m in members:
            mkind = m.get("kind")
            if kind == "file" and mkind not in ("define", "function", "enum", "typedef", "variable"):
                continue
            if kind == "file" and mkind != "define" and m.get("id", "").startswith("namespace"):
                continue  # a namespace member listed under its file; taken from the namespace
            if not _documented(m):
                continue
            mname = m.findtext("name")
            qual = f"{namespace}::{mname}" if namespace else mname
            path, line = _location(m)
            if mkind == "function":
                target = qual
                if base_counts[_strip_template(mname)] > 1:
                    target = f"{namespace + '::' if namespace else ''}{mname}{m.findtext('argsstring')}"
                entities.append(Entity("doxygenfunction", target, path, line, namespace))
            elif mkind in ("enum", "typedef", "variable", "define"):
                entities.append(Entity(f"doxygen{mkind}", qual, path, line, namespace))
    return entities, files


def _op_of_path(path: str, op_sources: dict[str, dict[str, str]]) -> tuple[str, str] | None:
    """(op, section) for a file that belongs to one op, else None."""
    for op, sources in op_sources.items():
        if path == f"include/pagedkv/ops/{op}.h":
            return op, "contract"
        for section in ("cpu", "naive", "optimized"):
            if sources.get(section) and path == sources[section]:
                return op, section
    parts = Path(path).parts
    stem = Path(path).stem
    for op in op_sources:
        if parts[0] == "reference_cpu" and (op in parts[:-1] or stem == op):
            return op, "cpu"
        if parts[0] == "kernels" and (op in parts[:-1] or stem == op):
            if stem.startswith("naive"):
                return op, "naive"
            if stem.startswith("optimized"):
                return op, "optimized"
            return op, "other"
    return None


def _section_of_entity(entity: Entity, file_section: str) -> str:
    """Inside the contract header, the cpu/naive/optimized namespaces go to their sections."""
    if file_section == "contract":
        last = entity.namespace.rsplit("::", 1)[-1]
        if last in ("cpu", "naive", "optimized"):
            return last
    return file_section


def source_docname(path: str) -> str:
    return f"/docs/_generated/sources/{path}"


def _source_link(path: str) -> str:
    return f"{{doc}}`{path} <{source_docname(path)}>`"


def _directive(entity: Entity) -> str:
    lines = [f"```{{{entity.directive}}} {entity.target}"] + entity.options + ["```", ""]
    return "\n".join(lines)


def _file_block(path: str, files: dict[str, FileDoc], heading: str | None) -> list[str]:
    out = []
    if heading:
        out += [heading, ""]
    out += [_source_link(path), ""]
    if files.get(path) and files[path].documented:
        out += [":::{container} pagedkv-api-file",
                f"```{{doxygenfile}} {path}", ":sections: briefdescription detaileddescription",
                "```", ":::", ""]
    return out


def build(xml_dir: Path, ops: list[dict], out_dir: Path, api_dir: Path) -> list[str]:
    """Write the snippets and source pages; return problems (entities with no page)."""
    entities, files = read_doxygen(xml_dir)
    op_sources = {op["name"]: {"cpu": op.get("cpu_source", ""),
                               "naive": op.get("naive_source", ""),
                               "optimized": op.get("optimized_source", "")} for op in ops}
    # An op with a contract header but no registry entry yet is still an op.
    for path in files:
        if path.startswith("include/pagedkv/ops/"):
            op_sources.setdefault(Path(path).stem, {})
    # Ops that only exist as a contract header so far still get a page.
    pages: dict[str, dict[str, dict[str, list[Entity]]]] = {}
    common: dict[str, list[Entity]] = {}
    for path in sorted(files):
        owner = _op_of_path(path, op_sources)
        if owner:
            pages.setdefault(owner[0], {}).setdefault(owner[1], {}).setdefault(path, [])
        else:
            common.setdefault(path, [])
    for entity in sorted(entities, key=lambda e: (e.file, e.line)):
        owner = _op_of_path(entity.file, op_sources)
        if owner:
            op, file_section = owner
            section = _section_of_entity(entity, file_section)
            pages.setdefault(op, {}).setdefault(section, {}).setdefault(entity.file, []).append(entity)
        else:
            common.setdefault(entity.file, []).append(entity)

    out_dir.mkdir(parents=True, exist_ok=True)
    problems = []
    written = set()
    for op, sections in pages.items():
        lines = [f"<!-- generated by docs/tools/api_pages.py from the Doxygen XML: do not edit -->", ""]
        for section in SECTION_ORDER:
            if section not in sections:
                continue
            lines += [f"## {SECTION_TITLES[section]}", ""]
            header = f"include/pagedkv/ops/{op}.h"
            # Entities declared in the contract header come first, then each file of the section.
            for path, members in sections[section].items():
                if path == header and section != "contract":
                    lines += [_directive(e) for e in members]
            for path, members in sections[section].items():
                if path == header and section != "contract":
                    continue
                heading = None if section == "contract" else f"### `{path}`"
                lines += _file_block(path, files, heading)
                lines += [_directive(e) for e in members]
        (out_dir / f"api_{op}.md").write_text("\n".join(lines))
        written.add(op)
        if not (api_dir / f"{op}.md").is_file():
            problems.append(f"op {op} has API entities but no page: add docs/api/{op}.md "
                            f"(copy docs/api/swap_blocks.md and change the name)")

    lines = ["<!-- generated by docs/tools/api_pages.py from the Doxygen XML: do not edit -->", ""]
    def order(path: str) -> tuple[int, str]:
        for rank, prefix in enumerate(("include/", "core/", "reference_cpu/", "kernels/")):
            if path.startswith(prefix):
                return rank, path
        return 9, path
    for path in sorted(common, key=order):
        members = common[path]
        if not members and not (files.get(path) and files[path].documented):
            continue
        lines += _file_block(path, files, f"## `{path}`")
        lines += [_directive(e) for e in members]
    (out_dir / "api_common.md").write_text("\n".join(lines))

    for page in sorted(api_dir.glob("*.md")):
        if page.stem not in ("index", "common") and page.stem not in written:
            # A page for an op with nothing documented yet: an empty snippet keeps it building.
            (out_dir / f"api_{page.stem}.md").write_text(
                "<!-- generated: no documented entities for this op yet -->\n")

    _write_source_pages(sorted(files), out_dir / "sources")
    return problems


def _write_source_pages(paths: list[str], sources_dir: Path) -> None:
    """One page per input file: the whole file with line numbers (linked from the API pages)."""
    for path in paths:
        page = sources_dir / f"{path}.md"
        page.parent.mkdir(parents=True, exist_ok=True)
        depth = len(Path("docs/_generated/sources", path).parts) - 1
        relative = "/".join([".."] * depth) + "/" + path
        language = LANGUAGE_BY_SUFFIX.get(Path(path).suffix, "text")
        text = "\n".join([
            "---", "orphan: true", "---", "",
            f"# `{path}`", "",
            f"```{{literalinclude}} {relative}", f":language: {language}", ":linenos:", "```", ""])
        if not page.is_file() or page.read_text() != text:
            page.write_text(text)


def source_paths_exist(xml_dir: Path) -> list[str]:
    return sorted(read_doxygen(xml_dir)[1])


if __name__ == "__main__":  # pragma: no cover - used through generate.py
    import json
    import sys
    problems = build(Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())["ops"],
                     Path(sys.argv[3]), Path(sys.argv[4]))
    print("\n".join(problems))
