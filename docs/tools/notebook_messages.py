"""The notebooks' printed and drawn words as a gettext template, for the translation catalogs.

    python docs/tools/notebook_messages.py build/docs/gettext/notebooks/output.pot

Collects every `_("...")` of the notebooks' code cells (notebooks/*.md), of
notebooks/notebook_support.py and of docs/_ext/pagedkv_notebooks.py (the labels of recorded GPU
output and the download links) into one template. scripts/docs.sh writes it next to the pages'
templates, before `sphinx-intl update`, so that docs/locales/zh_CN/LC_MESSAGES/notebooks/output.po
is created and updated like any page's catalog and the translation gate covers it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import write_po

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "notebooks"))
import notebook_support  # noqa: E402

PYTHON_SOURCES = ("notebooks/notebook_support.py", "docs/_ext/pagedkv_notebooks.py")


def collect(root: Path = ROOT) -> list[tuple[str, str, int]]:
    """(message, file relative to root, line) of every _() message, in file order."""
    found = []
    for notebook in sorted((root / "notebooks").glob("*.md")):
        rel = notebook.relative_to(root).as_posix()
        for cell in notebook_support.read_cells(notebook):
            # The cell's first code line is 2 + its option lines after the fence.
            first = cell["line"] + 1 + len(cell["options"])
            for message, line in notebook_support.messages_in_code(cell["source"], rel):
                found.append((message, rel, first + line - 1))
    for rel in PYTHON_SOURCES:
        path = root / rel
        for message, line in notebook_support.messages_in_code(path.read_text(encoding="utf-8"), rel):
            found.append((message, rel, line))
    return found


def main(out: Path) -> int:
    catalog = Catalog(project="pagedkv", copyright_holder="the pagedkv developers",
                      fuzzy=False)
    messages = collect()
    for message, rel, line in messages:
        if message in catalog:
            catalog[message].locations.append((rel, line))
        else:
            catalog.add(message, locations=[(rel, line)])
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as f:
        write_po(f, catalog, width=76, omit_header=False)
    print(f"notebook messages: {len(catalog)} messages ({len(messages)} uses) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
