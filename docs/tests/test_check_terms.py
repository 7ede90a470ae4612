"""Tests of docs/tools/check_terms.py: one Chinese term per concept in the zh_CN catalogs."""

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "docs" / "tools" / "check_terms.py"


@pytest.fixture(scope="module")
def ct():
    spec = importlib.util.spec_from_file_location("check_terms", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GLOSSARY = """# Glossary

| English | 中文 | Note |
|---|---|---|
| copy | 拷贝 | Moving bytes. |
| device memory, GPU memory | 显存 | On the GPU. |
| summary | 小结 | Last section. |
| contract | 契约 | The header of an op. |
| recorded results | 存档的测量结果 | Under results/. |
| offset | 块内偏移 | Inside a block. |
"""

PO = '''# header
msgid ""
msgstr ""
"Content-Type: text/plain; charset=utf-8\\n"

#: a.md:1
msgid "The kernel copies a block."
msgstr "内核拷贝一个块。"

#: a.md:2
msgid ""
"The naive version copies every "
"element."
msgstr ""
"朴素版本逐个元素复"
"制。"

#: a.md:3
msgid "device memory"
msgstr "设备内存"

#~ msgid "Summary"
#~ msgstr "摘要"
'''


def _setup(tmp_path, po_text=PO, glossary_text=GLOSSARY):
    locales = tmp_path / "LC_MESSAGES"
    (locales / "chapters").mkdir(parents=True)
    (locales / "chapters" / "a.po").write_text(po_text, encoding="utf-8")
    glossary = tmp_path / "glossary.md"
    glossary.write_text(glossary_text, encoding="utf-8")
    return ["--locales", str(locales), "--glossary", str(glossary)]


def test_read_messages_joins_continuation_lines_and_skips_header_and_obsolete(ct, tmp_path):
    _setup(tmp_path)
    messages = ct.read_messages(tmp_path / "LC_MESSAGES" / "chapters" / "a.po")
    assert [(line, msgid) for line, msgid, _ in messages] == [
        (7, "The kernel copies a block."),
        (11, "The naive version copies every element."),
        (19, "device memory")]
    assert messages[1][2] == "朴素版本逐个元素复制。"  # a word split over two lines is found


def test_forbidden_variants_fail_with_file_msgid_and_variant(ct, tmp_path, capsys):
    assert ct.main(_setup(tmp_path)) == 1
    out = capsys.readouterr().out
    problems = [line for line in out.splitlines() if ": forbidden " in line]
    assert len(problems) == 2, out  # 复制 and 设备内存; the obsolete 摘要 is not checked
    assert "a.po:11" in problems[0] and "The naive version copies" in problems[0]
    assert "'复制'" in problems[0] and "'拷贝'" in problems[0]
    assert "a.po:19" in problems[1] and "'设备内存'" in problems[1] and "'显存'" in problems[1]
    assert "term check: FAILED" in out


def test_clean_catalogs_pass(ct, tmp_path, capsys):
    clean = PO.replace('"朴素版本逐个元素复"\n"制。"', '"朴素版本逐个元素拷贝。"').replace(
        "设备内存", "显存")
    assert ct.main(_setup(tmp_path, clean)) == 0
    assert "term check: ok" in capsys.readouterr().out


def test_glossary_english_column_has_no_cjk(ct, tmp_path, capsys):
    clean = PO.replace('"朴素版本逐个元素复"\n"制。"', '"拷贝。"').replace("设备内存", "显存")
    bad = GLOSSARY.replace("| summary |", "| summary 小结 |")
    assert ct.main(_setup(tmp_path, clean, bad)) == 1
    assert "English column has CJK" in capsys.readouterr().out


def test_every_replacement_is_a_glossary_term(ct, tmp_path):
    glossary = tmp_path / "glossary.md"
    glossary.write_text(GLOSSARY.replace("| summary | 小结 | Last section. |\n", ""),
                        encoding="utf-8")
    problems = ct.check_glossary(glossary)
    assert any("'小结'" in p and "'摘要'" in p for p in problems), problems


def test_the_repository_passes(ct):
    """The committed catalogs and docs/glossary.md follow the table."""
    assert ct.check_glossary(ct.DEFAULT_GLOSSARY) == []
    assert ct.check_catalogs(ct.DEFAULT_LOCALES) == []
