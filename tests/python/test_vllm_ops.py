"""pagedkv.vllm_ops called exactly as vLLM calls its `_custom_ops`, on torch tensors.

The expected cache contents come from torch formulations of vLLM's kernels, computed with torch's
own float8 casts after clamping: independent of pagedkv. CUDA tests are marked `cuda`; the CPU
ones need only torch. Without torch the whole file is skipped.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import pagedkv  # noqa: E402
import torch_cases as tc  # noqa: E402
from pagedkv import vllm_ops as ops  # noqa: E402


def vllm_scale(value: float, device: str) -> torch.Tensor:
    """vLLM keeps a layer's k/v scale as a 0-d float32 tensor on the GPU."""
    return torch.tensor(value, dtype=torch.float32, device=device)


def flash_case(layout, kv_cache_dtype, device, dtype="bf16", per_head=False, seed=0):
    num_blocks, block_size, num_heads, head_size = 32, 16, 8, 128
    num_tokens = 100
    # key and value as vLLM gets them: slices of one fused QKV projection output.
    qkv = tc.activations((num_tokens + 4, (32 + 2 * num_heads) * head_size), dtype, seed, device)
    _, key, value = qkv.split([32 * head_size, num_heads * head_size, num_heads * head_size], dim=-1)
    key = key.view(-1, num_heads, head_size)
    value = value.view(-1, num_heads, head_size)
    slot_mapping = tc.unique_slots(num_tokens, num_blocks * block_size, seed).to(device)
    storage = torch.uint8 if kv_cache_dtype.startswith("fp8") else tc.DTYPES[dtype]
    base = tc.flash_base(layout, num_blocks, block_size, num_heads, head_size, storage, device)
    if per_head:
        k_scale = torch.rand(num_heads, generator=tc.generator(seed)).to(device) * 0.02 + 0.01
        v_scale = torch.rand(num_heads, generator=tc.generator(seed + 1)).to(device) * 0.02 + 0.01
    else:
        k_scale, v_scale = vllm_scale(0.02, device), vllm_scale(0.03, device)
    return key, value, base, slot_mapping, k_scale, v_scale


def check_flash(layout, kv_cache_dtype, device, per_head=False):
    key, value, base, slot_mapping, k_scale, v_scale = flash_case(
        layout, kv_cache_dtype, device, per_head=per_head)
    expected = base.clone()
    tc.expected_flash(key, value, *tc.flash_views(expected, layout), slot_mapping,
                      kv_cache_dtype, k_scale, v_scale)
    key_cache, value_cache = tc.flash_views(base, layout)
    ops.reshape_and_cache_flash(key, value, key_cache, value_cache, slot_mapping, kv_cache_dtype,
                                k_scale, v_scale)
    if device == "cuda":
        torch.cuda.synchronize()
    assert tc.same_bytes(base, expected)


