"""Random inputs and cache layouts shared by the Python tests (NumPy only)."""

from __future__ import annotations

import zlib

import numpy as np

import pagedkv

POISON = 0xFF  # all-ones bytes are NaN in every float format: a missed write shows

ACTIVATION_DTYPES = ("f32", "f16", "bf16")
STORAGE = {"f32": np.float32, "f16": np.float16, "bf16": np.uint16}  # bf16 as raw bits


def seed_of(*parts) -> int:
    """A seed that depends only on the test parameters (not on Python's hash randomization)."""
    return zlib.crc32(repr(parts).encode())


def random_activations(rng: np.random.Generator, shape, dtype: str) -> np.ndarray:
    """Random finite values of several magnitudes (so fp8 saturation and subnormals occur)."""
    magnitude = 10.0 ** rng.integers(-3, 3, size=shape)
    values = (rng.standard_normal(shape) * magnitude).astype(np.float32)
    if dtype == "bf16":
        return (values.view(np.uint32) >> 16).astype(np.uint16)  # any bf16 pattern will do
    return values.astype(STORAGE[dtype])


def as_arg(array: np.ndarray, dtype: str):
    """How a test passes an activation-typed array to pagedkv (bf16 bits are tagged)."""
    return pagedkv.bfloat16_bits(array) if dtype == "bf16" else array


def cache_storage(dtype: str, kv_cache_dtype: str):
    """NumPy dtype of the cache: activations' for bit-copy kinds, one byte for fp8."""
    return np.uint8 if kv_cache_dtype.startswith("fp8") else STORAGE[dtype]


def poisoned(shape, storage) -> np.ndarray:
    array = np.empty(shape, dtype=storage)
    array.view(np.uint8)[...] = POISON
    return array


def slots_for(rng: np.random.Generator, num_tokens: int, num_slots: int, padding: int = 2):
    """Unique random slots for num_tokens tokens, `padding` of them replaced by -1."""
    slots = rng.choice(num_slots, size=num_tokens, replace=False).astype(np.int64)
    if padding:
        slots[rng.choice(num_tokens, size=min(padding, num_tokens), replace=False)] = -1
    return slots


# --- reshape_and_cache_flash cache layouts --------------------------------------------------
# Each layout is one allocation ("base") plus the two logical [N, BS, H, D] views into it.

FLASH_LAYOUTS = ("NHD", "HND", "joint_NHD", "joint_HND", "two_planes")


def flash_base(layout: str, num_blocks, block_size, num_heads, head_size, storage):
    shape = {
        "NHD": (2, num_blocks, block_size, num_heads, head_size),
        "HND": (2, num_blocks, num_heads, block_size, head_size),
        "joint_NHD": (num_blocks, 2, block_size, num_heads, head_size),  # FlashInfer
        "joint_HND": (num_blocks, 2, num_heads, block_size, head_size),
        "two_planes": (2, num_blocks, block_size, num_heads, head_size),  # FlashAttention
    }[layout]
    return poisoned(shape, storage)


def flash_views(base: np.ndarray, layout: str):
    """(key_cache, value_cache) views of logical shape [N, BS, H, D]."""
    if layout in ("NHD", "two_planes"):
        return base[0], base[1]
    if layout == "HND":
        return base[0].transpose(0, 2, 1, 3), base[1].transpose(0, 2, 1, 3)
    if layout == "joint_NHD":
        return base[:, 0], base[:, 1]
    if layout == "joint_HND":
        return base[:, 0].transpose(0, 2, 1, 3), base[:, 1].transpose(0, 2, 1, 3)
    raise ValueError(layout)


def legacy_caches(num_blocks, block_size, num_heads, head_size, storage):
    """Poisoned legacy caches: key [N, H, D // x, BS, x] with x = 16 bytes, value [N, H, D, BS]."""
    x = 16 // np.dtype(storage).itemsize
    key_cache = poisoned((num_blocks, num_heads, head_size // x, block_size, x), storage)
    value_cache = poisoned((num_blocks, num_heads, head_size, block_size), storage)
    return key_cache, value_cache
