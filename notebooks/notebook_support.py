"""What the notebooks share with the tools around them: their printed words in the reader's
language, the plot fonts, and the cell reader that the GPU recorder and the docs both use.

Standard library only (matplotlib when present), so that it also runs on the GPU machine.

Language: ``PAGEDKV_NB_LANGUAGE`` (``en`` or ``zh_CN``; the docs build sets it per language).
English is the single source: every string a notebook prints or draws is written in English
inside ``_()``; docs/tools/notebook_messages.py extracts them into the catalog
docs/locales/<language>/LC_MESSAGES/notebooks/output.po (the docs build does, and its
translation gate then requires every message translated), and ``_()`` reads that .po directly:
no compiled .mo is needed, here or on the GPU machine.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCALES = ROOT / "docs" / "locales"
CATALOG = "notebooks/output.po"  # under <LOCALES>/<language>/LC_MESSAGES/
LANGUAGE_VARIABLE = "PAGEDKV_NB_LANGUAGE"
# Noto Sans CJK SC (Debian: fonts-noto-cjk) draws Latin letters too, so one font draws a whole
# Chinese label, code names included.
CJK_FONT = "Noto Sans CJK SC"


# -- Messages ---------------------------------------------------------------------------------

def _unquote(text: str) -> str:
    """One quoted PO string ("...") without its quotes and with its escapes resolved."""
    body = text.strip()[1:-1]
    escapes = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(1)), body)


def read_po(path: Path) -> dict[str, str]:
    """The translated, non-fuzzy messages of a .po file: {msgid: msgstr}."""
    entries: list[dict] = []
    fuzzy = False  # a "#, fuzzy" flag line belongs to the entry whose msgid follows it
    key = None
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("#"):  # comments, flags, obsolete (#~) entries
            fuzzy = fuzzy or (line.startswith("#,") and "fuzzy" in line)
        elif line.startswith("msgid "):
            entries.append({"fuzzy": fuzzy, "msgid": _unquote(line[6:]), "msgstr": ""})
            fuzzy, key = False, "msgid"
        elif line.startswith("msgstr ") and entries:
            key = "msgstr"
            entries[-1][key] = _unquote(line[7:])
        elif line.startswith('"') and entries and key:
            entries[-1][key] += _unquote(line)
    return {e["msgid"]: e["msgstr"] for e in entries
            if e["msgid"] and e["msgstr"] and not e["fuzzy"]}


class Translation:
    """The messages of one language; English (or a missing catalog) gives the English back."""

    def __init__(self, language: str = "en", locales: Path = LOCALES) -> None:
        self.language = language or "en"
        path = locales / self.language / "LC_MESSAGES" / CATALOG
        self.messages = read_po(path) if self.language != "en" and path.is_file() else {}

    def gettext(self, message: str) -> str:
        return self.messages.get(message, message)

    @property
    def chinese(self) -> bool:
        return self.language.startswith("zh")


def current_language() -> str:
    return os.environ.get(LANGUAGE_VARIABLE, "en") or "en"


translation = Translation(current_language())


def _(message: str) -> str:
    """The message in the notebook's language (PAGEDKV_NB_LANGUAGE)."""
    return translation.gettext(message)


# -- Plots -------------------------------------------------------------------------------------

def cjk_font_available() -> bool:
    try:
        from matplotlib import font_manager
    except ImportError:
        return False
    try:
        font_manager.findfont(font_manager.FontProperties(family=CJK_FONT),
                              fallback_to_default=False)
    except ValueError:
        return False
    return True


def setup_plots() -> None:
    """Matplotlib settings of the notebooks; in Chinese, a font that has the glyphs.

    A Chinese run without the font fails here, with the package to install, rather than drawing
    empty boxes (tofu) for every character."""
    import matplotlib.pyplot as plt

    if translation.chinese:
        if not cjk_font_available():
            raise RuntimeError(
                f"the Chinese plots need the font {CJK_FONT!r}, which matplotlib does not find: "
                "apt-get install fonts-noto-cjk (scripts/setup.sh does), then delete matplotlib's "
                "font cache (fontlist-*.json in matplotlib.get_cachedir())")
        plt.rcParams["font.family"] = [CJK_FONT, "DejaVu Sans"]
        plt.rcParams["axes.unicode_minus"] = False  # the CJK font has no U+2212 minus sign


# -- Cells of a MyST-NB text notebook -----------------------------------------------------------

CODE_CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
OPTION = re.compile(r"^:([\w-]+):\s*(.*)$")


def _option_value(text: str):
    """The value of a `:key: value` option line: a `[a, b]` list or a plain string."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        return [item.strip().strip("'\"") for item in text[1:-1].split(",") if item.strip()]
    return text.strip("'\"")


def read_cells(path: Path) -> list[dict]:
    """The code cells of a MyST-NB text notebook, in order: {"index" (0-based, among code cells),
    "line" (1-based line of the fence), "options" (the `:key: value` lines; tags as a list),
    "tags", "source" (the code without the option lines), "sha256" (of the source)}.

    Only the `:key: value` option form is read (no YAML block), so no YAML parser is needed."""
    text = Path(path).read_text(encoding="utf-8")
    cells = []
    for match in CODE_CELL.finditer(text):
        lines = match.group(1).splitlines()
        options = {}
        while lines and OPTION.match(lines[0]):
            key, value = OPTION.match(lines.pop(0)).groups()
            options[key] = _option_value(value)
        if lines and lines[0].strip() == "---":
            raise ValueError(f"{path}:{text.count(chr(10), 0, match.start()) + 1}: write cell "
                             "options as ':key: value' lines, not as a YAML block")
        source = "\n".join(lines).strip("\n")
        tags = options.get("tags", [])
        cells.append({"index": len(cells), "line": text.count("\n", 0, match.start()) + 1,
                      "options": options, "tags": tags if isinstance(tags, list) else [tags],
                      "source": source, "sha256": source_hash(source)})
    return cells


def source_hash(source: str) -> str:
    return hashlib.sha256(source.strip().encode("utf-8")).hexdigest()


def messages_in_code(code: str, filename: str = "<code>") -> list[tuple[str, int]]:
    """The `_("...")` messages of Python code (IPython magics dropped), with their line numbers.
    A message must be one string literal: `_(f"...")` or `_(name)` is an error."""
    code = "\n".join("" if line.lstrip().startswith("%") else line for line in code.splitlines())
    found = []
    for node in ast.walk(ast.parse(code, filename)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_":
            arg = node.args[0] if len(node.args) == 1 and not node.keywords else None
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                raise ValueError(f"{filename}:{node.lineno}: _() takes one string literal "
                                 "(put the values in with .format() after it)")
            found.append((arg.value, node.lineno))
    return sorted(found, key=lambda item: item[1])
