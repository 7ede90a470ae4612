"""paged_attention_v1, paged_attention_v2 and paged_attention_rocm through the Python package,
and pagedkv.attention.

CPU part: pagedkv.cpu against an independent float64 NumPy formulation of dense softmax
attention over the cache's values (the tolerance of the C++ tests: attention_tolerance() of
include/pagedkv/agreement.h, plus one unit of the dtype for what the dense form does not
round); fp8 caches; the validation rules through the bindings (ValueError naming the argument,
nothing written); pagedkv.attention's helpers. CUDA part (marked ``cuda``): pagedkv.naive and
pagedkv.optimized against pagedkv.cpu on torch tensors, and the vLLM signatures on a decode
batch written with reshape_and_cache.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import cases
import pagedkv
from pagedkv import attention

UNIT_ROUNDOFF = {"f32": 2.0**-24, "f16": 2.0**-11, "bf16": 2.0**-8}


def attention_tolerance(dtype: str, context: int, head_size: int) -> float:
    """attention_tolerance() of include/pagedkv/agreement.h."""
    return 3 * UNIT_ROUNDOFF[dtype] + (8 * math.sqrt(context) + 8 * math.sqrt(head_size)
                                       + 64) * 2.0**-24


def to_float64(array: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bf16":
        return pagedkv.bfloat16_bits_to_float32(array).astype(np.float64)
    return array.astype(np.float64)


def from_float32(values: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bf16":
        return pagedkv.float32_to_bfloat16_bits(values.astype(np.float32))
    return values.astype(cases.STORAGE[dtype])


class Batch:
    """A decode batch in host memory: query [S, H, D], the legacy caches over a pool twice the
    blocks the sequences need (random distinct blocks), and the dense keys/values per sequence
    as the cache holds them (float64)."""

    def __init__(self, lengths, num_heads=4, num_kv_heads=2, head_size=64, block_size=16,
                 dtype="bf16", seed=0):
        rng = np.random.default_rng(seed)
        self.lengths, self.dtype = list(lengths), dtype
        self.H, self.KVH, self.D, self.B = num_heads, num_kv_heads, head_size, block_size
        S = len(lengths)
        storage = cases.STORAGE[dtype]
        self.x = 16 // np.dtype(storage).itemsize
        needed = sum((n + block_size - 1) // block_size for n in lengths)
        self.num_blocks = 2 * needed + 1
        self.max_seq_len = max(lengths) if lengths else 0
        width = max((self.max_seq_len + block_size - 1) // block_size, 1)
        self.query = from_float32(rng.uniform(-1, 1, (S, num_heads, head_size)), dtype)
        self.key_cache = cases.poisoned((self.num_blocks, num_kv_heads, head_size // self.x,
                                         block_size, self.x), storage)
        self.value_cache = cases.poisoned((self.num_blocks, num_kv_heads, head_size, block_size),
                                          storage)
        blocks = rng.permutation(self.num_blocks)
        self.block_tables = np.full((max(S, 1), width), -1, dtype=np.int32)[:S]
        self.keys, self.values = [], []  # [L, KVH, D] float64 per sequence
        used = 0
        for s, n in enumerate(lengths):
            k = from_float32(rng.uniform(-1, 1, (n, num_kv_heads, head_size)), dtype)
            v = from_float32(rng.uniform(-1, 1, (n, num_kv_heads, head_size)), dtype)
            self.keys.append(to_float64(k, dtype))
            self.values.append(to_float64(v, dtype))
            columns = (n + block_size - 1) // block_size
            self.block_tables[s, :columns] = blocks[used:used + columns]
            used += columns
            for t in range(n):
                block, slot = self.block_tables[s, t // block_size], t % block_size
                for g in range(num_kv_heads):
                    self.key_cache[block, g, :, slot, :] = k[t, g].reshape(-1, self.x)
                    self.value_cache[block, g, :, slot] = v[t, g]
        self.seq_lens = np.array(lengths, dtype=np.int32)
        self.scale = 1.0 / math.sqrt(head_size)
        self.one = np.ones(1, dtype=np.float32)

    def arg(self, array):
        return cases.as_arg(array, self.dtype)

    def out(self):
        return cases.poisoned((len(self.lengths), self.H, self.D), cases.STORAGE[self.dtype])

    def dense(self, alibi=None) -> np.ndarray:
        """Softmax attention in float64, no rounding, no epsilon."""
        q = to_float64(self.query, self.dtype)
        G = self.H // self.KVH
        out = np.zeros((len(self.lengths), self.H, self.D))
        for s, n in enumerate(self.lengths):
            for h in range(self.H):
                k, v = self.keys[s][:, h // G], self.values[s][:, h // G]
                logits = float(np.float32(self.scale)) * (k @ q[s, h])
                if alibi is not None:
                    logits = logits + float(alibi[h]) * (np.arange(n) - n + 1)
                p = np.exp(logits - logits.max())
                out[s, h] = (p / p.sum()) @ v
        return out

    def tolerance(self) -> float:
        return attention_tolerance(self.dtype, self.max_seq_len, self.D) + UNIT_ROUNDOFF[self.dtype]


def rel_err(actual: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(actual - reference) / np.linalg.norm(reference))


def run_cpu(batch: Batch, version: str, alibi=None):
    out = batch.out()
    args = (batch.arg(batch.query), batch.arg(batch.key_cache), batch.arg(batch.value_cache),
            batch.KVH, batch.scale, batch.block_tables, batch.seq_lens, batch.B,
            batch.max_seq_len, alibi, "auto", batch.one, batch.one)
    if version == "v1":
        pagedkv.cpu.paged_attention_v1(batch.arg(out), *args)
    else:
        exp_sum, max_logits, tmp_out = attention.workspaces(batch.arg(out), batch.max_seq_len)
        pagedkv.cpu.paged_attention_v2(batch.arg(out), exp_sum, max_logits, tmp_out, *args)
    return to_float64(out, batch.dtype)


@pytest.mark.parametrize("dtype", cases.ACTIVATION_DTYPES)
@pytest.mark.parametrize("version", ("v1", "v2"))
def test_cpu_matches_dense_attention(dtype, version):
    batch = Batch([1, 17, 530, 90], num_heads=8, num_kv_heads=2, head_size=64, dtype=dtype,
                  seed=cases.seed_of("attention", dtype, version))
    assert rel_err(run_cpu(batch, version), batch.dense()) <= batch.tolerance()


def test_cpu_alibi():
    batch = Batch([40, 600], num_heads=4, num_kv_heads=4, head_size=32, dtype="f32", seed=3)
    slopes = (2.0 ** -np.arange(1, 5)).astype(np.float32)
    for version in ("v1", "v2"):
        assert rel_err(run_cpu(batch, version, slopes), batch.dense(slopes)) <= batch.tolerance()


def test_v2_workspaces_hold_each_partition():
    """exp_sum and max_logits hold each partition's sum and maximum; re-merged by their
    log-sum-exp, the partitions' outputs give the whole softmax."""
    batch = Batch([1100], num_heads=2, num_kv_heads=1, head_size=32, dtype="f32", seed=5)
    out = batch.out()
    exp_sum, max_logits, tmp_out = attention.workspaces(out, batch.max_seq_len)
    assert exp_sum.shape == (1, 2, 3) and tmp_out.shape == (1, 2, 3, 32)
    pagedkv.cpu.paged_attention_v2(out, exp_sum, max_logits, tmp_out, batch.query,
                                   batch.key_cache, batch.value_cache, 1, batch.scale,
                                   batch.block_tables, batch.seq_lens, 16, 1100, None, "auto",
                                   batch.one, batch.one)
    lse = max_logits.astype(np.float64) + np.log(exp_sum.astype(np.float64))  # [1, 2, 3]
    weights = np.exp(lse - lse.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    merged = (weights[..., None] * tmp_out.astype(np.float64)).sum(axis=2)
    assert rel_err(merged, batch.dense()) <= batch.tolerance()
    q = batch.query.astype(np.float64)
    logits = float(np.float32(batch.scale)) * (batch.keys[0][:, 0] @ q[0, 0])
    for p in range(3):
        part = logits[512 * p:512 * (p + 1)]
        assert max_logits[0, 0, p] == np.float32(part.max())
        assert exp_sum[0, 0, p] == pytest.approx(np.exp(part - part.max()).sum(), rel=1e-6)


@pytest.mark.parametrize("kind", ("fp8_e4m3", "fp8_e5m2"))
def test_fp8_cache_written_by_reshape_and_cache(kind):
    """A batch written with reshape_and_cache into an fp8 cache, decoded: dense attention over
    the dequantized values."""
    rng = np.random.default_rng(cases.seed_of("attention fp8", kind))
    lengths, H, KVH, D, B = [20, 700], 4, 2, 64, 16
    tokens = sum(lengths)
    key = rng.uniform(-1, 1, (tokens, KVH, D)).astype(np.float32)
    value = rng.uniform(-1, 1, (tokens, KVH, D)).astype(np.float32)
    num_blocks = 2 * sum((n + B - 1) // B for n in lengths)
    key_cache = cases.poisoned((num_blocks, KVH, D // 16, B, 16), np.uint8)
    value_cache = cases.poisoned((num_blocks, KVH, D, B), np.uint8)
    blocks = rng.permutation(num_blocks)
    table = np.full((2, (max(lengths) + B - 1) // B), -1, dtype=np.int32)
    slots, used = [], 0
    for s, n in enumerate(lengths):
        columns = (n + B - 1) // B
        table[s, :columns] = blocks[used:used + columns]
        used += columns
        slots += [int(table[s, t // B]) * B + t % B for t in range(n)]
    scale = np.array([1 / 64 if kind == "fp8_e4m3" else 1 / 1024], dtype=np.float32)
    pagedkv.cpu.reshape_and_cache(key, value, key_cache, value_cache,
                                  np.array(slots, dtype=np.int64), kind, scale, scale)
    query = rng.uniform(-1, 1, (2, H, D)).astype(np.float32)
    out = np.empty((2, H, D), dtype=np.float32)
    attention.forward_decode(out, query, key_cache, value_cache, table,
                             np.array(lengths, dtype=np.int32), max(lengths), kind, KVH,
                             1 / math.sqrt(D), None, scale, scale, version="v2")
    # Dense attention over what the cache holds (dequantized with the toolkit's rule).
    decode = pagedkv.cpu
    k_back = np.empty((num_blocks, KVH, D // 16, B, 16), dtype=np.float32)
    v_back = np.empty((num_blocks, KVH, D, B), dtype=np.float32)
    decode.convert_fp8(k_back, key_cache, float(scale[0]), kind)
    decode.convert_fp8(v_back, value_cache, float(scale[0]), kind)
    expected = np.zeros((2, H, D))
    for s, n in enumerate(lengths):
        k = np.stack([k_back[table[s, t // B], :, :, t % B, :].reshape(KVH, D) for t in range(n)])
        v = np.stack([v_back[table[s, t // B], :, :, t % B] for t in range(n)])
        for h in range(H):
            logits = float(np.float32(1 / math.sqrt(D))) * (k[:, h // 2].astype(np.float64)
                                                            @ query[s, h].astype(np.float64))
            p = np.exp(logits - logits.max())
            expected[s, h] = (p / p.sum()) @ v[:, h // 2].astype(np.float64)
    assert rel_err(out.astype(np.float64), expected) <= attention_tolerance("f32", 700, D) + 2.0**-24


def test_rules_through_the_bindings():
    batch = Batch([5, 20], dtype="f32", seed=7)
    out = batch.out()
    before = out.copy()

    def call(**changes):
        args = dict(out=out, query=batch.query, key_cache=batch.key_cache,
                    value_cache=batch.value_cache, num_kv_heads=2, scale=batch.scale,
                    block_tables=batch.block_tables, seq_lens=batch.seq_lens, block_size=16,
                    max_seq_len=20, alibi_slopes=None, kv_cache_dtype="auto",
                    k_scale=batch.one, v_scale=batch.one)
        args.update(changes)
        pagedkv.cpu.paged_attention_v1(**args)

    for changes, text in [
        (dict(blocksparse_vert_stride=4), "blocksparse_vert_stride: expected 0"),
        (dict(max_seq_len=19), "seq_lens[1] = 20"),
        (dict(seq_lens=np.array([0, 20], dtype=np.int32)), "seq_lens[0] = 0"),
        (dict(num_kv_heads=3), "num_kv_heads"),
        (dict(block_size=8), "key_cache.size(3)"),
        (dict(block_tables=np.array([[0, 1], [2, 99]], dtype=np.int32)), "block_tables[1, 1] = 99"),
    ]:
        with pytest.raises(ValueError, match=re.escape(text)):
            call(**changes)
        assert out.tobytes() == before.tobytes()
    exp_sum, max_logits, tmp_out = attention.workspaces(out, 512)
    with pytest.raises(ValueError, match="exp_sum.size"):
        pagedkv.cpu.paged_attention_v2(out, exp_sum, max_logits, tmp_out, batch.query,
                                       batch.key_cache, batch.value_cache, 2, batch.scale,
                                       batch.block_tables, batch.seq_lens, 16, 600, None, "auto",
                                       batch.one, batch.one)


def test_helpers():
    assert attention.PARTITION_SIZE == 512
    assert attention.ROCM_PARTITION_SIZE == 256
    assert attention.num_partitions(300, attention.ROCM_PARTITION_SIZE) == 2
    assert [attention.num_partitions(n) for n in (0, 1, 512, 513, 32768)] == [0, 1, 1, 2, 64]
    assert attention.use_v1(512, 1, 32)           # one partition
    assert not attention.use_v1(4096, 1, 32)      # few blocks: v2
    assert attention.use_v1(4096, 64, 32)         # 2048 blocks: v1
    assert not attention.use_v1(16384, 64, 32)    # beyond 8192: v2
    with pytest.raises(ValueError):
        attention.num_partitions(-1)
    batch = Batch([30, 3], dtype="bf16", seed=9)
    for version in ("v1", "v2"):
        out = batch.out()
        assert attention.forward_decode(batch.arg(out), batch.arg(batch.query),
                                        batch.arg(batch.key_cache), batch.arg(batch.value_cache),
                                        batch.block_tables, batch.seq_lens, batch.max_seq_len,
                                        "auto", batch.KVH, batch.scale, None, batch.one,
                                        batch.one, version=version) == version
        assert rel_err(to_float64(out, "bf16"), batch.dense()) <= batch.tolerance()


def test_zero_sequences():
    batch = Batch([], seed=1)
    out = np.empty((0, 4, 64), dtype=np.uint16)
    pagedkv.cpu.paged_attention_v1(batch.arg(out), batch.arg(batch.query),
                                   batch.arg(batch.key_cache), batch.arg(batch.value_cache), 2,
                                   batch.scale, batch.block_tables, batch.seq_lens, 16, 0, None,
                                   "auto", batch.one, batch.one)


def run_rocm(batch: Batch, **extra):
    """paged_attention_rocm on the CPU; returns out (as float64) and the workspaces."""
    out = batch.out()
    exp_sum, max_logits, tmp_out = attention.workspaces(batch.arg(out), batch.max_seq_len,
                                                        attention.ROCM_PARTITION_SIZE)
    pagedkv.cpu.paged_attention_rocm(
        batch.arg(out), exp_sum, max_logits, tmp_out, batch.arg(batch.query),
        batch.arg(batch.key_cache), batch.arg(batch.value_cache), batch.KVH, batch.scale,
        batch.block_tables, batch.seq_lens, extra.pop("query_start_loc", None), batch.B,
        batch.max_seq_len, None, "auto", batch.one, batch.one, **extra)
    return to_float64(out, batch.dtype), (exp_sum, max_logits, tmp_out)


@pytest.mark.parametrize("dtype", ("f16", "bf16"))
def test_rocm_cpu_matches_dense_attention(dtype):
    batch = Batch([1, 255, 257, 600], num_heads=8, num_kv_heads=2, head_size=128, dtype=dtype,
                  seed=cases.seed_of("attention rocm", dtype))
    out, (exp_sum, _, _) = run_rocm(batch)
    assert exp_sum.shape == (4, 8, 3)  # ceil(600 / 256) partitions
    assert rel_err(out, batch.dense()) <= batch.tolerance()


def test_rocm_query_start_loc_decodes_single_token_sequences():
    """Rows [0], [1, 2, 3], [4]: sequences 0 and 2 decoded into rows 0 and 4, sequence 1 (three
    query tokens) skipped: its rows keep their bytes."""
    batch = Batch([30, 40, 50], num_heads=4, num_kv_heads=1, head_size=64, dtype="bf16", seed=4)
    dense = batch.dense()
    rng = np.random.default_rng(5)
    query = from_float32(rng.uniform(-1, 1, (5, 4, 64)), "bf16")
    query[0], query[4] = batch.query[0], batch.query[2]
    out = cases.poisoned((5, 4, 64), np.uint16)
    before = out.copy()
    exp_sum, max_logits, tmp_out = attention.workspaces(batch.arg(batch.out()), 50, 256)
    pagedkv.cpu.paged_attention_rocm(
        batch.arg(out), exp_sum, max_logits, tmp_out, batch.arg(query),
        batch.arg(batch.key_cache), batch.arg(batch.value_cache), 1, batch.scale,
        batch.block_tables, batch.seq_lens, np.array([0, 1, 4, 5], dtype=np.int32), 16, 50,
        None, "auto", batch.one, batch.one)
    got = to_float64(out, "bf16")
    for row, seq in ((0, 0), (4, 2)):
        assert rel_err(got[row], dense[seq]) <= batch.tolerance()
    assert out[1:4].tobytes() == before[1:4].tobytes()


def test_rocm_fp8_output():
    """fp8_out_scale: out is fp8 E4M3, e4m3(out / fp8_out_scale)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    batch = Batch([20, 300], num_heads=4, num_kv_heads=2, head_size=64, dtype="f16", seed=6)
    out = np.zeros((2, 4, 64), dtype=np.uint8)
    exp_sum, max_logits, tmp_out = attention.workspaces(batch.out(), 300, 256)
    dense = batch.dense()
    scale = np.array([np.abs(dense).max() / 440], dtype=np.float32)  # within E4M3's range
    pagedkv.cpu.paged_attention_rocm(
        pagedkv.RawBits(out, "f8_e4m3"), exp_sum, max_logits, tmp_out, batch.query,
        batch.key_cache, batch.value_cache, 2, batch.scale, batch.block_tables, batch.seq_lens,
        None, 16, 300, None, "auto", batch.one, batch.one, scale)
    decoded = out.view(ml_dtypes.float8_e4m3fn).astype(np.float64) * scale[0]
    assert rel_err(decoded, dense) <= 2.0**-4 + batch.tolerance()


def test_rocm_rules_through_the_bindings():
    batch = Batch([5, 20], num_heads=4, num_kv_heads=2, head_size=64, dtype="f16", seed=8)
    out = batch.out()
    before = out.copy()
    exp_sum, max_logits, tmp_out = attention.workspaces(out, 20, 256)

    def call(**changes):
        args = dict(out=out, exp_sum=exp_sum, max_logits=max_logits, tmp_out=tmp_out,
                    query=batch.query, key_cache=batch.key_cache, value_cache=batch.value_cache,
                    num_kv_heads=2, scale=batch.scale, block_tables=batch.block_tables,
                    seq_lens=batch.seq_lens, query_start_loc=None, block_size=16,
                    max_seq_len=20, alibi_slopes=None, kv_cache_dtype="auto",
                    k_scale=batch.one, v_scale=batch.one)
        args.update(changes)
        pagedkv.cpu.paged_attention_rocm(**args)

    for changes, text in [
        (dict(mfma_type="bf16"), 'mfma_type: expected "f16" or "fp8"'),
        (dict(use_interleaved_v_cache=True), "use_interleaved_v_cache: expected False"),
        (dict(kv_cache_dtype="fp8_e5m2"), 'kv_cache_dtype: expected "auto", "fp8" or "fp8_e4m3"'),
        (dict(max_seq_len=300), "exp_sum.size(2): expected at least ceil(max_seq_len / 256)"),
    ]:
        with pytest.raises(ValueError, match=re.escape(text)):
            call(**changes)
        assert out.tobytes() == before.tobytes()
    call(mfma_type="fp8")  # accepted: the same math on NVIDIA


# --- CUDA ----------------------------------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch")


@pytest.mark.cuda
@pytest.mark.parametrize("kind", ("auto", "fp8_e4m3"))
def test_cuda_implementations_match_the_cpu_reference(kind):
    torch = _torch()
    from pagedkv import vllm_ops

    lengths, H, KVH, D, B = [1, 33, 600, 2000], 32, 8, 128, 16
    gen = torch.Generator().manual_seed(11)
    tokens = sum(lengths)
    key = torch.rand(tokens, KVH, D, generator=gen).to(torch.bfloat16) * 2 - 1
    value = torch.rand(tokens, KVH, D, generator=gen).to(torch.bfloat16) * 2 - 1
    num_blocks = 4 * sum((n + B - 1) // B for n in lengths)
    x = 16 if kind.startswith("fp8") else 8
    cache_dtype = torch.uint8 if kind.startswith("fp8") else torch.bfloat16
    key_cache = torch.full((num_blocks, KVH, D // x, B, x), 0, dtype=cache_dtype)
    value_cache = torch.full((num_blocks, KVH, D, B), 0, dtype=cache_dtype)
    blocks = torch.randperm(num_blocks, generator=gen)
    table = torch.full((4, (max(lengths) + B - 1) // B), -1, dtype=torch.int32)
    slots, used = [], 0
    for s, n in enumerate(lengths):
        columns = (n + B - 1) // B
        table[s, :columns] = blocks[used:used + columns]
        used += columns
        slots += [int(table[s, t // B]) * B + t % B for t in range(n)]
    scale = torch.tensor([1 / 64], dtype=torch.float32)
    vllm_ops.reshape_and_cache(key, value, key_cache, value_cache,
                               torch.tensor(slots, dtype=torch.int64), kind, scale, scale)
    query = torch.rand(4, H, D, generator=gen).to(torch.bfloat16) * 2 - 1
    seq_lens = torch.tensor(lengths, dtype=torch.int32)
    cpu_args = (query, key_cache, value_cache, KVH, 1 / math.sqrt(D), table, seq_lens, B,
                max(lengths), None, kind, scale, scale)
    want = torch.empty(4, H, D, dtype=torch.bfloat16)
    vllm_ops.paged_attention_v1(want, *cpu_args)
    cuda_args = tuple(a.cuda() if isinstance(a, torch.Tensor) else a for a in cpu_args)
    # v2 rounds its partition outputs where v1 does not: one more unit of bf16.
    tolerance = attention_tolerance("bf16", max(lengths), D) + UNIT_ROUNDOFF["bf16"]
    for module in (pagedkv.naive, pagedkv.optimized, vllm_ops):
        out = torch.empty(4, H, D, dtype=torch.bfloat16, device="cuda")
        module.paged_attention_v1(out, *cuda_args)
        exp_sum, max_logits, tmp_out = attention.workspaces(out, max(lengths))
        out2 = torch.empty_like(out)
        module.paged_attention_v2(out2, exp_sum, max_logits, tmp_out, *cuda_args)
        torch.cuda.synchronize()
        for got in (out, out2):
            err = (torch.linalg.norm(got.cpu().double() - want.double()) /
                   torch.linalg.norm(want.double())).item()
            assert err <= tolerance, (module.__name__, err)
