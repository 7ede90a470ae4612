"""The installed package as a user sees it: imports, metadata, signatures, helpers.

Builds nothing and needs no GPU and no torch: it imports whatever `pagedkv` is on the path
(the one `pip install .` put in the environment).
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import pagedkv

# Every op of the registry: the package derives its functions from it and names none itself.
OPS = tuple(entry["name"] for entry in pagedkv.ops())


def test_version_and_build_facts():
    assert pagedkv.__version__.count(".") == 2
    assert pagedkv.cuda_architectures  # e.g. "90"
    assert isinstance(pagedkv.cuda_available(), bool)


def test_three_implementations_have_identical_signatures():
    assert len(OPS) >= 5
    for op in OPS + ("prepare",):
        signatures = {name: inspect.signature(getattr(pagedkv.implementation(name), op))
                      for name in pagedkv.IMPLEMENTATIONS}
        assert len(set(map(str, signatures.values()))) == 1, signatures
    with pytest.raises(ValueError):
        pagedkv.implementation("fastest")


def test_signatures_follow_the_descriptions():
    """Each function's parameters are the op's described arguments, in order, then stream."""
    for entry in pagedkv.ops():
        names = [a["name"] for a in entry["arguments"]]
        assert names, entry["name"]
        for impl in pagedkv.IMPLEMENTATIONS:
            function = getattr(pagedkv.implementation(impl), entry["name"])
            assert list(inspect.signature(function).parameters) == names + ["stream"]
            assert all(name in function.__doc__ for name in names)
        for a in entry["arguments"]:
            assert a["kind"] in ("input", "output", "inout", "optional_input", "optional_inout",
                                 "int", "float", "bool", "str"), a
            assert a["doc"], a


def test_functions_are_documented():
    for name in pagedkv.IMPLEMENTATIONS:
        for op in OPS:
            doc = getattr(pagedkv.implementation(name), op).__doc__
            assert "Raises:" in doc and "stream" in doc


def test_registry_lists_the_ops_with_their_sources():
    entries = {entry["name"]: entry for entry in pagedkv.ops()}
    for op in OPS:
        assert op in entries, sorted(entries)
        entry = entries[op]
        for key in ("family", "role", "upstream", "cpu_source", "naive_source",
                    "optimized_source", "byte_model", "agreement_rule", "workloads",
                    "arguments", "workload_notes"):
            assert key in entry
        assert entry["cpu_source"].startswith("reference_cpu/")
        assert entry["naive_source"].startswith("kernels/")


def test_exceptions_are_python_exceptions():
    assert issubclass(pagedkv.InvalidArgument, ValueError)
    assert issubclass(pagedkv.CudaError, RuntimeError)


def test_bfloat16_helpers():
    values = np.array([1.0, -2.5, 3.140625, 1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, np.inf, np.nan],
                      dtype=np.float32)
    bits = pagedkv.float32_to_bfloat16_bits(values)
    # 1 + 2^-8 lies half-way between 0x3F80 and 0x3F81, 1 + 3 * 2^-8 half-way between 0x3F81
    # and 0x3F82: ties go to the even bit pattern.
    assert bits.tolist() == [0x3F80, 0xC020, 0x4049, 0x3F80, 0x3F82, 0x7F80, 0x7FFF]
    back = pagedkv.bfloat16_bits_to_float32(bits[:3])
    assert back.tolist() == [1.0, -2.5, 3.140625]
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(0)
    sample = (rng.standard_normal(10000) * 10.0 ** rng.integers(-30, 30, 10000)).astype(np.float32)
    np.testing.assert_array_equal(pagedkv.float32_to_bfloat16_bits(sample),
                                  sample.astype(ml_dtypes.bfloat16).view(np.uint16))


def test_vllm_ops_imports_without_torch():
    """The module imports with torch unavailable and says what is missing only when called."""
    script = textwrap.dedent("""
        import sys
        sys.modules["torch"] = None  # makes `import torch` fail like a missing package
        import pagedkv
        from pagedkv import vllm_ops
        op = pagedkv.ops()[0]
        try:
            getattr(vllm_ops, op["name"])(*([None] * len(op["arguments"])))
        except ImportError as error:
            assert "needs PyTorch" in str(error), error
            print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr
