"""pagedkv.cpu on NumPy arrays against the independent NumPy formulation (numpy_reference.py).

Every output byte is compared, the untouched (poisoned) ones included. fp8 caches need
ml_dtypes for the independent rounding; without it those cases are skipped.
"""

from __future__ import annotations

import numpy as np
import pytest

import cases
import numpy_reference as ref
import pagedkv

KV_CACHE_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2")


def needs_ml_dtypes(kv_cache_dtype: str):
    if kv_cache_dtype.startswith("fp8"):
        pytest.importorskip("ml_dtypes", reason="fp8 expected bytes need ml_dtypes")


def scales(rng, num_heads: int, per_head: bool):
    """Scales around 0.01 so that large activations saturate the fp8 range."""
    n = num_heads if per_head else 1
    k_scale = (rng.uniform(0.5, 2.0, size=n) * 0.01).astype(np.float32)
    v_scale = (rng.uniform(0.5, 2.0, size=n) * 0.01).astype(np.float32)
    return k_scale, v_scale


# --- reshape_and_cache_flash ------------------------------------------------------------------

@pytest.mark.parametrize("layout", cases.FLASH_LAYOUTS)
@pytest.mark.parametrize("dtype", cases.ACTIVATION_DTYPES)
@pytest.mark.parametrize("kv_cache_dtype", KV_CACHE_DTYPES)
def test_reshape_and_cache_flash_matches_numpy(layout, dtype, kv_cache_dtype):
    needs_ml_dtypes(kv_cache_dtype)
    rng = np.random.default_rng(cases.seed_of(layout, dtype, kv_cache_dtype))
    num_blocks, block_size, num_heads, head_size = 6, 4, 3, 24
    num_tokens, padded_rows = 11, 13  # key has CUDA-graph padding rows that are not read
    key = cases.random_activations(rng, (padded_rows, num_heads, head_size), dtype)
    value = cases.random_activations(rng, (padded_rows, num_heads, head_size), dtype)
    slot_mapping = cases.slots_for(rng, num_tokens, num_blocks * block_size)
    k_scale, v_scale = scales(rng, num_heads, per_head=False)

    storage = cases.cache_storage(dtype, kv_cache_dtype)
    base = cases.flash_base(layout, num_blocks, block_size, num_heads, head_size, storage)
    expected = base.copy()
    key_cache, value_cache = cases.flash_views(base, layout)

    wrap = (lambda a: cases.as_arg(a, dtype)) if kv_cache_dtype == "auto" else (lambda a: a)
    pagedkv.cpu.reshape_and_cache_flash(
        cases.as_arg(key, dtype), cases.as_arg(value, dtype), wrap(key_cache), wrap(value_cache),
        slot_mapping, kv_cache_dtype, k_scale, v_scale)

    ref.reshape_and_cache_flash(key, value, *cases.flash_views(expected, layout), slot_mapping,
                                dtype, kv_cache_dtype, k_scale, v_scale)
    np.testing.assert_array_equal(base.view(np.uint8), expected.view(np.uint8))


@pytest.mark.parametrize("kv_cache_dtype", ("fp8_e4m3", "fp8_e5m2"))
def test_reshape_and_cache_flash_per_head_scales(kv_cache_dtype):
    pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(7)
    num_blocks, block_size, num_heads, head_size = 4, 8, 4, 16
    key = cases.random_activations(rng, (9, num_heads, head_size), "bf16")
    value = cases.random_activations(rng, (9, num_heads, head_size), "bf16")
    slot_mapping = cases.slots_for(rng, 9, num_blocks * block_size, padding=1)
    k_scale, v_scale = scales(rng, num_heads, per_head=True)
    base = cases.flash_base("joint_HND", num_blocks, block_size, num_heads, head_size, np.uint8)
    expected = base.copy()
    pagedkv.cpu.reshape_and_cache_flash(
        pagedkv.bfloat16_bits(key), pagedkv.bfloat16_bits(value),
        *cases.flash_views(base, "joint_HND"), slot_mapping, kv_cache_dtype, k_scale, v_scale)
    ref.reshape_and_cache_flash(key, value, *cases.flash_views(expected, "joint_HND"),
                                slot_mapping, "bf16", kv_cache_dtype, k_scale, v_scale)
    np.testing.assert_array_equal(base, expected)


