"""rotary_embedding through the Python package.

CPU part: pagedkv.cpu against an independent NumPy formulation of vLLM's rotation (§3.3 of the
spec: x c - y s, y c + x s per pair, NeoX halves or GPT-J neighbours, from rope_dim_offset, the
sines negated for inverse), bit for bit: NumPy has no fma, so the reference forms x c exactly
in float64 (a product of two 24-bit significands) and subtracts the float32 product y s; the
one rounding to float32 after that is the kernels' fma but for double rounding, which these
inputs do not meet. Then the validation rules through the bindings, key=None and the defaults.
CUDA part (marked ``cuda``): pagedkv.naive and pagedkv.optimized against pagedkv.cpu on torch
tensors, and pagedkv.vllm_ops with vLLM's signature.
"""

from __future__ import annotations

import numpy as np
import pytest

import cases
import pagedkv


def to_float32(array: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bf16":
        return pagedkv.bfloat16_bits_to_float32(array)
    return array.astype(np.float32)


def from_float32(values: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bf16":
        return pagedkv.float32_to_bfloat16_bits(values.astype(np.float32))
    return values.astype(cases.STORAGE[dtype])


def cos_sin_cache(max_position: int, rot_dim: int, base: float, dtype: str) -> np.ndarray:
    """vLLM's RotaryEmbedding._compute_cos_sin_cache: float32, then cast."""
    inv_freq = 1.0 / base ** (np.arange(0, rot_dim, 2, dtype=np.float32) / rot_dim)
    freqs = np.outer(np.arange(max_position, dtype=np.float32), inv_freq.astype(np.float32))
    cache = np.concatenate([np.cos(freqs), np.sin(freqs)], axis=-1).astype(np.float32)
    return from_float32(cache, dtype)


def rotate_numpy(positions, heads, cache, cache_dtype, dtype, is_neox, offset, inverse):
    """heads [T, H, D] (storage dtype) rotated as vLLM's rotary_embedding, one rounding each."""
    out = heads.copy()
    x_all = to_float32(heads, dtype)
    table = to_float32(cache, cache_dtype)
    half = table.shape[1] // 2
    cos = table[positions, :half][:, None, :]                       # [T, 1, half]
    sin = table[positions, half:][:, None, :] * (-1.0 if inverse else 1.0)
    j = np.arange(half)
    first = offset + (j if is_neox else 2 * j)
    second = offset + (half + j if is_neox else 2 * j + 1)
    x, y = x_all[..., first], x_all[..., second]
    ys = (y * sin).astype(np.float32)                                 # rounded products
    xs = (x * sin).astype(np.float32)
    new_x = (x.astype(np.float64) * cos - ys).astype(np.float32)     # x c exact, one rounding
    new_y = (y.astype(np.float64) * cos + xs).astype(np.float32)
    out[..., first] = from_float32(new_x, dtype)
    out[..., second] = from_float32(new_y, dtype)
    return out


@pytest.mark.parametrize("dtype", cases.ACTIVATION_DTYPES)
@pytest.mark.parametrize("cache_is_f32", (False, True))
@pytest.mark.parametrize("is_neox", (True, False))
@pytest.mark.parametrize("head_size,rot_dim,offset", ((64, 64, 0), (64, 32, 16), (40, 8, 3)))
@pytest.mark.parametrize("inverse", (False, True))
def test_cpu_matches_numpy(dtype, cache_is_f32, is_neox, head_size, rot_dim, offset, inverse):
    rng = np.random.default_rng(cases.seed_of(dtype, cache_is_f32, is_neox, head_size, inverse))
    tokens, num_heads, num_kv_heads, max_position = 5, 4, 2, 300
    cache_dtype = "f32" if cache_is_f32 else dtype
    cache = cos_sin_cache(max_position, rot_dim, 10000.0, cache_dtype)
    positions = rng.integers(0, max_position, tokens).astype(np.int64)
    qkv = from_float32(rng.uniform(-4, 4, (tokens, num_heads + 2 * num_kv_heads, head_size)),
                       dtype)
    query = qkv[:, :num_heads].reshape(tokens, num_heads * head_size)  # a flat view, rows apart
    key = qkv[:, num_heads:num_heads + num_kv_heads]                   # a view: [T, KVH, D]
    expected_q = rotate_numpy(positions, qkv[:, :num_heads], cache, cache_dtype, dtype, is_neox,
                              offset, inverse)
    expected_k = rotate_numpy(positions, key, cache, cache_dtype, dtype, is_neox, offset, inverse)
    values_before = qkv[:, num_heads + num_kv_heads:].copy()
    pagedkv.cpu.rotary_embedding(positions, cases.as_arg(query, dtype), cases.as_arg(key, dtype),
                                 head_size, cases.as_arg(cache, cache_dtype), is_neox, offset,
                                 inverse)
    np.testing.assert_array_equal(query.reshape(tokens, num_heads, head_size), expected_q)
    np.testing.assert_array_equal(qkv[:, num_heads:num_heads + num_kv_heads], expected_k)
    np.testing.assert_array_equal(qkv[:, num_heads + num_kv_heads:], values_before)


def test_cpu_batched_positions_and_no_key():
    rng = np.random.default_rng(5)
    cache = cos_sin_cache(64, 16, 500000.0, "f32")
    positions = rng.integers(0, 64, (2, 3)).astype(np.int64)           # [B, S]
    query = rng.uniform(-4, 4, (2, 3, 2, 16)).astype(np.float32)        # [B, S, H, D]
    expected = rotate_numpy(positions.reshape(-1), query.reshape(6, 2, 16), cache, "f32", "f32",
                            True, 0, False)
    pagedkv.cpu.rotary_embedding(positions, query, None, 16, cache, True)  # defaults: 0, False
    np.testing.assert_array_equal(query.reshape(6, 2, 16), expected)


def test_inverse_undoes_an_exact_rotation():
    # Angles of 0, 90, 180 and 270 degrees: cos and sin in {-1, 0, 1}, every step exact.
    quarter = (np.arange(8)[:, None] + np.arange(4)[None, :]) % 4
    cos = np.choose(quarter, [1.0, 0.0, -1.0, 0.0]).astype(np.float32)
    sin = np.choose(quarter, [0.0, 1.0, 0.0, -1.0]).astype(np.float32)
    cache = np.concatenate([cos, sin], axis=1)                          # [8, 8]
    positions = np.arange(8, dtype=np.int64)
    query = np.random.default_rng(1).uniform(-4, 4, (8, 3, 8)).astype(np.float32)
    original = query.copy()
    pagedkv.cpu.rotary_embedding(positions, query, None, 8, cache, False)
    assert not np.array_equal(query, original)
    pagedkv.cpu.rotary_embedding(positions, query, None, 8, cache, False, inverse=True)
    np.testing.assert_array_equal(query, original)


def test_cpu_rejects_and_writes_nothing():
    positions = np.array([0, 3, 9], np.int64)
    query = np.full((3, 2 * 8), 7.0, np.float32)
    key = np.full((3, 8), 5.0, np.float32)
    cache = np.ones((10, 8), np.float32)
    call = pagedkv.cpu.rotary_embedding
    with pytest.raises(pagedkv.InvalidArgument, match=r"positions\[2\] = 9"):
        call(positions, query, key, 8, cache[:9], True)                 # 9 rows only
    with pytest.raises(pagedkv.InvalidArgument, match=r"positions\[1\] = -1"):
        call(np.array([0, -1, 2], np.int64), query, key, 8, cache, True)
    with pytest.raises(pagedkv.InvalidArgument, match="cos_sin_cache: rot_dim"):
        call(positions, query, key, 8, np.ones((10, 7), np.float32), True)
    with pytest.raises(pagedkv.InvalidArgument, match="rope_dim_offset"):
        call(positions, query, key, 8, cache, True, 2)                  # 8 + 2 > head_size
    with pytest.raises(pagedkv.InvalidArgument, match="key"):
        call(positions, query, key[:2], 8, cache, True)                 # leading dims
    with pytest.raises(pagedkv.InvalidArgument, match="query"):
        call(positions, np.full((3, 32), 7.0, np.float32)[:, ::2], key, 8, cache, True)
    with pytest.raises(pagedkv.InvalidArgument, match="num_kv_heads"):
        call(positions, np.full((3, 3 * 8), 7.0, np.float32), np.full((3, 16), 5.0, np.float32),
             8, cache, True)                                              # 3 % 2 heads
    with pytest.raises(pagedkv.InvalidArgument, match="key"):
        call(positions, query, key.astype(np.float16), 8, cache, True)
    with pytest.raises(pagedkv.InvalidArgument, match="positions"):
        call(positions.astype(np.int32), query, key, 8, cache, True)
    assert (query == 7.0).all() and (key == 5.0).all()
    call(np.zeros(0, np.int64), np.zeros((0, 16), np.float32), None, 8, cache, True)  # no tokens


def test_vllm_ops_cpu_tensors():
    torch = pytest.importorskip("torch")
    from pagedkv import vllm_ops
    positions = torch.tensor([1, 0, 5], dtype=torch.int64)
    query = torch.randn(3, 4 * 16)
    key = torch.randn(3, 16)
    cache = torch.from_numpy(cos_sin_cache(8, 16, 10000.0, "f32"))
    expected_q = query.numpy().reshape(3, 4, 16).copy()
    expected_q = rotate_numpy(positions.numpy(), expected_q, cache.numpy(), "f32", "f32", True, 0,
                              False)
    vllm_ops.rotary_embedding(positions, query, key, 16, cache, True)
    np.testing.assert_array_equal(query.numpy().reshape(3, 4, 16), expected_q)


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.cuda
@pytest.mark.parametrize("impl", ("naive", "optimized"))
@pytest.mark.parametrize("dtype", ("f32", "f16", "bf16"))
@pytest.mark.parametrize("is_neox", (True, False))
def test_cuda_matches_cpu(impl, dtype, is_neox):
    torch = _torch()
    import torch_cases as tc
    tokens, heads, kv_heads, head_size = 300, 32, 8, 128
    qkv = torch.randn(tokens, (heads + 2 * kv_heads) * head_size,
                      generator=tc.generator(7)).to(tc.DTYPES[dtype])
    positions = torch.randint(0, 4096, (tokens,), generator=tc.generator(8))
    cache = torch.from_numpy(cos_sin_cache(4096, head_size, 500000.0, "f32"))
    expected = qkv.clone()
    pagedkv.cpu.rotary_embedding(positions, expected[:, :heads * head_size],
                                 expected[:, heads * head_size:(heads + kv_heads) * head_size],
                                 head_size, cache, is_neox)
    got = qkv.cuda()
    getattr(pagedkv, impl).rotary_embedding(
        positions.cuda(), got[:, :heads * head_size],
        got[:, heads * head_size:(heads + kv_heads) * head_size], head_size, cache.cuda(), is_neox)
    torch.cuda.synchronize()
    assert torch.equal(got.cpu().view(torch.uint8), expected.view(torch.uint8))


@pytest.mark.cuda
def test_vllm_ops_cuda_tensors():
    torch = _torch()
    from pagedkv import vllm_ops
    positions = torch.tensor([3, 1, 2], dtype=torch.int64, device="cuda")
    query = torch.randn(3, 2, 64, device="cuda", dtype=torch.bfloat16)
    cache = torch.from_numpy(cos_sin_cache(4, 64, 10000.0, "f32")).to(torch.bfloat16).cuda()
    expected = query.cpu().clone()
    pagedkv.cpu.rotary_embedding(positions.cpu(), expected, None, 64, cache.cpu(), False, 0, True)
    vllm_ops.rotary_embedding(positions, query, None, 64, cache, False, inverse=True)
    torch.cuda.synchronize()
    assert torch.equal(query.cpu(), expected)
