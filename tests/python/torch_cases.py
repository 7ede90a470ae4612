"""torch inputs and cache layouts for the CUDA and vllm_ops tests (imported only where torch is)."""

from __future__ import annotations

import torch

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
FP8_MAX = {"e4m3": 448.0, "e5m2": 57344.0}
FLASH_LAYOUTS = ("NHD", "HND", "joint_NHD", "joint_HND", "two_planes")


def generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def activations(shape, dtype: str, seed: int, device="cpu") -> torch.Tensor:
    """Random finite values of several magnitudes (fp8 saturation and subnormals occur)."""
    g = generator(seed)
    magnitude = 10.0 ** torch.randint(-3, 3, shape, generator=g).float()
    return (torch.randn(shape, generator=g) * magnitude).to(DTYPES[dtype]).to(device)


def poisoned(shape, dtype: torch.dtype, device) -> torch.Tensor:
    t = torch.empty(shape, dtype=dtype, device=device)
    t.view(torch.uint8).fill_(0xFF)
    return t


def unique_slots(num_tokens: int, num_slots: int, seed: int, padding: int = 2) -> torch.Tensor:
    g = generator(seed)
    slots = torch.randperm(num_slots, generator=g)[:num_tokens].to(torch.int64)
    slots[torch.randperm(num_tokens, generator=g)[:padding]] = -1
    return slots


def flash_base(layout, num_blocks, block_size, num_heads, head_size, dtype, device):
    shape = {
        "NHD": (2, num_blocks, block_size, num_heads, head_size),
        "HND": (2, num_blocks, num_heads, block_size, head_size),
        "joint_NHD": (num_blocks, 2, block_size, num_heads, head_size),
        "joint_HND": (num_blocks, 2, num_heads, block_size, head_size),
        "two_planes": (2, num_blocks, block_size, num_heads, head_size),
    }[layout]
    return poisoned(shape, dtype, device)


def flash_views(base: torch.Tensor, layout: str):
    """(key_cache, value_cache), logical [N, BS, H, D] views, as vLLM's backends make them."""
    if layout in ("NHD", "two_planes"):
        return base.unbind(0)
    if layout == "HND":
        return tuple(c.permute(0, 2, 1, 3) for c in base.unbind(0))
    if layout == "joint_NHD":
        return base[:, 0], base[:, 1]
    if layout == "joint_HND":
        return base[:, 0].permute(0, 2, 1, 3), base[:, 1].permute(0, 2, 1, 3)
    raise ValueError(layout)


def fp8_kind(kv_cache_dtype: str):
    if kv_cache_dtype in ("fp8", "fp8_e4m3"):
        return "e4m3"
    if kv_cache_dtype == "fp8_e5m2":
        return "e5m2"
    return None


def encode(rows: torch.Tensor, kv_cache_dtype: str, scale: torch.Tensor) -> torch.Tensor:
    """spec Appendix A: bit copy, or q8(x, s) = clamp(x.float() / s).to(float8).view(uint8)."""
    kind = fp8_kind(kv_cache_dtype)
    if kind is None:
        return rows
    num_heads = rows.shape[1]
    s = scale.float().reshape(1, num_heads, 1) if scale.numel() > 1 else scale.float().reshape(1, 1, 1)
    target = torch.float8_e4m3fn if kind == "e4m3" else torch.float8_e5m2
    q = (rows.float() / s).clamp(-FP8_MAX[kind], FP8_MAX[kind])
    return q.to(target).view(torch.uint8)


def expected_flash(key, value, key_cache, value_cache, slot_mapping, kv_cache_dtype, k_scale,
                   v_scale):
    """Writes what reshape_and_cache_flash must write into the given views."""
    block_size = key_cache.shape[1]
    tokens = torch.nonzero(slot_mapping >= 0).flatten()
    slots = slot_mapping[tokens]
    blocks, offsets = slots // block_size, slots % block_size
    key_cache[blocks, offsets] = encode(key[tokens], kv_cache_dtype, k_scale).view(key_cache.dtype)
    value_cache[blocks, offsets] = encode(value[tokens], kv_cache_dtype, v_scale).view(value_cache.dtype)


def expected_legacy(key, value, key_cache, value_cache, slot_mapping, kv_cache_dtype, k_scale,
                    v_scale):
    """Writes what reshape_and_cache must write into key_cache [N, H, D/x, BS, x] and
    value_cache [N, H, D, BS]."""
    num_heads, head_size = key.shape[1], key.shape[2]
    x, block_size = key_cache.shape[4], key_cache.shape[3]
    tokens = torch.nonzero(slot_mapping >= 0).flatten()
    slots = slot_mapping[tokens]
    blocks, offsets = slots // block_size, slots % block_size
    new_keys = encode(key[tokens], kv_cache_dtype, k_scale).view(key_cache.dtype)
    new_values = encode(value[tokens], kv_cache_dtype, v_scale).view(value_cache.dtype)
    key_cache[blocks, :, :, offsets, :] = new_keys.reshape(len(tokens), num_heads, head_size // x, x)
    value_cache[blocks, :, :, offsets] = new_values


def same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a.contiguous().view(torch.uint8).cpu(), b.contiguous().view(torch.uint8).cpu())
