"""LMDeploy TurboMind's paged KV (process_kv, flatten_kv, get_cache_block_size) through
pagedkv.lmdeploy.

CPU part: the block size against the bytes process_kv writes, the round trip (policy 0 exact,
int8 and int4 within half a step plus the activation type's roundings), RoPE on write rotating
K only, block offsets from ids and from pointers, and bad calls (a ValueError naming the
argument, nothing written). CUDA part (marked ``cuda``): the optimized kernels against the CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

import pagedkv
from pagedkv import lmdeploy

HEADS, DIM, BLOCK = 2, 64, 16


def batch(policy: int, layers: int = 2, seed: int = 0):
    """Two sequences (3 new tokens after 20 cached, 30 new tokens), f16 K / V, a pool."""
    rng = np.random.default_rng(seed)
    q_lens, histories = [3, 30], [20, 0]
    cu_q = np.array([0, 3, 33], np.int32)
    cu_k = np.array([0, 23, 53], np.int32)
    blocks_per = [2, 2]
    cu_b = np.array([0, 2, 4], np.int32)
    block_bytes = lmdeploy.get_cache_block_size(policy, layers, HEADS, DIM, BLOCK)
    pool = np.full((9, block_bytes), 0xFF, np.uint8)
    offsets = lmdeploy.block_offsets(pool, [7, 2, 5, 0])
    kv = rng.uniform(-3, 3, (33, 2, HEADS, DIM)).astype(np.float16)
    return dict(pool=pool, offsets=offsets, k=kv[:, 0], v=kv[:, 1], cu_q=cu_q, cu_k=cu_k,
                cu_b=cu_b, q_lens=q_lens, histories=histories, blocks_per=blocks_per)


def write(b, policy, layer_id=1, **rope):
    lmdeploy.process_kv(b["pool"], b["offsets"], b["k"], b["v"], None, None, b["cu_q"], b["cu_k"],
                        b["cu_b"], None, None, block_seq_len=BLOCK, layer_id=layer_id,
                        max_q_len=30, quant_policy=policy, **rope)


def read(b, policy, layer_id=1):
    k_out = np.full((53, HEADS, DIM), np.nan, np.float16)
    v_out = np.full((53, HEADS, DIM), np.nan, np.float16)
    lmdeploy.flatten_kv(k_out, v_out, b["pool"], b["offsets"], b["cu_k"], b["cu_b"], None,
                        block_seq_len=BLOCK, layer_id=layer_id, max_seq_len=30,
                        quant_policy=policy)
    return k_out, v_out


def test_block_size_worked_examples():
    assert lmdeploy.get_cache_block_size(0, 1, 8, 128, 64) == 262144
    assert lmdeploy.get_cache_block_size(8, 1, 8, 128, 64) == 135168
    assert lmdeploy.get_cache_block_size(4, 1, 8, 128, 64) == 69632
    with pytest.raises(ValueError, match="quant_policy"):
        lmdeploy.get_cache_block_size(16, 1, 8, 128, 64)


@pytest.mark.parametrize("policy", (0, 8, 4))
def test_block_size_is_what_the_writer_fills(policy):
    """A full block of layer 1 (the last of 2) touches exactly the block's second half."""
    b = batch(policy)
    seen = []
    for poison in (0x00, 0xFF):
        b["pool"][:] = poison
        b["cu_q"], b["cu_k"] = np.array([0, 16, 16], np.int32), np.array([0, 16, 16], np.int32)
        write(b, policy)
        seen.append(b["pool"][7].copy())  # the first block of sequence 0
    half = b["pool"].shape[1] // 2
    written = seen[0] == seen[1]
    assert not written[:half].any()
    assert written[half:].all()


