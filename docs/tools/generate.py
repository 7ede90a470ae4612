"""Generate the pages the docs build needs before Sphinx runs (called by scripts/docs.sh).

  python docs/tools/generate.py --xml build/docs/doxygen/xml

writes (all ignored by git):
  docs/api/<op>.md                     one page per op of `$PAGEDKV_BIN list --json`, with the
                                       Doxygen XML (api_pages.py; docs/api/index.md and
                                       common.md are the only hand-written pages there)
  docs/_generated/api_common.md, sources/**   from the Doxygen XML            (api_pages.py)
  docs/_generated/op_table.md, op_measurement.md, ops.json   from the registry (op_table.py)
  docs/_generated/performance_body.md, perf/*.png   from the newest results/*.json (performance.py)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import api_pages  # noqa: E402
import op_table  # noqa: E402
import performance  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--xml", type=Path, required=True, help="Doxygen XML folder")
    parser.add_argument("--results", type=Path, nargs="*",
                        help="results files to choose from (default: committed results/*.json)")
    args = parser.parse_args()
    root = args.root.resolve()
    out = root / "docs" / "_generated"
    api_dir = root / "docs" / "api"

    ops = op_table.read_registry(os.environ.get("PAGEDKV_BIN", ""))
    problems = api_pages.build(args.xml, ops, out, api_dir)  # first: the op table links the pages
    print(f"docs: API pages for {len(ops)} ops")
    op_table.build(ops, root, out, api_dir)
    print(f"docs: op table with {len(ops)} ops")
    used = performance.build(root, out, args.results)
    print("docs: performance page from " + (str(used.relative_to(root)) if used else
                                            "no results file (the page says so)"))
    if problems:
        print("docs: API reference problems:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
