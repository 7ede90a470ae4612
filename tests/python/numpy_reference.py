"""An independent NumPy formulation of the ops (vLLM csrc/cache_kernels.cu @9803b00: swap_blocks,
reshape_and_cache, reshape_and_cache_flash, written as whole-array operations), used to check
pagedkv.cpu.

Nothing here calls pagedkv: the cache writes are whole-array advanced-indexing assignments, and
fp8 bytes come from ml_dtypes' float8 casts (round to nearest even) after clamping to the largest
finite value, which is what the CUDA kernels' saturating conversion gives.

Activations are stored as float32, float16, or uint16 bf16 bit patterns ("bf16").
"""

from __future__ import annotations

import numpy as np

FP8_MAX = {"e4m3": 448.0, "e5m2": 57344.0}


def fp8_kind(kv_cache_dtype: str):
    """"e4m3", "e5m2" or None (a bit-copy cache) for a kv_cache_dtype string."""
    if kv_cache_dtype in ("fp8", "fp8_e4m3"):
        return "e4m3"
    if kv_cache_dtype == "fp8_e5m2":
        return "e5m2"
    return None


def activation_values(storage: np.ndarray, dtype: str) -> np.ndarray:
    """The float32 value of every activation element (exact for all three types)."""
    if dtype == "bf16":
        return (storage.astype(np.uint32) << 16).view(np.float32)
    return storage.astype(np.float32)


def quantize_fp8(values: np.ndarray, scale: np.ndarray, kind: str) -> np.ndarray:
    """fp8(x / scale) as bytes: float32 division, saturation to +-max, round to nearest even."""
    import ml_dtypes

    target = ml_dtypes.float8_e4m3fn if kind == "e4m3" else ml_dtypes.float8_e5m2
    scaled = (values.astype(np.float32) / scale.astype(np.float32)).astype(np.float32)
    clamped = np.clip(scaled, -FP8_MAX[kind], FP8_MAX[kind]).astype(np.float32)
    return clamped.astype(target).view(np.uint8)


def encode_rows(rows: np.ndarray, dtype: str, kv_cache_dtype: str, scale: np.ndarray) -> np.ndarray:
    """What the cache stores for rows [n, num_heads, head_size] of activations.

    "auto"-like kinds copy the bits; fp8 kinds quantize with one scale or one per head.
    """
    kind = fp8_kind(kv_cache_dtype)
    if kind is None:
        return rows.copy()
    num_heads = rows.shape[1]
    per_head = scale.size > 1
    head_scale = scale.reshape(1, num_heads, 1) if per_head else scale.reshape(1, 1, 1)
    return quantize_fp8(activation_values(rows, dtype), head_scale, kind)


def _valid_tokens(slot_mapping: np.ndarray):
    tokens = np.nonzero(slot_mapping >= 0)[0]
    return tokens, slot_mapping[tokens]


def reshape_and_cache_flash(key, value, key_cache, value_cache, slot_mapping, dtype,
                            kv_cache_dtype, k_scale, v_scale):
    """Writes into key_cache / value_cache (views of logical shape [N, BS, H, D], any strides)."""
    block_size = key_cache.shape[1]
    tokens, slots = _valid_tokens(slot_mapping)
    blocks, offsets = slots // block_size, slots % block_size
    # Indexing the logical view respects its strides, so NHD, HND and joint K/V views all work.
    key_cache[blocks, offsets] = encode_rows(key[tokens], dtype, kv_cache_dtype, k_scale)
    value_cache[blocks, offsets] = encode_rows(value[tokens], dtype, kv_cache_dtype, v_scale)


def reshape_and_cache(key, value, key_cache, value_cache, slot_mapping, dtype, kv_cache_dtype,
                      k_scale, v_scale):
    """Writes into the legacy caches: key_cache [N, H, D // x, BS, x], value_cache [N, H, D, BS]."""
    num_heads, head_size = key.shape[1], key.shape[2]
    x = key_cache.shape[4]
    block_size = key_cache.shape[3]
    tokens, slots = _valid_tokens(slot_mapping)
    blocks, offsets = slots // block_size, slots % block_size
    new_keys = encode_rows(key[tokens], dtype, kv_cache_dtype, k_scale)
    new_values = encode_rows(value[tokens], dtype, kv_cache_dtype, v_scale)
    # Advanced indices on dims 0 and 3 (separated by slices) put the token axis first.
    key_cache[blocks, :, :, offsets, :] = new_keys.reshape(len(tokens), num_heads, head_size // x, x)
    value_cache[blocks, :, :, offsets] = new_values


def swap_blocks(src: np.ndarray, dst: np.ndarray, block_size_in_bytes: int,
                block_mapping: np.ndarray) -> None:
    """Copies the pairs in order over byte views of src and dst (contiguous arrays)."""
    src_bytes = src.reshape(-1).view(np.uint8)
    dst_bytes = dst.reshape(-1).view(np.uint8)
    size = block_size_in_bytes
    for src_block, dst_block in block_mapping.tolist():
        dst_bytes[dst_block * size:(dst_block + 1) * size] = \
            src_bytes[src_block * size:(src_block + 1) * size].copy()
