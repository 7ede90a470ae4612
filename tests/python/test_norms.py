"""rms_norm and fused_add_rms_norm through the Python package.

CPU part: pagedkv.cpu against an independent float64 NumPy formulation, within the reduction
tolerance the C++ tests use (include/pagedkv/agreement.h); fused_add_rms_norm's residual (an
element-wise sum) is compared bit for bit. CUDA part (marked ``cuda``): pagedkv.naive and
pagedkv.optimized against pagedkv.cpu on torch tensors, and pagedkv.vllm_ops with vLLM's
signatures.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import cases
import pagedkv

UNIT_ROUNDOFF = {"f32": 2.0**-24, "f16": 2.0**-11, "bf16": 2.0**-8}


def tolerance(dtype: str, hidden: int) -> float:
    """reduction_tolerance() of include/pagedkv/agreement.h."""
    return 2 * UNIT_ROUNDOFF[dtype] + (8 * math.sqrt(hidden) + 8) * 2.0**-24


def to_float64(array: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bf16":
        return pagedkv.bfloat16_bits_to_float32(array).astype(np.float64)
    return array.astype(np.float64)


def from_float32(values: np.ndarray, dtype: str) -> np.ndarray:
    """Round float32 values to the storage of `dtype` (round to nearest even)."""
    if dtype == "bf16":
        return pagedkv.float32_to_bfloat16_bits(values.astype(np.float32))
    return values.astype(cases.STORAGE[dtype])


def rel_err(actual: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(actual - reference) / np.linalg.norm(reference))


def numpy_rms_norm(x: np.ndarray, weight: np.ndarray, epsilon: float) -> np.ndarray:
    """The definition in float64, unrounded: x / sqrt(mean(x^2) + eps) * w."""
    inv = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + epsilon)
    return x * inv * weight


def random_rows(rng, shape, dtype):
    values = (rng.standard_normal(shape) * 2.0).astype(np.float32)
    return from_float32(values, dtype)


@pytest.mark.parametrize("dtype", cases.ACTIVATION_DTYPES)
@pytest.mark.parametrize("hidden", (1, 7, 64, 1000))
def test_rms_norm_cpu_matches_numpy(dtype, hidden):
    rng = np.random.default_rng(cases.seed_of("rms_norm", dtype, hidden))
    x = random_rows(rng, (5, hidden), dtype)
    weight = from_float32(rng.uniform(0.5, 1.5, hidden).astype(np.float32), dtype)
    out = np.zeros_like(x)
    pagedkv.cpu.rms_norm(cases.as_arg(out, dtype), cases.as_arg(x, dtype),
                         cases.as_arg(weight, dtype), 1e-6)
    expected = numpy_rms_norm(to_float64(x, dtype), to_float64(weight, dtype), 1e-6)
    assert rel_err(to_float64(out, dtype), expected) <= tolerance(dtype, hidden)


def test_rms_norm_cpu_strided_rows():
    """Rows of a wider buffer (a slice, as vLLM passes the query part of a fused qkv)."""
    rng = np.random.default_rng(7)
    wide = rng.standard_normal((4, 3, 48)).astype(np.float32)
    x = wide[:, :, 8:40]  # [4, 3, 32], row pitch 48
    weight = np.ones(32, np.float32)
    out = np.zeros((4, 3, 32), np.float32)
    pagedkv.cpu.rms_norm(out, x, weight, 0.0)
    expected = numpy_rms_norm(x.astype(np.float64), 1.0, 0.0)
    assert rel_err(out.astype(np.float64), expected) <= tolerance("f32", 32)


@pytest.mark.parametrize("dtype", cases.ACTIVATION_DTYPES)
def test_fused_add_rms_norm_cpu_matches_numpy(dtype):
    rng = np.random.default_rng(cases.seed_of("fused_add_rms_norm", dtype))
    hidden = 96
    x = random_rows(rng, (6, hidden), dtype)
    residual = random_rows(rng, (6, hidden), dtype)
    weight = from_float32(rng.uniform(0.5, 1.5, hidden).astype(np.float32), dtype)
    # The sum in float32, rounded once to the dtype: what the kernels store as the residual.
    expected_residual = from_float32(
        to_float64(x, dtype).astype(np.float32) + to_float64(residual, dtype).astype(np.float32),
        dtype)
    expected_out = numpy_rms_norm(to_float64(expected_residual, dtype),
                                  to_float64(weight, dtype), 1e-5)
    pagedkv.cpu.fused_add_rms_norm(cases.as_arg(x, dtype), cases.as_arg(residual, dtype),
                                   cases.as_arg(weight, dtype), 1e-5)
    np.testing.assert_array_equal(residual, expected_residual)
    assert rel_err(to_float64(x, dtype), expected_out) <= tolerance(dtype, hidden)


def test_rms_norm_cpu_rejects_bad_weight_and_writes_nothing():
    x = np.ones((2, 8), np.float32)
    out = np.full((2, 8), 7.0, np.float32)
    with pytest.raises(pagedkv.InvalidArgument, match="weight"):
        pagedkv.cpu.rms_norm(out, x, np.ones(9, np.float32), 1e-6)
    assert (out == 7.0).all()


# --- CUDA -----------------------------------------------------------------------------------


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.cuda
@pytest.mark.parametrize("impl", ("naive", "optimized"))
@pytest.mark.parametrize("dtype", cases.ACTIVATION_DTYPES)
@pytest.mark.parametrize("hidden", (3, 128, 4096, 7168))
def test_rms_norm_cuda_matches_cpu(impl, dtype, hidden):
    torch = _torch()
    import torch_cases as tc

    x = tc.activations((33, hidden), dtype, seed=hidden)
    weight = (torch.rand(hidden, generator=tc.generator(1)) + 0.5).to(tc.DTYPES[dtype])
    out_cpu = torch.empty_like(x)
    pagedkv.cpu.rms_norm(out_cpu, x, weight, 1e-6)
    out_gpu = torch.empty_like(x).cuda()
    getattr(pagedkv, impl).rms_norm(out_gpu, x.cuda(), weight.cuda(), 1e-6)
    torch.cuda.synchronize()
    actual, expected = out_gpu.cpu().double(), out_cpu.double()
    assert float((actual - expected).norm() / expected.norm()) <= tolerance(dtype, hidden)


@pytest.mark.cuda
@pytest.mark.parametrize("impl", ("naive", "optimized"))
@pytest.mark.parametrize("dtype", cases.ACTIVATION_DTYPES)
def test_fused_add_rms_norm_cuda_matches_cpu(impl, dtype):
    torch = _torch()
    import torch_cases as tc

    hidden = 4096
    x = tc.activations((17, hidden), dtype, seed=3)
    residual = tc.activations((17, hidden), dtype, seed=4)
    weight = (torch.rand(hidden, generator=tc.generator(5)) + 0.5).to(tc.DTYPES[dtype])
    x_gpu, residual_gpu = x.cuda(), residual.cuda()
    getattr(pagedkv, impl).fused_add_rms_norm(x_gpu, residual_gpu, weight.cuda(), 1e-6)
    pagedkv.cpu.fused_add_rms_norm(x, residual, weight, 1e-6)
    torch.cuda.synchronize()
    assert torch.equal(residual_gpu.cpu(), residual)  # the sum is element-wise: bit-exact
    actual, expected = x_gpu.cpu().double(), x.double()
    assert float((actual - expected).norm() / expected.norm()) <= tolerance(dtype, hidden)


@pytest.mark.cuda
def test_vllm_ops_norms_on_torch_tensors():
    """vLLM's signatures; results close to torch's own float32 formulation of the layer."""
    torch = _torch()
    from pagedkv import vllm_ops

    x = torch.randn(8, 4096, device="cuda", dtype=torch.bfloat16)
    weight = torch.rand(4096, device="cuda", dtype=torch.bfloat16) + 0.5
    out = torch.empty_like(x)
    vllm_ops.rms_norm(out, x, weight, 1e-6)
    xf = x.float()
    expected = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6) * weight.float()
    assert float((out.float() - expected).norm() / expected.norm()) <= tolerance("bf16", 4096)

    residual = torch.randn_like(x)
    summed = (x.float() + residual.float()).to(torch.bfloat16)
    vllm_ops.fused_add_rms_norm(x, residual, weight, 1e-6)
    assert torch.equal(residual, summed)
    vllm_ops.register_torch_ops()
    out2 = torch.empty_like(out)
    torch.ops.pagedkv.rms_norm(out2, summed, weight, 1e-6)
    torch.cuda.synchronize()
    # The same formula on the same rounded sum (reduction orders of the two kernels may differ).
    assert float((out2.double() - x.double()).norm() / x.double().norm()) <= tolerance("bf16", 4096)
