#!/usr/bin/env python3
"""The term check of the Chinese site: one term per concept.

    .venv/bin/python docs/tools/check_terms.py [--locales DIR] [--glossary FILE]

Fails (exit 1) and lists file, line, the start of the msgid and the offending word when any
msgstr of any catalog under docs/locales/zh_CN/LC_MESSAGES says a forbidden variant of a
glossary term (FORBIDDEN below: 复制 where the glossary says 拷贝, 设备内存 where it says 显存,
...). It also checks the glossary itself (docs/glossary.md): its English column has no CJK
character, every replacement that FORBIDDEN names is one of its Chinese terms, and no forbidden
variant appears in its Chinese column. scripts/docs.sh runs it right after the translation
gate.

The table is small and explicit on purpose: a word is added when a translation used two words
for one concept. To change a term, change docs/glossary.md, this table and the catalogs together.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_LOCALES = REPO / "docs" / "locales" / "zh_CN" / "LC_MESSAGES"
DEFAULT_GLOSSARY = REPO / "docs" / "glossary.md"

# Forbidden variant -> (the glossary's term to use instead, the English concept).
FORBIDDEN = {
    "复制": ("拷贝", "copy"),
    "设备内存": ("显存", "device memory"),
    "GPU 内存": ("显存", "GPU memory"),
    "GPU内存": ("显存", "GPU memory"),
    "摘要": ("小结", "Summary (a chapter's last section)"),
    "合约": ("契约", "contract"),
    "合同": ("契约", "contract"),
    "接口约定": ("契约", "contract"),
    "记录的": ("存档的", "recorded (results, run): 存档的测量结果"),
    "块内槽位": ("块内偏移", "offset (a position inside a block is an offset, never a slot)"),
}

CJK = re.compile(r"[\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff"
                 r"\uf900-\ufaff\uff00-\uffef]")


def _unquote(text):
    """The value of one quoted PO string line ("..." with C escapes)."""
    body = text.strip()[1:-1]
    return re.sub(r'\\(.)', lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def read_messages(po_path):
    """(line of the msgid, msgid, msgstr) of every message of a catalog; the header entry and
    obsolete (#~) entries are left out; plural forms are joined."""
    messages = []
    field, start, parts = None, 0, {}

    def flush():
        if "msgid" in parts and parts["msgid"]:
            messages.append((start, parts["msgid"], parts.get("msgstr", "")))

    for number, line in enumerate(po_path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:  # comments, flags, obsolete (#~) entries
            continue
        keyword = re.match(r'(msgctxt|msgid_plural|msgid|msgstr(?:\[\d+\])?)\s+(".*")$', stripped)
        if keyword:
            name = keyword.group(1)
            if name in ("msgid", "msgctxt") and field is not None and field.startswith("msgstr"):
                flush()
                parts = {}
            if name == "msgid":
                start = number
            # msgid_plural joins msgid, msgstr[n] join msgstr (one line break between forms)
            field = "msgstr" if name.startswith("msgstr") else \
                ("msgid" if name.startswith("msgid") else name)
            separator = "\n" if field in parts and name not in ("msgid", "msgstr") else ""
            parts[field] = parts.get(field, "") + separator + _unquote(keyword.group(2))
        elif stripped.startswith('"') and field is not None:
            parts[field] = parts.get(field, "") + _unquote(stripped)
    if field is not None:
        flush()
    return messages


def glossary_rows(glossary):
    """(English, 中文) of every row of the glossary's table."""
    rows = []
    for line in glossary.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and len(cells) >= 2 and cells[0] != "English" \
                and not set(cells[0]) <= set("-: "):
            rows.append((cells[0], cells[1]))
    return rows


def _shown(path):
    try:
        return Path(path).resolve().relative_to(REPO)
    except ValueError:
        return path


def check_glossary(glossary, forbidden=FORBIDDEN):
    """Problems of the glossary: CJK in the English column, a replacement that is no glossary
    term, a forbidden variant in the Chinese column."""
    problems = []
    glossary = _shown(glossary)
    rows = glossary_rows(glossary)
    if not rows:
        return [f"{glossary}: no glossary table found"]
    chinese = " | ".join(zh for _, zh in rows)
    for english, zh in rows:
        if CJK.search(english):
            problems.append(f"{glossary}: the English column has CJK characters: {english!r}")
        for variant, (use, _) in forbidden.items():
            if variant in zh:
                problems.append(f"{glossary}: the Chinese term {zh!r} ({english}) contains the "
                                f"forbidden variant {variant!r} (use {use!r})")
    for variant, (use, concept) in forbidden.items():
        if use not in chinese:
            problems.append(f"{glossary}: no Chinese term contains {use!r}, the replacement of "
                            f"{variant!r} ({concept}); add the row")
    return problems


def check_catalogs(locales, forbidden=FORBIDDEN):
    """One line per forbidden variant found in a msgstr: file:line, msgid start, variant."""
    problems = []
    for po in sorted(Path(locales).rglob("*.po")):
        shown = _shown(po)
        for line, msgid, msgstr in read_messages(po):
            for variant, (use, concept) in forbidden.items():
                if variant in msgstr:
                    start = " ".join(msgid.split())[:60]
                    problems.append(f"{shown}:{line}: msgid \"{start}…\": forbidden "
                                    f"{variant!r} ({concept}): use {use!r}")
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locales", type=Path, default=DEFAULT_LOCALES)
    parser.add_argument("--glossary", type=Path, default=DEFAULT_GLOSSARY)
    args = parser.parse_args(argv)
    if not args.locales.is_dir():
        print(f"check_terms: {args.locales} is not a folder", file=sys.stderr)
        return 1
    problems = check_glossary(args.glossary) + check_catalogs(args.locales)
    for problem in problems:
        print(problem)
    catalogs = len(list(args.locales.rglob("*.po")))
    if problems:
        print(f"term check: FAILED: {len(problems)} problem(s) in {catalogs} catalogs and "
              f"{args.glossary.name}. Use the glossary's term (docs/glossary.md; the forbidden "
              "variants are in docs/tools/check_terms.py), then run scripts/docs.sh again.")
        return 1
    print(f"term check: ok ({catalogs} catalogs, {len(FORBIDDEN)} forbidden variants, "
          f"glossary English column free of CJK)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
