"""The error-mode API, and the generated op functions (their signatures and argument binding),
on every op of the registry. Needs no GPU: the calls run on the CPU reference."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import pagedkv
from pagedkv._impl import signature_of
import registry_calls

OPS = registry_calls.op_names()


def test_error_mode_is_set_and_read_back():
    assert pagedkv.error_mode() == "automatic"  # PAGEDKV_ERRORS unset in the test run
    try:
        for mode in ("synchronous", "deferred", "automatic"):
            pagedkv.set_error_mode(mode)
            assert pagedkv.error_mode() == mode
    finally:
        pagedkv.set_error_mode("automatic")
    with pytest.raises(ValueError, match="mode: expected"):
        pagedkv.set_error_mode("later")


def test_check_errors_without_a_deferred_check_does_nothing():
    pagedkv.check_errors()


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("impl", pagedkv.IMPLEMENTATIONS)
def test_generated_function_has_the_op_signature(name, impl):
    op = next(op for op in pagedkv.ops() if op["name"] == name)
    function = getattr(pagedkv.implementation(impl), name)
    assert inspect.signature(function) == signature_of(op, with_stream=True)
    assert function.__name__ == name and function.__module__ == f"pagedkv.{impl}"
    with pytest.raises(TypeError):
        function()  # Python binds the arguments: missing ones are a TypeError


@pytest.mark.parametrize("name", OPS)
def test_registry_call_runs_on_the_cpu_reference_positionally_and_by_keyword(name):
    op = next(op for op in pagedkv.ops() if op["name"] == name)
    names = [a["name"] for a in op["arguments"]]
    positional = registry_calls.numpy_call(name)
    assert len(positional) == len(names)
    getattr(pagedkv.cpu, name)(*positional)
    by_keyword = registry_calls.numpy_call(name)
    getattr(pagedkv.cpu, name)(**dict(zip(names, by_keyword)), stream=None)
    for a, b in zip(positional, by_keyword):  # the same call, the same bytes
        if isinstance(a, (np.ndarray, pagedkv.RawBits)):
            a = a.array if isinstance(a, pagedkv.RawBits) else a
            b = b.array if isinstance(b, pagedkv.RawBits) else b
            assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name", OPS)
def test_cuda_implementations_reject_host_arrays_by_name(name):
    # Validation comes first (the deferred-check machinery asks CUDA nothing before it), so
    # host arrays give InvalidArgument naming an argument, also without a GPU.
    with pytest.raises(ValueError, match=r"^\w+"):
        getattr(pagedkv.optimized, name)(*registry_calls.numpy_call(name))
