"""Links from the code names of the chapters to the API reference, and between op map and chapters.

Nothing is written by hand in a chapter for these links: a name in backticks is enough.

1. Code names (chapters/** and notebooks/**, HTML builds only). An inline literal becomes a
   link when its whole text names something pagedkv documents, tried in this order:

   - an op of the registry (`docs/_generated/ops.json`), alone or as a call `op(a, b)`:
     its API page, docs/api/<op>;
   - an argument of an op: its row in that op's argument table (`docs/api/<op>#arg-<name>`).
     An argument several ops share goes to the op of the section the literal is in: the
     innermost enclosing section whose title names one of those ops (headings keep op names
     in both languages), else the first of them in registry order;
   - a file with a source listing page (`kernels/.../optimized.cu`): that page;
   - an upstream file that the page itself cites with a GitHub link pinned to a commit
     (normally in its Sources section): the same file at the same commit;
   - a C++ entity that Breathe documented (`choose_swap_strategy`, `RowLayout::row_start`,
     `kLargeBatch()`), by its qualified name or a qualified suffix of it. A bare name links
     only to an entity on the API page of an op of the enclosing sections or, for
     namespace-level entities (not enumerators), on the common page; members always need
     `Type::member`. A name that fits several entities is resolved by those pages in turn
     (innermost op first, common last), else left alone; so is a name that the page itself
     cites as an upstream function (a code name inside a web link, e.g. in its Sources).

   Literals inside headings, code blocks, links and signatures stay as they are, as do names
   shorter than three characters and a link to the page the literal is on. In a paragraph
   that links to the web (it cites an upstream file or a paper, e.g. a Sources entry) only
   file paths are linked: its other names are upstream's (a vLLM wrapper of an op).

2. API entries. docs/tools/api_pages.py writes ```{api-source} path:line``` after each Breathe
   directive; it puts a small "source" link into the signature of the entry just above it,
   to that line of the listing page (the `source` role's node of pagedkv_sources.py).
   The argument table of an op's page (the table whose second column lists the op's
   arguments, in order) gets a row id `arg-<name>` each.

3. Op map and chapters. The op table of docs/ops.md (its first table whose first column lists
   the registry's ops; docs/tools/op_table.py) gets a row id `op-map-<name>` each and links every op to the chapter section labelled
   `(op-<name>)=`; under the heading of that section this extension adds a line that links
   back to the row, titled with the op map's own (translated) title.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from pagedkv_sources import listing_docname, source_line

OPS_JSON = "docs/_generated/ops.json"
API_PAGE = "docs/api/{op}"
COMMON_PAGE = "docs/api/common"
OP_MAP = "docs/ops"
LINKED_PAGES = ("chapters/", "notebooks/")
MIN_NAME = 3
# The text of the API entries' source link: UI text of the site, like the theme's (no
# catalog message: it would be one per entry).
SOURCE_LABEL = {"en": "source", "zh_CN": "源代码"}
COLON = {"en": ": ", "zh_CN": "："}  # after the op map's title, in the back links
SOURCE_TITLE = {"en": "Where this is defined, in the source listing",
                "zh_CN": "在源代码清单中查看它的定义"}
GITHUB_BLOB = re.compile(r"^https://github\.com/[\w.-]+/[\w.-]+/blob/[0-9a-f]{40}/(?P<path>[^#?]+)")
CALL = re.compile(r"^(?P<name>[A-Za-z_][\w:]*)(?:\(.*\))?$")
logger = logging.getLogger(__name__)


def arg_id(name: str) -> str:
    return f"arg-{name}"


def op_row_id(op: str) -> str:
    return f"op-map-{op}"


def names_in(text: str, names) -> list[str]:
    """The names that occur in text as whole words, in the order they occur."""
    found = []
    for name in names:
        m = re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text)
        if m:
            found.append((m.start(), name))
    return [name for _, name in sorted(found)]


def context_ops(node: nodes.Node, ops: list[str]) -> list[str]:
    """Ops named by the titles of the sections around node, innermost section first."""
    out: list[str] = []
    parent = node.parent
    while parent is not None:
        if isinstance(parent, nodes.section) and parent.children and \
                isinstance(parent[0], nodes.title):
            out += [op for op in names_in(parent[0].astext(), ops) if op not in out]
        parent = parent.parent
    return out


def pick_op(candidates: list[str], context: list[str]) -> str:
    """The op an argument shared by `candidates` (registry order) means in `context`."""
    for op in context:
        if op in candidates:
            return op
    return candidates[0]


# -- C++ entities ---------------------------------------------------------------------------------

class CppIndex:
    """Breathe's C++ objects by every qualified suffix of their names.

    `bare` says where an object may be named without any qualifier: "member" never (a class
    member needs its class), "enumerator" only on the API page of an op of the section
    (`copy_kernel` of a strategy enum, but not a generic `cuda` or `bf16` of the common page),
    "any" on such a page or the common page (namespace-level functions, types, constants)."""

    def __init__(self, objects: list[tuple[str, str, str, str]], common: str = COMMON_PAGE):
        self.common = common
        self.by_key: dict[str, list[tuple[str, str, str, str]]] = {}
        for qual, docname, anchor, bare in objects:
            parts = qual.split("::")
            for i in range(len(parts)):
                key = "::".join(parts[i:])
                scope = bare if i == len(parts) - 1 else "any"
                self.by_key.setdefault(key, []).append((qual, docname, anchor, scope))

    def find(self, name: str, op_pages: list[str]) -> tuple[str, str] | None:
        """(docname, anchor) of the one entity that `name` names, or None. op_pages: the API
        pages of the ops of the enclosing sections, innermost first."""
        found = []
        for qual, docname, anchor, scope in self.by_key.get(name, []):
            if scope == "member" or (scope == "enumerator" and docname not in op_pages) or \
                    (scope == "any" and "::" not in name and
                     docname not in op_pages and docname != self.common):
                continue
            found.append((qual, docname, anchor))
        quals = list(dict.fromkeys(q for q, _, _ in found))
        if not quals:
            return None
        if len(quals) > 1:
            for page in op_pages + [self.common]:
                here = list(dict.fromkeys(q for q, d, _ in found if d == page))
                if len(here) == 1:
                    quals = here
                    break
            else:
                return None
        # Overloads share their name: the first declared one stands for all.
        qual, docname, anchor = next(f for f in found if f[0] == quals[0])
        return docname, anchor


def _strip_templates(name: str) -> str:
    depth, out = 0, []
    for ch in name:
        depth += ch == "<"
        if depth == 0:
            out.append(ch)
        depth -= ch == ">" and depth > 0
    return "".join(out)


def cpp_index(env) -> CppIndex:
    cached = getattr(env, "_pagedkv_cpp_index", None)
    if cached is not None:
        return cached
    objects = []
    root = env.domaindata.get("cpp", {}).get("root_symbol")
    for symbol in (root.get_all_symbols() if root is not None else []):
        decl = symbol.declaration
        if decl is None or decl.objectType in ("functionParam", "templateParam") \
                or not symbol.docname:
            continue
        parent = symbol.parent.declaration if symbol.parent is not None else None
        bare = "any" if parent is None or parent.objectType == "namespace" else \
            "enumerator" if decl.objectType == "enumerator" else "member"
        qual = _strip_templates(str(symbol.get_full_nested_name()))
        objects.append((qual, symbol.docname, decl.get_newest_id(), bare))
    index = CppIndex(objects)
    env._pagedkv_cpp_index = index
    return index


# -- Reading the registry -------------------------------------------------------------------------

def _load_ops(app) -> None:
    path = Path(app.srcdir) / OPS_JSON
    try:
        ops = json.loads(path.read_text(encoding="utf-8"))["ops"]
    except (OSError, ValueError, KeyError) as e:
        raise RuntimeError(f"{path} is missing or unreadable ({e}); build the docs with "
                           "scripts/docs.sh (docs/tools/op_table.py writes it)") from e
    app.env.pagedkv_ops = [op["name"] for op in ops]
    app.env.pagedkv_args = {op["name"]: [a["name"] for a in op.get("arguments", [])]
                            for op in ops}


# -- API pages: source links and argument rows; op map rows (read time) ---------------------------

class api_source(nodes.General, nodes.Element):
    """Placeholder written by {api-source}; moved into the entry above it when read."""


class ApiSource(SphinxDirective):
    required_arguments = 1

    def run(self):
        return [api_source(target=self.arguments[0])]


def _source_link(target: str, language: str) -> nodes.Node | None:
    path, _, line = target.rpartition(":")
    if not path or not line.isdigit():
        return None
    label = SOURCE_LABEL.get(language, SOURCE_LABEL["en"])
    link = source_line("", "", refuri="#", internal=True, classes=["pagedkv-api-source-link"],
                       reftitle=SOURCE_TITLE.get(language, SOURCE_TITLE["en"]),
                       pagedkv_listing=listing_docname(path), pagedkv_line=int(line))
    link += nodes.Text(label)
    return nodes.inline("", "", link, classes=["pagedkv-api-source"])


def _body_rows(table: nodes.table, column: int):
    for tbody in table.findall(nodes.tbody):
        for row in tbody.children:
            cells = [c for c in row.children if isinstance(c, nodes.entry)]
            if len(cells) > column:
                yield row, cells[column].astext().strip()


def _column(table: nodes.table, column: int) -> list[str]:
    return [text for _, text in _body_rows(table, column)]


def _row_ids(table: nodes.table, column: int, make_id) -> None:
    """Give each body row the id make_id(text of its cell `column`)."""
    for row, text in _body_rows(table, column):
        row["ids"].append(make_id(text))


def _doctree_read(app, doctree) -> None:
    env = app.env
    docname = env.docname
    language = app.config.language or "en"
    for marker in list(doctree.findall(api_source)):
        parent, index = marker.parent, marker.parent.index(marker)
        entry = next((n for n in reversed(parent.children[:index])
                      if isinstance(n, addnodes.desc)), None)
        link = _source_link(marker["target"], language)
        if entry is None or link is None:
            logger.warning(f"api-source {marker['target']}: no API entry above it",
                           location=marker)
        else:
            signature = entry.children[0]
            lines = [n for n in signature.children if isinstance(n, addnodes.desc_signature_line)]
            (lines[-1] if lines else signature).append(link)
        marker.parent.remove(marker)
    # The tables are found by what they hold, not by a wrapper: a MyST container around a
    # table keeps its cells out of the translation catalogs.
    for op in env.pagedkv_ops:
        if docname == API_PAGE.format(op=op):
            wanted = env.pagedkv_args.get(op, [])
            table = next((t for t in doctree.findall(nodes.table)
                          if wanted and _column(t, 1) == wanted), None)
            if wanted and table is None:
                logger.warning(f"{docname}: no argument table with the rows {wanted}")
            elif table is not None:
                _row_ids(table, 1, arg_id)
    if docname == OP_MAP:
        table = next((t for t in doctree.findall(nodes.table)
                      if sorted(_column(t, 0)) == sorted(env.pagedkv_ops)), None)
        if table is None:
            logger.warning(f"{docname}: no table whose first column lists the registry's ops")
        else:
            _row_ids(table, 0, op_row_id)


# -- Chapters: code names and back links (write time) ----------------------------------------------

def _skip(literal: nodes.literal) -> bool:
    parent = literal.parent
    while parent is not None:
        if isinstance(parent, (nodes.title, nodes.reference, addnodes.pending_xref,
                               nodes.literal_block, addnodes.desc_signature, nodes.raw,
                               nodes.FixedTextElement, nodes.rubric)):
            return True
        parent = parent.parent
    return False


def _upstream_files(doctree) -> dict[str, str]:
    """{path: URL} of the pinned GitHub file links of a page (without a line anchor)."""
    files: dict[str, str] = {}
    for ref in doctree.findall(nodes.reference):
        m = GITHUB_BLOB.match(ref.get("refuri", ""))
        if m:
            files.setdefault(m["path"], m.group(0))
    return files


def _upstream_names(doctree) -> set[str]:
    """Code names that the page links to the web: upstream functions it cites."""
    return {lit.astext().strip() for ref in doctree.findall(nodes.reference)
            if ref.get("refuri", "").startswith(("http://", "https://"))
            for lit in ref.findall(nodes.literal)}


def resolve_name(text: str, literal, env, docname: str, upstream: dict[str, str],
                 cited: frozenset[str] = frozenset()):
    """What a literal's text names: ("doc", docname, anchor) or ("url", url, "") or None."""
    ops = env.pagedkv_ops
    call = CALL.match(text)
    name = call["name"] if call else text
    if len(name) < MIN_NAME:
        return None
    if name in ops:
        return "doc", API_PAGE.format(op=name), ""
    sharing = [op for op in ops if text in env.pagedkv_args.get(op, [])]
    if sharing:
        op = pick_op(sharing, context_ops(literal, ops))
        return "doc", API_PAGE.format(op=op), arg_id(text)
    if "/" in text:
        listing = listing_docname(text)
        if listing in env.all_docs:
            return "doc", listing, ""
        if text in upstream:
            return "url", upstream[text], ""
        return None
    if call and name not in cited:
        pages = [API_PAGE.format(op=op) for op in context_ops(literal, ops)]
        found = cpp_index(env).find(name, pages)
        if found:
            return "doc", found[0], found[1]
    return None


