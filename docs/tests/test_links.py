"""Tests of the links between chapters, API reference, op map and upstream sources
(docs/_ext/pagedkv_links.py, docs/tools/op_table.py) and of the chapters' citations."""

import re
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1]
REPO = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS / "tools"))

import api_pages  # noqa: E402
import op_table  # noqa: E402
from pagedkv_links import CppIndex, _strip_templates, names_in, pick_op  # noqa: E402

CHAPTERS = sorted((REPO / "chapters").glob("*.md"))
PAGES = CHAPTERS + sorted((REPO / "notebooks").glob("*.md"))
GITHUB = re.compile(r"https://github\.com/[^\s)>\]]+")
PINNED = re.compile(r"^https://github\.com/[\w.-]+/[\w.-]+/(blob|tree|commit)/[0-9a-f]{40}(/|$|#)")
MARKDOWN_LINK = re.compile(r"\]\((https?://[^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_github_links_name_a_commit(page):
    """A link to GitHub names the commit it was read at (40 hex digits), never a branch."""
    for url in GITHUB.findall(page.read_text(encoding="utf-8")):
        assert PINNED.match(url), f"{page.name}: {url} is not pinned to a commit"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_every_chapter_ends_with_its_sources(chapter):
    """The last section of a chapter is "Sources": a list whose every entry is a web link."""
    text = chapter.read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings and headings[-1] == "Sources", f"{chapter.name}: last section {headings[-1:]}"
    body = text.split("\n## Sources\n", 1)[1]
    entries = [line for line in body.splitlines() if line.startswith("- ")]
    assert entries, f"{chapter.name}: no entries under Sources"
    for entry in entries:
        assert MARKDOWN_LINK.search(entry), f"{chapter.name}: entry without a link: {entry[:80]}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_chapters_that_name_ops_in_their_title_label_the_ops_sections(chapter):
    ops = [{"name": p.stem} for p in (REPO / "include" / "pagedkv" / "ops").glob("*.h")]
    sections = op_table.chapter_sections(ops, REPO)  # raises SystemExit on a missing label
    title = next(l for l in chapter.read_text(encoding="utf-8").splitlines() if l.startswith("# "))
    pages = {f"chapters/{chapter.name}"} | op_table._toctree_pages(
        chapter.read_text(encoding="utf-8"), chapter, REPO)
    for op in names_in(title, [o["name"] for o in ops]):
        assert sections[op] in pages


def _chapter(root: Path, name: str, text: str) -> None:
    (root / "chapters").mkdir(exist_ok=True)
    (root / "chapters" / name).write_text(text)


def test_op_table_links_each_op_to_its_labelled_section(tmp_path):
    ops = [{"name": "toy_op", "family": "f", "role": "r", "upstream": "u"},
           {"name": "other_op", "family": "f", "role": "r", "upstream": "u"}]
    _chapter(tmp_path, "toys.md", "# Toys: toy_op\n\n(op-toy_op)=\n## toy_op\n\ntext\n")
    table = op_table.render(ops, tmp_path, tmp_path / "api")
    assert "| Chapter |" in table
    row = next(l for l in table.splitlines() if l.startswith("| `toy_op`"))
    assert "{ref}`op-toy_op`" in row
    other = next(l for l in table.splitlines() if l.startswith("| `other_op`"))
    assert "{ref}" not in other and "| — |" in other


@pytest.mark.parametrize("text, message", [
    ("# Toys: toy_op\n\n## toy_op\n", "no section carries the label (op-toy_op)="),
    ("# Toys\n\n(op-gone_op)=\n## gone\n", "names no op of the registry"),
])
def test_op_table_stops_on_a_missing_or_stale_label(tmp_path, text, message):
    _chapter(tmp_path, "toys.md", text)
    with pytest.raises(SystemExit, match=re.escape(message)):
        op_table.render([{"name": "toy_op", "family": "f", "role": "r", "upstream": "u"}],
                        tmp_path, tmp_path / "api")


def test_api_entries_get_a_source_link():
    entity = api_pages.Entity("doxygenfunction", "ns::f", "include/f.h", 3,
                              source=("kernels/f.cu", 40))
    assert "```{api-source} kernels/f.cu:40\n```" in api_pages._directive(entity)
    assert "api-source" not in api_pages._directive(
        api_pages.Entity("doxygenfunction", "ns::f", "include/f.h", 3))


def test_names_in_finds_whole_names_in_their_order():
    ops = ["toy", "big_toy", "toy_b"]
    assert names_in("Writing: big_toy and toy", ops) == ["big_toy", "toy"]
    assert names_in("nothing here: toys", ops) == []


def test_a_shared_argument_goes_to_the_op_of_its_section():
    assert pick_op(["a_op", "b_op"], ["b_op"]) == "b_op"
    assert pick_op(["a_op", "b_op"], ["c_op", "a_op"]) == "a_op"
    assert pick_op(["a_op", "b_op"], []) == "a_op"  # no section names one: registry order


def test_cpp_names_resolve_by_qualified_suffix_and_context():
    index = CppIndex([
        ("pk::choose", "docs/api/a", "id-choose", "any"),
        ("pk::Row", "docs/api/common", "id-row", "any"),
        ("pk::Row::start", "docs/api/common", "id-start", "member"),
        ("pk::a_impl::kMax", "docs/api/a", "id-kmax-a", "any"),
        ("pk::b_impl::kMax", "docs/api/b", "id-kmax-b", "any"),
        ("pk::common_kMax", "docs/api/common", "id-kmax-c", "any"),
        ("pk::fill", "docs/api/common", "id-fill-1", "any"),
        ("pk::fill", "docs/api/common", "id-fill-2", "any"),
        ("pk::Strategy::fast", "docs/api/a", "id-fast", "enumerator"),
        ("pk::Device::gpu", "docs/api/common", "id-gpu", "enumerator"),
    ], common="docs/api/common")
    a, b = ["docs/api/a"], ["docs/api/b"]
    assert index.find("choose", a) == ("docs/api/a", "id-choose")
    assert index.find("choose", b) is None  # bare: only on a page of the section's ops
    assert index.find("pk::choose", b) == ("docs/api/a", "id-choose")  # qualified: anywhere
    assert index.find("Row", []) == ("docs/api/common", "id-row")
    assert index.find("start", []) is None  # a member needs its class
    assert index.find("Row::start", []) == ("docs/api/common", "id-start")
    assert index.find("kMax", b) == ("docs/api/b", "id-kmax-b")
    assert index.find("kMax", ["docs/api/a", "docs/api/b"]) == ("docs/api/a", "id-kmax-a")
    assert index.find("b_impl::kMax", a) == ("docs/api/b", "id-kmax-b")
    assert index.find("fill", []) == ("docs/api/common", "id-fill-1")  # overloads: the first
    assert index.find("fast", a) == ("docs/api/a", "id-fast")
    assert index.find("fast", b) is None
    assert index.find("gpu", a) is None  # a common enumerator is a generic word
    assert index.find("Device::gpu", a) == ("docs/api/common", "id-gpu")
    assert index.find("cudaMemcpyAsync", a) is None


def test_template_arguments_are_dropped_from_names():
    assert _strip_templates("pk::copy<Vec, kMax>::run") == "pk::copy::run"
    assert _strip_templates("pk::a<b<c>>") == "pk::a"
