"""pagedkv.naive and pagedkv.optimized on torch CUDA tensors agree bit for bit with pagedkv.cpu.

Marked `cuda`: skipped without a GPU, torch with CUDA, or a pagedkv that sees the device.
Run on the GPU machine with `python3 -m pytest tests/python -m cuda`.
"""

from __future__ import annotations

import zlib

import pytest

pytestmark = pytest.mark.cuda
torch = pytest.importorskip("torch")

import pagedkv  # noqa: E402
import torch_cases as tc  # noqa: E402

CUDA_IMPLS = ("naive", "optimized")
KV_CACHE_DTYPES = ("auto", "fp8_e4m3", "fp8_e5m2")


def cache_dtype(dtype: str, kv_cache_dtype: str):
    return torch.uint8 if kv_cache_dtype.startswith("fp8") else tc.DTYPES[dtype]


@pytest.mark.parametrize("impl", CUDA_IMPLS)
@pytest.mark.parametrize("layout", tc.FLASH_LAYOUTS)
@pytest.mark.parametrize("dtype", ("f32", "f16", "bf16"))
@pytest.mark.parametrize("kv_cache_dtype", KV_CACHE_DTYPES)
@pytest.mark.parametrize("per_head", (False, True))
def test_reshape_and_cache_flash_matches_cpu(impl, layout, dtype, kv_cache_dtype, per_head):
    if per_head and kv_cache_dtype == "auto":
        pytest.skip("scales are read only by fp8 caches")
    num_blocks, block_size, num_heads, head_size = 16, 16, 4, 80  # an odd head size
    num_tokens, padded_rows = 37, 40
    seed = zlib.crc32(repr((layout, dtype, kv_cache_dtype, per_head)).encode()) % 1000
    key = tc.activations((padded_rows, num_heads, head_size), dtype, seed)
    value = tc.activations((padded_rows, num_heads, head_size), dtype, seed + 1)
    slots = tc.unique_slots(num_tokens, num_blocks * block_size, seed)
    n_scales = num_heads if per_head else 1
    k_scale = torch.rand(n_scales, generator=tc.generator(seed)) * 0.02 + 0.005
    v_scale = torch.rand(n_scales, generator=tc.generator(seed + 2)) * 0.02 + 0.005

    base_cpu = tc.flash_base(layout, num_blocks, block_size, num_heads, head_size,
                             cache_dtype(dtype, kv_cache_dtype), "cpu")
    base_gpu = base_cpu.cuda()
    pagedkv.cpu.reshape_and_cache_flash(key, value, *tc.flash_views(base_cpu, layout), slots,
                                        kv_cache_dtype, k_scale, v_scale)
    getattr(pagedkv, impl).reshape_and_cache_flash(
        key.cuda(), value.cuda(), *tc.flash_views(base_gpu, layout), slots.cuda(),
        kv_cache_dtype, k_scale.cuda(), v_scale.cuda())
    torch.cuda.synchronize()
    assert tc.same_bytes(base_gpu, base_cpu)


