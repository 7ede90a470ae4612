"""concat_and_cache_mla and concat_and_cache_mla_rope_fused through the Python package.

CPU part: pagedkv.cpu against independent NumPy formulations (concatenation, fp8 through
ml_dtypes with saturation, the 656-byte fp8_ds_mla entry, the RoPE rotation computed exactly in
float64 for bf16 inputs), the padding behaviour, and bad calls (a ValueError naming the
argument, nothing written). CUDA part (marked ``cuda``): naive and optimized against the CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

import cases
import pagedkv

FLT_MIN = np.float32(1.17549435e-38)


def fp8_e4m3_bytes(values: np.ndarray) -> np.ndarray:
    """E4M3 bytes of float32 values, round to nearest even, saturating (CUDA's SATFINITE)."""
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="the independent fp8 rounding")
    return np.clip(values, -448, 448).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)


def bf16_values(bits: np.ndarray) -> np.ndarray:
    return pagedkv.bfloat16_bits_to_float32(bits)


def mla_inputs(rng, tokens, rank, rope, dtype, model_view=True):
    latent = cases.random_activations(rng, (tokens, rank), dtype)
    projection = cases.random_activations(rng, (tokens, rank + rope), dtype)
    k_pe = projection[:, rank:] if model_view else np.ascontiguousarray(projection[:, rank:])
    return latent, k_pe


@pytest.mark.parametrize("dtype", cases.ACTIVATION_DTYPES)
def test_concat_and_cache_mla_auto_is_the_concatenation(dtype):
    rng = np.random.default_rng(cases.seed_of("mla auto", dtype))
    kv_c, k_pe = mla_inputs(rng, 6, 32, 8, dtype)
    slots = np.array([5, -1, 0, 9, 2, -1], np.int64)
    cache = cases.poisoned((3, 4, 40), cases.STORAGE[dtype])
    pagedkv.cpu.concat_and_cache_mla(cases.as_arg(kv_c, dtype), cases.as_arg(k_pe, dtype),
                                     cases.as_arg(cache, dtype), slots, "auto",
                                     np.ones(1, np.float32))
    expected = cases.poisoned((12, 40), cases.STORAGE[dtype])
    valid = slots >= 0
    expected[slots[valid]] = np.concatenate([kv_c, k_pe], axis=1)[valid]
    assert cache.reshape(12, 40).view(np.uint8).tobytes() == expected.view(np.uint8).tobytes()


def test_concat_and_cache_mla_fp8_is_the_saturating_e4m3_of_x_over_scale():
    rng = np.random.default_rng(3)
    kv_c, k_pe = mla_inputs(rng, 5, 64, 16, "f32")
    slots = np.array([1, 3, -1, 0, 7], np.int64)
    cache = cases.poisoned((2, 4, 80), np.uint8)
    scale = np.array([0.05], np.float32)
    pagedkv.cpu.concat_and_cache_mla(kv_c, k_pe, cache, slots, "fp8_e4m3", scale)
    expected = cases.poisoned((8, 80), np.uint8)
    valid = slots >= 0
    rows = np.concatenate([kv_c, k_pe], axis=1)[valid] / scale[0]
    expected[slots[valid]] = fp8_e4m3_bytes(rows.astype(np.float32))
    assert np.array_equal(cache.reshape(8, 80), expected)


def test_concat_and_cache_mla_fp8_ds_mla_entry():
    """Appendix-style recipe: per 128-tile scale max(amax / 448, FLT_MIN), E4M3 bytes, the four
    fp32 scales, then the bf16 RoPE bits."""
    rng = np.random.default_rng(11)
    kv_c, k_pe = mla_inputs(rng, 4, 512, 64, "bf16")
    kv_c[1, 128:256] = 0  # an all-zero tile: scale FLT_MIN
    slots = np.array([2, -1, 0, 5], np.int64)
    cache = cases.poisoned((3, 2, 656), np.uint8)
    pagedkv.cpu.concat_and_cache_mla(cases.as_arg(kv_c, "bf16"), cases.as_arg(k_pe, "bf16"),
                                     cache, slots, "fp8_ds_mla", np.ones(1, np.float32))
    entries = cache.reshape(6, 656)
    for t, slot in enumerate(slots):
        if slot < 0:
            continue
        tiles = bf16_values(kv_c[t]).reshape(4, 128)
        scales = np.maximum(np.abs(tiles).max(axis=1) / np.float32(448), FLT_MIN).astype(np.float32)
        record = np.concatenate([fp8_e4m3_bytes(tiles / scales[:, None]).reshape(-1),
                                 scales.view(np.uint8), np.ascontiguousarray(k_pe[t]).view(np.uint8)])
        assert np.array_equal(entries[slot], record), t
    untouched = [1, 3, 4]
    assert (entries[untouched] == cases.POISON).all()


