"""Decode attention over vLLM's legacy paged cache, and what a caller needs around it.

The three ops have vLLM's ``_custom_ops`` signatures (the same functions as in
``pagedkv.vllm_ops``)::

    from pagedkv import attention
    attention.paged_attention_v1(out, query, key_cache, value_cache, num_kv_heads, scale,
                                 block_tables, seq_lens, block_size, max_seq_len,
                                 alibi_slopes, kv_cache_dtype, k_scale, v_scale)
    attention.paged_attention_v2(out, exp_sums, max_logits, tmp_out, query, key_cache, ...)
    attention.paged_attention_rocm(out, exp_sums, max_logits, tmp_out, query, key_cache,
                                   value_cache, num_kv_heads, scale, block_tables, seq_lens,
                                   query_start_loc, block_size, max_seq_len, alibi_slopes,
                                   kv_cache_dtype, k_scale, v_scale, fp8_out_scale=None)

``paged_attention_rocm`` is vLLM's AMD kernel (csrc/rocm/attention.cu): v2's math with
256-token partitions (``workspaces(out, max_seq_len, ROCM_PARTITION_SIZE)``), head sizes 64
and 128, block sizes 16 and 32; ``query_start_loc`` picks each sequence's query row (only
sequences with exactly one query token are decoded, as upstream) and ``fp8_out_scale`` makes
``out`` fp8 E4M3. pagedkv runs it through its v2 kernels on NVIDIA.

CUDA tensors run pagedkv.optimized on the current torch stream, CPU tensors the CPU reference;
every argument is validated first, and a bad call raises ``ValueError`` naming the argument
with nothing written. The blocksparse arguments keep vLLM's defaults; any other value is
rejected (blocksparse attention has no caller left).

Around them, what vLLM's V0 ``PagedAttention.forward_decode`` did in Python: the partition
count of v2's workspaces (``num_partitions``), the workspaces themselves (``workspaces``),
vLLM's choice between v1 and v2 (``use_v1``), and all of it in one call (``forward_decode``),
which also takes NumPy arrays (then the CPU reference runs).

These kernels are vLLM's original (2023) decode attention; vLLM has since removed them in
favour of its FlashAttention and FlashInfer backends. The chapter "Attention over a paged
cache" explains what they still teach.
"""

from __future__ import annotations

from typing import Any

from . import cpu as _cpu
from .vllm_ops import paged_attention_rocm, paged_attention_v1, paged_attention_v2

#: Tokens per partition of paged_attention_v2 (vLLM's ``_PARTITION_SIZE``).
PARTITION_SIZE = 512

#: Tokens per partition of paged_attention_rocm (256 in vLLM's csrc/rocm/attention.cu).
ROCM_PARTITION_SIZE = 256


def num_partitions(max_seq_len: int, partition_size: int = PARTITION_SIZE) -> int:
    """Partitions of the longest sequence: ``ceil(max_seq_len / partition_size)``, the size of
    the last workspace dimension paged_attention_v2 needs."""
    if max_seq_len < 0 or partition_size <= 0:
        raise ValueError(f"num_partitions: expected max_seq_len >= 0 and partition_size > 0, "
                         f"got {max_seq_len} and {partition_size}")
    return (max_seq_len + partition_size - 1) // partition_size


def use_v1(max_seq_len: int, num_seqs: int, num_heads: int) -> bool:
    """vLLM V0's choice: v1 when one partition covers every sequence, or when the batch alone
    gives enough thread blocks (num_seqs × num_heads > 512) and no sequence is longer than
    8192 (upstream's v1 keeps every logit in shared memory); else v2."""
    partitions = num_partitions(max_seq_len)
    return max_seq_len <= 8192 and (partitions == 1 or num_seqs * num_heads > 512)


