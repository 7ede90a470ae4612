"""silu_and_mul, gelu_and_mul, gelu_tanh_and_mul and apply_repetition_penalties through the
Python package.

CPU part: pagedkv.cpu against independent NumPy formulations (the activations in float64 within
one ulp of the dtype at |gate| before the product, then the product rounded as upstream does;
the penalties bit for bit), and the validation rules the C++ tests check, through the bindings.
CUDA part (marked ``cuda``): pagedkv.naive and pagedkv.optimized against pagedkv.cpu on torch
tensors (activations: naive and optimized bit-identical, each within the ulp bound of the CPU;
penalties: bit for bit), and pagedkv.vllm_ops with vLLM's signatures.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import cases
import pagedkv

ACTIVATIONS = ("silu_and_mul", "gelu_and_mul", "gelu_tanh_and_mul")


def to_float64(array: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bf16":
        return pagedkv.bfloat16_bits_to_float32(array).astype(np.float64)
    return array.astype(np.float64)


def from_float32(values: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bf16":
        return pagedkv.float32_to_bfloat16_bits(values.astype(np.float32))
    return values.astype(cases.STORAGE[dtype])


def exact_activation(name: str, x: np.ndarray) -> np.ndarray:
    """The activation in float64 (math.erf / np.tanh): the definition, not upstream's float
    formula."""
    if name == "silu_and_mul":
        return x / (1.0 + np.exp(-x))
    if name == "gelu_and_mul":
        return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))
    inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)
    return 0.5 * x * (1.0 + np.tanh(inner))


ULP_BITS = {"f32": 24, "f16": 11, "bf16": 8}


def ulp(dtype: str, magnitude: np.ndarray) -> np.ndarray:
    """One ulp of `dtype` at `magnitude` (normal range; the tests draw normal values)."""
    exponent = np.floor(np.log2(np.maximum(magnitude, 1e-30)))
    return np.exp2(exponent - (ULP_BITS[dtype] - 1))


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", cases.ACTIVATION_DTYPES)
def test_activation_cpu_matches_numpy(name, dtype):
    rng = np.random.default_rng(cases.seed_of(name, dtype))
    d = 37
    values = rng.uniform(-6.0, 6.0, (5, 2 * d)).astype(np.float32)
    values[np.abs(values) < 1e-3] = 0.5
    x = from_float32(values, dtype)
    out = np.zeros((5, d), dtype=x.dtype)
    getattr(pagedkv.cpu, name)(cases.as_arg(out, dtype), cases.as_arg(x, dtype))
    gate, up = to_float64(x[:, :d], dtype), to_float64(x[:, d:], dtype)
    # round_T(act) first, as upstream; then the product, rounded once.
    act = from_float32(exact_activation(name, gate).astype(np.float32), dtype)
    expected = to_float64(act, dtype) * up
    error = np.abs(to_float64(out, dtype) - expected) / ulp(dtype, np.abs(gate * up))
    assert error.max() <= 2.0  # one ulp of the activation's rounding, one of the product's


def test_activation_cpu_strided_rows():
    """Rows of a wider buffer: the leading dimension may have any stride."""
    rng = np.random.default_rng(3)
    wide = rng.standard_normal((4, 40)).astype(np.float32)
    x = wide[:, 4:36]  # [4, 32], row pitch 40
    out = np.zeros((4, 16), np.float32)
    pagedkv.cpu.silu_and_mul(out, x)
    packed = np.zeros((4, 16), np.float32)
    pagedkv.cpu.silu_and_mul(packed, np.ascontiguousarray(x))
    np.testing.assert_array_equal(out, packed)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_cpu_rejects_and_writes_nothing(name):
    function = getattr(pagedkv.cpu, name)
    x = np.ones((3, 16), np.float32)
    out = np.full((3, 8), 7.0, np.float32)
    with pytest.raises(pagedkv.InvalidArgument, match="input: expected an even last dimension"):
        function(np.full((3, 7), 7.0, np.float32), np.ones((3, 15), np.float32))
    with pytest.raises(pagedkv.InvalidArgument, match="out: expected the shape of input"):
        function(np.full((3, 16), 7.0, np.float32), x)
    with pytest.raises(pagedkv.InvalidArgument, match="input"):
        function(out, np.ones((3, 32), np.float32)[:, ::2])  # last dimension not packed
    with pytest.raises(pagedkv.InvalidArgument, match="out"):
        function(out.astype(np.float16), x)
    assert (out == 7.0).all()
    function(np.zeros((0, 8), np.float32), np.zeros((0, 16), np.float32))  # zero tokens


@pytest.mark.parametrize("dtype", cases.ACTIVATION_DTYPES)
def test_penalties_cpu_matches_numpy(dtype):
    rng = np.random.default_rng(cases.seed_of("apply_repetition_penalties", dtype))
    seqs, vocab = 4, 300
    logits = from_float32(rng.uniform(-5, 5, (seqs, vocab)).astype(np.float32), dtype)
    logits[0, :3] = from_float32(np.zeros(3, np.float32), dtype)
    prompt = rng.random((seqs, vocab)) < 0.1
    output = rng.random((seqs, vocab)) < 0.05
    penalties = from_float32(rng.uniform(1.0, 2.0, seqs).astype(np.float32), dtype)
    prompt[0, :3] = True
    before = to_float64(logits, dtype).astype(np.float32)
    p = to_float64(penalties, dtype).astype(np.float32)[:, None]
    # True division in float32 for positive logits, a product otherwise; one rounding.
    penalized = np.where(before > 0, before / p, before * p).astype(np.float32)
    expected = from_float32(np.where(prompt | output, penalized, before), dtype)
    pagedkv.cpu.apply_repetition_penalties(cases.as_arg(logits, dtype), prompt, output,
                                           cases.as_arg(penalties, dtype))
    np.testing.assert_array_equal(logits, expected)


def test_penalties_cpu_rejects_and_writes_nothing():
    logits = np.full((2, 8), 3.0, np.float32)
    mask = np.ones((2, 8), bool)
    penalties = np.full(2, 2.0, np.float32)
    call = pagedkv.cpu.apply_repetition_penalties
    with pytest.raises(pagedkv.InvalidArgument, match="prompt_mask"):
        call(logits, np.ones((2, 8), np.uint8), mask, penalties)  # uint8, not bool
    with pytest.raises(pagedkv.InvalidArgument, match="output_mask"):
        call(logits, mask, np.ones((2, 7), bool), penalties)
    with pytest.raises(pagedkv.InvalidArgument, match="repetition_penalties"):
        call(logits, mask, mask, np.full(3, 2.0, np.float32))
    with pytest.raises(pagedkv.InvalidArgument, match="repetition_penalties"):
        call(logits, mask, mask, np.full(2, 2.0, np.float16))
    assert (logits == 3.0).all()
    call(np.zeros((0, 8), np.float32), np.zeros((0, 8), bool), np.zeros((0, 8), bool),
         np.zeros(0, np.float32))  # zero sequences


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.cuda
@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("dtype", ("f32", "f16", "bf16"))
def test_activation_cuda_naive_equals_optimized(name, dtype):
    torch = _torch()
    import torch_cases as tc
    x = torch.randn(64, 2 * 1000, generator=tc.generator(2)).to(tc.DTYPES[dtype]).cuda()
    outs = []
    for impl in ("naive", "optimized"):
        out = torch.empty(64, 1000, dtype=x.dtype, device="cuda")
        getattr(getattr(pagedkv, impl), name)(out, x)
        outs.append(out)
    torch.cuda.synchronize()
    assert torch.equal(outs[0].view(torch.int16 if dtype != "f32" else torch.int32),
                       outs[1].view(torch.int16 if dtype != "f32" else torch.int32))
    from pagedkv import vllm_ops
    out = torch.empty(64, 1000, dtype=x.dtype, device="cuda")
    getattr(vllm_ops, name)(out, x)
    torch.cuda.synchronize()
    assert torch.equal(out, outs[1]) or torch.isnan(out).any()


@pytest.mark.cuda
@pytest.mark.parametrize("impl", ("naive", "optimized"))
def test_penalties_cuda_matches_cpu(impl):
    torch = _torch()
    import torch_cases as tc
    logits = torch.randn(8, 4099, generator=tc.generator(3))
    prompt = torch.rand(8, 4099, generator=tc.generator(4)) < 0.05
    output = torch.rand(8, 4099, generator=tc.generator(5)) < 0.02
    penalties = torch.rand(8, generator=tc.generator(6)) + 1.0
    expected = logits.clone()
    pagedkv.cpu.apply_repetition_penalties(expected, prompt, output, penalties)
    got = logits.cuda()
    getattr(pagedkv, impl).apply_repetition_penalties(got, prompt.cuda(), output.cuda(),
                                                      penalties.cuda())
    torch.cuda.synchronize()
    assert torch.equal(got.cpu(), expected)
