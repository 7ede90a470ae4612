"""Tests of docs/_ext/pagedkv_compare.py: excerpts by marker and the marking of differing lines."""

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "docs" / "_ext" / "pagedkv_compare.py"


@pytest.fixture(scope="module")
def cmp():
    spec = importlib.util.spec_from_file_location("pagedkv_compare", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_identical_excerpts_mark_nothing(cmp):
    lines = ["int f() {", "  return 1;", "}"]
    assert cmp.diff_marks(lines, list(lines)) == (set(), set())


def test_leading_whitespace_is_ignored(cmp):
    left = ["for (;;) {", "  x += 1;", "}"]
    right = ["for (;;) {", "        x += 1;", "}"]
    assert cmp.diff_marks(left, right) == (set(), set())


def test_changed_line_is_marked_on_both_sides(cmp):
    left = ["a();", "b();", "c();"]
    right = ["a();", "B();", "c();"]
    assert cmp.diff_marks(left, right) == ({1}, {1})


def test_inserted_and_deleted_lines_are_marked_on_their_side_only(cmp):
    left = ["a();", "old();", "c();"]
    right = ["a();", "c();", "new1();", "new2();"]
    assert cmp.diff_marks(left, right) == ({1}, {2, 3})


def test_excerpt_markers(cmp):
    lines = ["// head", "template <typename T>", "void k() {", "}", "", "// tail", "x"]
    first, chosen = cmp.excerpt(lines, "template <typename T>", "// tail")
    assert first == 2
    assert chosen == ["template <typename T>", "void k() {", "}"]  # trailing blank line dropped
    assert cmp.excerpt(lines) == (1, lines)
    with pytest.raises(ValueError):
        cmp.excerpt(lines, "no such marker")
    with pytest.raises(ValueError):
        cmp.excerpt(lines, "void k", "// head")  # end-before is looked for after start-at


def test_rms_norm_kernels_differ_somewhere(cmp):
    naive = (REPO / "kernels/norm/rms_norm/naive.cu").read_text().splitlines()
    optimized = (REPO / "kernels/norm/rms_norm/optimized.cu").read_text().splitlines()
    _, left = cmp.excerpt(naive, "template <typename T>",
                          "}  // namespace pagedkv::kernels::rms_norm_naive")
    _, right = cmp.excerpt(optimized, "template <typename T, int kVec, int kVectorsPerThread>",
                           "/// \\brief The fallback for rows too long for registers")
    marked_left, marked_right = cmp.diff_marks(left, right)
    assert marked_left and marked_right
    assert len(marked_left) < len(left)  # some lines (the row loop, the barrier) are shared
    html = cmp.render_lines(30, left, marked_left, "cuda")
    assert html.count('class="pagedkv-cmp-line') == len(left)
    assert html.count("pagedkv-cmp-diff") == len(marked_left)
    assert 'data-ln="30"' in html


def test_labels_are_code_or_words(cmp):
    code = cmp.label_paragraph("naive.cu", ["x"])
    assert code.rawsource == "`naive.cu`"  # what the catalogs get: a code span, copied as is
    assert code.astext() == "naive.cu" and code.children[0].tagname == "literal"
    words = cmp.label_paragraph("CPU reference", ["x"])
    assert words.rawsource == "CPU reference" and words.children[0].tagname == "#text"