def test_concat_and_cache_mla_rejections_name_the_argument():
    rng = np.random.default_rng(0)
    kv_c, k_pe = mla_inputs(rng, 2, 512, 64, "bf16")
    good = dict(kv_c=cases.as_arg(kv_c, "bf16"), k_pe=cases.as_arg(k_pe, "bf16"),
                slot_mapping=np.array([0, 1], np.int64), kv_cache_dtype="fp8_ds_mla",
                scale=np.ones(1, np.float32))
    bad = [
        ("kv_cache", dict(kv_cache=cases.poisoned((1, 4, 576), np.uint8))),
        ("kv_c", dict(kv_c=cases.as_arg(kv_c[:, :256], "bf16"))),
        ("kv_c", dict(kv_c=kv_c.view(np.float16), k_pe=np.ascontiguousarray(k_pe).view(np.float16))),
        ("slot_mapping", dict(slot_mapping=np.array([0, 4], np.int64))),
        ("slot_mapping", dict(slot_mapping=np.array([0, 1], np.int32))),
    ]
    for argument, change in bad:
        cache = cases.poisoned((1, 4, 656), np.uint8)
        args = dict(good, kv_cache=cache)
        args.update(change)
        with pytest.raises(ValueError, match=argument) as info:
            pagedkv.cpu.concat_and_cache_mla(**args)
        assert isinstance(info.value, pagedkv.InvalidArgument)
        assert (args["kv_cache"] == cases.POISON).all() and (cache == cases.POISON).all()


def rotate_reference(x, y, c, s):
    """The kernels' fma(x, c, -(y s)), fma(y, c, x s) for bf16 inputs: every product and sum is
    exact in float64, so one float64 → float32 rounding gives the fma's result."""
    y_s = (y * s).astype(np.float32).astype(np.float64)
    x_s = (x * s).astype(np.float32).astype(np.float64)
    return (x * c - y_s).astype(np.float32), (y * c + x_s).astype(np.float32)


@pytest.mark.parametrize("is_neox", (True, False))
def test_rope_fused_matches_numpy_and_rotates_padded_queries_only(is_neox):
    rng = np.random.default_rng(cases.seed_of("rope", is_neox))
    tokens, heads, rot, rank = 5, 3, 8, 16
    half = rot // 2
    queries = cases.random_activations(rng, (tokens, heads, 24), "bf16")
    q_pe = queries[:, :, 16:]  # a view, as in the model
    kv_c, k_pe = mla_inputs(rng, tokens, rank, rot, "bf16")
    cos_sin = pagedkv.float32_to_bfloat16_bits(rng.uniform(-1, 1, (9, rot)).astype(np.float32))
    positions = np.array([8, 0, 3, 3, 1, 7], np.int64)  # one padding element past T
    slots = np.array([0, -1, 5, 2, -1], np.int64)
    q_before, k_before = q_pe.copy(), k_pe.copy()
    cache = cases.poisoned((2, 4, rank + rot), np.uint16)
    pagedkv.cpu.concat_and_cache_mla_rope_fused(
        positions, cases.as_arg(q_pe, "bf16"), cases.as_arg(k_pe, "bf16"),
        cases.as_arg(kv_c, "bf16"), cases.as_arg(cos_sin, "bf16"), is_neox, slots,
        cases.as_arg(cache, "bf16"), "auto", np.ones(1, np.float32))

    def rotated(head_bits, p):
        v = bf16_values(head_bits).astype(np.float64)
        c = bf16_values(cos_sin[p, :half]).astype(np.float64)
        s = bf16_values(cos_sin[p, half:]).astype(np.float64)
        first = np.arange(half) if is_neox else 2 * np.arange(half)
        second = first + half if is_neox else first + 1
        out = v.astype(np.float32)
        out[first], out[second] = rotate_reference(v[first], v[second], c, s)
        return pagedkv.float32_to_bfloat16_bits(out)

    for t in range(tokens):
        for h in range(heads):  # every query, padding included
            assert np.array_equal(q_pe[t, h], rotated(q_before[t, h], positions[t])), (t, h)
        if slots[t] < 0:  # padding: key untouched
            assert np.array_equal(k_pe[t], k_before[t])
        else:
            assert np.array_equal(k_pe[t], rotated(k_before[t], positions[t]))
            entry = cache.reshape(8, rank + rot)[slots[t]]
            assert np.array_equal(entry, np.concatenate([kv_c[t], k_pe[t]]))


