"""convert_fp8 through the Python package.

CPU part: pagedkv.cpu.convert_fp8 on NumPy arrays against an independent NumPy + ml_dtypes
formulation (float32 division or multiplication, then ml_dtypes' round-to-nearest-even casts,
clamped first to emulate the kernels' saturation), bit for bit: every fp8 code dequantized into
f32 / f16 / bf16, every f16 and bf16 bit pattern quantized, the round trip, a strided view, and
bad calls (a ValueError naming the argument, the output unchanged). CUDA part (marked ``cuda``):
pagedkv.naive and pagedkv.optimized against pagedkv.cpu on torch tensors, and
pagedkv.vllm_ops.convert_fp8 with vLLM's signature.
"""

from __future__ import annotations

import numpy as np
import pytest

import cases
import pagedkv

try:  # the independent fp8 rounding of the CPU tests; the CUDA tests compare with the CPU
    import ml_dtypes  # reference and run without it (the GPU machine may not have it)
    FORMATS = {"fp8": ml_dtypes.float8_e4m3fn, "fp8_e4m3": ml_dtypes.float8_e4m3fn,
               "fp8_e5m2": ml_dtypes.float8_e5m2}
except ImportError:
    ml_dtypes, FORMATS = None, {}
needs_ml_dtypes = pytest.mark.skipif(ml_dtypes is None,
                                     reason="the independent fp8 rounding needs ml_dtypes")
FP8_MAX = {"fp8": 448.0, "fp8_e4m3": 448.0, "fp8_e5m2": 57344.0}
SCALES = (1.0, 0.0625, 0.0123, 3.7)


def wide_values(array: np.ndarray, dtype: str) -> np.ndarray:
    """float32 value of every element (exact): f32, f16, or bf16 bits in a uint16 array."""
    if dtype == "bf16":
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(np.float32)


def quantize_reference(values: np.ndarray, scale: float, kv_dtype: str) -> np.ndarray:
    """fp8(x / scale) bytes: fp32 division, saturation to +-max, round to nearest even."""
    with np.errstate(all="ignore"):  # inf / NaN inputs and overflowing quotients are intended
        scaled = values / np.float32(scale)
    clamped = np.clip(scaled, -FP8_MAX[kv_dtype], FP8_MAX[kv_dtype]).astype(np.float32)
    return clamped.astype(FORMATS[kv_dtype]).view(np.uint8)


def dequantize_reference(codes: np.ndarray, scale: float, kv_dtype: str, dtype: str):
    """float(fp8) * scale in fp32, rounded to dtype (bf16 as uint16 bits)."""
    values = codes.view(FORMATS[kv_dtype]).astype(np.float32) * np.float32(scale)
    if dtype == "bf16":
        return pagedkv.float32_to_bfloat16_bits(values)
    with np.errstate(all="ignore"):  # E5M2 × 3.7 overflows f16 to inf, as it should
        return values.astype(cases.STORAGE[dtype])


def same_bits_or_both_nan(actual: np.ndarray, expected: np.ndarray, dtype: str) -> None:
    """Equal bit patterns, except that NaN only has to be NaN (payloads differ by library)."""
    actual_f = wide_values(actual, dtype)
    expected_f = wide_values(expected, dtype)
    nan = np.isnan(expected_f)
    assert np.array_equal(np.isnan(actual_f), nan)
    np.testing.assert_array_equal(actual[~nan].view(np.uint8 if dtype == "u8" else actual.dtype),
                                  expected[~nan])


@pytest.mark.parametrize("kv_dtype", ("fp8_e4m3", "fp8_e5m2"))
@pytest.mark.parametrize("dtype", cases.ACTIVATION_DTYPES)
@pytest.mark.parametrize("scale", SCALES)
@needs_ml_dtypes
def test_every_code_dequantizes_like_numpy(kv_dtype, dtype, scale):
    codes = np.arange(256, dtype=np.uint8)
    out = cases.poisoned((256,), cases.STORAGE[dtype])
    pagedkv.cpu.convert_fp8(cases.as_arg(out, dtype), codes, scale, kv_dtype)
    same_bits_or_both_nan(out, dequantize_reference(codes, scale, kv_dtype, dtype), dtype)


