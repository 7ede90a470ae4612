"""Source listings whose lines can be linked to, and a role that links to a line.

A listing page (docs/_generated/sources/<path>.md, written by docs/tools/api_pages.py) holds

    ```{source-listing} kernels/swap_blocks/optimized.cu
    ```

which shows the whole file, highlighted, each line numbered and carrying the id `L-<n>` (the
number is a link to its own line, so a reader can copy it; CSS tints the line a link points to).

Anywhere in the site a line is linked with the `source` role; the target is a repository path
and either a line number or a piece of text whose first occurrence names the line:

    {source}`kernels/swap_blocks/optimized.cu:42`
    {source}`the copy loop <kernels/swap_blocks/optimized.cu#S2: 16-byte vectors>`

Text is safer than a number in prose: it survives edits above the line. A missing file, a line
past the end or text that is not in the file is a build error (the docs build runs with -W).
"""

from __future__ import annotations

import re
from pathlib import Path

from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from pagedkv_compare import _highlight

LISTINGS = "docs/_generated/sources"
LANGUAGE_BY_SUFFIX = {".h": "cpp", ".hpp": "cpp", ".cpp": "cpp", ".cu": "cuda", ".cuh": "cuda",
                      ".py": "python"}
_TITLED = re.compile(r"^(?P<title>.*?)\s*<(?P<target>[^<>]+)>$", re.S)
logger = logging.getLogger(__name__)


def line_id(line: int) -> str:
    """The HTML id of a line on a listing page."""
    return f"L-{line}"


def listing_docname(path: str) -> str:
    return f"{LISTINGS}/{path}"


def find_line(lines: list[str], where: str) -> int:
    """The 1-based line that `where` names: a number, or text whose first occurrence it is."""
    if where.isdigit():
        line = int(where)
        if not 1 <= line <= len(lines):
            raise ValueError(f"line {line} is outside the file (1..{len(lines)})")
        return line
    for i, text in enumerate(lines, start=1):
        if where in text:
            return i
    raise ValueError(f"no line contains {where!r}")


def parse_target(target: str) -> tuple[str, str]:
    """'path:42' or 'path#text' -> (path, '42' or 'text')."""
    if "#" in target:
        path, where = target.split("#", 1)
    else:
        path, _, where = target.rpartition(":")
        if not where.isdigit():
            raise ValueError(f"{target!r}: expected path:LINE or path#TEXT")
    if not path or not where:
        raise ValueError(f"{target!r}: expected path:LINE or path#TEXT")
    return path.strip(), where


def render_listing(path: str, lines: list[str]) -> str:
    language = LANGUAGE_BY_SUFFIX.get(Path(path).suffix, "text")
    rows = []
    for n, code in enumerate(_highlight(lines, language), start=1):
        rows.append(f'<span class="pagedkv-src-line" id="{line_id(n)}">'
                    f'<a class="pagedkv-src-ln" href="#{line_id(n)}" aria-label="line {n}">{n}</a>'
                    f'<span class="pagedkv-src-text">{code or " "}</span></span>')
    return (f'<div class="highlight-{language} notranslate pagedkv-src">'
            f'<div class="highlight"><pre>{"".join(rows)}</pre></div></div>')


class SourceListing(SphinxDirective):
    """The whole file named by the argument (a repository path), with linkable lines."""
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        path = self.arguments[0]
        absolute = Path(self.env.srcdir) / path
        self.env.note_dependency(str(absolute))
        try:
            lines = absolute.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise self.error(f"source-listing: cannot read {path}: {e}") from e
        return [nodes.raw("", render_listing(path, lines), format="html")]


class source_line(nodes.reference):
    """A link to a line of a listing page; its URI is made when the page is written."""


def source_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    env = inliner.document.settings.env
    match = _TITLED.match(text)
    title, target = (match["title"], match["target"]) if match else (None, text)
    try:
        path, where = parse_target(target)
        absolute = Path(env.srcdir) / path
        lines = absolute.read_text(encoding="utf-8").splitlines()
        line = find_line(lines, where)
    except (OSError, ValueError) as e:
        message = inliner.reporter.error(f"source role: {e}", line=lineno)
        problem = inliner.problematic(rawtext, rawtext, message)
        return [problem], [message]
    env.note_dependency(str(absolute))
    label = title or f"{Path(path).name}:{line}"
    node = source_line(rawtext, "", refuri="#", classes=["pagedkv-source-link"],
                       pagedkv_listing=listing_docname(path), pagedkv_line=line)
    node += nodes.literal(label, label)
    return [node], []


def _resolve(app, doctree, fromdocname) -> None:
    builder = app.builder
    for node in doctree.findall(source_line):
        target = node["pagedkv_listing"]
        if target not in app.env.all_docs:
            logger.warning(f"source role: no listing page {target} (is the file documented?)",
                           location=node)
            continue
        node["refuri"] = (builder.get_relative_uri(fromdocname, target)
                          + "#" + line_id(node["pagedkv_line"]))


def setup(app):
    app.add_directive("source-listing", SourceListing)
    app.add_role("source", source_role)
    app.add_node(source_line, html=(lambda self, node: self.visit_reference(node),
                                    lambda self, node: self.depart_reference(node)))
    app.connect("doctree-resolved", _resolve)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
