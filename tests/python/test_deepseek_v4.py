"""DeepSeek V4's K-cache ops (quantize_and_insert_k_cache, dequantize_and_gather_k_cache)
through the Python package.

CPU part: pagedkv.cpu against an independent NumPy formulation (block exponents from frexp in
float64, E4M3 through ml_dtypes, the page layout), the round trip insert -> gather within
16 × scale, the module pagedkv.deepseek_v4 with upstream's signatures, and bad calls (a
ValueError naming the argument, nothing written). CUDA part (marked ``cuda``): naive,
optimized and pagedkv.deepseek_v4 on CUDA tensors against the CPU.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import cases
import pagedkv
from pagedkv import deepseek_v4

try:  # the independent fp8 encode and decode
    import ml_dtypes
except ImportError:
    ml_dtypes = None
needs_ml_dtypes = pytest.mark.skipif(ml_dtypes is None, reason="needs ml_dtypes")

RECORD, PAGE_TOKEN = 576, 584


def exponents(values: np.ndarray) -> np.ndarray:
    """ceil(log2(max(amax, 1e-4) / 448)) per 64-element block of [T, 448] float32 values."""
    amax = np.abs(values.reshape(values.shape[0], 7, 64)).max(axis=2).astype(np.float64)
    ratio = np.maximum(amax, np.float64(np.float32(1e-4))) / 448.0
    mantissa, exponent = np.frexp(ratio)  # ratio = mantissa × 2^exponent, mantissa in [0.5, 1)
    return np.where(mantissa == 0.5, exponent - 1, exponent).astype(np.int32)


def expected_pages(keys_bits: np.ndarray, slots, num_blocks: int, block_size: int, stride: int):
    """The poisoned pages after inserting `keys_bits` [T, 512] at `slots`."""
    pages = cases.poisoned((num_blocks, stride), np.uint8)
    values = pagedkv.bfloat16_bits_to_float32(keys_bits)
    e = exponents(values[:, :448])
    scaled = values[:, :448].reshape(-1, 7, 64) / np.ldexp(np.float32(1), e)[:, :, None]
    codes = np.clip(scaled, -448, 448).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    for t, slot in enumerate(slots):
        if slot < 0:
            continue
        page, position = divmod(int(slot), block_size)
        record = pages[page, position * RECORD:(position + 1) * RECORD]
        record[:448] = codes[t].reshape(-1)
        record[448:] = np.ascontiguousarray(keys_bits[t, 448:]).view(np.uint8)
        scale_at = block_size * RECORD + position * 8
        pages[page, scale_at:scale_at + 7] = e[t] + 127
        pages[page, scale_at + 7] = 0
    return pages


@needs_ml_dtypes
@pytest.mark.parametrize("block_size", (2, 16, 64))
def test_insert_is_the_block_quantization_in_the_page_format(block_size):
    rng = np.random.default_rng(cases.seed_of("dsv4 insert", block_size))
    tokens, num_blocks = 40, -(-40 // block_size) + 1
    stride = -(-block_size * PAGE_TOKEN // RECORD) * RECORD
    keys = cases.random_activations(rng, (tokens, 512), "bf16")
    keys[0, :64] = 0  # an all-zero block
    keys[1, 64:128] = pagedkv.float32_to_bfloat16_bits(np.full(64, 3e-5, np.float32))  # tiny
    keys[2, 5] = pagedkv.float32_to_bfloat16_bits(np.float32(448 * 2.0 ** -3))  # a tie
    slots = cases.slots_for(rng, tokens, num_blocks * block_size, padding=5)
    pages = cases.poisoned((num_blocks, stride), np.uint8)
    pagedkv.cpu.quantize_and_insert_k_cache(pagedkv.bfloat16_bits(keys), pages, slots,
                                            block_size, True, False)
    assert pages.tobytes() == expected_pages(keys, slots, num_blocks, block_size,
                                             stride).tobytes()


@needs_ml_dtypes
def test_round_trip_insert_then_gather_is_within_16_scale():
    rng = np.random.default_rng(5)
    tokens, block_size, num_blocks = 300, 64, 5
    stride = 37440
    values = (rng.standard_normal((tokens, 512)) * np.exp2(rng.integers(-20, 20, (tokens, 1))))
    keys = pagedkv.float32_to_bfloat16_bits(values.astype(np.float32))
    keys[7, :2] = pagedkv.float32_to_bfloat16_bits(np.array([448, 272], np.float32))
    keys[7, 2:64] = 0
    pages = cases.poisoned((num_blocks, stride), np.uint8)
    pagedkv.cpu.quantize_and_insert_k_cache(pagedkv.bfloat16_bits(keys), pages,
                                            np.arange(tokens, dtype=np.int64), block_size)
    out = cases.poisoned((1, tokens + 2, 512), np.uint16)
    table = np.arange(num_blocks, dtype=np.int32)[None, :]
    pagedkv.cpu.dequantize_and_gather_k_cache(pagedkv.bfloat16_bits(out), pages,
                                              np.array([tokens], np.int32), None, table,
                                              block_size, 1)
    back = pagedkv.bfloat16_bits_to_float32(out[0, 1:tokens + 1])
    original = pagedkv.bfloat16_bits_to_float32(keys)
    assert (out[0, 1:tokens + 1, 448:] == keys[:, 448:]).all()  # RoPE: bit for bit
    scale = np.ldexp(1.0, exponents(original[:, :448])).repeat(64, axis=1)
    error = np.abs(back[:, :448].astype(np.float64) - original[:, :448]) / scale
    assert error.max() == 16.0  # reached (272 -> 256 at scale 1) and never exceeded
    assert back[7, 1] == 256.0
    assert (out[0, 0] == 0xFFFF).all() and (out[0, tokens + 1] == 0xFFFF).all()


def test_deepseek_v4_has_upstreams_signatures():
    insert = inspect.signature(deepseek_v4.quantize_and_insert_k_cache).parameters
    assert list(insert) == ["k", "k_cache", "slot_mapping", "block_size", "is_ue8m0",
                            "use_fnuz"]
    assert (insert["block_size"].default, insert["is_ue8m0"].default,
            insert["use_fnuz"].default) == (64, True, False)
    gather = inspect.signature(deepseek_v4.dequantize_and_gather_k_cache).parameters
    assert list(gather) == ["out", "k_cache", "seq_lens", "gather_lens", "block_table",
                            "block_size", "offset", "use_fnuz"]
    assert gather["use_fnuz"].default is False
    # One function per DeepSeek V4 op: the two cache ops and the three index builders.
    assert deepseek_v4.__all__ == ["build_flashinfer_mixed_sparse_indices",
                                   "combine_topk_swa_indices",
                                   "compute_global_topk_indices_and_lens",
                                   "dequantize_and_gather_k_cache", "quantize_and_insert_k_cache"]


def test_insert_bad_calls_name_the_argument_and_write_nothing():
    keys = pagedkv.bfloat16_bits(np.ones((2, 512), np.uint16))
    good = dict(k=keys, slot_mapping=np.array([0, 5], np.int64), block_size=4, is_ue8m0=True,
                use_fnuz=False)
    bad = [
        ("is_ue8m0", dict(is_ue8m0=False)),
        ("use_fnuz", dict(use_fnuz=True)),
        ("block_size", dict(block_size=0)),
        ("k_cache", dict(block_size=8)),
        ("slot_mapping", dict(slot_mapping=np.array([0, 1], np.int32))),
        ("slot_mapping", dict(slot_mapping=np.array([0, 8], np.int64))),
        ("k", dict(k=np.ones((2, 512), np.float32))),
        ("k", dict(k=pagedkv.bfloat16_bits(np.ones((2, 448), np.uint16)))),
    ]
    for argument, change in bad:
        cache = cases.poisoned((2, 4 * PAGE_TOKEN), np.uint8)
        args = dict(good, k_cache=cache)
        args.update(change)
        with pytest.raises(ValueError, match=argument) as info:
            pagedkv.cpu.quantize_and_insert_k_cache(**args)
        assert isinstance(info.value, pagedkv.InvalidArgument)
        assert (cache == cases.POISON).all()


def test_gather_bad_calls_name_the_argument_and_write_nothing():
    pages = np.zeros((4, 4 * PAGE_TOKEN), np.uint8)
    good = dict(k_cache=pages, seq_lens=np.array([6, 3], np.int32),
                gather_lens=np.array([5, 3], np.int32),
                block_table=np.array([[2, 0], [3, -1]], np.int32), block_size=4, offset=1,
                use_fnuz=False)
    bad = [
        ("gather_lens", dict(gather_lens=np.array([7, 3], np.int32))),
        ("block_table", dict(block_table=np.array([[2, 4], [3, -1]], np.int32))),
        ("block_table", dict(block_table=np.array([[2, -1], [3, -1]], np.int32))),
        ("out", dict(offset=4)),
        ("seq_lens", dict(seq_lens=np.array([6, 3], np.int64))),
        ("use_fnuz", dict(use_fnuz=True)),
    ]
    for argument, change in bad:
        out = cases.poisoned((2, 8, 512), np.uint16)
        args = dict(good, out=pagedkv.bfloat16_bits(out))
        args.update(change)
        with pytest.raises(ValueError, match=argument):
            pagedkv.cpu.dequantize_and_gather_k_cache(**args)
        assert (out == 0xFFFF).all()


def test_deepseek_v4_on_cpu_torch_tensors():
    torch = pytest.importorskip("torch")
    k = (torch.randn(10, 512) * 5).to(torch.bfloat16)
    cache = torch.zeros(2, 37440, dtype=torch.uint8)
    deepseek_v4.quantize_and_insert_k_cache(k, cache, torch.arange(10, dtype=torch.int64))
    out = torch.zeros(1, 10, 512, dtype=torch.bfloat16)
    deepseek_v4.dequantize_and_gather_k_cache(out, cache, torch.tensor([10], dtype=torch.int32),
                                              None, torch.tensor([[0]], dtype=torch.int32), 64, 0)
    assert torch.equal(out[0, :, 448:], k[:, 448:])
    assert (out[0, :, :448].float() - k[:, :448].float()).abs().max() <= 5 * 16 / 448 * 8


@pytest.mark.cuda
def test_cuda_matches_cpu():
    import torch

    torch.manual_seed(0)
    tokens, block_size, num_blocks = 300, 64, 8
    k = torch.randn(tokens, 512, dtype=torch.bfloat16, device="cuda") * 3
    slots = torch.randperm(num_blocks * block_size, device="cuda")[:tokens].to(torch.int64)
    slots[::7] = -1
    cpu_cache = torch.full((num_blocks, 37440), cases.POISON, dtype=torch.uint8)
    pagedkv.cpu.quantize_and_insert_k_cache(k.cpu(), cpu_cache, slots.cpu(), block_size, True,
                                            False)
    seq_lens = torch.tensor([100, 0, 128, 3], dtype=torch.int32)
    gather_lens = torch.tensor([40, 0, 128, 3], dtype=torch.int32)
    table = torch.randperm(num_blocks, dtype=torch.int32)[:8].reshape(4, 2).contiguous()
    cpu_out = torch.full((4, 130, 512), 7, dtype=torch.bfloat16)
    pagedkv.cpu.dequantize_and_gather_k_cache(cpu_out, cpu_cache, seq_lens, gather_lens, table,
                                              block_size, 2, False)
    for insert, gather in ((pagedkv.naive.quantize_and_insert_k_cache,
                            pagedkv.naive.dequantize_and_gather_k_cache),
                           (pagedkv.optimized.quantize_and_insert_k_cache,
                            pagedkv.optimized.dequantize_and_gather_k_cache),
                           (deepseek_v4.quantize_and_insert_k_cache,
                            deepseek_v4.dequantize_and_gather_k_cache)):
        cache = torch.full_like(cpu_cache, cases.POISON, device="cuda")
        insert(k, cache, slots, block_size, True, False)
        out = torch.full_like(cpu_out, 7, device="cuda")
        gather(out, cpu_cache.cuda(), seq_lens.cuda(), gather_lens.cuda(), table.cuda(),
               block_size, 2, False)
        torch.cuda.synchronize()
        pagedkv.check_errors()
        assert torch.equal(cache.cpu(), cpu_cache)
        assert torch.equal(out.cpu().view(torch.int16), cpu_out.view(torch.int16))


@pytest.mark.cuda
def test_cuda_bad_slot_is_a_deferred_error_and_writes_nothing():
    import torch

    k = torch.randn(4, 512, dtype=torch.bfloat16, device="cuda")
    cache = torch.full((2, 37440), cases.POISON, dtype=torch.uint8, device="cuda")
    slots = torch.tensor([0, 5, 2 * 64, 7], dtype=torch.int64, device="cuda")  # 128: past 2 pages
    deepseek_v4.quantize_and_insert_k_cache(k, cache, slots)  # vLLM's ops never synchronize
    with pytest.raises(ValueError, match="slot_mapping"):
        pagedkv.check_errors()
    assert (cache.cpu() == cases.POISON).all()


@pytest.mark.cuda
def test_cuda_bad_block_id_is_a_deferred_error_and_gathers_nothing():
    import torch

    cache = torch.zeros(2, 37440, dtype=torch.uint8, device="cuda")
    out = torch.full((2, 8, 512), 7, dtype=torch.bfloat16, device="cuda")
    seq_lens = torch.tensor([10, 70], dtype=torch.int32, device="cuda")
    gather_lens = torch.tensor([4, 6], dtype=torch.int32, device="cuda")
    table = torch.tensor([[0, 1], [1, 2]], dtype=torch.int32, device="cuda")  # 2: past 2 pages
    # Request 1 gathers positions 64..69: column 1, block 2. vLLM's ops never synchronize.
    deepseek_v4.dequantize_and_gather_k_cache(out, cache, seq_lens, gather_lens, table, 64, 2)
    with pytest.raises(ValueError, match=r"block_table\[1, 1\] = 2: expected a block of the "
                                         r"cache.*deferred.*dequantize_and_gather_k_cache"):
        pagedkv.check_errors()
    assert (out.cpu().float() == 7).all()
