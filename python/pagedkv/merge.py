"""Merging partial attention results: ``merge_attn_states`` with vLLM's signature, and an
allocating form that returns the merged output and LSE.

Attention over a key set split in two parts (a cached or shared prefix and the new tokens, two
splits of a long context) gives two partial outputs and their log-sum-exp values; merging them
by the LSEs gives exactly the attention over all the keys::

    from pagedkv.merge import merge_attn_states, merge
    merge_attn_states(output, prefix_output, prefix_lse, suffix_output, suffix_lse)
    output, output_lse = merge(prefix_output, prefix_lse, suffix_output, suffix_lse)

Shapes: outputs ``[num_tokens, num_heads, head_size]`` (f32, f16 or bf16; head_size a multiple of
4 for f32, of 8 for f16 and bf16), LSEs ``[num_heads, num_tokens]`` float32 (head-major; a
token-major LSE works as its transpose ``lse.T``). Torch tensors run like
``pagedkv.vllm_ops.merge_attn_states`` (CUDA tensors on pagedkv.optimized on the current stream,
CPU tensors on the CPU reference); NumPy arrays run on the CPU reference (bf16 as
``pagedkv.bfloat16_bits(uint16 array)`` or an ml_dtypes bfloat16 array).

Unlike vLLM's dispatcher (``vllm/v1/attention/ops/merge_attn_states.py``), which asserts that
prefix_output and suffix_output have the same head stride because its kernels read both with
the prefix's, each tensor is read with its own strides here. Head sizes vLLM sends to its Triton
kernel (not a multiple of the 16-byte pack) are rejected: only the CUDA kernel's contract is
implemented. Every argument is validated first; a bad call raises ``ValueError``
(pagedkv.InvalidArgument) naming the argument, and nothing is written.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

from . import cpu
from ._args import RawBits, _type_kind

__all__ = ["merge", "merge_attn_states"]


def _is_torch(value: Any) -> bool:
    return value is not None and _type_kind(type(value)) == "torch"


def merge_attn_states(output: Any, prefix_output: Any, prefix_lse: Any, suffix_output: Any,
                      suffix_lse: Any, output_lse: Optional[Any] = None,
                      prefill_tokens_with_context: Optional[int] = None,
                      output_scale: Optional[Any] = None) -> None:
    """Merges two partial attention results into ``output`` (and ``output_lse`` when given).

    For token t and head h: ``M = max(lp, ls)``, ``a = exp(lp - M)``, ``b = exp(ls - M)``,
    ``output = prefix · a / (a + b) + suffix · b / (a + b)``, ``output_lse = log(a + b) + M``.
    An infinite LSE (an empty key set: +inf from FlashAttention 2, -inf from FlashAttention 3)
    counts as -inf; two empty sets give the prefix row and LSE -inf. Tokens from
    ``prefill_tokens_with_context`` on copy the suffix. With ``output_scale`` (a float32 tensor of
    one element) ``output`` is fp8 E4M3 holding ``value / output_scale``, clamped to ±448.
    """
    if _is_torch(output):
        from . import vllm_ops

        vllm_ops.merge_attn_states(output, prefix_output, prefix_lse, suffix_output, suffix_lse,
                                   output_lse, prefill_tokens_with_context, output_scale)
    else:
        cpu.merge_attn_states(output, prefix_output, prefix_lse, suffix_output, suffix_lse,
                              output_lse, prefill_tokens_with_context, output_scale)


def _empty_like(array: Any) -> Any:
    """An uninitialized array of ``array``'s shape and dtype, where it lives (RawBits kept)."""
    if isinstance(array, RawBits):
        return RawBits(_empty_like(array.array), array.dtype)
    if _is_torch(array):
        import torch

        return torch.empty(tuple(array.shape), dtype=array.dtype, device=array.device)
    import numpy as np

    return np.empty(array.shape, dtype=array.dtype)


def _empty_lse(like_lse: Any) -> Any:
    """A float32 [num_heads, num_tokens] array next to ``like_lse``."""
    shape = tuple(like_lse.shape)
    if _is_torch(like_lse):
        import torch

        return torch.empty(shape, dtype=torch.float32, device=like_lse.device)
    import numpy as np

    return np.empty(shape, dtype=np.float32)


def merge(prefix_output: Any, prefix_lse: Any, suffix_output: Any, suffix_lse: Any,
          prefill_tokens_with_context: Optional[int] = None) -> Tuple[Any, Any]:
    """The merged attention and its LSE, in new arrays: ``(output [N, H, D] of prefix_output's
    dtype, output_lse [H, N] float32)``, where the inputs live (torch device or NumPy)."""
    output = _empty_like(prefix_output)
    output_lse = _empty_lse(prefix_lse)
    merge_attn_states(output, prefix_output, prefix_lse, suffix_output, suffix_lse, output_lse,
                      prefill_tokens_with_context)
    return output, output_lse
