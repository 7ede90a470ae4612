"""DeepSeek V4's sparse-attention index builders with upstream's signatures.

vLLM's ``vllm/models/deepseek_v4/common/ops/cache_utils.py`` returns new tensors from these three
functions; pagedkv's ops write into outputs they are given (``pagedkv.vllm_ops.<name>`` and
``pagedkv.cpu.<name>`` take them as the last two arguments). The functions here allocate the
outputs the way upstream does and return them::

    from pagedkv.deepseek_v4_indices import compute_global_topk_indices_and_lens
    global_topk, lens = compute_global_topk_indices_and_lens(
        topk_indices, token_to_req_indices, block_table, block_size, is_valid_token)

Torch tensors run like ``pagedkv.vllm_ops``: CUDA tensors on pagedkv.optimized (on the current
stream, errors of device index values deferred, capturable into a CUDA graph), CPU tensors on the
CPU reference. NumPy arrays (no torch needed) run on the CPU reference and give NumPy arrays.

Every argument is validated first: a bad call raises ``ValueError`` naming the argument.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

from . import cpu, vllm_ops
from ._args import _type_kind

__all__ = ["build_flashinfer_mixed_sparse_indices", "combine_topk_swa_indices",
           "compute_global_topk_indices_and_lens", "combined_topk_width",
           "mixed_sparse_compressed_width"]


def _is_torch(value: Any) -> bool:
    return value is not None and _type_kind(type(value)) == "torch"


def _empty(like: Any, shape: Tuple[int, ...]) -> Any:
    """An uninitialized i32 tensor of ``shape`` where ``like`` lives (torch or NumPy)."""
    if _is_torch(like):
        import torch
        return torch.empty(shape, dtype=torch.int32, device=like.device)
    import numpy as np
    return np.empty(shape, dtype=np.int32)


def _call(name: str, like: Any, *arguments: Any) -> None:
    """The in-place op: through pagedkv.vllm_ops for torch tensors, pagedkv.cpu otherwise."""
    (getattr(vllm_ops, name) if _is_torch(like) else getattr(cpu, name))(*arguments)


def combined_topk_width(topk: int, window_size: int) -> int:
    """combine_topk_swa_indices' output width: ``topk + window_size`` rounded up to 128, what
    FlashMLA's sparse prefill needs (its top-k dimension a multiple of 64 or 128)."""
    return (topk + window_size + 127) // 128 * 128


def mixed_sparse_compressed_width(topk: int, decode_topk: int) -> int:
    """build_flashinfer_mixed_sparse_indices' compressed columns: ``max(topk, Kd)`` rounded up
    to 4, so that every row stays 16-byte aligned."""
    return (max(topk, decode_topk) + 3) // 4 * 4


def compute_global_topk_indices_and_lens(topk_indices: Any, token_to_req_indices: Any,
                                         block_table: Any, block_size: int,
                                         is_valid_token: Any) -> Tuple[Any, Any]:
    """Each token's local compressed-token indices as global slots of the paged compressed-K
    cache, packed to the left (then -1), and their count (0 for a masked token).

    Returns ``(global_topk_indices [T, K] int32, topk_lens [T] int32)``.
    """
    tokens = topk_indices.shape[0]
    global_topk_indices = _empty(topk_indices, tuple(topk_indices.shape))
    topk_lens = _empty(topk_indices, (tokens,))
    _call("compute_global_topk_indices_and_lens", topk_indices, topk_indices, token_to_req_indices,
          block_table, int(block_size), is_valid_token, global_topk_indices, topk_lens)
    return global_topk_indices, topk_lens


def combine_topk_swa_indices(topk_indices: Any, query_start_loc: Any, seq_lens: Any,
                             gather_lens: Any, window_size: int, compress_ratio: int, topk: int,
                             M: int, N: int) -> Tuple[Any, Any]:
    """Each sparse-prefill query's workspace rows: its top-k compressed tokens, then its
    sliding window, then -1 (upstream's bounds-hardened revision).

    One row per row of ``topk_indices`` (the chunk's query tokens). Returns
    ``(combined_indices [Tc, combined_topk_width(topk, window_size)] int32,
    combined_lens [Tc] int32)``.
    """
    tokens = topk_indices.shape[0]
    combined_indices = _empty(topk_indices, (tokens, combined_topk_width(topk, window_size)))
    combined_lens = _empty(topk_indices, (tokens,))
    _call("combine_topk_swa_indices", topk_indices, topk_indices, query_start_loc, seq_lens,
          gather_lens, int(window_size), int(compress_ratio), int(topk), int(M), int(N),
          combined_indices, combined_lens)
    return combined_indices, combined_lens


def build_flashinfer_mixed_sparse_indices(
        decode_swa_indices: Any, decode_compressed_indices: Optional[Any],
        decode_compressed_topk_lens: Optional[Any], prefill_topk_indices: Any,
        query_start_loc: Any, seq_lens: Any, token_to_req_indices: Any, swa_block_table: Any,
        swa_block_size: int, compressed_block_table: Optional[Any], compressed_block_size: int,
        window_size: int, compress_ratio: int, topk: int,
        decode_compressed_indices_are_local: bool = False,
        decode_is_valid_token: Optional[Any] = None) -> Tuple[Any, Any]:
    """One row of global cache slots per token of a decode-first mixed batch: the SWA slots in
    the first ``window_size`` columns, then the compressed / top-k slots.

    Returns ``(sparse_indices [Td + Tp, window_size + P] int32, sparse_topk_lens [Td + Tp]
    int32)`` with ``P = mixed_sparse_compressed_width(topk, Kd)``.
    """
    decode_tokens = decode_swa_indices.shape[0]
    tokens = decode_tokens + prefill_topk_indices.shape[0]
    decode_topk = 0 if decode_compressed_indices is None else decode_compressed_indices.shape[1]
    width = window_size + mixed_sparse_compressed_width(topk, decode_topk)
    sparse_indices = _empty(decode_swa_indices, (tokens, width))
    sparse_topk_lens = _empty(decode_swa_indices, (tokens,))
    _call("build_flashinfer_mixed_sparse_indices", decode_swa_indices, decode_swa_indices,
          decode_compressed_indices, decode_compressed_topk_lens, prefill_topk_indices,
          query_start_loc, seq_lens, token_to_req_indices, swa_block_table, int(swa_block_size),
          compressed_block_table, int(compressed_block_size), int(window_size),
          int(compress_ratio), int(topk), bool(decode_compressed_indices_are_local),
          decode_is_valid_token, sparse_indices, sparse_topk_lens)
    return sparse_indices, sparse_topk_lens