def check_legacy(kv_cache_dtype, device, dtype="f16"):
    num_blocks, block_size, num_heads, head_size = 16, 16, 8, 64
    key = tc.activations((70, num_heads, head_size), dtype, 1, device)
    value = tc.activations((70, num_heads, head_size), dtype, 2, device)
    slot_mapping = tc.unique_slots(70, num_blocks * block_size, 3).to(device)
    storage = torch.uint8 if kv_cache_dtype.startswith("fp8") else tc.DTYPES[dtype]
    x = 16 // torch.empty(0, dtype=storage).element_size()  # vLLM's x: 16 bytes per chunk
    key_cache = tc.poisoned((num_blocks, num_heads, head_size // x, block_size, x), storage, device)
    value_cache = tc.poisoned((num_blocks, num_heads, head_size, block_size), storage, device)
    expected_key, expected_value = key_cache.clone(), value_cache.clone()
    k_scale, v_scale = vllm_scale(0.05, device), vllm_scale(0.07, device)
    tc.expected_legacy(key, value, expected_key, expected_value, slot_mapping, kv_cache_dtype,
                       k_scale, v_scale)
    ops.reshape_and_cache(key, value, key_cache, value_cache, slot_mapping, kv_cache_dtype,
                          k_scale, v_scale)
    if device == "cuda":
        torch.cuda.synchronize()
    assert tc.same_bytes(key_cache, expected_key)
    assert tc.same_bytes(value_cache, expected_value)


# --- CUDA: what vLLM actually runs ---------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("layout", tc.FLASH_LAYOUTS)
@pytest.mark.parametrize("kv_cache_dtype", ("auto", "fp8", "fp8_e4m3", "fp8_e5m2"))
def test_reshape_and_cache_flash_cuda(layout, kv_cache_dtype):
    check_flash(layout, kv_cache_dtype, "cuda")


@pytest.mark.cuda
@pytest.mark.parametrize("layout", ("NHD", "joint_HND"))
def test_reshape_and_cache_flash_per_head_scales_cuda(layout):
    check_flash(layout, "fp8_e4m3", "cuda", per_head=True)


@pytest.mark.cuda
@pytest.mark.parametrize("kv_cache_dtype", ("auto", "fp8", "fp8_e5m2"))
@pytest.mark.parametrize("dtype", ("f16", "bf16", "f32"))
def test_reshape_and_cache_cuda(kv_cache_dtype, dtype):
    check_legacy(kv_cache_dtype, "cuda", dtype)


@pytest.mark.cuda
@pytest.mark.parametrize("direction", ("gpu_to_cpu", "cpu_to_gpu", "gpu_to_gpu"))
def test_swap_blocks_cuda(direction):
    """vLLM swaps one layer's K (or V) cache between a GPU tensor and a pinned CPU tensor."""
    shape = (64, 16, 8, 128)  # [num_blocks, block_size, num_kv_heads, head_size]: 32 KiB blocks
    g = tc.generator(0)
    gpu_cache = torch.randn(shape, generator=g).to(torch.bfloat16).cuda()
    cpu_cache = torch.randn(shape, generator=g).to(torch.bfloat16).pin_memory()
    src, dst = {"gpu_to_cpu": (gpu_cache, cpu_cache), "cpu_to_gpu": (cpu_cache, gpu_cache),
                "gpu_to_gpu": (gpu_cache, gpu_cache.clone())}[direction]
    block_mapping = torch.tensor([[3, 0], [10, 63], [4, 1]], dtype=torch.int64, device="cpu")
    before = dst.clone()
    block_size_in_bytes = src.element_size() * src.stride(0)
    ops.swap_blocks(src, dst, block_size_in_bytes, block_mapping)
    torch.cuda.synchronize()
    expected = before
    for s, d in block_mapping.tolist():
        expected[d] = src[s].to(expected.device)
    assert tc.same_bytes(dst, expected)


@pytest.mark.cuda
def test_registered_torch_ops_cuda():
    ops.register_torch_ops()
    ops.register_torch_ops()  # a second call does nothing
    key, value, base, slot_mapping, k_scale, v_scale = flash_case("joint_NHD", "fp8", "cuda")
    expected = base.clone()
    tc.expected_flash(key, value, *tc.flash_views(expected, "joint_NHD"), slot_mapping, "fp8",
                      k_scale, v_scale)
    torch.ops.pagedkv.reshape_and_cache_flash(key, value, *tc.flash_views(base, "joint_NHD"),
                                              slot_mapping, "fp8", k_scale, v_scale)
    torch.cuda.synchronize()
    assert tc.same_bytes(base, expected)


@pytest.mark.cuda
def test_bad_call_raises_value_error_cuda():
    key, value, base, slot_mapping, k_scale, v_scale = flash_case("NHD", "auto", "cuda")
    before = base.clone()
    with pytest.raises(ValueError, match="slot_mapping"):
        ops.reshape_and_cache_flash(key, value, *tc.flash_views(base, "NHD"),
                                    slot_mapping.to(torch.int32), "auto", k_scale, v_scale)
    torch.cuda.synchronize()
    assert tc.same_bytes(base, before)


# --- CPU tensors: the CPU reference behind the same signatures (needs torch, no GPU) ----------

@pytest.mark.parametrize("layout", ("NHD", "HND", "joint_HND"))
@pytest.mark.parametrize("kv_cache_dtype", ("auto", "fp8_e4m3"))
def test_reshape_and_cache_flash_cpu_tensors(layout, kv_cache_dtype):
    check_flash(layout, kv_cache_dtype, "cpu")


def test_reshape_and_cache_cpu_tensors():
    check_legacy("fp8", "cpu")


def test_swap_blocks_cpu_tensors():
    src = torch.arange(4 * 32, dtype=torch.int32).view(4, 32)
    dst = torch.zeros(4, 32, dtype=torch.int32)
    ops.swap_blocks(src, dst, src.element_size() * src.stride(0),
                    torch.tensor([[2, 0]], dtype=torch.int64))
    assert torch.equal(dst[0], src[2]) and not dst[1:].any()


def test_non_tensors_are_rejected():
    with pytest.raises(TypeError, match="torch tensors"):
        ops.swap_blocks([1], [2], 8, torch.zeros(1, 2, dtype=torch.int64))


def test_registered_torch_ops_cpu_tensors():
    ops.register_torch_ops()
    key, value, base, slot_mapping, k_scale, v_scale = flash_case("joint_HND", "fp8_e5m2", "cpu")
    expected = base.clone()
    tc.expected_flash(key, value, *tc.flash_views(expected, "joint_HND"), slot_mapping,
                      "fp8_e5m2", k_scale, v_scale)
    torch.ops.pagedkv.reshape_and_cache_flash(key, value, *tc.flash_views(base, "joint_HND"),
                                              slot_mapping, "fp8_e5m2", k_scale, v_scale)
    assert tc.same_bytes(base, expected)


def test_float8_and_grad_tensors_cpu():
    """float8 caches are written as bytes; activations that require grad are read as they are."""
    key = tc.activations((6, 2, 16), "f32", 8).requires_grad_()
    slot_mapping = torch.arange(6, dtype=torch.int64)
    scale = vllm_scale(0.1, "cpu")
    as_u8 = tc.poisoned((2, 2, 4, 2, 16), torch.uint8, "cpu")
    as_f8 = as_u8.clone().view(torch.float8_e4m3fn)
    ops.reshape_and_cache_flash(key, key, *as_u8.unbind(0), slot_mapping, "fp8", scale, scale)
    ops.reshape_and_cache_flash(key, key, *as_f8.unbind(0), slot_mapping, "fp8", scale, scale)
    assert tc.same_bytes(as_u8, as_f8)
    expected = tc.poisoned((2, 2, 4, 2, 16), torch.uint8, "cpu")
    tc.expected_flash(key.detach(), key.detach(), *expected.unbind(0), slot_mapping, "fp8",
                      scale, scale)
    assert tc.same_bytes(as_u8, expected)
