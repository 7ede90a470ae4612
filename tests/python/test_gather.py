"""gather_and_maybe_dequant_cache and cp_gather_and_upconvert_fp8_kv_cache through the Python
package.

CPU part: pagedkv.cpu against independent NumPy formulations (the lookup by fancy indexing, fp8
decoded through ml_dtypes, the 656-byte fp8_ds_mla entry decoded tile by tile), rows not
gathered untouched, and bad calls (a ValueError naming the argument, nothing written). CUDA
part (marked ``cuda``): naive and optimized against the CPU.
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


def make_batch(rng, lengths, block_size, starts=None):
    """block_table with distinct random blocks for every position a sequence gathers, -1 where
    none is needed; cu_seq_lens, token_to_seq, and each row's (block, slot)."""
    starts = [0] * len(lengths) if starts is None else list(starts)
    ends = [s + n for s, n in zip(starts, lengths)]
    max_blocks = max([(e - 1) // block_size + 1 for e, n in zip(ends, lengths) if n] + [1])
    needed = sum((e - 1) // block_size - s // block_size + 1
                 for s, e, n in zip(starts, ends, lengths) if n)
    num_blocks = needed + 3
    pool = rng.permutation(num_blocks)
    table = np.full((len(lengths), max_blocks), -1, np.int32)
    used = 0
    for b, (s, e, n) in enumerate(zip(starts, ends, lengths)):
        if n:
            columns = range(s // block_size, (e - 1) // block_size + 1)
            for c in columns:
                table[b, c] = pool[used]
                used += 1
    cu = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    token_to_seq = np.repeat(np.arange(len(lengths)), lengths).astype(np.int32)
    positions = np.arange(cu[-1]) - cu[token_to_seq] + np.asarray(starts, np.int64)[token_to_seq]
    blocks = table[token_to_seq, positions // block_size]
    return dict(table=table, cu=cu, token_to_seq=token_to_seq, num_blocks=num_blocks,
                blocks=blocks, slots=positions % block_size,
                starts=np.asarray(starts, np.int32))


def gather_cpu(cache, dst, batch, kind, scale, seq_starts=None, num_tokens=None):
    pagedkv.cpu.gather_and_maybe_dequant_cache(
        cache, dst, batch["table"], batch["cu"], batch["token_to_seq"],
        len(batch["token_to_seq"]) if num_tokens is None else num_tokens, kind, scale,
        seq_starts)


@pytest.mark.parametrize("dtype", cases.ACTIVATION_DTYPES)
def test_auto_gathers_the_entries_the_table_names(dtype):
    rng = np.random.default_rng(cases.seed_of("gather auto", dtype))
    batch = make_batch(rng, [5, 0, 9, 2], 4, starts=[1, 0, 6, 3])
    storage = cases.STORAGE[dtype]
    cache = cases.random_activations(rng, (batch["num_blocks"], 4, 576), dtype).astype(storage)
    dst = cases.poisoned((18, 576), storage)
    gather_cpu(cases.as_arg(cache, dtype), cases.as_arg(dst, dtype), batch, "auto",
               np.ones(1, np.float32), seq_starts=batch["starts"])
    expected = cases.poisoned((18, 576), storage)
    expected[:16] = cache[batch["blocks"], batch["slots"]]
    assert dst.view(np.uint8).tobytes() == expected.view(np.uint8).tobytes()


@pytest.mark.parametrize("kind", ("fp8_e4m3", "fp8_e5m2"))
@needs_ml_dtypes
def test_fp8_is_the_byte_times_the_scale(kind):
    rng = np.random.default_rng(cases.seed_of("gather fp8", kind))
    batch = make_batch(rng, [7, 3], 4)
    cache = rng.integers(0, 256, (batch["num_blocks"], 4, 576), dtype=np.uint8)
    dst = cases.poisoned((11, 576), np.float32)
    scale = np.array([0.25], np.float32)
    gather_cpu(cache, dst, batch, kind, scale)
    fp8 = ml_dtypes.float8_e4m3fn if kind == "fp8_e4m3" else ml_dtypes.float8_e5m2
    expected = cache[batch["blocks"], batch["slots"]].view(fp8).astype(np.float32) * scale[0]
    assert np.array_equal(dst[:10], expected, equal_nan=True)
    assert (dst[10:].view(np.uint32) == 0xFFFFFFFF).all()


@needs_ml_dtypes
def test_fp8_ds_mla_decodes_each_tile_with_its_scale():
    """The true 656-byte decode: bf16(e4m3 byte × tile scale) for the latent, RoPE bits
    copied (upstream reads this entry as 576 plain E4M3 bytes)."""
    rng = np.random.default_rng(7)
    batch = make_batch(rng, [6, 4], 8)
    cache = rng.integers(0, 256, (batch["num_blocks"], 8, 656), dtype=np.uint8)
    scales = rng.uniform(0.001, 1.0, (batch["num_blocks"], 8, 4)).astype(np.float32)
    cache[..., 512:528] = scales.view(np.uint8)
    dst = cases.poisoned((12, 576), np.uint16)
    gather_cpu(cache, cases.as_arg(dst, "bf16"), batch, "fp8_ds_mla", np.ones(1, np.float32))
    entries = cache[batch["blocks"], batch["slots"]]
    latent = entries[:, :512].view(ml_dtypes.float8_e4m3fn).astype(np.float32).reshape(-1, 4, 128)
    tile_scales = entries[:, 512:528].copy().view(np.float32)
    decoded = (latent * tile_scales[:, :, None]).reshape(-1, 512)
    expected_latent = decoded.astype(ml_dtypes.bfloat16).view(np.uint16)
    got = dst[:10]
    nan = np.isnan(decoded)
    assert np.array_equal(got[:, :512][~nan], expected_latent[~nan])
    assert np.array_equal(got[:, 512:], entries[:, 528:].copy().view(np.uint16))
    assert (dst[10:] == 0xFFFF).all()


def test_rejections_name_the_argument_and_write_nothing():
    rng = np.random.default_rng(0)
    batch = make_batch(rng, [3, 2], 4)
    cache = rng.integers(0, 256, (batch["num_blocks"], 4, 576), dtype=np.uint8)

    def call(**change):
        args = dict(src_cache=cache, dst=cases.poisoned((6, 576), np.float32),
                    block_table=batch["table"], cu_seq_lens=batch["cu"],
                    token_to_seq=batch["token_to_seq"], num_tokens=5, kv_cache_dtype="fp8_e4m3",
                    scale=np.ones(1, np.float32), seq_starts=None)
        args.update(change)
        return args

    bad_table = batch["table"].copy()
    bad_table[1, 0] = batch["num_blocks"]
    bad_tokens = batch["token_to_seq"].copy()
    bad_tokens[4] = 0
    bad = [
        ("block_table", call(block_table=bad_table)),
        ("token_to_seq", call(token_to_seq=bad_tokens)),
        ("cu_seq_lens", call(cu_seq_lens=batch["cu"].astype(np.int64))),
        ("cu_seq_lens", call(cu_seq_lens=np.array([1, 3, 5], np.int32))),
        ("num_tokens", call(num_tokens=7)),
        ("dst", call(kv_cache_dtype="fp8_ds_mla")),  # ds_mla needs a bf16 workspace
        ("dst", call(dst=cases.poisoned((6, 512), np.float32))),
    ]
    for argument, args in bad:
        with pytest.raises(ValueError, match=argument) as info:
            pagedkv.cpu.gather_and_maybe_dequant_cache(**args)
        assert isinstance(info.value, pagedkv.InvalidArgument)
        assert (args["dst"].view(np.uint8) == cases.POISON).all()


def decode_ds_mla(entries, fp8=None):
    """NumPy decode of 656-byte entries [n, 656] into bf16 bits [n, 576] (NaN left as is)."""
    fp8 = fp8 or ml_dtypes.float8_e4m3fn
    latent = entries[:, :512].view(fp8).astype(np.float32).reshape(-1, 4, 128)
    tile_scales = entries[:, 512:528].copy().view(np.float32)
    decoded = (latent * tile_scales[:, :, None]).reshape(-1, 512)
    return decoded, entries[:, 528:].copy().view(np.uint16)


@pytest.mark.parametrize("cache_dtype", ("u8", "e5m2"))
@needs_ml_dtypes
def test_upconvert_decodes_requests_into_their_rows(cache_dtype):
    """Requests 0 and 2 with a gap of 2 rows between them, request 1 empty; an f8_e5m2 cache
    decodes as E5M2 (upstream: E4M3)."""
    rng = np.random.default_rng(9)
    lengths = [5, 0, 7]
    batch = make_batch(rng, lengths, 4)
    cache = rng.integers(0, 256, (batch["num_blocks"], 4, 656), dtype=np.uint8)
    cache[..., 512:528] = rng.uniform(0.01, 1.0, (batch["num_blocks"], 4, 4)).astype(
        np.float32).view(np.uint8)
    starts = np.array([0, 7, 7], np.int32)
    dst = cases.poisoned((16, 576), np.uint16)
    fp8 = ml_dtypes.float8_e4m3fn
    src = cache
    if cache_dtype == "e5m2":
        fp8 = ml_dtypes.float8_e5m2
        src = cache.view(ml_dtypes.float8_e5m2)
    pagedkv.cpu.cp_gather_and_upconvert_fp8_kv_cache(
        src, cases.as_arg(dst, "bf16"), batch["table"], np.array(lengths, np.int32), starts, 3)
    decoded, rope = decode_ds_mla(cache[batch["blocks"], batch["slots"]], fp8)
    rows = np.concatenate([np.arange(0, 5), np.arange(7, 14)])
    expected = decoded.astype(ml_dtypes.bfloat16).view(np.uint16)
    finite = np.isfinite(decoded)
    assert np.array_equal(dst[rows, :512][finite], expected[finite])
    assert np.array_equal(dst[rows, 512:], rope)
    untouched = [5, 6, 14, 15]
    assert (dst[untouched] == 0xFFFF).all()


def test_upconvert_rejections_name_the_argument_and_write_nothing():
    rng = np.random.default_rng(1)
    batch = make_batch(rng, [3, 2], 4)
    cache = rng.integers(0, 256, (batch["num_blocks"], 4, 656), dtype=np.uint8)
    good = dict(src_cache=cache, block_table=batch["table"], seq_lens=np.array([3, 2], np.int32),
                workspace_starts=np.array([0, 3], np.int32), batch_size=2)
    bad = [
        ("workspace_starts", dict(workspace_starts=np.array([0, 2], np.int32))),
        ("seq_lens", dict(seq_lens=np.array([3, 2], np.int64))),
        ("src_cache", dict(src_cache=cache[:, :, :576])),
        ("block_table", dict(block_table=np.full_like(batch["table"], batch["num_blocks"]))),
    ]
    for argument, change in bad:
        dst = cases.poisoned((6, 576), np.uint16)
        args = dict(good, dst=cases.as_arg(dst, "bf16"))
        args.update(change)
        with pytest.raises(ValueError, match=argument):
            pagedkv.cpu.cp_gather_and_upconvert_fp8_kv_cache(**args)
        assert (dst == 0xFFFF).all()


@pytest.mark.cuda
def test_upconvert_cuda_matches_cpu():
    import torch

    rng = np.random.default_rng(6)
    lengths = [int(n) for n in rng.integers(0, 40, 60)] + [3000]
    batch = make_batch(rng, lengths, 64)
    cache = torch.randint(0, 256, (batch["num_blocks"], 64, 656), dtype=torch.uint8)
    seq_lens = torch.tensor(lengths, dtype=torch.int32)
    starts = torch.from_numpy(batch["cu"][:-1].copy())
    table = torch.from_numpy(batch["table"])
    rows = int(batch["cu"][-1]) + 2
    cpu_dst = torch.zeros(rows, 576, dtype=torch.bfloat16)
    cpu_dst.view(torch.uint8).fill_(cases.POISON)
    pagedkv.cpu.cp_gather_and_upconvert_fp8_kv_cache(cache, cpu_dst, table, seq_lens, starts,
                                                     len(lengths))
    for impl in (pagedkv.naive, pagedkv.optimized):
        dst = torch.empty_like(cpu_dst, device="cuda")
        dst.view(torch.uint8).fill_(cases.POISON)
        impl.cp_gather_and_upconvert_fp8_kv_cache(cache.cuda(), dst, table.cuda(),
                                                  seq_lens.cuda(), starts.cuda(), len(lengths))
        torch.cuda.synchronize()
        assert torch.equal(dst.cpu().view(torch.uint8), cpu_dst.view(torch.uint8))


@pytest.mark.cuda
@pytest.mark.parametrize("kind", ("auto", "fp8_e4m3", "fp8_ds_mla"))
def test_gather_cuda_matches_cpu(kind):
    import torch

    rng = np.random.default_rng(5)
    lengths = [int(n) for n in rng.integers(0, 40, 60)] + [3000]
    batch = make_batch(rng, lengths, 64)
    entry = 656 if kind == "fp8_ds_mla" else 576
    cache_dtype = torch.bfloat16 if kind == "auto" else torch.uint8
    cache = torch.randint(0, 256, (batch["num_blocks"], 64, entry * (2 if kind == "auto" else 1)),
                          dtype=torch.uint8).view(cache_dtype)
    rows = len(batch["token_to_seq"]) + 2
    scale = torch.tensor([0.05])
    cpu_dst = torch.zeros(rows, 576, dtype=torch.bfloat16)
    cpu_dst.view(torch.uint8).fill_(cases.POISON)
    indices = [torch.from_numpy(batch[k]) for k in ("table", "cu", "token_to_seq")]
    pagedkv.cpu.gather_and_maybe_dequant_cache(cache, cpu_dst, *indices, rows - 2, kind, scale,
                                               None)
    for impl in (pagedkv.naive, pagedkv.optimized):
        dst = torch.empty_like(cpu_dst, device="cuda")
        dst.view(torch.uint8).fill_(cases.POISON)
        impl.gather_and_maybe_dequant_cache(cache.cuda(), dst, *[t.cuda() for t in indices],
                                            rows - 2, kind, scale.cuda(), None)
        torch.cuda.synchronize()
        assert torch.equal(dst.cpu().view(torch.uint8), cpu_dst.view(torch.uint8))