def _cites_the_web(paragraph: nodes.Element) -> bool:
    return any(r.get("refuri", "").startswith(("http://", "https://"))
               for r in paragraph.findall(nodes.reference))


def _link_code_names(app, doctree, docname: str) -> int:
    env, builder = app.env, app.builder
    upstream = _upstream_files(doctree)
    # Kernels of pagedkv may carry the name of the upstream kernel they reproduce; where the
    # page cites that upstream function (Sources), the bare name is upstream's.
    cited = frozenset(_upstream_names(doctree))
    # A paragraph that links to the web (an upstream file, a paper) names upstream things:
    # its `rms_norm_kernel` is vLLM's, not pagedkv's. Only file paths are linked there.
    citing = {id(p) for p in doctree.findall(nodes.paragraph) if _cites_the_web(p)}
    made = 0
    for literal in list(doctree.findall(nodes.literal)):
        if _skip(literal):
            continue
        text = literal.astext().strip()
        target = resolve_name(text, literal, env, docname, upstream, cited)
        if target is None:
            continue
        kind, where, anchor = target
        paragraph = literal.parent
        while paragraph is not None and not isinstance(paragraph, nodes.paragraph):
            paragraph = paragraph.parent
        if paragraph is not None and id(paragraph) in citing and "/" not in text:
            continue
        if kind == "doc":
            if where == docname or where not in env.all_docs:
                continue
            ref = nodes.reference("", "", internal=True,
                                  refuri=builder.get_relative_uri(docname, where)
                                  + (f"#{anchor}" if anchor else ""))
        else:
            ref = nodes.reference("", "", internal=False, refuri=where)
        ref["classes"].append("pagedkv-code-link")
        literal.replace_self(ref)
        ref += literal
        made += 1
    return made


