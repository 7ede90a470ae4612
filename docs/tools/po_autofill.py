"""Fill the msgstr of messages that have nothing to translate: copy the msgid.

A message needs no translation when, after removing code spans, math, roles, link targets,
numbers, units of measure written as symbols and punctuation, no letter is left (for example
"`slot_mapping`", "$$ s = b \\cdot B + o $$", "{doc}`naive.cu </docs/...>`", "3.14", "✓",
and the bare LaTeX of a math block without word labels, "s = b \\cdot s_\\text{block} + o").
A formula with a \\text{...} label that holds words ("\\text{ bytes}", "\\text{slot}") is left to
the translator: the zh_CN page shows those labels in Chinese.
Only untranslated entries, and fuzzy ones with nothing to translate, are touched: a human
translation of a sentence is never overwritten.
Babel's automatic `python-format` flag is removed from every entry (Sphinx formats nothing).

  python docs/tools/po_autofill.py docs/locales/zh_CN/LC_MESSAGES
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from babel.messages.pofile import read_po, write_po

_STRIP = [
    re.compile(r"\$\$.*?\$\$", re.S),  # display math
    re.compile(r"\$[^$]*\$"),  # inline math
    re.compile(r"\{[\w:+-]+\}`[^`]*`"),  # roles: {doc}`...`, {cpp:func}`...`
    re.compile(r"``.*?``", re.S),  # code spans (double)
    re.compile(r"`[^`]*`"),  # code spans
    re.compile(r"\]\([^)]*\)"),  # link targets
    re.compile(r"\\begin\{(\w+\*?)\}.*?\\end\{\1\}", re.S),  # amsmath environments
    re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"),  # numbers
]


_CJK_IN_BRACES = re.compile(r"\{[^{}]*[\u3000-\u9fff\uff00-\uffef][^{}]*\}")
_LATEX_GROUP = re.compile(r"\\[A-Za-z]+\*?(\{[^{}]*\})*")


# Words in a formula: \text{...} that is not a subscript. Such a label ("bytes per token",
# "slot", "read back") is read as prose and is translated; names of code (arguments, tensors)
# are written \mathrm{...} and subscripts (s_\text{page}) are symbols, and both stay.
_TEXT_LABEL = re.compile(r"(?<!_)\\(?:text|textrm|textnormal|mbox)\{([^{}]*)\}")


def has_text_label(latex: str) -> bool:
    return any(re.search(r"[A-Za-z]{2,}", label) for label in _TEXT_LABEL.findall(latex))


def is_formula(msgid: str) -> bool:
    """A math block's msgid is bare LaTeX: it has commands and, once they (with their brace
    arguments) are gone, no word of two letters or more is left; and it has no \\text{...}
    label with words in it (those are translated)."""
    if not re.search(r"\\[A-Za-z]+", msgid) or has_text_label(msgid):
        return False
    rest = msgid
    for _ in range(3):  # nested groups: \frac{\text{a}}{b}
        rest = _LATEX_GROUP.sub(" ", rest)
    return re.search(r"[A-Za-z]{2,}", rest) is None


def is_code_token(msgid: str) -> bool:
    """One token with code punctuation: "key.size(1)", "slot_mapping", "pagedkv::cpu"."""
    token = msgid.strip()
    return bool(token) and not re.search(r"\s", token) and (
        re.search(r"[_.()\[\]<>=*]|::", token.rstrip(".:")) is not None)


def needs_translation(msgid: str) -> bool:
    if is_formula(msgid) or is_code_token(msgid):
        return False
    text = msgid
    for pattern in _STRIP:
        text = pattern.sub(" ", text)
    return re.search(r"[^\W\d_]", text) is not None


def autofill(po_path: Path) -> int:
    with po_path.open("rb") as f:
        catalog = read_po(f)
    filled = 0
    changed = False
    for message in catalog:
        # Babel flags every msgid with a "%" as python-format ("% of copy"), and msgfmt
        # --check-format then rejects a translation that moves the "%". Sphinx never formats
        # these strings, so the flag goes.
        if "python-format" in message.flags:
            message.flags.discard("python-format")
            changed = True
        # Babel also flags every msgid with braces ({doc}`...`, \\text{...}) as
        # python-brace-format, and msgfmt then rejects Chinese inside braces ("\\text{字节数}"):
        # the flag goes where the translation has such a group.
        if "python-brace-format" in message.flags and _CJK_IN_BRACES.search(
                message.string if isinstance(message.string, str) else ""):
            message.flags.discard("python-brace-format")
            changed = True
        if not message.id or (message.string and not message.fuzzy):
            continue
        msgid = message.id if isinstance(message.id, str) else message.id[0]
        if not needs_translation(msgid):
            message.string = msgid  # a changed formula or code span: the copy is exact again
            message.flags.discard("fuzzy")
            filled += 1
    # Obsolete entries (#~, messages whose English is gone) are dropped: when such a message
    # comes back, Babel keeps the obsolete twin next to it and msgfmt rejects the duplicate.
    if catalog.obsolete:
        changed = True
    if filled or changed:
        with po_path.open("wb") as f:
            write_po(f, catalog, width=76, ignore_obsolete=True)  # width: what sphinx-intl writes
    return filled


def main(argv: list[str]) -> int:
    folder = Path(argv[1]) if len(argv) > 1 else Path("docs/locales/zh_CN/LC_MESSAGES")
    total = 0
    for po in sorted(folder.rglob("*.po")):
        n = autofill(po)
        if n:
            print(f"autofill: {po}: {n} message(s) copied")
        total += n
    print(f"autofill: {total} message(s) with nothing to translate copied")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