def test_reshape_and_cache_flash_key_sliced_from_fused_qkv():
    """key and value are column slices of one [T, (Hq + 2 H) * D] buffer: rows have a pitch."""
    rng = np.random.default_rng(11)
    num_q_heads, num_heads, head_size, tokens = 4, 2, 8, 5
    qkv = cases.random_activations(rng, (tokens, (num_q_heads + 2 * num_heads) * head_size), "f16")
    q_end, k_end = num_q_heads * head_size, (num_q_heads + num_heads) * head_size
    key = qkv[:, q_end:k_end].reshape(tokens, num_heads, head_size)
    value = qkv[:, k_end:].reshape(tokens, num_heads, head_size)
    assert key.strides[0] == qkv.strides[0]  # a view with the fused row pitch, not a copy
    slot_mapping = np.array([3, -1, 0, 7, 5], dtype=np.int64)
    base = cases.flash_base("NHD", 2, 4, num_heads, head_size, np.float16)
    expected = base.copy()
    one = np.ones(1, np.float32)
    pagedkv.cpu.reshape_and_cache_flash(key, value, *cases.flash_views(base, "NHD"), slot_mapping,
                                        "auto", one, one)
    ref.reshape_and_cache_flash(key, value, *cases.flash_views(expected, "NHD"), slot_mapping,
                                "f16", "auto", one, one)
    np.testing.assert_array_equal(base.view(np.uint8), expected.view(np.uint8))


def test_reshape_and_cache_flash_python_float_scales_and_zero_tokens():
    rng = np.random.default_rng(3)
    key = cases.random_activations(rng, (2, 1, 8), "f32")
    base = cases.flash_base("NHD", 1, 2, 1, 8, np.float32)
    before = base.copy()
    # No tokens: nothing is written (upstream would launch an empty grid).
    pagedkv.cpu.reshape_and_cache_flash(key, key, *cases.flash_views(base, "NHD"),
                                        np.zeros(0, np.int64), "auto", 1.0, 1.0)
    np.testing.assert_array_equal(base.view(np.uint8), before.view(np.uint8))
    pagedkv.cpu.reshape_and_cache_flash(key, key, *cases.flash_views(base, "NHD"),
                                        np.array([1, 0], np.int64), "auto", 1.0, 1.0)
    np.testing.assert_array_equal(base[0, 0, 1], key[0])
    np.testing.assert_array_equal(base[0, 0, 0], key[1])


def test_ml_dtypes_arrays_are_accepted_directly():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(5)
    bits = cases.random_activations(rng, (3, 2, 8), "bf16")
    key = bits.view(ml_dtypes.bfloat16)
    base = np.zeros((2, 2, 2, 2, 8), dtype=ml_dtypes.bfloat16)
    key_cache, value_cache = base[0], base[1]
    one = np.ones(1, np.float32)
    pagedkv.cpu.reshape_and_cache_flash(key, key, key_cache, value_cache,
                                        np.array([0, 3, 1], np.int64), "bfloat16", one, one)
    np.testing.assert_array_equal(key_cache.view(np.uint16)[0, 0], bits[0])
    np.testing.assert_array_equal(key_cache.view(np.uint16)[1, 1], bits[1])
    # An fp8 cache may be an ml_dtypes float8 array: the op writes its bytes.
    cache8 = np.zeros((2, 2, 2, 2, 8), dtype=ml_dtypes.float8_e4m3fn)
    pagedkv.cpu.reshape_and_cache_flash(key, key, cache8[0], cache8[1],
                                        np.array([0, 3, 1], np.int64), "fp8_e4m3", one, one)
    expected = ref.quantize_fp8(ref.activation_values(bits[0], "bf16"), one, "e4m3")
    np.testing.assert_array_equal(cache8[0].view(np.uint8)[0, 0], expected)


# --- reshape_and_cache (legacy layout) ------------------------------------------------------

