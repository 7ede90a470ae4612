"""indexer_k_quant_and_cache and cp_gather_indexer_k_quant_cache through the Python package.

CPU part: pagedkv.cpu against an independent NumPy formulation (per-tile amax, the scale, E4M3
through ml_dtypes with saturation, the block-planar cache), the round trip write -> gather,
rows past cu_seq_lens[-1] left alone, and bad calls (a ValueError naming the argument, nothing
written). CUDA part (marked ``cuda``): naive and optimized against the CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

import cases
import pagedkv

try:  # the CPU tests' independent fp8 decode; the CUDA tests compare with the CPU reference
    import ml_dtypes  # and run without it (the GPU machine may not have it)
except ImportError:
    ml_dtypes = None
needs_ml_dtypes = pytest.mark.skipif(ml_dtypes is None,
                                     reason="the independent fp8 decode needs ml_dtypes")


def fp8_e4m3_bytes(values: np.ndarray) -> np.ndarray:
    """E4M3 bytes of float32 values, round to nearest even, saturating (CUDA's SATFINITE)."""
    return np.clip(values, -448, 448).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)


def quantize(keys_bits: np.ndarray, ue8m0: bool):
    """Codes [T, D] and scales [T, D // 128] of bf16 keys (bits), tile by tile."""
    values = pagedkv.bfloat16_bits_to_float32(keys_bits)
    tiles = values.reshape(values.shape[0], -1, 128)
    amax = np.abs(tiles).max(axis=2)
    scales = (np.maximum(amax, np.float32(1e-4)) / np.float32(448)).astype(np.float32)
    if ue8m0:
        mantissa, exponent = np.frexp(scales)
        scales = np.where(mantissa == 0.5, scales, np.ldexp(np.float32(1), exponent))
        scales = scales.astype(np.float32)
    codes = fp8_e4m3_bytes((tiles / scales[:, :, None]).astype(np.float32))
    return codes.reshape(values.shape), scales


def write_expected(cache: np.ndarray, slots, codes, scales):
    """The block-planar layout: per block, block_size × D codes, then block_size × G scales."""
    num_blocks, block_size, _ = cache.shape
    head_dim, tiles = codes.shape[1], scales.shape[1]
    flat = cache.reshape(num_blocks, -1)
    for t, slot in enumerate(slots):
        if slot < 0:
            continue
        block, offset = divmod(int(slot), block_size)
        flat[block, offset * head_dim:(offset + 1) * head_dim] = codes[t]
        start = block_size * head_dim + offset * tiles * 4
        flat[block, start:start + tiles * 4] = scales[t].view(np.uint8)


@pytest.mark.parametrize("ue8m0", (False, True))
@pytest.mark.parametrize("head_dim", (128, 256))
@needs_ml_dtypes
def test_indexer_k_quant_and_cache_is_the_tile_quantization_in_the_planar_layout(ue8m0, head_dim):
    rng = np.random.default_rng(cases.seed_of("indexer write", ue8m0, head_dim))
    tokens, block_size, num_blocks = 40, 16, 4
    keys = cases.random_activations(rng, (tokens, head_dim), "bf16")
    slots = cases.slots_for(rng, tokens, num_blocks * block_size, padding=5)
    slot_bytes = head_dim + 4 * head_dim // 128
    cache = cases.poisoned((num_blocks, block_size, slot_bytes), np.uint8)
    pagedkv.cpu.indexer_k_quant_and_cache(pagedkv.bfloat16_bits(keys), cache, slots, 128,
                                          "ue8m0" if ue8m0 else "")
    expected = cases.poisoned((num_blocks, block_size, slot_bytes), np.uint8)
    codes, scales = quantize(keys, ue8m0)
    write_expected(expected, slots, codes, scales)
    assert cache.tobytes() == expected.tobytes()


