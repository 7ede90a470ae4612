"""Bad calls through the Python package: a ValueError (pagedkv.InvalidArgument) whose message
names the argument, and not one output byte changed. Also the binding's own argument checks
(not an array, read-only output, unsupported dtype)."""

from __future__ import annotations

import numpy as np
import pytest

import cases
import pagedkv


def flash_call(**changes):
    """A valid reshape_and_cache_flash call on the CPU, with some arguments replaced."""
    rng = np.random.default_rng(0)
    base = cases.flash_base("NHD", 4, 4, 2, 8, np.float32)
    key_cache, value_cache = cases.flash_views(base, "NHD")
    args = dict(
        key=cases.random_activations(rng, (3, 2, 8), "f32"),
        value=cases.random_activations(rng, (3, 2, 8), "f32"),
        key_cache=key_cache, value_cache=value_cache,
        slot_mapping=np.array([0, 5, -1], np.int64), kv_cache_dtype="auto",
        k_scale=np.ones(1, np.float32), v_scale=np.ones(1, np.float32))
    args.update(changes)
    return args, base


def u8_cache():
    return cases.flash_views(cases.flash_base("NHD", 4, 4, 2, 8, np.uint8), "NHD")


FLASH_REJECTIONS = {
    "int32 slot_mapping (upstream misreads it)": (dict(slot_mapping=np.array([0, 1, 2], np.int32)), "slot_mapping"),
    "slot past the cache": (dict(slot_mapping=np.array([0, 16, 1], np.int64)), "slot_mapping"),
    "more slots than key rows": (dict(slot_mapping=np.arange(4, dtype=np.int64)), "slot_mapping"),
    "unknown kv_cache_dtype": (dict(kv_cache_dtype="int8"), "kv_cache_dtype"),
    "fp8_ds_mla is the MLA writer's": (dict(kv_cache_dtype="fp8_ds_mla"), "kv_cache_dtype"),
    "bfloat16 with float32 activations": (dict(kv_cache_dtype="bfloat16"), "kv_cache_dtype"),
    "value dtype differs from key": (dict(value=np.zeros((3, 2, 8), np.float16)), "value"),
    "value head count differs": (dict(value=np.zeros((3, 3, 8), np.float32)), "value"),
    "auto cache of another dtype": (dict(key_cache=np.zeros((4, 4, 2, 8), np.float16),
                                         value_cache=np.zeros((4, 4, 2, 8), np.float16)), "key_cache"),
    "key of rank 2": (dict(key=np.zeros((3, 16), np.float32)), "key"),
}


@pytest.mark.parametrize("case", list(FLASH_REJECTIONS))
def test_reshape_and_cache_flash_rejections(case):
    changes, argument = FLASH_REJECTIONS[case]
    args, base = flash_call(**changes)
    before = base.copy()
    with pytest.raises(ValueError, match=argument) as info:
        pagedkv.cpu.reshape_and_cache_flash(**args)
    assert isinstance(info.value, pagedkv.InvalidArgument)
    np.testing.assert_array_equal(base.view(np.uint8), before.view(np.uint8))


def test_fp8_scale_shape_is_checked():
    key_cache, value_cache = u8_cache()
    args, _ = flash_call(key_cache=key_cache, value_cache=value_cache, kv_cache_dtype="fp8",
                         k_scale=np.ones(3, np.float32))
    before = key_cache.copy()
    with pytest.raises(ValueError, match="k_scale"):
        pagedkv.cpu.reshape_and_cache_flash(**args)
    np.testing.assert_array_equal(key_cache, before)
    args["k_scale"] = np.ones(2, np.float32)  # one per head, but v_scale has one
    with pytest.raises(ValueError, match="v_scale"):
        pagedkv.cpu.reshape_and_cache_flash(**args)


def test_cuda_implementations_reject_host_arrays():
    """NumPy arrays live in host memory: naive/optimized name the first argument on the wrong
    device, without touching the CUDA runtime's data (works on a machine without a GPU)."""
    for implementation in (pagedkv.naive, pagedkv.optimized):
        args, base = flash_call()
        before = base.copy()
        with pytest.raises(ValueError, match="key"):
            implementation.reshape_and_cache_flash(**args)
        np.testing.assert_array_equal(base, before)
        with pytest.raises(ValueError, match="src, dst"):
            implementation.swap_blocks(np.zeros((2, 8), np.uint8), np.zeros((2, 8), np.uint8), 8,
                                       np.zeros((1, 2), np.int64))