def test_rope_fused_rejections_name_the_argument_and_write_nothing():
    rng = np.random.default_rng(1)
    q_pe = cases.random_activations(rng, (2, 2, 8), "f32")
    kv_c, k_pe = mla_inputs(rng, 2, 16, 8, "f32", model_view=False)
    good = dict(positions=np.array([0, 3], np.int64), q_pe=q_pe, k_pe=k_pe, kv_c=kv_c,
                cos_sin_cache=np.ones((4, 8), np.float32), is_neox=True,
                slot_mapping=np.array([0, 1], np.int64), kv_cache_dtype="fp8_e4m3",
                kv_cache_scale=np.ones(1, np.float32))
    bad = [
        ("positions", dict(positions=np.array([0, 4], np.int64))),
        ("cos_sin_cache", dict(cos_sin_cache=np.ones((4, 10), np.float32))),
        ("kv_cache_scale", dict(kv_cache_scale=np.ones(2, np.float32))),
        ("slot_mapping", dict(slot_mapping=np.array([0, 1], np.int32))),
    ]
    for argument, change in bad:
        q_before, k_before = q_pe.copy(), k_pe.copy()
        cache = cases.poisoned((1, 2, 24), np.uint8)
        args = dict(good, kv_cache=cache)
        args.update(change)
        with pytest.raises(ValueError, match=argument):
            pagedkv.cpu.concat_and_cache_mla_rope_fused(**args)
        assert (cache == cases.POISON).all()
        assert np.array_equal(q_pe, q_before) and np.array_equal(k_pe, k_before)


@pytest.mark.cuda
@pytest.mark.parametrize("kv_cache_dtype", ("auto", "fp8_e4m3", "fp8_ds_mla"))
def test_concat_and_cache_mla_cuda_matches_cpu(kv_cache_dtype):
    import torch

    torch.manual_seed(0)
    tokens = 300
    kv_c = torch.randn(tokens, 512, dtype=torch.bfloat16, device="cuda") * 3
    projection = torch.randn(tokens, 576, dtype=torch.bfloat16, device="cuda")
    k_pe = projection[:, 512:]
    slots = torch.randperm(8 * 64, device="cuda")[:tokens].to(torch.int64)
    slots[::7] = -1
    entry = 656 if kv_cache_dtype == "fp8_ds_mla" else 576
    cache_dtype = torch.bfloat16 if kv_cache_dtype == "auto" else torch.uint8
    scale = torch.tensor([0.05], device="cuda")
    cpu_cache = torch.full((8, 64, entry), 0, dtype=cache_dtype)
    cpu_cache.view(torch.uint8).fill_(cases.POISON)
    pagedkv.cpu.concat_and_cache_mla(kv_c.cpu(), k_pe.cpu(), cpu_cache, slots.cpu(),
                                     kv_cache_dtype, scale.cpu())
    for impl in (pagedkv.naive, pagedkv.optimized):
        cache = torch.empty_like(cpu_cache, device="cuda")
        cache.view(torch.uint8).fill_(cases.POISON)
        impl.concat_and_cache_mla(kv_c, k_pe, cache, slots, kv_cache_dtype, scale)
        torch.cuda.synchronize()
        assert torch.equal(cache.cpu().view(torch.uint8), cpu_cache.view(torch.uint8))


@pytest.mark.cuda
@pytest.mark.parametrize("is_neox", (True, False))
def test_rope_fused_cuda_matches_cpu_bit_for_bit(is_neox):
    import torch

    torch.manual_seed(1)
    tokens, heads = 200, 16
    q = torch.randn(tokens, heads, 192, dtype=torch.bfloat16, device="cuda")
    projection = torch.randn(tokens, 576, dtype=torch.bfloat16, device="cuda")
    kv_c = torch.randn(tokens, 512, dtype=torch.bfloat16, device="cuda")
    cos_sin = torch.rand(4096, 64, dtype=torch.bfloat16, device="cuda") * 2 - 1
    positions = torch.randint(0, 4096, (tokens,), device="cuda")
    slots = torch.randperm(8 * 64, device="cuda")[:tokens].to(torch.int64)
    slots[::5] = -1
    scale = torch.tensor([0.02], device="cuda")
    cpu_q, cpu_projection = q.cpu(), projection.cpu()
    cpu_cache = torch.zeros(8, 64, 576, dtype=torch.bfloat16)
    pagedkv.cpu.concat_and_cache_mla_rope_fused(
        positions.cpu(), cpu_q[:, :, 128:], cpu_projection[:, 512:], kv_c.cpu(), cos_sin.cpu(),
        is_neox, slots.cpu(), cpu_cache, "auto", scale.cpu())
    for impl in (pagedkv.naive, pagedkv.optimized):
        q_run, projection_run = q.clone(), projection.clone()
        cache = torch.zeros(8, 64, 576, dtype=torch.bfloat16, device="cuda")
        impl.concat_and_cache_mla_rope_fused(positions, q_run[:, :, 128:],
                                             projection_run[:, 512:], kv_c, cos_sin, is_neox,
                                             slots, cache, "auto", scale)
        torch.cuda.synchronize()
        assert torch.equal(q_run.cpu().view(torch.int16), cpu_q.view(torch.int16))
        assert torch.equal(projection_run.cpu().view(torch.int16), cpu_projection.view(torch.int16))
        assert torch.equal(cache.cpu().view(torch.int16), cpu_cache.view(torch.int16))
