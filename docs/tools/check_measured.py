#!/usr/bin/env python3
"""The measured-number check: no page retypes a measured number.

    .venv/bin/python docs/tools/check_measured.py [--locales DIR]

Measured numbers reach the prose only through the roles of docs/_ext/pagedkv_measured.py:
{measured} (read from results/*.json, so re-recording cannot leave a stale sentence), {lab}
(a dated one-off measurement no results file holds) and {spec} (a number that is not a
measurement: a hardware specification, a target, a definition, an exercise's assumption).
Fails (exit 1), naming file, line and text, when

  - an English page (chapters/*.md, docs/*.md, notebooks/*.md outside code cells) has a number
    with a unit of measure (%, µs, us, ms, ns, GB/s, TB/s, GiB/s, ...) or a speed-up (1.8×)
    outside those roles, code, math and directive options; or a number in a table column whose
    header names such a unit ("time (µs)", "% of copy", "speed-up");
  - a {measured} selector does not resolve to a value, or a {lab} note lacks its date or GPU;
  - a zh_CN catalog (docs/locales/zh_CN/LC_MESSAGES/**.po) has a msgstr that changes, drops or
    adds a {measured}, {lab} or {spec} role of its msgid, or says a number with a unit that its
    msgid does not say outside those roles (a translator cannot retype a number either).

scripts/docs.sh runs it in step 3, next to the term check.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "docs" / "_ext"))
sys.path.insert(0, str(REPO / "docs" / "tools"))

import pagedkv_measured  # noqa: E402
from check_terms import read_messages  # noqa: E402

DEFAULT_LOCALES = REPO / "docs" / "locales" / "zh_CN" / "LC_MESSAGES"
PAGES = ("chapters/*.md", "docs/*.md", "notebooks/*.md")

# A number with a unit of measure, or a speed-up (5.0×, 2x, "1.12 times faster").
# A range ("84–87 %") is reported whole. "1024 × 4" is a product, not a speed-up.
_NUMBER = r"[-−+]?\d[\d,]*(?:\.\d+)?"
_UNIT = r"(?:%|[µμu]s\b|ms\b|ns\b|[KMGT]i?B/s\b|[KMGT]bit/s\b)"
MEASURED = re.compile(
    rf"(?<![\w.$\\]){_NUMBER}(?:\s?[–-]\s?{_NUMBER})?"
    rf"(?:\s?{_UNIT}|(?:×|x\b)(?!\s*\d)|\s+times\s+(?:faster|slower)\b)")
# A table header cell that gives its column a unit: the cells below are measured numbers.
UNIT_HEADER = re.compile(r"%|[µμ]s\b|\bus\b|\bms\b|[KMGT]i?B/s|speed-?up|×", re.I)
DIGIT = re.compile(r"\d")

MEASURE_ROLES = ("measured", "lab", "spec")
ROLE = re.compile(r"\{(?P<name>[\w:+-]+)\}`(?P<text>[^`]*)`")

# Inline text that is not prose: replaced by spaces (line breaks kept, so lines stay true).
_INLINE = [
    re.compile(r"<!--.*?-->", re.S),
    re.compile(r"\$\$.*?\$\$", re.S),  # display math
    re.compile(r"\$(?:[^$\n]|\n(?![ \t]*\n))+?\$"),  # inline math, within one paragraph
    ROLE,
    re.compile(r"``.+?``", re.S),
    re.compile(r"`[^`\n]+`"),
    re.compile(r"\]\([^)\s]*\)"),  # link targets
    re.compile(r"\\begin\{(\w+\*?)\}.*?\\end\{\1\}", re.S),
]
# Fenced directives whose body is prose (checked, option lines aside); any other fence (code,
# literalinclude, code-cell, math, include, ...) is skipped whole.
PROSE_DIRECTIVES = {
    "figure", "dropdown", "note", "tip", "hint", "important", "warning", "caution", "attention",
    "danger", "error", "seealso", "admonition", "tab-set", "tab-item", "compare-sources", "table",
    "list-table", "card", "grid", "grid-item", "grid-item-card", "margin", "sidebar", "topic",
    "epigraph", "glossary",
}
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,}|:{3,})\s*(?P<info>\S*)")
OPTION = re.compile(r"^\s*:[\w-]+:")


def _blank(match: re.Match) -> str:
    return re.sub(r"[^\n]", " ", match.group(0))


def strip_inline(text: str) -> str:
    """`text` with math, code, roles, comments and link targets blanked (newlines kept)."""
    for pattern in _INLINE:
        text = pattern.sub(_blank, text)
    return text


def prose_lines(text: str) -> list[str]:
    """The page's lines with everything that is not prose blanked: front matter, code fences
    and non-prose directives, directive options, `(label)=` targets, then inline code, math
    and roles. The list has one entry per line of the page."""
    lines = text.split("\n")
    out = list(lines)
    i = 0
    if lines and lines[0].strip() == "---":  # front matter
        for j in range(1, len(lines)):
            if lines[j].strip() == "---":
                for k in range(0, j + 1):
                    out[k] = ""
                i = j + 1
                break
    stack: list[tuple[str, bool]] = []  # open fences: (fence, body is prose)
    in_options = False
    for n in range(i, len(lines)):
        line = lines[n]
        match = FENCE.match(line)
        if stack and match and match["fence"][0] == stack[-1][0][0] \
                and len(match["fence"]) >= len(stack[-1][0]) and not match["info"]:
            stack.pop()
            out[n] = ""
            in_options = False
            continue
        if stack and not stack[-1][1]:
            out[n] = ""
            continue
        if match:
            info = match["info"]
            name = info[1:-1] if info.startswith("{") and info.endswith("}") else None
            prose = match["fence"][0] == ":" and name is None or name in PROSE_DIRECTIVES
            stack.append((match["fence"], prose))
            out[n] = ""
            in_options = prose
            continue
        if in_options and OPTION.match(line):
            out[n] = ""
            continue
        in_options = False
        if re.match(r"^\s*\([\w-]+\)=\s*$", line):
            out[n] = ""
    return strip_inline("\n".join(out)).split("\n")


def _cells(line: str) -> list[str]:
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    return re.split(r"(?<!\\)\|", body)


def check_text(text: str, shown: str) -> list[str]:
    """Problems of one English page's text."""
    problems = []
    raw = text.split("\n")
    prose = prose_lines(text)
    unit_columns: set[int] | None = None  # the columns with a unit in the table being read
    for n, line in enumerate(prose):
        stripped = line.strip()
        if stripped.startswith("|"):
            if unit_columns is None:
                following = prose[n + 1].strip() if n + 1 < len(prose) else ""
                if re.fullmatch(r"\|?[\s:|-]+\|?", following) and "-" in following:
                    # header row: headers keep their text (a role there is unusual but fine)
                    unit_columns = {c for c, cell in enumerate(_cells(raw[n]))
                                    if UNIT_HEADER.search(strip_inline(cell))}
                    continue
                unit_columns = set()
            elif re.fullmatch(r"\|?[\s:|-]+\|?", stripped):
                continue
            else:
                for c, cell in enumerate(_cells(line)):
                    if c in unit_columns and DIGIT.search(cell) and not MEASURED.search(cell):
                        problems.append(f"{shown}:{n + 1}: {cell.strip()!r} in a column with a "
                                        f"unit: a measured number outside {{measured}}/{{lab}}")
        else:
            unit_columns = None
        for match in MEASURED.finditer(line):
            problems.append(f"{shown}:{n + 1}: {match.group(0).strip()!r}: a measured number "
                            f"outside {{measured}}/{{lab}} (or {{spec}} if it is no measurement)"
                            f" in: {raw[n].strip()[:100]}")
    for n, line in enumerate(raw):
        for role in ROLE.finditer(line):
            problem = role_problem(role["name"], role["text"])
            if problem:
                problems.append(f"{shown}:{n + 1}: {role.group(0)}: {problem}")
    return problems