@pytest.mark.parametrize("kv_dtype", ("fp8", "fp8_e5m2"))
@pytest.mark.parametrize("dtype", ("f16", "bf16"))
@pytest.mark.parametrize("scale", SCALES)
@needs_ml_dtypes
def test_every_16_bit_pattern_quantizes_like_numpy(kv_dtype, dtype, scale):
    patterns = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    wide = patterns.view(np.float16) if dtype == "f16" else patterns
    out = cases.poisoned((65536,), np.uint8)
    pagedkv.cpu.convert_fp8(out, cases.as_arg(wide, dtype), scale, kv_dtype)
    values = wide_values(wide, dtype)
    expected = quantize_reference(values, scale, kv_dtype)
    nan = np.isnan(values)
    assert (out[nan] == 0x7F).all()  # every NaN becomes the canonical NaN byte
    np.testing.assert_array_equal(out[~nan], expected[~nan])


@needs_ml_dtypes
def test_f32_quantizes_like_numpy_and_saturates():
    rng = np.random.default_rng(3)
    values = (rng.standard_normal(10000) * 10.0 ** rng.integers(-6, 6, 10000)).astype(np.float32)
    values[:4] = [np.inf, -np.inf, 1e30, -465.0]
    out = np.zeros(values.shape, np.uint8)
    pagedkv.cpu.convert_fp8(out, values, 0.5, "fp8")
    np.testing.assert_array_equal(out, quantize_reference(values, 0.5, "fp8"))
    assert list(out[:4]) == [0x7E, 0xFE, 0x7E, 0xFE]  # +-448: saturated, never NaN


@pytest.mark.parametrize("kv_dtype", ("fp8_e4m3", "fp8_e5m2"))
@pytest.mark.parametrize("dtype", cases.ACTIVATION_DTYPES)
@needs_ml_dtypes
def test_round_trip_gives_back_every_finite_code(kv_dtype, dtype):
    codes = np.arange(256, dtype=np.uint8)
    wide = np.zeros(256, cases.STORAGE[dtype])
    back = np.zeros(256, np.uint8)
    pagedkv.cpu.convert_fp8(cases.as_arg(wide, dtype), codes, 1.0, kv_dtype)
    pagedkv.cpu.convert_fp8(back, cases.as_arg(wide, dtype), 1.0, kv_dtype)
    decoded = codes.view(FORMATS[kv_dtype]).astype(np.float32)
    finite = np.isfinite(decoded)
    np.testing.assert_array_equal(back[finite], codes[finite])
    assert (back[np.isnan(decoded)] == 0x7F).all()
    inf = np.isinf(decoded)  # E5M2 only: saturates to +-57344
    np.testing.assert_array_equal(back[inf], np.where(decoded[inf] > 0, 0x7B, 0xFB))


@needs_ml_dtypes
def test_ml_dtypes_arrays_are_accepted_directly():
    values = np.array([1.0, -2.0, 448.0, 1000.0], np.float32)
    out = np.zeros(4, ml_dtypes.float8_e4m3fn)
    pagedkv.cpu.convert_fp8(out, values, 1.0, "fp8")
    np.testing.assert_array_equal(out.astype(np.float32), [1.0, -2.0, 448.0, 448.0])
    back = np.zeros(4, ml_dtypes.bfloat16)
    pagedkv.cpu.convert_fp8(back, out, 2.0, "fp8")
    np.testing.assert_array_equal(back.astype(np.float32), [2.0, -4.0, 896.0, 896.0])


@needs_ml_dtypes
def test_strided_views():
    """A transposed input and an output with a row pitch: converted by their strides."""
    rng = np.random.default_rng(5)
    base = (rng.standard_normal((40, 24)) * 100).astype(np.float32)
    values = base.T  # [24, 40], strides (1, 24) in elements
    pitched = np.full((24, 48), 0xA5, np.uint8)
    out = pitched[:, 4:44]
    pagedkv.cpu.convert_fp8(out, values, 0.25, "fp8_e5m2")
    np.testing.assert_array_equal(out, quantize_reference(values, 0.25, "fp8_e5m2"))
    assert (pitched[:, :4] == 0xA5).all() and (pitched[:, 44:] == 0xA5).all()