@pytest.mark.parametrize("dtype", cases.ACTIVATION_DTYPES)
@pytest.mark.parametrize("kv_cache_dtype", KV_CACHE_DTYPES)
@pytest.mark.parametrize("block_size", (1, 8))
def test_reshape_and_cache_matches_numpy(dtype, kv_cache_dtype, block_size):
    needs_ml_dtypes(kv_cache_dtype)
    rng = np.random.default_rng(cases.seed_of(dtype, kv_cache_dtype, block_size))
    num_blocks, num_heads, head_size = 5, 2, 32  # head_size a multiple of x = 16 for fp8
    num_tokens = min(9, num_blocks * block_size)
    key = cases.random_activations(rng, (num_tokens + 1, num_heads, head_size), dtype)
    value = cases.random_activations(rng, (num_tokens + 1, num_heads, head_size), dtype)
    slot_mapping = cases.slots_for(rng, num_tokens, num_blocks * block_size, padding=1)
    k_scale, v_scale = scales(rng, num_heads, per_head=False)
    storage = cases.cache_storage(dtype, kv_cache_dtype)
    key_cache, value_cache = cases.legacy_caches(num_blocks, block_size, num_heads, head_size,
                                                 storage)
    expected_key, expected_value = key_cache.copy(), value_cache.copy()

    wrap = (lambda a: cases.as_arg(a, dtype)) if kv_cache_dtype == "auto" else (lambda a: a)
    pagedkv.cpu.reshape_and_cache(cases.as_arg(key, dtype), cases.as_arg(value, dtype),
                                  wrap(key_cache), wrap(value_cache), slot_mapping,
                                  kv_cache_dtype, k_scale, v_scale)
    ref.reshape_and_cache(key, value, expected_key, expected_value, slot_mapping, dtype,
                          kv_cache_dtype, k_scale, v_scale)
    np.testing.assert_array_equal(key_cache.view(np.uint8), expected_key.view(np.uint8))
    np.testing.assert_array_equal(value_cache.view(np.uint8), expected_value.view(np.uint8))


# --- swap_blocks --------------------------------------------------------------------------------

@pytest.mark.parametrize("mapping_dtype", (np.int64, np.int32))
def test_swap_blocks_matches_numpy(mapping_dtype):
    rng = np.random.default_rng(1)
    # src and dst have different dtypes and shapes: only bytes and blocks matter.
    src = rng.standard_normal((12, 2, 16)).astype(np.float16)      # 64-byte blocks
    dst = rng.integers(0, 255, size=(9, 64), dtype=np.uint8)
    block_size_in_bytes = src.strides[0]  # vLLM: element_size() * stride(0), one row in bytes
    block_mapping = np.array([[3, 0], [11, 8], [0, 4], [5, 5]], dtype=mapping_dtype)
    expected = dst.copy()
    pagedkv.cpu.swap_blocks(src, dst, block_size_in_bytes, block_mapping)
    ref.swap_blocks(src, expected, block_size_in_bytes, block_mapping)
    np.testing.assert_array_equal(dst, expected)


def test_swap_blocks_pairs_run_in_order_on_one_buffer():
    buffer = np.arange(4 * 8, dtype=np.uint8).reshape(4, 8)
    old_block_0 = buffer[0].copy()
    pagedkv.cpu.swap_blocks(buffer, buffer, 8, np.array([[0, 1], [1, 2]], dtype=np.int64))
    np.testing.assert_array_equal(buffer[1], old_block_0)
    np.testing.assert_array_equal(buffer[2], old_block_0)  # the chain sees the first copy


def test_swap_blocks_empty_mapping_is_a_no_op():
    src = np.ones((2, 8), np.uint8)
    dst = np.zeros((2, 8), np.uint8)
    pagedkv.cpu.swap_blocks(src, dst, 8, np.zeros((0, 2), np.int64))
    assert not dst.any()


# --- prepare: validate once, run again ------------------------------------------------------

def test_prepared_cpu_call_runs_the_op():
    src = np.arange(32, dtype=np.uint8).reshape(4, 8)
    dst = np.zeros((4, 8), np.uint8)
    call = pagedkv.cpu.prepare("swap_blocks", src, dst, 8, np.array([[2, 0]], np.int64))
    assert isinstance(call, pagedkv.PreparedCall)
    assert not dst.any()  # preparing runs nothing
    call()
    np.testing.assert_array_equal(dst[0], src[2])
    with pytest.raises(ValueError, match="block_mapping"):
        pagedkv.cpu.prepare("swap_blocks", src, dst, 8, np.array([[9, 0]], np.int64))


def test_prepare_takes_the_optional_tensors_defaults():
    """An optional tensor left out of prepare() is None, as in the op's own function."""
    cache = np.arange(2 * 4 * 8, dtype=np.uint8).reshape(2, 4, 8)  # [blocks, block_size, entry]
    dst = np.zeros((6, 8), np.uint8)
    block_table = np.array([[1, 0]], np.int32)
    cu_seq_lens = np.array([0, 6], np.int32)
    call = pagedkv.cpu.prepare("cp_gather_cache", cache, dst, block_table, cu_seq_lens, 1)
    call()
    np.testing.assert_array_equal(dst, np.concatenate([cache[1], cache[0]])[:6])
