"""scripts/recorded_results.py: what a machine without a GPU shows after its CPU rows."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "recorded_results.py"


def row(op, impl, size, pct, workload="W1", variant="NHD bf16", agrees=True):
    return {"op": op, "workload": workload, "variant": variant, "slots": "random", "impl": impl,
            "size": size, "size_unit": "tokens", "median_us": 10.0, "gbps": 100.0,
            "pct_of_copy": pct, "bit_exact": agrees, "agrees": agrees}


def write(folder, name, date, gpu, rows):
    (folder / name).write_text(json.dumps({"gpu": gpu, "commit": name[:7], "date": date,
                                           "rows": rows}), encoding="utf-8")


def run(folder, *args):
    return subprocess.run([sys.executable, str(SCRIPT), "--results", str(folder), *args],
                          check=True, capture_output=True, text=True).stdout


def test_newest_file_with_the_op_and_largest_size(tmp_path):
    write(tmp_path, "old-run.json", "2026-01-01T00:00:00Z", "GPU OLD",
          [row("op_a", "optimized", 64, 11.0), row("op_b", "optimized", 64, 22.0)])
    write(tmp_path, "new-run.json", "2026-02-01T00:00:00Z", "GPU NEW",
          [row("op_a", "optimized", 8, 33.0), row("op_a", "optimized", 64, 44.0),
           row("op_a", "cpu", 64, None)])
    out = run(tmp_path, "op_a", "op_b", "--json", "ignored.json", "--quick")
    # op_a from the newer file, only its largest size; no cpu row (this machine printed those)
    assert "op_a: recorded on GPU NEW, commit new-run" in out
    assert "44.0" in out and "33.0" not in out and " cpu " not in out
    # op_b only exists in the older file, which still supplies it
    assert "op_b: recorded on GPU OLD" in out and "22.0" in out
    assert "not measured on this machine" in out


def test_all_sizes_workload_filter_and_missing_ops(tmp_path):
    write(tmp_path, "run.json", "2026-02-01T00:00:00Z", "GPU",
          [row("op_a", "optimized", 8, 33.0), row("op_a", "optimized", 64, 44.0),
           row("op_a", "optimized", 64, 55.0, workload="W2", agrees=False)])
    out = run(tmp_path, "op_a", "op_z", "--all-sizes", "--workload", "W1")
    assert "33.0" in out and "44.0" in out and "55.0" not in out
    assert "No recorded GPU results yet for: op_z" in out
    assert "NO" in run(tmp_path, "op_a", "--workload", "W2")  # a disagreeing row is flagged


def test_no_results_at_all(tmp_path):
    assert "none committed yet" in run(tmp_path, "--all")