@pytest.mark.parametrize("policy", (0, 8, 4))
def test_round_trip(policy):
    b = batch(policy)
    write(b, policy)
    k_out, v_out = read(b, policy)
    rows = [23 - 3 + i for i in range(3)] + [23 + i for i in range(30)]
    for got, want in ((k_out[rows], b["k"]), (v_out[rows], b["v"])):
        got, want = got.astype(np.float64), want.astype(np.float64)
        if policy == 0:
            np.testing.assert_array_equal(got, want)
            continue
        lo, hi = want.min(axis=-1, keepdims=True), want.max(axis=-1, keepdims=True)
        q_max = 255 if policy == 8 else 15
        u = 2.0 ** -11
        bound = (hi - lo) / q_max / 2 + 4 * u * (np.abs(want) + np.abs(lo) + (hi - lo))
        assert (np.abs(got - want) <= bound).all()


def test_rope_on_write_rotates_k_only():
    b = batch(0)
    write(b, 0, rope_type="llama3", rope_dim=DIM, rope_base=500000.0, rope_factor=8.0,
          llama3_original_max_position_embeddings=64)
    k_out, v_out = read(b, 0)
    np.testing.assert_array_equal(v_out[23:53], b["v"][3:33])
    assert not np.array_equal(k_out[24:53], b["k"][4:33])  # positions 1.. rotate
    np.testing.assert_array_equal(k_out[23], b["k"][3])  # position 0: the identity


def test_block_offsets_from_pointers():
    pool = np.zeros((4, 256), np.uint8)
    offsets = lmdeploy.offsets_from_pointers([pool.ctypes.data + 512, pool.ctypes.data], pool)
    np.testing.assert_array_equal(offsets, [512, 0])
    with pytest.raises(ValueError, match="null"):
        lmdeploy.offsets_from_pointers([0], pool)
    with pytest.raises(ValueError, match="not the start of a block"):
        lmdeploy.offsets_from_pointers([pool.ctypes.data + 100], pool)


def test_dynamic_ntk_base():
    assert lmdeploy.dynamic_ntk_base(10000.0, 2.0, 128, 4096, 4096) == 10000.0
    assert lmdeploy.dynamic_ntk_base(10000.0, 2.0, 128, 8192, 4096) > 10000.0


@pytest.mark.parametrize("bad, argument", [(1 << 40, "blocks"), (-1, "blocks"), (100, "blocks")])
def test_bad_block_offset_writes_nothing(bad, argument):
    b = batch(8)
    b["offsets"][1] = bad
    before = b["pool"].copy()
    with pytest.raises(pagedkv.InvalidArgument, match=argument):
        write(b, 8)
    np.testing.assert_array_equal(b["pool"], before)


def test_bad_layer_and_policy():
    b = batch(8)
    with pytest.raises(ValueError, match="layer_id"):
        write(b, 8, layer_id=2)
    with pytest.raises(ValueError, match="quant_policy"):
        write(b, 16)




@pytest.mark.cuda
@pytest.mark.parametrize("policy", (0, 8, 4))
def test_cuda_matches_cpu(policy):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available() or not pagedkv.cuda_available():
        pytest.skip("no CUDA device")
    b = batch(policy)
    write(b, policy, rope_type="default", rope_dim=DIM)
    want = b["pool"].copy()
    b2 = batch(policy)
    pool = torch.full(tuple(b2["pool"].shape), 0xFF, dtype=torch.uint8, device="cuda")
    tensors = {key: torch.from_numpy(np.ascontiguousarray(b2[key])).cuda()
               for key in ("offsets", "k", "v", "cu_q", "cu_k", "cu_b")}
    lmdeploy.process_kv(pool, tensors["offsets"], tensors["k"], tensors["v"], None, None,
                        tensors["cu_q"], tensors["cu_k"], tensors["cu_b"], None, None,
                        rope_type="default", rope_dim=DIM, block_seq_len=BLOCK, layer_id=1,
                        max_q_len=30, quant_policy=policy)
    torch.cuda.synchronize()
    np.testing.assert_array_equal(pool.cpu().numpy(), want)
