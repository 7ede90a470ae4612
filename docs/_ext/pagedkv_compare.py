"""Two source excerpts side by side, with the lines that differ marked.

    ```{compare-sources}
    :left: ../kernels/norm/rms_norm/naive.cu
    :left-start-at: template <typename T>
    :left-end-before: }  // namespace pagedkv::kernels::rms_norm_naive
    :left-label: naive.cu
    :right: ../kernels/norm/rms_norm/optimized.cu
    :right-start-at: template <typename T, int kVec, int kVectorsPerThread>
    :right-end-before: /// \\brief The fallback for rows too long for registers
    :right-label: optimized.cu
    :language: cuda

    The caption (and legend), parsed as MyST, so it reaches the gettext catalogs.
    ```

Paths are relative to the page, as for literalinclude. `start-at` / `end-before` are marker
strings: the excerpt starts at the first line containing start-at and ends before the first
later line containing end-before (both optional). Each line carries its line number in the
file; a line is marked (class pagedkv-cmp-diff) when difflib.SequenceMatcher, run over the
two excerpts' lines with leading whitespace ignored, does not find it in an equal block.
The labels name the columns (a file name is shown as code; words go through the translation
catalogs like any paragraph).

Layout (docs/_static/pagedkv.css, docs/_static/pagedkv-compare.js): from 900 px the two columns
stand side by side; long lines wrap inside their column (under the code, not under the line
number), so nothing is clipped. Below 900 px the script puts one tab button per column above
them (role tab, aria-selected; arrow keys, Home and End move between them) and shows one column
at a time; without JavaScript the columns are stacked. The script's own words (the tab list's
accessible name) have a zh_CN form, chosen from the page's lang attribute.
"""

from __future__ import annotations

import difflib
import html
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective


def excerpt(lines: list[str], start_at: str | None = None,
            end_before: str | None = None) -> tuple[int, list[str]]:
    """The excerpt of `lines` (no line ends) between the markers, without trailing blank lines.

    Returns (first line number, 1-based; the excerpt's lines). Raises ValueError when a marker
    is not found."""
    begin = 0
    if start_at:
        for i, line in enumerate(lines):
            if start_at in line:
                begin = i
                break
        else:
            raise ValueError(f"start-at marker {start_at!r} not found")
    end = len(lines)
    if end_before:
        for i in range(begin + (1 if start_at else 0), len(lines)):
            if end_before in lines[i]:
                end = i
                break
        else:
            raise ValueError(f"end-before marker {end_before!r} not found")
    chosen = lines[begin:end]
    while chosen and not chosen[-1].strip():
        chosen.pop()
    return begin + 1, chosen


def diff_marks(left: list[str], right: list[str]) -> tuple[set[int], set[int]]:
    """Indices (0-based) of the lines of each excerpt that differ from the other one.

    Leading whitespace is ignored (re-indented code counts as the same line); so is trailing
    whitespace."""
    a = [line.strip() for line in left]
    b = [line.strip() for line in right]
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    same_left: set[int] = set()
    same_right: set[int] = set()
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            same_left.update(range(i1, i2))
            same_right.update(range(j1, j2))
    return set(range(len(a))) - same_left, set(range(len(b))) - same_right


def _highlight(lines: list[str], language: str) -> list[str]:
    """HTML of each line, highlighted by Pygments (one entry per line; spans closed per line)."""
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import get_lexer_by_name

        lexer = get_lexer_by_name(language, stripnl=False, ensurenl=True)
        out = highlight("\n".join(lines) + "\n", lexer, HtmlFormatter(nowrap=True))
        result = out.split("\n")
        if result and result[-1] == "":
            result.pop()
        if len(result) == len(lines):
            return result
    except Exception:  # unknown language, Pygments trouble: plain text below
        pass
    return [html.escape(line) for line in lines]


def render_lines(first: int, lines: list[str], marked: set[int], language: str) -> str:
    """The <pre> of one column: each line numbered from `first`, the marked ones flagged."""
    rows = []
    for i, code in enumerate(_highlight(lines, language)):
        cls = "pagedkv-cmp-line pagedkv-cmp-diff" if i in marked else "pagedkv-cmp-line"
        rows.append(f'<span class="{cls}"><span class="pagedkv-cmp-ln" '
                    f'data-ln="{first + i}"></span><span class="pagedkv-cmp-text">'
                    f'{code or " "}</span></span>')
    return f'<pre class="highlight pagedkv-cmp-pre">{"".join(rows)}</pre>'


def label_paragraph(label: str, classes: list[str]) -> nodes.paragraph:
    """A label as a translatable paragraph: one token (a file name, a function) as code, words
    as text. Its rawsource is the MyST a translator sees (and a code span needs no translation:
    docs/tools/po_autofill.py copies it)."""
    if label and not any(c.isspace() for c in label):
        return nodes.paragraph(f"`{label}`", "", nodes.literal(label, label), classes=classes)
    return nodes.paragraph(label, label, classes=classes)


class CompareSources(SphinxDirective):
    has_content = True
    required_arguments = 0
    optional_arguments = 0
    option_spec = {
        "left": directives.unchanged_required,
        "right": directives.unchanged_required,
        "left-start-at": directives.unchanged,
        "left-end-before": directives.unchanged,
        "right-start-at": directives.unchanged,
        "right-end-before": directives.unchanged,
        "left-label": directives.unchanged,
        "right-label": directives.unchanged,
        "language": directives.unchanged,
    }

    def _side(self, side: str) -> tuple[str, int, list[str]]:
        path = self.options.get(side)
        if not path:
            raise self.error(f"compare-sources: the :{side}: option is required")
        rel, absolute = self.env.relfn2path(path, self.env.docname)
        self.env.note_dependency(rel)
        try:
            text = Path(absolute).read_text(encoding="utf-8")
        except OSError as e:
            raise self.error(f"compare-sources: cannot read {path}: {e}") from e
        try:
            first, lines = excerpt(text.splitlines(), self.options.get(f"{side}-start-at"),
                                   self.options.get(f"{side}-end-before"))
        except ValueError as e:
            raise self.error(f"compare-sources: {path}: {e}") from e
        if not lines:
            raise self.error(f"compare-sources: {path}: the excerpt is empty")
        return self.options.get(f"{side}-label") or Path(path).name, first, lines

    def _column(self, label: str, first: int, lines: list[str], marked: set[int],
                language: str) -> nodes.container:
        column = nodes.container(classes=["pagedkv-cmp-col"])
        caption = label_paragraph(label, ["pagedkv-cmp-label"])
        self.set_source_info(caption)
        column += caption
        column += nodes.raw("", render_lines(first, lines, marked, language), format="html")
        return column

    def run(self) -> list[nodes.Node]:
        left_label, left_first, left = self._side("left")
        right_label, right_first, right = self._side("right")
        marked_left, marked_right = diff_marks(left, right)
        language = self.options.get("language") or self.config.highlight_language or "text"
        container = nodes.container(classes=["pagedkv-compare"])
        self.set_source_info(container)
        grid = nodes.container(classes=["pagedkv-cmp-grid"])
        grid += self._column(left_label, left_first, left, marked_left, language)
        grid += self._column(right_label, right_first, right, marked_right, language)
        container += grid
        if self.content:
            legend = nodes.container(classes=["pagedkv-cmp-legend"])
            self.set_source_info(legend)
            self.state.nested_parse(self.content, self.content_offset, legend)
            container += legend
        return [container]


def setup(app):
    app.add_directive("compare-sources", CompareSources)
    app.add_js_file("pagedkv-compare.js", loading_method="defer")
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