def role_problem(name: str, text: str) -> str | None:
    """Why a {measured} or {lab} role would not render (None when it would)."""
    try:
        if name == "measured":
            pagedkv_measured.measure(text)
        elif name == "lab":
            pagedkv_measured.parse_lab(text)
    except (ValueError, OSError) as e:
        return str(e)
    return None


def page_files(root: Path = REPO) -> list[Path]:
    files = []
    for pattern in PAGES:
        files += [p for p in sorted(root.glob(pattern)) if p.name != "README.md"]
    return files


def check_pages(root: Path = REPO) -> list[str]:
    problems = []
    for path in page_files(root):
        problems += check_text(path.read_text(encoding="utf-8"), str(path.relative_to(root)))
    return problems


def _measure_roles(text: str) -> Counter:
    return Counter(m.group(0) for m in ROLE.finditer(text) if m["name"] in MEASURE_ROLES)


_BARE_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def _said_numbers(text: str) -> set[str]:
    """Every number the text says outside the measure roles (in prose, code or math alike)."""
    kept = ROLE.sub(lambda m: " " if m["name"] in MEASURE_ROLES else m.group(0), text)
    return {n.replace(",", "") for n in _BARE_NUMBER.findall(kept)}


def check_message(msgid: str, msgstr: str) -> list[str]:
    """Problems of one translated message: a measure role of the msgid changed, dropped or
    added, or a number with a unit that the msgid does not say outside its measure roles (the
    translation may move a unit or a number out of math, not bring a number of its own)."""
    if not msgstr:
        return []
    problems = []
    wanted, given = _measure_roles(msgid), _measure_roles(msgstr)
    for role in sorted((wanted - given).elements()):
        problems.append(f"the msgstr lacks {role} (copy the msgid's role unchanged)")
    for role in sorted((given - wanted).elements()):
        problems.append(f"the msgstr has {role}, which the msgid does not")
    said = _said_numbers(msgid)
    for match in MEASURED.finditer(strip_inline(msgstr)):
        numbers = {n.replace(",", "") for n in _BARE_NUMBER.findall(match.group(0))}
        if not numbers <= said:
            problems.append(f"the msgstr says {match.group(0).strip()!r}, which the msgid does "
                            "not (a retyped measured number)")
    return problems


def check_catalogs(locales: Path) -> list[str]:
    problems = []
    for po in sorted(Path(locales).rglob("*.po")):
        try:
            shown = po.resolve().relative_to(REPO)
        except ValueError:
            shown = po
        for line, msgid, msgstr in read_messages(po):
            for problem in check_message(msgid, msgstr):
                start = " ".join(msgid.split())[:60]
                problems.append(f"{shown}:{line}: msgid \"{start}…\": {problem}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locales", type=Path, default=DEFAULT_LOCALES)
    args = parser.parse_args(argv)
    problems = check_pages()
    catalogs = sorted(args.locales.rglob("*.po")) if args.locales.is_dir() else []
    problems += check_catalogs(args.locales) if catalogs else []
    for problem in problems:
        print(problem)
    if problems:
        print(f"measured-number check: FAILED: {len(problems)} problem(s). Quote a recorded value "
              "with {measured}`...`, a one-off measurement with {lab}`VALUE <DATE, GPU>`, a "
              "number that is no measurement with {spec}`...` (docs/_ext/pagedkv_measured.py); "
              "in a msgstr keep the msgid's roles unchanged.")
        return 1
    print(f"measured-number check: ok ({len(page_files())} pages, {len(catalogs)} catalogs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
