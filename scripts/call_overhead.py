"""The Python call path's own cost: one op called through pagedkv.cpu, through the compiled
module directly (pagedkv._core.cpu.call) and as a PreparedCall, on tiny NumPy inputs, so that
the difference between the rows is the wrapper (argument binding, conversion, stream).

    .venv/bin/python scripts/call_overhead.py
"""

from __future__ import annotations

import timeit

import numpy as np

import pagedkv


def per_call_us(function, number: int = 20000) -> float:
    return min(timeit.repeat(function, number=number, repeat=3)) / number * 1e6


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 64), dtype=np.float32)
    weight = np.ones(64, np.float32)
    out = np.empty_like(x)
    core = pagedkv._core.cpu
    rows = [
        ("pagedkv.cpu.rms_norm", lambda: pagedkv.cpu.rms_norm(out, x, weight, 1e-6)),
        ("_core.cpu.call('rms_norm')", lambda: core.call("rms_norm", [out, x, weight, 1e-6], 0)),
    ]
    prepared = pagedkv.cpu.prepare("rms_norm", out, x, weight, 1e-6)
    rows.append(("PreparedCall rms_norm", lambda: prepared(0)))
    for name, function in rows:
        print(f"{name:32s} {per_call_us(function):7.2f} us per call (1 x 64 f32)")


if __name__ == "__main__":
    main()