def workspaces(out: Any, max_seq_len: int, partition_size: int = PARTITION_SIZE):
    """v2's workspaces for ``out`` [num_seqs, num_heads, head_size] (rocm's with
    ``partition_size=ROCM_PARTITION_SIZE``; with query_start_loc, pass an ``out`` of one row
    per sequence, or build them from num_seqs yourself), allocated as vLLM does:
    ``exp_sums`` and ``max_logits`` float32 [num_seqs, num_heads, P], ``tmp_out``
    [num_seqs, num_heads, P, head_size] of out's dtype, P = num_partitions(max_seq_len), on
    out's device (a torch tensor) or as NumPy arrays (a NumPy ``out``)."""
    partitions = num_partitions(max_seq_len, partition_size)
    if type(out).__module__.split(".")[0] == "torch":
        import torch

        num_seqs, num_heads, head_size = out.shape
        exp_sums = torch.empty((num_seqs, num_heads, partitions), dtype=torch.float32,
                               device=out.device)
        max_logits = torch.empty_like(exp_sums)
        tmp_out = torch.empty((num_seqs, num_heads, partitions, head_size), dtype=out.dtype,
                              device=out.device)
        return exp_sums, max_logits, tmp_out
    import numpy as np

    raw = getattr(out, "array", out)  # pagedkv.bfloat16_bits wraps raw bf16 bits
    num_seqs, num_heads, head_size = raw.shape
    exp_sums = np.empty((num_seqs, num_heads, partitions), dtype=np.float32)
    max_logits = np.empty_like(exp_sums)
    tmp_out = np.empty((num_seqs, num_heads, partitions, head_size), dtype=raw.dtype)
    if raw is not out:  # keep the bf16 tag
        from ._args import bfloat16_bits

        tmp_out = bfloat16_bits(tmp_out)
    return exp_sums, max_logits, tmp_out


def forward_decode(out, query, key_cache, value_cache, block_tables, seq_lens, max_seq_len: int,
                   kv_cache_dtype: str, num_kv_heads: int, scale: float, alibi_slopes, k_scale,
                   v_scale, *, version: str = "auto") -> str:
    """One decode step's attention as vLLM V0's ``PagedAttention.forward_decode`` ran it:
    v1 or v2 by ``use_v1`` (or ``version="v1"`` / ``"v2"``), v2's workspaces allocated here.
    torch tensors go through pagedkv.vllm_ops (CUDA: optimized; CPU: the reference), NumPy
    arrays through pagedkv.cpu. Returns "v1" or "v2", the op that ran."""
    raw_out = getattr(out, "array", out)
    num_seqs, num_heads = raw_out.shape[0], raw_out.shape[1]
    block_size = (getattr(value_cache, "array", value_cache)).shape[3]
    if version == "auto":
        version = "v1" if use_v1(max_seq_len, num_seqs, num_heads) else "v2"
    if version not in ("v1", "v2"):
        raise ValueError(f"forward_decode: version must be 'auto', 'v1' or 'v2', got {version!r}")
    numpy = type(raw_out).__module__.split(".")[0] == "numpy"
    v1_op = _cpu.paged_attention_v1 if numpy else paged_attention_v1
    v2_op = _cpu.paged_attention_v2 if numpy else paged_attention_v2
    if version == "v1":
        v1_op(out, query, key_cache, value_cache, num_kv_heads, scale, block_tables, seq_lens,
              block_size, max_seq_len, alibi_slopes, kv_cache_dtype, k_scale, v_scale)
    else:
        exp_sums, max_logits, tmp_out = workspaces(out, max_seq_len)
        v2_op(out, exp_sums, max_logits, tmp_out, query, key_cache, value_cache, num_kv_heads,
              scale, block_tables, seq_lens, block_size, max_seq_len, alibi_slopes,
              kv_cache_dtype, k_scale, v_scale)
    return version


__all__ = [
    "PARTITION_SIZE",
    "ROCM_PARTITION_SIZE",
    "forward_decode",
    "num_partitions",
    "paged_attention_rocm",
    "paged_attention_v1",
    "paged_attention_v2",
    "use_v1",
    "workspaces",
]
