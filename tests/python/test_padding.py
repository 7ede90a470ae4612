"""Padding slots through the Python layer (chapter "How pagedkv knows it is right").

Python's and NumPy's negative indexing would turn slot -1 into the last slot if any layer
between the caller and the kernel indexed with it, or divided it with floor division
(-1 // block_size == -1, -1 % block_size == block_size - 1). These tests pass -1 through
NumPy arrays and torch tensors and check that it writes nothing, while slot 0 and the last slot
are written like any other. The C++ side of the same invariants, for every op with a
slot_mapping, is tests/test_sentinels.cpp.
"""

from __future__ import annotations

import numpy as np
import pytest

import cases
import pagedkv

NUM_BLOCKS, BLOCK_SIZE, NUM_HEADS, HEAD_SIZE = 4, 16, 2, 64
LAST_SLOT = NUM_BLOCKS * BLOCK_SIZE - 1


def numpy_case(slots):
    rng = np.random.default_rng(cases.seed_of("padding", tuple(slots)))
    key = cases.random_activations(rng, (len(slots), NUM_HEADS, HEAD_SIZE), "f16")
    value = cases.random_activations(rng, (len(slots), NUM_HEADS, HEAD_SIZE), "f16")
    shape = (NUM_BLOCKS, BLOCK_SIZE, NUM_HEADS, HEAD_SIZE)
    key_cache = cases.poisoned(shape, np.float16)
    value_cache = cases.poisoned(shape, np.float16)
    return key, value, key_cache, value_cache, np.array(slots, np.int64)


def expected_caches(key, value, slots):
    """What the write must leave: poison everywhere but the rows of the valid slots."""
    shape = (NUM_BLOCKS * BLOCK_SIZE, NUM_HEADS, HEAD_SIZE)
    key_cache, value_cache = cases.poisoned(shape, np.float16), cases.poisoned(shape, np.float16)
    for token, slot in enumerate(slots):
        if slot >= 0:
            key_cache[slot], value_cache[slot] = key[token], value[token]
    return key_cache, value_cache


@pytest.mark.parametrize("slots", [
    [-1, -1, -1],                      # every token padding: nothing written
    [0, -1, LAST_SLOT],                # slot 0 and the last slot, padding between
    [-1, LAST_SLOT, -2, 0],            # other negative values, padding first
])
def test_numpy_padding_writes_nothing(slots):
    key, value, key_cache, value_cache, slot_mapping = numpy_case(slots)
    scale = np.ones(1, np.float32)  # read only by fp8 caches
    pagedkv.cpu.reshape_and_cache_flash(key, value, key_cache, value_cache, slot_mapping, "auto",
                                        scale, scale)
    want_key, want_value = expected_caches(key, value, slots)
    assert key_cache.reshape(want_key.shape).tobytes() == want_key.tobytes()
    assert value_cache.reshape(want_value.shape).tobytes() == want_value.tobytes()
    assert slot_mapping.tolist() == slots  # the indices are read, never rewritten


def torch_padding(device):
    torch = pytest.importorskip("torch")
    from pagedkv import vllm_ops

    slots = [0, -1, LAST_SLOT, -1]
    key, value, key_cache, value_cache, slot_mapping = numpy_case(slots)
    key_t, value_t = torch.from_numpy(key).to(device), torch.from_numpy(value).to(device)
    key_cache_t = torch.from_numpy(key_cache).to(device)
    value_cache_t = torch.from_numpy(value_cache).to(device)
    slot_mapping_t = torch.tensor(slots, dtype=torch.int64, device=device)
    scale = torch.ones((), dtype=torch.float32, device=device)  # vLLM's 0-d layer scale
    vllm_ops.reshape_and_cache_flash(key_t, value_t, key_cache_t, value_cache_t, slot_mapping_t,
                                     "auto", scale, scale)
    if device == "cuda":
        torch.cuda.synchronize()
    want_key, want_value = expected_caches(key, value, slots)
    assert key_cache_t.cpu().numpy().reshape(want_key.shape).tobytes() == want_key.tobytes()
    assert value_cache_t.cpu().numpy().reshape(want_value.shape).tobytes() == want_value.tobytes()
    assert slot_mapping_t.cpu().tolist() == slots


def test_torch_padding_cpu():
    torch_padding("cpu")


@pytest.mark.cuda
def test_torch_padding_cuda():
    torch_padding("cuda")