def gather_inputs(rng, lengths, block_size, num_blocks):
    cu = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    max_blocks = max(1, max(-(-n // block_size) for n in lengths))
    ids = rng.permutation(num_blocks).astype(np.int32)
    table = np.full((len(lengths), max_blocks), 1 << 30, np.int32)  # unused entries: never read
    used = 0
    for b, n in enumerate(lengths):
        count = -(-n // block_size)
        table[b, :count] = ids[used:used + count]
        used += count
    return table, cu


@needs_ml_dtypes
def test_round_trip_write_then_gather_gives_back_the_stored_codes_and_scales():
    rng = np.random.default_rng(11)
    lengths, block_size, num_blocks = [33, 0, 70, 5], 16, 12
    table, cu = gather_inputs(rng, lengths, block_size, num_blocks)
    total = int(cu[-1])
    slots = np.concatenate([
        table[b, np.arange(n) // block_size].astype(np.int64) * block_size
        + np.arange(n) % block_size for b, n in enumerate(lengths)]).astype(np.int64)
    keys = cases.random_activations(rng, (total, 128), "bf16")
    cache = cases.poisoned((num_blocks, block_size, 132), np.uint8)
    pagedkv.cpu.indexer_k_quant_and_cache(pagedkv.bfloat16_bits(keys), cache, slots, 128, "ue8m0")
    extra = 3
    dst_k = cases.poisoned((total + extra, 128), np.uint8)
    dst_scale = cases.poisoned((total + extra, 4), np.uint8)
    pagedkv.cpu.cp_gather_indexer_k_quant_cache(cache, dst_k, dst_scale, table, cu)
    codes, scales = quantize(keys, True)
    assert dst_k[:total].tobytes() == codes.tobytes()
    assert dst_scale[:total].view(np.float32).tobytes() == scales.tobytes()
    assert (dst_k[total:] == cases.POISON).all() and (dst_scale[total:] == cases.POISON).all()
    # Decoding approximates the keys within E4M3's half ulp (2^-4 relative; no saturation).
    decoded = dst_k[:total].view(ml_dtypes.float8_e4m3fn).astype(np.float32) * scales
    values = pagedkv.bfloat16_bits_to_float32(keys)
    bound = np.maximum(np.abs(values) / 16, scales * 2.0 ** -10)
    assert (np.abs(decoded - values) <= bound).all()


def test_indexer_bad_calls_name_the_argument_and_write_nothing():
    keys = pagedkv.bfloat16_bits(np.ones((2, 128), np.uint16))
    good = dict(k=keys, kv_cache=None, slot_mapping=np.array([0, 5], np.int64),
                quant_block_size=128, kv_cache_dtype="ue8m0")
    bad = [
        ("quant_block_size", dict(quant_block_size=64)),
        ("kv_cache", dict(kv_cache=cases.poisoned((2, 4, 136), np.uint8))),
        ("slot_mapping", dict(slot_mapping=np.array([0, 1], np.int32))),
        ("slot_mapping", dict(slot_mapping=np.array([0, 8], np.int64))),
        ("k", dict(k=np.ones((2, 128), np.float32))),
    ]
    for argument, change in bad:
        cache = cases.poisoned((2, 4, 132), np.uint8)
        args = dict(good, kv_cache=cache)
        args.update(change)
        with pytest.raises(ValueError, match=argument) as info:
            pagedkv.cpu.indexer_k_quant_and_cache(**args)
        assert isinstance(info.value, pagedkv.InvalidArgument)
        assert (args["kv_cache"] == cases.POISON).all() and (cache == cases.POISON).all()


def test_gather_bad_calls_name_the_argument_and_write_nothing():
    cache = np.zeros((4, 4, 132), np.uint8)
    table = np.array([[0, 1], [2, 3]], np.int32)
    bad = [
        ("cu_seq_lens", dict(cu_seq_lens=np.array([1, 5, 8], np.int32))),
        ("cu_seq_lens", dict(cu_seq_lens=np.array([0, 5, 8], np.int64))),
        ("dst_k", dict(cu_seq_lens=np.array([0, 5, 11], np.int32))),
        ("block_table", dict(block_table=np.array([[0, 4], [2, 3]], np.int32))),
        ("dst_scale", dict(dst_scale=cases.poisoned((10, 8), np.uint8))),
    ]
    for argument, change in bad:
        dst_k = cases.poisoned((10, 128), np.uint8)
        dst_scale = cases.poisoned((10, 4), np.uint8)
        args = dict(kv_cache=cache, dst_k=dst_k, dst_scale=dst_scale, block_table=table,
                    cu_seq_lens=np.array([0, 5, 8], np.int32))
        args.update(change)
        with pytest.raises(ValueError, match=argument):
            pagedkv.cpu.cp_gather_indexer_k_quant_cache(**args)
        assert (dst_k == cases.POISON).all() and (dst_scale == cases.POISON).all()


@pytest.mark.cuda
@pytest.mark.parametrize("scale_fmt", ("", "ue8m0"))
def test_indexer_cuda_matches_cpu(scale_fmt):
    import torch

    torch.manual_seed(0)
    tokens, block_size, num_blocks = 300, 64, 8
    k = torch.randn(tokens, 128, dtype=torch.bfloat16, device="cuda") * 3
    slots = torch.randperm(num_blocks * block_size, device="cuda")[:tokens].to(torch.int64)
    slots[::7] = -1
    cpu_cache = torch.full((num_blocks, block_size, 132), cases.POISON, dtype=torch.uint8)
    pagedkv.cpu.indexer_k_quant_and_cache(k.cpu(), cpu_cache, slots.cpu(), 128, scale_fmt)
    lengths = [100, 0, 120, 3]  # at most 2 blocks of 64 each
    cu = torch.tensor([0, 100, 100, 220, 223], dtype=torch.int32)
    table = torch.randperm(num_blocks, dtype=torch.int32)[:8].reshape(4, 2).contiguous()
    cpu_k = torch.full((260, 128), cases.POISON, dtype=torch.uint8)
    cpu_scale = torch.full((260, 4), cases.POISON, dtype=torch.uint8)
    pagedkv.cpu.cp_gather_indexer_k_quant_cache(cpu_cache, cpu_k, cpu_scale, table, cu)
    assert sum(lengths) == 223
    for impl in (pagedkv.naive, pagedkv.optimized):
        cache = torch.full_like(cpu_cache, cases.POISON, device="cuda")
        impl.indexer_k_quant_and_cache(k, cache, slots, 128, scale_fmt)
        dst_k = torch.full_like(cpu_k, cases.POISON, device="cuda")
        dst_scale = torch.full_like(cpu_scale, cases.POISON, device="cuda")
        impl.cp_gather_indexer_k_quant_cache(cpu_cache.cuda(), dst_k, dst_scale, table.cuda(),
                                             cu.cuda())
        torch.cuda.synchronize()
        assert torch.equal(cache.cpu(), cpu_cache)
        assert torch.equal(dst_k.cpu(), cpu_k) and torch.equal(dst_scale.cpu(), cpu_scale)