@pytest.mark.parametrize("impl", CUDA_IMPLS)
@pytest.mark.parametrize("dtype", ("f32", "f16", "bf16"))
@pytest.mark.parametrize("kv_cache_dtype", KV_CACHE_DTYPES)
def test_reshape_and_cache_matches_cpu(impl, dtype, kv_cache_dtype):
    num_blocks, block_size, num_heads, head_size = 12, 16, 8, 128
    num_tokens = 50
    seed = zlib.crc32(repr((dtype, kv_cache_dtype)).encode()) % 1000
    key = tc.activations((num_tokens, num_heads, head_size), dtype, seed)
    value = tc.activations((num_tokens, num_heads, head_size), dtype, seed + 1)
    slots = tc.unique_slots(num_tokens, num_blocks * block_size, seed)
    storage = cache_dtype(dtype, kv_cache_dtype)
    x = 16 // torch.empty(0, dtype=storage).element_size()
    key_cache = tc.poisoned((num_blocks, num_heads, head_size // x, block_size, x), storage, "cpu")
    value_cache = tc.poisoned((num_blocks, num_heads, head_size, block_size), storage, "cpu")
    key_cache_gpu, value_cache_gpu = key_cache.cuda(), value_cache.cuda()
    scale = torch.tensor([0.01])
    pagedkv.cpu.reshape_and_cache(key, value, key_cache, value_cache, slots, kv_cache_dtype,
                                  scale, scale)
    getattr(pagedkv, impl).reshape_and_cache(key.cuda(), value.cuda(), key_cache_gpu,
                                             value_cache_gpu, slots.cuda(), kv_cache_dtype,
                                             scale.cuda(), scale.cuda())
    torch.cuda.synchronize()
    assert tc.same_bytes(key_cache_gpu, key_cache)
    assert tc.same_bytes(value_cache_gpu, value_cache)


@pytest.mark.parametrize("impl", CUDA_IMPLS)
@pytest.mark.parametrize("direction", ("D2D", "H2D", "D2H", "H2D_pinned", "D2H_pinned"))
def test_swap_blocks_matches_cpu(impl, direction):
    num_blocks, block_elems = 64, 2048  # 4 KiB blocks of bf16
    g = tc.generator(5)
    src_cpu = torch.randn(num_blocks, block_elems, generator=g).to(torch.bfloat16)
    dst_cpu = torch.randn(num_blocks, block_elems, generator=g).to(torch.bfloat16)
    mapping = torch.stack([torch.randperm(num_blocks, generator=g)[:20],
                           torch.randperm(num_blocks, generator=g)[:20]], dim=1).to(torch.int64)
    block_size_in_bytes = src_cpu.element_size() * src_cpu.stride(0)
    expected = dst_cpu.clone()
    pagedkv.cpu.swap_blocks(src_cpu, expected, block_size_in_bytes, mapping)

    pinned = direction.endswith("pinned")
    on_host = (lambda t: t.clone().pin_memory()) if pinned else (lambda t: t.clone())
    src = src_cpu.cuda() if direction.startswith("D") else on_host(src_cpu)
    dst = dst_cpu.cuda() if direction[2] == "D" else on_host(dst_cpu)
    getattr(pagedkv, impl).swap_blocks(src, dst, block_size_in_bytes, mapping)
    torch.cuda.synchronize()
    assert tc.same_bytes(dst, expected)


@pytest.mark.parametrize("impl", CUDA_IMPLS)
def test_runs_on_the_current_torch_stream(impl):
    """stream=None picks torch's current stream; an explicit torch.cuda.Stream works too."""
    key = tc.activations((64, 8, 128), "bf16", 3, "cuda")
    slots = torch.arange(64, dtype=torch.int64, device="cuda")
    base = tc.flash_base("joint_NHD", 8, 16, 8, 128, torch.bfloat16, "cuda")
    expected = base.clone()
    tc.expected_flash(key, key, *tc.flash_views(expected, "joint_NHD"), slots, "auto",
                      torch.ones(1), torch.ones(1))
    op = getattr(pagedkv, impl).reshape_and_cache_flash
    one = torch.ones(1, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        op(key, key, *tc.flash_views(base, "joint_NHD"), slots, "auto", one, one)
    side.synchronize()
    assert tc.same_bytes(base, expected)
    other = tc.flash_base("joint_NHD", 8, 16, 8, 128, torch.bfloat16, "cuda")
    op(key, key, *tc.flash_views(other, "joint_NHD"), slots, "auto", one, one, stream=side)
    side.synchronize()
    assert tc.same_bytes(other, expected)


@pytest.mark.parametrize("impl", CUDA_IMPLS)
def test_prepared_call_launches_the_validated_plan(impl):
    key = tc.activations((32, 2, 64), "f16", 9, "cuda")
    slots = tc.unique_slots(32, 64, 9).cuda()
    base = tc.flash_base("HND", 4, 16, 2, 64, torch.float16, "cuda")
    expected = base.clone()
    one = torch.ones(1, device="cuda")
    tc.expected_flash(key, key, *tc.flash_views(expected, "HND"), slots, "auto", one, one)
    call = getattr(pagedkv, impl).prepare("reshape_and_cache_flash", key, key,
                                          *tc.flash_views(base, "HND"), slots, "auto", one, one)
    for _ in range(3):
        call(torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    assert tc.same_bytes(base, expected)


@pytest.mark.parametrize("impl", CUDA_IMPLS)
def test_rejected_call_writes_nothing_on_the_gpu(impl):
    key = tc.activations((4, 2, 16), "bf16", 1, "cuda")
    base = tc.flash_base("NHD", 2, 4, 2, 16, torch.bfloat16, "cuda")
    before = base.clone()
    one = torch.ones(1, device="cuda")
    bad_slots = torch.tensor([0, 1, 8, 2], dtype=torch.int64, device="cuda")  # 8 = 2 × 4
    with pytest.raises(ValueError, match="slot_mapping"):
        getattr(pagedkv, impl).reshape_and_cache_flash(key, key, *tc.flash_views(base, "NHD"),
                                                       bad_slots, "auto", one, one)
    fp8_base = tc.flash_base("NHD", 2, 4, 2, 16, torch.uint8, "cuda")
    fp8_before = fp8_base.clone()
    with pytest.raises(ValueError, match="k_scale"):  # scales must live on the GPU too
        getattr(pagedkv, impl).reshape_and_cache_flash(
            key, key, *tc.flash_views(fp8_base, "NHD"), bad_slots[:2], "fp8", torch.ones(1),
            torch.ones(1))
    torch.cuda.synchronize()
    assert tc.same_bytes(base, before)
    assert tc.same_bytes(fp8_base, fp8_before)


def test_float8_tensors_are_byte_caches():
    key = tc.activations((5, 2, 16), "bf16", 4, "cuda")
    slots = torch.arange(5, dtype=torch.int64, device="cuda")
    scale = torch.full((1,), 0.05, device="cuda")
    as_u8 = tc.flash_base("NHD", 2, 4, 2, 16, torch.uint8, "cuda")
    as_f8 = as_u8.clone().view(torch.float8_e4m3fn)
    pagedkv.optimized.reshape_and_cache_flash(key, key, *tc.flash_views(as_u8, "NHD"), slots,
                                              "fp8_e4m3", scale, scale)
    pagedkv.optimized.reshape_and_cache_flash(key, key, *tc.flash_views(as_f8, "NHD"), slots,
                                              "fp8_e4m3", scale, scale)
    torch.cuda.synchronize()
    assert tc.same_bytes(as_u8, as_f8)