def _back_links(app, doctree, docname: str) -> None:
    env, builder = app.env, app.builder
    title = env.titles.get(OP_MAP)
    label = title.astext() if title is not None else "Op map"
    for section in doctree.findall(nodes.section):
        ops = [op for op in env.pagedkv_ops if f"op-{op}".lower() in section["names"]]
        if not ops or not section.children or not isinstance(section[0], nodes.title):
            continue
        para = nodes.paragraph(classes=["pagedkv-op-backlink"])
        para += nodes.Text(label + COLON.get(app.config.language or "en", COLON["en"]))
        for i, op in enumerate(ops):
            if i:
                para += nodes.Text(" · ")
            ref = nodes.reference("", "", internal=True,
                                  refuri=builder.get_relative_uri(docname, OP_MAP)
                                  + f"#{op_row_id(op)}")
            ref += nodes.literal(op, op)
            para += ref
        section.insert(1, para)


def _doctree_resolved(app, doctree, docname: str) -> None:
    if app.builder.format != "html" or not docname.startswith(LINKED_PAGES):
        return
    _back_links(app, doctree, docname)
    _link_code_names(app, doctree, docname)


def _env_before_read(app, env, docnames) -> None:
    _load_ops(app)
    env._pagedkv_cpp_index = None


def setup(app):
    app.add_node(api_source)
    app.add_directive("api-source", ApiSource)
    app.connect("env-before-read-docs", _env_before_read)
    app.connect("doctree-read", _doctree_read)
    app.connect("doctree-resolved", _doctree_resolved)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
