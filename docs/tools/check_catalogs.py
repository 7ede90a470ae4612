"""After `sphinx-build -b gettext`: drop empty catalogs, check that Doxygen text is extracted.

1. A page with no translatable message (a source listing) gets no catalog: its .pot is removed,
   so sphinx-intl creates no empty .po for it.
2. The text that Breathe renders from Doxygen comments reaches the catalogs only through
   docs/_ext/pagedkv_i18n.py, which relies on Sphinx internals. This check takes the \\brief
   and the first \\param text of the first documented function of an op header (a member of
   an op struct, else a namespace function) from the XML and requires both to appear in the
   API catalogs.

  python docs/tools/check_catalogs.py build/docs/gettext build/docs/doxygen/xml
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from babel.messages.pofile import read_po


def _words(text: str) -> str:
    return " ".join(text.split())


def expected_texts(xml_dir: Path) -> list[str]:
    """Brief and first parameter text of the first documented function of an op header."""
    compounds = sorted(xml_dir.glob("struct*.xml")) + sorted(xml_dir.glob("class*.xml")) + \
        sorted(xml_dir.glob("namespace*.xml"))
    for compound in compounds:
        cdef = ET.parse(compound).getroot().find("compounddef")
        for m in cdef.iter("memberdef"):
            loc = m.find("location")
            path = loc.get("declfile") or loc.get("file") or ""
            if m.get("kind") != "function" or not path.startswith("include/pagedkv/ops/"):
                continue
            brief = _words("".join(m.find("briefdescription").itertext()))
            item = m.find("detaileddescription//parameteritem/parameterdescription")
            if brief and item is not None:
                return [brief, _words("".join(item.itertext()))]
    return []


def main(gettext_dir: Path, xml_dir: Path) -> int:
    api_messages: list[str] = []
    removed = 0
    for pot in sorted(gettext_dir.rglob("*.pot")):
        with pot.open("rb") as f:
            catalog = read_po(f)
        ids = [m.id for m in catalog if m.id]
        if not ids:
            pot.unlink()
            removed += 1
            continue
        if "/api/" in pot.as_posix():
            api_messages += [_words(i if isinstance(i, str) else i[0]) for i in ids]
    print(f"catalogs: {removed} catalog(s) without messages dropped")
    texts = expected_texts(xml_dir)
    if not texts:
        print("catalogs: no documented op function with parameters yet; Doxygen check skipped")
        return 0
    missing = [t for t in texts if not any(t[:60] in m for m in api_messages)]
    for t in missing:
        print(f"catalogs: Doxygen text not extracted: {t!r}", file=sys.stderr)
    if not missing:
        print("catalogs: Doxygen \\brief and \\param text found in the API catalogs")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
