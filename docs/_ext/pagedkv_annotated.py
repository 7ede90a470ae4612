"""Short annotated excerpts of a source file: the trick labels of its comments become markers.

    ```{annotated-source} ../kernels/cache_write/reshape_and_cache_flash/optimized.cu
    :start-at: template <typename Activation, KvCacheDtype kKind, int kVec>
    :end-before: /// \\brief The widest vector
    :labels: F1 F2 F3 F4 F5 F6
    :context: 3

    The caption (parsed as MyST, so it reaches the gettext catalogs).
    ```

The path is relative to the page, as for literalinclude; `start-at` / `end-before` cut the
excerpt as in {compare-sources} (both optional). The optimized kernels name their tricks in
comments where they apply them (`// Trick F4: ...`, `// R6`, `(trick L5)`); a line whose `//`
comment names a label of `:labels:` (as a word: F3, not F30) gets that label as a marker in the
margin, and the marker links to the line on the file's listing page
(docs/_generated/sources/<path>.html#L-<n>, docs/_ext/pagedkv_sources.py), resolved per page like
the `source` role. A label of `:labels:` that no comment of the excerpt names is a build error,
so the markers keep matching the chapter's trick list when the code moves.

`:context: N` shows only the lines within N of a marked line; each gap becomes one row that says
how many lines it hides and links to the first of them on the listing page. Without it the whole
excerpt is shown. Long lines wrap inside the excerpt (the line number and markers stay in their
columns); nothing is clipped.

The first marker of each label on a page carries the id `trick-<label>`, and the trick list of
the page links to it: the label that opens a paragraph's bold lead (`**F3. The slot once per
token.**`) or that a section title names (`### Trick S1: ...`), in the English text or its
translation, becomes a link to the marker. The few words the excerpt itself shows (hidden lines, the link to the full listing, the
markers' tooltips) come in English and in zh_CN (TEXT below, chosen by the build's language).
Styles: docs/_static/pagedkv.css.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from pagedkv_compare import _highlight, excerpt
from pagedkv_sources import LANGUAGE_BY_SUFFIX, line_id, listing_docname

logger = logging.getLogger(__name__)

LABEL = re.compile(r"^[A-Z][0-9]{1,2}$")
LISTING = "@@pagedkv-listing@@"  # replaced by the listing page's URI, relative to each page
TEXT = {
    "en": {"hidden": "⋯ {count} lines ({first}–{last})", "hidden1": "⋯ 1 line ({first})",
           "full": "full listing", "marker": "{label}: line {line} in the full listing"},
    "zh_CN": {"hidden": "⋯ 省略 {count} 行（{first}–{last}）", "hidden1": "⋯ 省略 1 行（{first}）",
              "full": "完整源码", "marker": "{label}：完整源码第 {line} 行"},
}


def parse_labels(text: str) -> list[str]:
    """'F1 F2, F3' -> ['F1', 'F2', 'F3']; a capital letter and a number, each once."""
    labels = [t for t in re.split(r"[\s,]+", text.strip()) if t]
    for label in labels:
        if not LABEL.match(label):
            raise ValueError(f"{label!r} is not a trick label (a capital letter and a number)")
    if len(set(labels)) != len(labels):
        raise ValueError(f"a label is named twice: {text!r}")
    return labels


def comment_of(line: str) -> str:
    """The `//` comment of a C++/CUDA line ('' without one)."""
    at = line.find("//")
    return line[at:] if at >= 0 else ""


def find_labels(lines: list[str], labels: list[str]) -> dict[int, list[str]]:
    """{line index (0-based): the labels its comment names, in the order of `labels`}."""
    patterns = {label: re.compile(rf"(?<![\w]){re.escape(label)}(?![\w])") for label in labels}
    found: dict[int, list[str]] = {}
    for i, line in enumerate(lines):
        comment = comment_of(line)
        named = [label for label in labels if patterns[label].search(comment)]
        if named:
            found[i] = named
    return found


def missing_labels(labels: list[str], marks: dict[int, list[str]]) -> list[str]:
    seen = {label for named in marks.values() for label in named}
    return [label for label in labels if label not in seen]


def windows(count: int, marked: list[int], context: int | None) -> list[tuple[int, int]]:
    """The ranges [begin, end) of line indices to show: everything without context, else the
    lines within `context` of a marked line. Ranges that overlap, touch or leave one line
    between them are merged, and a single line before the first or after the last is shown:
    a gap row would take the room of the line it hides."""
    if context is None:
        return [(0, count)] if count else []
    ranges: list[tuple[int, int]] = []
    for i in sorted(marked):
        begin, end = max(0, i - context), min(count, i + context + 1)
        if ranges and begin <= ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], end))
        else:
            ranges.append((begin, end))
    if ranges and ranges[0][0] == 1:
        ranges[0] = (0, ranges[0][1])
    if ranges and ranges[-1][1] == count - 1:
        ranges[-1] = (ranges[-1][0], count)
    return ranges


def render_excerpt(first: int, lines: list[str], marks: dict[int, list[str]],
                   shown: list[tuple[int, int]], language: str, anchors: dict[str, str],
                   text: dict[str, str]) -> str:
    """The excerpt's <pre>. `first` is the file line of lines[0]; `anchors` maps a label to the
    id its first marker gets (labels already anchored earlier on the page are absent). Links to
    the listing start with LISTING."""
    code = _highlight(lines, language)
    anchored: set[str] = set()
    rows: list[str] = []

    def gap(begin: int, end: int) -> None:  # hidden lines [begin, end)
        a, b = first + begin, first + end - 1
        words = (text["hidden1"].format(first=a) if a == b
                 else text["hidden"].format(count=b - a + 1, first=a, last=b))
        rows.append(f'<span class="pagedkv-ann-line pagedkv-ann-gap"><span class="pagedkv-ann-ln">'
                    f'</span><span class="pagedkv-ann-marks"></span><a class="pagedkv-ann-text" '
                    f'href="{LISTING}#{line_id(a)}">{html.escape(words)}</a></span>')

    previous = 0
    for begin, end in shown:
        if begin > previous:
            gap(previous, begin)
        for i in range(begin, end):
            number = first + i
            badges = []
            for label in marks.get(i, []):
                ident = ""
                if label in anchors and label not in anchored:
                    anchored.add(label)
                    ident = f' id="{anchors[label]}"'
                title = html.escape(text["marker"].format(label=label, line=number))
                badges.append(f'<a class="pagedkv-ann-marker"{ident} href="{LISTING}#'
                              f'{line_id(number)}" title="{title}">{label}</a>')
            cls = "pagedkv-ann-line pagedkv-ann-marked" if badges else "pagedkv-ann-line"
            rows.append(f'<span class="{cls}"><span class="pagedkv-ann-ln" data-ln="{number}">'
                        f'</span><span class="pagedkv-ann-marks">{"".join(badges)}</span>'
                        f'<span class="pagedkv-ann-text">{code[i] or " "}</span></span>')
        previous = end
    if previous < len(lines) and shown:
        gap(previous, len(lines))
    return f'<pre class="highlight pagedkv-ann-pre">{"".join(rows)}</pre>'


class AnnotatedSource(SphinxDirective):
    has_content = True
    required_arguments = 1
    option_spec = {
        "start-at": directives.unchanged,
        "end-before": directives.unchanged,
        "labels": directives.unchanged_required,
        "context": directives.nonnegative_int,
        "language": directives.unchanged,
    }

    def run(self) -> list[nodes.Node]:
        path = self.arguments[0]
        rel, absolute = self.env.relfn2path(path, self.env.docname)
        self.env.note_dependency(rel)
        where = f"annotated-source: {path}"
        try:
            labels = parse_labels(self.options.get("labels", ""))
            lines_of_file = Path(absolute).read_text(encoding="utf-8").splitlines()
            first, lines = excerpt(lines_of_file, self.options.get("start-at"),
                                   self.options.get("end-before"))
        except (OSError, ValueError) as e:
            raise self.error(f"{where}: {e}") from e
        if not labels:
            raise self.error(f"{where}: :labels: names no trick label")
        marks = find_labels(lines, labels)
        missing = missing_labels(labels, marks)
        if missing:
            raise self.error(f"{where}: no comment of the excerpt (lines {first}-"
                             f"{first + len(lines) - 1}) names {', '.join(missing)}")

        language = (self.options.get("language")
                    or LANGUAGE_BY_SUFFIX.get(Path(path).suffix, self.config.highlight_language))
        text = TEXT["zh_CN" if (self.config.language or "").startswith("zh") else "en"]
        # The first marker of a label on this page gets the id the trick list links to.
        taken = self.env.current_document.setdefault("pagedkv_trick_anchors", set())
        anchors = {label: f"trick-{label}" for label in labels if label not in taken}
        taken.update(anchors)
        shown = windows(len(lines), sorted(marks), self.options.get("context"))
        pre = render_excerpt(first, lines, marks, shown, language, anchors, text)
        repo_path = Path(rel).as_posix()
        head = (f'<div class="pagedkv-ann-head"><code>{html.escape(repo_path)}</code>'
                f'<a class="pagedkv-ann-full" href="{LISTING}#{line_id(first)}">'
                f'{html.escape(text["full"])}</a></div>')

        container = nodes.container(classes=["pagedkv-annotated"])
        self.set_source_info(container)
        raw = nodes.raw("", head + pre, format="html")
        raw["pagedkv_listing"] = listing_docname(repo_path)
        raw["pagedkv_anchors"] = anchors
        container += raw
        if self.content:
            legend = nodes.container(classes=["pagedkv-ann-legend"])
            self.set_source_info(legend)
            self.state.nested_parse(self.content, self.content_offset, legend)
            container += legend
        return [container]


_TRICK_ENTRY = re.compile(r"^([A-Z][0-9]{1,2})(?=[.:：，,\s])")
_TRICK_IN_TITLE = re.compile(r"(?<![\w])([A-Z][0-9]{1,2})(?![\w])")


def _link(label: str, anchor: str) -> nodes.reference:
    return nodes.reference("", label, refuri=f"#{anchor}", internal=True,
                           classes=["pagedkv-trick-link"])


def link_trick_list(doctree: nodes.Node, anchors: dict[str, str]) -> int:
    """Links the trick list to the markers `anchors[label]`: the label that opens a paragraph's
    leading bold text (`**F3. The slot once per token.**`, a list entry or a run-in heading)
    and the first label of a section title (`### Trick S1: ...`). Returns how many were linked.
    Runs on resolved doctrees: the table of contents was taken from the titles before."""
    linked = 0
    for strong in list(doctree.findall(nodes.strong)):
        parent = strong.parent
        if not isinstance(parent, nodes.paragraph) or not strong.children \
                or not isinstance(strong[0], nodes.Text):
            continue
        before = parent.children[:parent.index(strong)]  # MyST may leave an empty text first
        if any(not isinstance(n, nodes.Text) or n.strip() for n in before):
            continue
        text = str(strong[0])
        match = _TRICK_ENTRY.match(text)
        if not match or match[1] not in anchors:
            continue
        strong.replace(strong[0], nodes.Text(text[len(match[1]):]))
        strong.insert(0, _link(match[1], anchors[match[1]]))
        linked += 1
    for title in list(doctree.findall(nodes.title)):
        for child in list(title.children):
            if not isinstance(child, nodes.Text):
                continue
            text = str(child)
            match = next((m for m in _TRICK_IN_TITLE.finditer(text) if m[1] in anchors), None)
            if match:
                at = title.index(child)
                title.replace(child, nodes.Text(text[:match.start()]))
                title.insert(at + 1, _link(match[1], anchors[match[1]]))
                title.insert(at + 2, nodes.Text(text[match.end():]))
                linked += 1
                break
    return linked


def _resolve(app, doctree, fromdocname) -> None:
    anchors: dict[str, str] = {}
    for raw in list(doctree.findall(nodes.raw)):
        listing = raw.get("pagedkv_listing")
        if not listing:
            continue
        anchors.update(raw.get("pagedkv_anchors", {}))
        if listing not in app.env.all_docs:
            logger.warning(f"annotated-source: no listing page {listing} (is the file "
                           "documented?)", location=raw)
            uri = "#"
        else:
            uri = app.builder.get_relative_uri(fromdocname, listing)
        resolved = nodes.raw("", raw.astext().replace(LISTING, html.escape(uri)), format="html")
        raw.replace_self(resolved)
    if anchors:
        link_trick_list(doctree, anchors)


def setup(app):
    app.add_directive("annotated-source", AnnotatedSource)
    app.connect("doctree-resolved", _resolve)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
