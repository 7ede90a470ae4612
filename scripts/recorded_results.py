#!/usr/bin/env python3
"""The newest recorded GPU results of the ops a comparison asked for, for a machine without one.

    scripts/recorded_results.py [--all] [op ...] [--workload W] [--all-sizes]

`scripts/compare.sh` runs this after the comparison tool on a machine without a usable GPU, with
the same arguments, so that the first command a newcomer runs already shows what the kernels do
on a GPU. Nothing here is measured on this machine: every table is labelled with the GPU, commit,
date and file it comes from. An op's rows come from the newest committed results file that has
rows of that op (the rule of docs/tools/results_files.py, shared with the docs and the README).

By default each (workload, variant, slots) shows its largest size; --all-sizes shows every size.
The comparison tool's options that do not select ops or workloads are accepted and ignored.
Standard library only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "tools"))
import results_files  # noqa: E402

SHOWN_IMPLS = ("naive", "optimized", "copy", "copy_kernel", "thrust")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ops", nargs="*", help="op names (none, or --all: every recorded op)")
    parser.add_argument("--all", action="store_true", help="every op with recorded results")
    parser.add_argument("--workload", help="only this workload (W1, W3, ...)")
    parser.add_argument("--all-sizes", action="store_true", help="every size, not the largest")
    parser.add_argument("--results", type=Path, default=ROOT / "results",
                        help="the results folder (default: the repository's)")
    # The comparison tool's other options (tools/compare/main.cpp): accepted, not used here.
    for option in ("--json", "--size", "--variant", "--slots", "--seed", "--commit", "--repeats"):
        parser.add_argument(option, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def result_files(results: Path) -> list[Path]:
    """The repository's committed files, or every *.json of another folder (tests)."""
    if results.resolve() == (ROOT / "results").resolve():
        return results_files.committed_results(ROOT)
    return sorted(results.glob("*.json"))


def number(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def rows_to_show(rows: list[dict], workload: str | None, all_sizes: bool) -> list[dict]:
    """The GPU rows of one op, filtered; the largest size per (workload, variant, slots)."""
    rows = [r for r in rows if r.get("impl") in SHOWN_IMPLS
            and (workload is None or r.get("workload") == workload)]
    if all_sizes:
        return rows
    largest: dict[tuple, int] = {}
    for r in rows:
        key = (r.get("workload"), r.get("variant"), r.get("slots"))
        largest[key] = max(largest.get(key, -1), int(r.get("size") or 0))
    return [r for r in rows
            if int(r.get("size") or 0) == largest[(r.get("workload"), r.get("variant"),
                                                   r.get("slots"))]]


def table(rows: list[dict]) -> list[str]:
    header = ("workload", "variant", "slots", "size", "impl", "median µs", "GB/s", "% of copy",
              "agrees")
    lines = [header]
    for r in rows:
        agrees = r.get("agrees", r.get("bit_exact"))
        lines.append((str(r.get("workload", "")), str(r.get("variant", "")),
                      str(r.get("slots", "")), f"{r.get('size', '')} {r.get('size_unit', '')}",
                      str(r.get("impl", "")), number(r.get("median_us"), 2),
                      number(r.get("gbps")), number(r.get("pct_of_copy")),
                      "-" if agrees is None else ("yes" if agrees else "NO")))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
            for line in lines]


def main(argv: list[str]) -> int:
    args = parse(argv)
    files = result_files(args.results)
    if not files:
        print("recorded results: none committed yet (results/ holds no GPU run)")
        return 0
    if args.ops:
        ops = args.ops
    else:  # --all, or nothing named: every op some file has rows of, newest file first
        ops = [op for _path, _data, supplied in results_files.runs_by_op(files)
               for op in supplied]
    print("\nRecorded GPU results (not measured on this machine; newest committed run of each "
          "op, largest size of each workload point unless --all-sizes):")
    missing = []
    for op in ops:
        found = results_files.newest_for_op(files, op)
        if found is None:
            missing.append(op)
            continue
        path, data = found
        rows = rows_to_show([r for r in data.get("rows", []) if r.get("op") == op],
                            args.workload, args.all_sizes)
        if not rows:
            continue
        print(f"\n{op}: recorded on {data.get('gpu')}, commit {data.get('commit')}, "
              f"{data.get('date')} ({path.relative_to(path.parent.parent)})")
        for line in table(rows):
            print("  " + line)
    if missing:
        print("\nNo recorded GPU results yet for: " + ", ".join(missing))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
