"""Print Doxygen's warnings grouped by file, with the file and line of each member.

Doxygen 1.9.4 reports some warnings as `<member>:1: ...` (no file); this looks the member up in
the XML so every line says where to fix the comment.

  python docs/tools/doxygen_report.py build/docs/doxygen/warnings.log build/docs/doxygen/xml
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path


def member_locations(xml_dir: Path) -> dict[str, str]:
    where: dict[str, str] = {}
    if not (xml_dir / "index.xml").is_file():
        return where
    for compound in ET.parse(xml_dir / "index.xml").getroot().findall("compound"):
        path = xml_dir / f"{compound.get('refid')}.xml"
        if not path.is_file():
            continue
        cdef = ET.parse(path).getroot().find("compounddef")
        scope = cdef.findtext("compoundname") or ""
        for m in cdef.iter("memberdef"):
            loc = m.find("location")
            file = loc.get("declfile") or loc.get("file")
            line = loc.get("declline") or loc.get("line")
            name = m.findtext("name")
            where.setdefault(name, f"{file}:{line}")
            where.setdefault(f"{scope}::{name}", f"{file}:{line}")
    return where


def main(log: Path, xml_dir: Path, root: Path) -> int:
    where = member_locations(xml_dir)
    groups: dict[str, list[str]] = defaultdict(list)
    for raw in log.read_text(errors="replace").splitlines():
        if not raw.strip():
            continue
        m = re.match(r"^<([^>]*)>:\d+: (?:error|warning): (.*)$", raw)
        if m:
            text = m.group(2)
            named = re.search(r"member ([\w:~]+)", text)
            location = where.get(named.group(1) if named else m.group(1), f"<{m.group(1)}>")
        else:
            m = re.match(r"^(.*?):(\d+): (?:error|warning): (.*)$", raw)
            if not m:
                groups["(other)"].append(raw)
                continue
            location, text = f"{m.group(1)}:{m.group(2)}", m.group(3)
        file, _, line = location.rpartition(":")
        file = file.replace(str(root) + "/", "")
        groups[file].append(f"line {line}: {text}")
    count = sum(len(v) for v in groups.values())
    for file in sorted(groups):
        print(f"  {file}")
        for item in sorted(set(groups[file]), key=lambda s: (len(s.split()[1]), s)):
            print(f"    {item}")
    print(f"  ({count} warnings in {len(groups)} files)")
    return count


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3] if len(sys.argv) > 3 else "."))
