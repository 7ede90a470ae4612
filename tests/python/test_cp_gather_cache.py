"""cp_gather_cache through the Python package.

CPU part: pagedkv.cpu.cp_gather_cache against an independent NumPy formulation (vectorized: the
sequence of every dst row from ``np.repeat``, its position, block and slot), with and without
seq_starts, entries of several dtypes and widths, the 656-byte fp8_ds_mla entry written by
concat_and_cache_mla and read back byte for byte, rows past the batch left untouched, and bad
calls (a ValueError naming the argument, nothing written). vllm_ops on CPU torch tensors with
vLLM's signature (seq_starts defaults to None). CUDA part (marked ``cuda``): naive and optimized
against the CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

import cases
import pagedkv


def gather_numpy(cache, block_table, cu_seq_lens, batch_size, seq_starts=None):
    """dst rows 0 .. cu_seq_lens[batch_size] - 1, written from the vLLM recipe's formulation."""
    cu = cu_seq_lens[: batch_size + 1].astype(np.int64)
    lengths = np.diff(cu)
    owner = np.repeat(np.arange(batch_size), lengths)  # the sequence of every dst row
    starts = np.zeros(batch_size, np.int64) if seq_starts is None else seq_starts.astype(np.int64)
    position = np.arange(cu[-1]) - cu[owner] + starts[owner]
    block_size = cache.shape[1]
    blocks = block_table[owner, position // block_size]
    return cache[blocks, position % block_size]


def make_batch(rng, lengths, block_size, num_blocks, with_starts):
    starts = rng.integers(0, 2 * block_size, size=len(lengths)).astype(np.int32)
    if not with_starts:
        starts[:] = 0
    columns = [(s + n - 1) // block_size + 1 if n else 0 for s, n in zip(starts, lengths)]
    width = max(columns, default=0) + 1
    table = np.full((len(lengths), width), -3, np.int32)  # unused columns: never read
    for b, c in enumerate(columns):
        table[b, :c] = rng.integers(0, num_blocks, size=c)
    cu = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return table, cu, (starts if with_starts else None)


@pytest.mark.parametrize("with_starts", (False, True))
@pytest.mark.parametrize("storage,entry", ((np.uint16, (576,)), (np.uint8, (656,)),
                                           (np.float32, (3,)), (np.uint16, (1, 128)),
                                           (np.int64, (5,))))
def test_cp_gather_cache_matches_numpy(storage, entry, with_starts):
    rng = np.random.default_rng(cases.seed_of("cp_gather", storage.__name__, entry, with_starts))
    block_size, num_blocks = 16, 40
    cache = rng.integers(0, 255, size=(num_blocks, block_size) + entry + (np.dtype(storage).itemsize,),
                         dtype=np.uint8).view(storage).reshape((num_blocks, block_size) + entry)
    lengths = [3, 0, 40, 17, 1]
    table, cu, starts = make_batch(rng, lengths, block_size, num_blocks, with_starts)
    rows = int(cu[-1])
    dst = cases.poisoned((rows + 2,) + entry, storage)
    bits = pagedkv.bfloat16_bits if storage is np.uint16 else (lambda array: array)  # bf16 bits
    pagedkv.cpu.cp_gather_cache(bits(cache), bits(dst), table, cu, len(lengths), starts)
    expected = gather_numpy(cache, table, cu, len(lengths), starts)
    assert dst[:rows].tobytes() == expected.tobytes()
    assert (dst[rows:].view(np.uint8) == cases.POISON).all()  # rows past the batch: untouched


def test_cp_gather_cache_gives_back_the_fp8_ds_mla_entries_concat_and_cache_mla_wrote():
    rng = np.random.default_rng(7)
    tokens, block_size = 70, 64
    kv_c = cases.random_activations(rng, (tokens, 512), "bf16")
    k_pe = cases.random_activations(rng, (tokens, 64), "bf16")
    table = np.array([[3, 0]], np.int32)  # one sequence of 70 tokens: blocks 3 then 0
    positions = np.arange(tokens)
    slots = (table[0, positions // block_size] * block_size + positions % block_size)
    cache = cases.poisoned((4, block_size, 656), np.uint8)
    pagedkv.cpu.concat_and_cache_mla(cases.as_arg(kv_c, "bf16"), cases.as_arg(k_pe, "bf16"),
                                     cache, slots.astype(np.int64), "fp8_ds_mla",
                                     np.ones(1, np.float32))
    dst = cases.poisoned((tokens, 656), np.uint8)
    pagedkv.cpu.cp_gather_cache(cache, dst, table, np.array([0, tokens], np.int32), 1)
    assert dst.tobytes() == cache.reshape(-1, 656)[slots].tobytes()
    # The RoPE part of every entry is the token's k_pe, bit for bit.
    assert dst[:, 528:].view(np.uint16).tobytes() == k_pe.tobytes()


def test_cp_gather_cache_rejections_name_the_argument_and_write_nothing():
    rng = np.random.default_rng(1)
    cache = rng.integers(0, 255, size=(6, 4, 8), dtype=np.uint8)
    good = dict(src_cache=cache, block_table=np.array([[1, 4], [5, 3]], np.int32),
                cu_seq_lens=np.array([0, 5, 8], np.int32), batch_size=2,
                seq_starts=np.array([2, 1], np.int32))
    bad = [
        ("block_table", dict(block_table=np.array([[1, 6], [5, 3]], np.int32))),
        ("block_table", dict(block_table=np.array([[1, 4], [5, 3]], np.int64))),
        ("cu_seq_lens", dict(cu_seq_lens=np.array([0, 5, 4], np.int32))),
        ("cu_seq_lens", dict(cu_seq_lens=np.array([1, 5, 8], np.int32))),
        ("cu_seq_lens", dict(cu_seq_lens=np.array([0, 5, 8], np.int64))),
        ("seq_starts", dict(seq_starts=np.array([2, 7], np.int32))),
        ("seq_starts", dict(seq_starts=np.array([-1, 1], np.int32))),
        ("dst", dict(dst=cases.poisoned((7, 8), np.uint8))),
        ("dst", dict(dst=cases.poisoned((10, 8), np.uint16))),
        ("dst", dict(dst=cases.poisoned((10, 9), np.uint8))),
    ]
    for argument, change in bad:
        args = dict(good, dst=cases.poisoned((10, 8), np.uint8))
        args.update(change)
        with pytest.raises(ValueError, match=argument) as info:
            pagedkv.cpu.cp_gather_cache(**args)
        assert isinstance(info.value, pagedkv.InvalidArgument)
        assert (args["dst"].view(np.uint8) == cases.POISON).all()


def test_cp_gather_cache_with_no_sequence_is_a_no_op():
    dst = cases.poisoned((4, 8), np.uint8)
    pagedkv.cpu.cp_gather_cache(np.zeros((2, 4, 8), np.uint8), dst, np.zeros((0, 1), np.int32),
                                np.zeros(1, np.int32), 0)
    assert (dst == cases.POISON).all()


def test_vllm_ops_cp_gather_cache_on_torch_tensors():
    torch = pytest.importorskip("torch")
    from pagedkv import vllm_ops

    cache = torch.randn(8, 16, 576).to(torch.bfloat16)
    block_table = torch.tensor([[7, 2], [0, 5]], dtype=torch.int32)
    cu_seq_lens = torch.tensor([0, 20, 23], dtype=torch.int32)
    dst = torch.zeros(23, 576, dtype=torch.bfloat16)
    vllm_ops.cp_gather_cache(cache, dst, block_table, cu_seq_lens, 2)  # seq_starts=None
    assert torch.equal(dst[:16], cache[7])
    assert torch.equal(dst[16:20], cache[2, :4])
    assert torch.equal(dst[20:], cache[0, :3])
    starts = torch.tensor([5, 1], dtype=torch.int32)
    vllm_ops.cp_gather_cache(cache, dst, block_table, cu_seq_lens, 2, seq_starts=starts)
    assert torch.equal(dst[:11], cache[7, 5:])
    assert torch.equal(dst[11:20], cache[2, :9])
    assert torch.equal(dst[20:], cache[0, 1:4])


@pytest.mark.cuda
@pytest.mark.parametrize("entry_bytes", (1152, 656, 6))
def test_cp_gather_cache_cuda_matches_cpu(entry_bytes):
    import torch

    rng = np.random.default_rng(entry_bytes)
    block_size, num_blocks = 64, 300
    lengths = list(rng.integers(0, 40, size=200))
    lengths[17] = 9000  # a skewed batch: many short sequences, a few long ones
    lengths[150] = 5000
    table, cu, starts = make_batch(rng, lengths, block_size, num_blocks, True)
    cache = torch.randint(0, 256, (num_blocks, block_size, entry_bytes), dtype=torch.uint8)
    rows = int(cu[-1]) + 3
    cpu_dst = torch.full((rows, entry_bytes), cases.POISON, dtype=torch.uint8)
    pagedkv.cpu.cp_gather_cache(cache, cpu_dst, torch.from_numpy(table), torch.from_numpy(cu),
                                len(lengths), torch.from_numpy(starts))
    for impl in (pagedkv.naive, pagedkv.optimized):
        dst = torch.full((rows, entry_bytes), cases.POISON, dtype=torch.uint8, device="cuda")
        impl.cp_gather_cache(cache.cuda(), dst, torch.from_numpy(table).cuda(),
                             torch.from_numpy(cu).cuda(), len(lengths),
                             torch.from_numpy(starts).cuda())
        torch.cuda.synchronize()
        assert torch.equal(dst.cpu(), cpu_dst)