@pytest.mark.parametrize("bad, argument", [
    (dict(kv_dtype="auto"), "kv_dtype"),
    (dict(kv_dtype="fp8_ds_mla"), "kv_dtype"),
    (dict(scale=0.0), "scale"),
    (dict(scale=float("nan")), "scale"),
    (dict(output=np.zeros((4, 8), np.uint8), input=np.zeros((4, 8), np.uint8)), "output"),
    (dict(output=np.zeros((4, 8), np.float16)), "output"),
    (dict(output=np.zeros((8, 4), np.uint8)), "output"),
    (dict(input=np.zeros((4, 8), np.int32)), "input"),
])
def test_bad_calls_name_the_argument_and_write_nothing(bad, argument):
    call = dict(output=np.full((4, 8), 0xA5, np.uint8), input=np.ones((4, 8), np.float32),
                scale=1.0, kv_dtype="fp8")
    call.update(bad)
    before = call["output"].copy()
    with pytest.raises(pagedkv.InvalidArgument, match=argument):
        pagedkv.cpu.convert_fp8(**call)
    np.testing.assert_array_equal(call["output"], before)


def test_zero_elements_is_a_no_op():
    pagedkv.cpu.convert_fp8(np.zeros((0, 8), np.uint8), np.zeros((0, 8), np.float32), 1.0, "fp8")


# --- CUDA -----------------------------------------------------------------------------------


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.cuda
@pytest.mark.parametrize("impl", ("naive", "optimized"))
@pytest.mark.parametrize("dtype", ("float32", "float16", "bfloat16"))
@pytest.mark.parametrize("kv_dtype", ("fp8", "fp8_e5m2"))
def test_cuda_matches_cpu_both_directions(impl, dtype, kv_dtype):
    torch = _torch()
    generator = torch.Generator().manual_seed(7)
    x = (torch.randn(37, 16, 8, 128, generator=generator) * 100).to(getattr(torch, dtype))
    scale = 0.0123
    expected = torch.empty(x.shape, dtype=torch.uint8)
    pagedkv.cpu.convert_fp8(expected, x, scale, kv_dtype)
    out = torch.empty(x.shape, dtype=torch.uint8, device="cuda")
    getattr(pagedkv, impl).convert_fp8(out, x.cuda(), scale, kv_dtype)
    torch.cuda.synchronize()
    assert torch.equal(out.cpu(), expected)

    back_expected = torch.empty(x.shape, dtype=x.dtype)
    pagedkv.cpu.convert_fp8(back_expected, expected, scale, kv_dtype)
    back = torch.empty(x.shape, dtype=x.dtype, device="cuda")
    getattr(pagedkv, impl).convert_fp8(back, out, scale, kv_dtype)
    torch.cuda.synchronize()
    assert torch.equal(back.cpu().view(torch.uint8), back_expected.view(torch.uint8))


@pytest.mark.cuda
def test_vllm_ops_convert_fp8_on_torch_tensors():
    """vLLM's test pattern: quantize a bf16 cache, read it back; torch's own cast agrees."""
    torch = _torch()
    from pagedkv import vllm_ops

    cache = torch.randn(64, 16, 8, 128, device="cuda", dtype=torch.bfloat16)
    cache_fp8 = torch.empty_like(cache, dtype=torch.uint8)
    vllm_ops.convert_fp8(cache_fp8, cache, 1.0, "fp8")
    expected = cache.float().clamp(-448, 448).to(torch.float8_e4m3fn).view(torch.uint8)
    assert torch.equal(cache_fp8, expected)
    converted = torch.empty_like(cache)
    vllm_ops.convert_fp8(converted, cache_fp8, 1.0, "fp8")
    assert torch.equal(converted, cache_fp8.view(torch.float8_e4m3fn).to(torch.bfloat16))
