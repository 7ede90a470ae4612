"""Tests of docs/_ext/pagedkv_annotated.py: trick labels found in comments, the lines shown, the
markers and their links, and the trick list's links to them."""

import sys
from pathlib import Path

import pytest
from docutils import nodes

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "docs" / "_ext"))

from pagedkv_annotated import (  # noqa: E402
    LISTING, TEXT, comment_of, find_labels, link_trick_list, missing_labels, parse_labels,
    render_excerpt, windows)
from pagedkv_compare import excerpt  # noqa: E402


def test_parse_labels():
    assert parse_labels("F1 F2, F3") == ["F1", "F2", "F3"]
    assert parse_labels(" L8 ") == ["L8"]
    for bad in ("f1", "F", "FX1", "F1 F1", "F100"):
        with pytest.raises(ValueError):
            parse_labels(bad)


def test_labels_are_found_in_comments_only_and_as_words():
    lines = [
        "int F3 = 0;",                                    # code, not a comment
        "  x = y;  // trick F3: once per token",
        "  // R2 + R3: all loads first",
        "  // F30 is another label; F3x is no label",
        "/// \\tparam kVec elements per vector (R1/A1).",
        "  // F1's vectors",
    ]
    found = find_labels(lines, ["F3", "R2", "R3", "A1", "F1"])
    assert found == {1: ["F3"], 2: ["R2", "R3"], 4: ["A1"], 5: ["F1"]}
    assert comment_of("a; // b") == "// b"
    assert comment_of("a;") == ""
    assert missing_labels(["F3", "F4"], found) == ["F4"]


def test_windows():
    assert windows(10, [], None) == [(0, 10)]
    assert windows(10, [0, 9], 1) == [(0, 2), (8, 10)]
    assert windows(10, [3, 5], 1) == [(2, 7)]  # overlapping windows merge
    assert windows(10, [4], 0) == [(4, 5)]
    assert windows(20, [3, 9], 1) == [(2, 5), (8, 11)]  # two hidden lines: a gap row
    assert windows(20, [3, 7], 1) == [(2, 9)]  # one hidden line is shown instead
    assert windows(10, [2, 7], 1) == [(0, 4), (6, 10)]  # so is one line at either end


def test_render_marks_links_ids_and_gaps():
    lines = ["a();", "b();  // trick F1", "c();", "d();", "e();", "f();  // F2, F1 again"]
    marks = find_labels(lines, ["F1", "F2"])
    shown = [(1, 2), (5, 6)]  # what windows() gives for longer gaps
    out = render_excerpt(40, lines, marks, shown, "cpp", {"F1": "trick-F1", "F2": "trick-F2"},
                         TEXT["en"])
    # Markers link to the marked lines of the listing (file lines 41 and 45).
    assert f'href="{LISTING}#L-41" title="F1: line 41 in the full listing">F1</a>' in out
    assert f'href="{LISTING}#L-45"' in out
    assert out.count('id="trick-F1"') == 1  # only the label's first marker carries the id
    assert out.count('class="pagedkv-ann-marker"') == 3  # F1; F2 and F1 on the last line
    assert out.count("pagedkv-ann-marked") == 2
    # Hidden lines: file line 40, lines 42-44; each gap links to its first hidden line.
    assert f'href="{LISTING}#L-40">⋯ 1 line (40)</a>' in out
    assert f'href="{LISTING}#L-42">⋯ 3 lines (42–44)</a>' in out
    zh = render_excerpt(40, lines, marks, shown, "cpp", {}, TEXT["zh_CN"])
    assert "省略 3 行" in zh and 'id="trick-' not in zh


def test_whole_excerpt_without_context_has_no_gaps():
    lines = ["x();  // S1", "y();"]
    marks = find_labels(lines, ["S1"])
    out = render_excerpt(1, lines, marks, windows(2, sorted(marks), None), "cpp", {}, TEXT["en"])
    assert "pagedkv-ann-gap" not in out
    assert out.count('data-ln="') == 2


def test_trick_list_links_to_the_markers():
    doc = nodes.document(None, None)
    items = nodes.bullet_list()
    for text in ("F3. The slot once per token.", "F9. Not in the excerpt.", "Other text."):
        paragraph = nodes.paragraph()
        paragraph += nodes.strong(text, text)
        items += nodes.list_item("", paragraph)
    doc += items
    doc += nodes.paragraph("", "", nodes.Text(""),  # as MyST leaves it before a bold lead
                           nodes.strong("F4. A run-in heading.", "F4. A run-in heading."),
                           nodes.Text(" Text."))
    doc += nodes.paragraph("", "", nodes.Text("Not a lead: "), nodes.strong("F3.", "F3."))
    section = nodes.section()
    section += nodes.title("", "技巧 F4：在途读取")
    doc += section
    anchors = {"F3": "trick-F3", "F4": "trick-F4"}
    assert link_trick_list(doc, anchors) == 3
    links = list(doc.findall(nodes.reference))
    assert [(link["refuri"], link.astext()) for link in links] == [
        ("#trick-F3", "F3"), ("#trick-F4", "F4"), ("#trick-F4", "F4")]
    assert links[0].parent.astext() == "F3. The slot once per token."
    assert section[0].astext() == "技巧 F4：在途读取"


@pytest.mark.parametrize("path, start, end, labels", [
    ("kernels/swap_blocks/optimized.cu", "/// Vectors each thread loads before it stores any",
     "/// What the strategies need to know about one call", "S1 S2 S3 S4"),
    ("kernels/cache_write/reshape_and_cache_flash/optimized.cu",
     "/// \\brief Converts one vector of activations into cache elements",
     "/// \\brief The widest vector (in elements)", "F1 F2 F3 F4 F5 F6 F7 F8"),
    ("kernels/cache_write/reshape_and_cache/optimized.cu",
     "/// CTAs that must fit on one SM (trick L8)", "const std::int64_t num_tiles =",
     "L1 L2 L3 L4 L5 L6 L7 L8"),
    ("kernels/norm/rms_norm/optimized.cu", "using BlockReduce = cub::BlockReduce",
     "/// \\brief The fallback for rows too long for registers", "R1 R2 R3 R5 R6 R7"),
    ("kernels/norm/fused_add_rms_norm/optimized.cu", "using BlockReduce = cub::BlockReduce",
     "/// \\brief The fallback for rows too long for registers", "A1 A2 A3 A5 A6 A7"),
])
def test_the_chapters_excerpts_name_every_label(path, start, end, labels):
    """The excerpts of the chapters: every label has a comment in its excerpt (the build fails
    otherwise; this says which kernel comment went missing)."""
    _, lines = excerpt((REPO / path).read_text(encoding="utf-8").splitlines(), start, end)
    assert missing_labels(parse_labels(labels), find_labels(lines, parse_labels(labels))) == []