def test_reshape_and_cache_rejections():
    key = np.ones((2, 2, 16), np.float16)
    key_cache = np.zeros((3, 2, 2, 4, 8), np.float16)  # x = 8 for 2-byte elements
    value_cache = np.zeros((3, 2, 16, 4), np.float16)
    one = np.ones(1, np.float32)
    good = dict(key=key, value=key, key_cache=key_cache, value_cache=value_cache,
                slot_mapping=np.array([0, 11], np.int64), kv_cache_dtype="auto", k_scale=one,
                v_scale=one)
    for changes, argument in [
        (dict(slot_mapping=np.array([0, 12], np.int64)), "slot_mapping"),
        (dict(key_cache=np.zeros((3, 2, 4, 4, 4), np.float16)), r"key_cache.size\(4\)"),
        (dict(kv_cache_dtype="fp8_e4m3"), "key_cache"),
        (dict(value_cache=np.zeros((3, 2, 16, 5), np.float16)), "value_cache"),
    ]:
        with pytest.raises(ValueError, match=argument):
            pagedkv.cpu.reshape_and_cache(**dict(good, **changes))
    assert not key_cache.any() and not value_cache.any()


SWAP_REJECTIONS = {
    "source block out of range": (dict(block_mapping=np.array([[4, 0]], np.int64)), r"block_mapping\[0, 0\]"),
    "negative destination block": (dict(block_mapping=np.array([[0, -1]], np.int64)), r"block_mapping\[0, 1\]"),
    "mapping of the wrong shape": (dict(block_mapping=np.zeros((2, 3), np.int64)), "block_mapping"),
    "float mapping": (dict(block_mapping=np.zeros((1, 2), np.float32)), "block_mapping"),
    "zero block size": (dict(block_size_in_bytes=0), "block_size_in_bytes"),
    "block larger than dst": (dict(block_size_in_bytes=64), "block_size_in_bytes"),
}


@pytest.mark.parametrize("case", list(SWAP_REJECTIONS))
def test_swap_blocks_rejections(case):
    changes, pattern = SWAP_REJECTIONS[case]
    src = np.arange(64, dtype=np.uint8).reshape(4, 16)
    dst = np.zeros((3, 16), np.uint8)
    args = dict(src=src, dst=dst, block_size_in_bytes=16,
                block_mapping=np.array([[1, 2]], np.int64))
    args.update(changes)
    with pytest.raises(ValueError, match=pattern):
        pagedkv.cpu.swap_blocks(**args)
    assert not dst.any()


# --- the binding's own checks ---------------------------------------------------------------

def test_not_an_array_is_a_type_error_naming_the_argument():
    args, _ = flash_call(slot_mapping=[0, 1, 2])
    with pytest.raises(TypeError, match="slot_mapping"):
        pagedkv.cpu.reshape_and_cache_flash(**args)


def test_read_only_output_is_rejected():
    args, base = flash_call()
    args["key_cache"].setflags(write=False)
    with pytest.raises(ValueError, match="key_cache.*read-only"):
        pagedkv.cpu.reshape_and_cache_flash(**args)


def test_read_only_inputs_are_fine():
    args, base = flash_call()
    args["key"].setflags(write=False)
    args["slot_mapping"].setflags(write=False)
    pagedkv.cpu.reshape_and_cache_flash(**args)
    np.testing.assert_array_equal(args["key_cache"][0, 0], args["key"][0])


def test_unsupported_dtype_is_named():
    args, _ = flash_call(key=np.zeros((3, 2, 8), np.float64))
    with pytest.raises(ValueError, match="key: dtype float64 is not supported"):
        pagedkv.cpu.reshape_and_cache_flash(**args)


def test_too_many_dimensions():
    args, _ = flash_call(key=np.zeros((1,) * 7, np.float32))
    with pytest.raises(ValueError, match="key: at most 6 dimensions"):
        pagedkv.cpu.reshape_and_cache_flash(**args)


def test_raw_bits_need_matching_element_size():
    args, _ = flash_call()
    args["key"] = pagedkv.RawBits(np.zeros((3, 2, 8), np.uint8), "bf16")
    with pytest.raises(ValueError, match="key: reinterpreting as bf16 needs 16-bit elements"):
        pagedkv.cpu.reshape_and_cache_flash(**args)
    with pytest.raises(ValueError):
        pagedkv.bfloat16_bits(np.zeros(3, np.float32))
