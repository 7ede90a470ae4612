"""LMDeploy TurboMind's paged KV cache, computed by pagedkv.

TurboMind writes new K and V into its blocks with ``invokeProcessKV_v2`` (bias, RoPE on
write, int8 / int4 quantization) and reads them back with ``invokeFlattenKV_v2``; its kernels
take the blocks as a ``char**`` array of pointers. Here the blocks are byte offsets into one
pool (``kv_cache``, ``uint8 [num_blocks, block_bytes]``), so that every entry can be checked
against the pool (a raw pointer cannot be): :func:`block_offsets` makes them from block ids and
:func:`offsets_from_pointers` from TurboMind-style addresses, refusing a null pointer or one
outside the pool::

    from pagedkv import lmdeploy
    block_bytes = lmdeploy.get_cache_block_size(8, 32, 8, 128, 64)      # int8, Llama-3-8B
    pool = np.zeros((num_blocks, block_bytes), np.uint8)
    offsets = lmdeploy.block_offsets(pool, ids)

The family's ops (the registry's "LMDeploy TurboMind" entries, made at the end of this module)
take ``pool`` and ``offsets`` with the rest of their arguments in TurboMind's order;
``pagedkv.ops()`` lists each one's arguments from its description in the C++ registry.

NumPy arrays run the CPU reference, CUDA tensors the optimized kernels on the current torch
stream (``impl=`` picks another). A bad call raises ``pagedkv.InvalidArgument`` (a
``ValueError``) naming the argument, with nothing written.
"""

from __future__ import annotations

import math

import numpy as np

from . import cpu, naive, optimized, ops
from ._args import _type_kind, torch_current_stream

# The registry's LMDeploy ops are made at the end of this module from their descriptions; the
# helpers below are written here.
_OPS = [op for op in ops() if op["family"] == "LMDeploy TurboMind"]
__all__ = sorted(["block_offsets", "dynamic_ntk_base", "get_cache_block_size",
                  "offsets_from_pointers"] + [op["name"] for op in _OPS])

_IMPLEMENTATIONS = {"cpu": cpu, "naive": naive, "optimized": optimized}


def get_cache_block_size(quant_policy: int, layer_num: int, head_num: int, head_dim: int,
                         block_seq_len: int) -> int:
    """Bytes of one TurboMind block: ``layer_num`` layer regions of every head's K and V rows
    (``block_seq_len × head_dim × bits / 8`` bytes each), then, when quantized, every head's K
    and V ``[scale, zero]`` pairs (4 bytes per token). The same formula as the C++
    ``pagedkv::get_cache_block_size`` (tests check both against the bytes the family's writer stores).
    """
    if quant_policy not in (0, 4, 8):
        raise ValueError(f"quant_policy: expected 0 (none), 4 (int4) or 8 (int8), got {quant_policy}")
    if head_dim not in (64, 128):
        raise ValueError(f"head_dim: expected 64 or 128, got {head_dim}")
    for name, value in (("layer_num", layer_num), ("head_num", head_num),
                        ("block_seq_len", block_seq_len)):
        if value < 1:
            raise ValueError(f"{name}: expected >= 1, got {value}")
    bits = {0: 16, 8: 8, 4: 4}[quant_policy]
    token_data = bits * head_dim // 8
    token_param = 0 if quant_policy == 0 else 4
    layer_size = head_num * 2 * block_seq_len * (token_data + token_param)
    return layer_num * layer_size


def block_offsets(pool, block_ids) -> np.ndarray:
    """The byte offsets of blocks ``block_ids`` of ``pool`` (block i at ``i × pool.stride(0)``),
    as the int64 ``blocks`` array the family's ops take (a torch tensor on the pool's device for
    a torch pool)."""
    ids = np.asarray(block_ids if _type_kind(type(block_ids)) != "torch" else block_ids.cpu(),
                     dtype=np.int64)
    stride = _row_stride_bytes(pool)
    offsets = ids * stride
    if _type_kind(type(pool)) == "torch":
        import torch
        return torch.as_tensor(offsets, device=pool.device)
    return offsets


def offsets_from_pointers(pointers, pool) -> np.ndarray:
    """TurboMind's block pointers (addresses, e.g. ``pool.data_ptr() + i × block_bytes``) as
    byte offsets into ``pool``: raises ``ValueError`` for a null pointer or one that is not the
    start of a block of ``pool`` (what a ``char**`` array cannot be checked for)."""
    base = pool.data_ptr() if _type_kind(type(pool)) == "torch" else pool.ctypes.data
    stride = _row_stride_bytes(pool)
    offsets = []
    for i, pointer in enumerate(int(p) for p in pointers):
        if pointer == 0:
            raise ValueError(f"pointers[{i}]: a null block pointer")
        offset = pointer - base
        if offset < 0 or offset % stride != 0 or offset // stride >= pool.shape[0]:
            raise ValueError(f"pointers[{i}] = {pointer:#x}: not the start of a block of the pool "
                             f"({base:#x}, {pool.shape[0]} blocks of {stride} bytes)")
        offsets.append(offset)
    return block_offsets(pool, np.asarray(offsets, dtype=np.int64) // stride)


def dynamic_ntk_base(base: float, factor: float, dim: int, prompt_len: int,
                     max_position_embeddings: int) -> float:
    """A sequence's RoPE base for rope_type "dynamic" (NTK), as TurboMind computes it when the
    request is added: unchanged unless factor > 1 and the prompt is longer than
    max_position_embeddings, then ``base × s^(dim / (dim − 2))`` with
    ``s = factor × prompt_len / max_position_embeddings − (factor − 1)``."""
    if factor > 1 and prompt_len > max_position_embeddings:
        s = factor * prompt_len / max_position_embeddings - (factor - 1)
        return base * math.pow(s, dim / (dim - 2))
    return base


def _row_stride_bytes(pool) -> int:
    if _type_kind(type(pool)) == "torch":
        return int(pool.stride(0)) * pool.element_size()
    return int(pool.strides[0])


def _dispatching(op: dict):
    """The op on NumPy arrays (the CPU reference) or CUDA tensors (optimized, on the current
    torch stream), chosen by where its `kv_cache` pool lives; `impl=` picks one explicitly."""
    name = op["name"]
    pool_position = [a["name"] for a in op["arguments"]].index("kv_cache")

    def function(*args, impl: str | None = None, **kwargs) -> None:
        pool = kwargs.get("kv_cache", args[pool_position] if len(args) > pool_position else None)
        on_cuda = pool is not None and _type_kind(type(pool)) == "torch" and pool.is_cuda
        chosen = impl or ("optimized" if on_cuda else "cpu")
        if chosen not in _IMPLEMENTATIONS:
            raise ValueError(f"impl: expected one of {sorted(_IMPLEMENTATIONS)}, got {chosen!r}")
        if chosen != "cpu" and "stream" not in kwargs and on_cuda:
            kwargs["stream"] = torch_current_stream(pool)
        getattr(_IMPLEMENTATIONS[chosen], name)(*args, **kwargs)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = (f"{op['upstream']}: pagedkv.cpu.{name} on NumPy arrays, "
                        f"pagedkv.optimized.{name} on CUDA tensors (arguments: pagedkv.ops()).")
    return function


for _op in _OPS:
    globals()[_op["name"]] = _dispatching(_op)
del _op
