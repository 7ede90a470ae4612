"""DeepSeek V4's cache utilities, on torch tensors, computed by pagedkv.

vLLM writes these in Python and Triton (``vllm/models/deepseek_v4/common/ops/cache_utils.py``),
not as ``_custom_ops``; the functions here have their names, argument names, order and
defaults, so code written against that module can call them unchanged
(``from pagedkv import deepseek_v4`` in place of that module; each function's docstring is
generated from its description in the C++ registry).

The cache is the ``fp8_ds_mla`` page format: ``torch.uint8`` pages, ``[num_blocks,
block_stride]`` or the view ``[num_blocks, block_size, 584]``. CUDA tensors go to
pagedkv.optimized on the current torch stream, CPU tensors to the CPU reference. As in
``pagedkv.vllm_ops`` (which has the same functions), every argument is validated first and a
bad call raises ``ValueError`` naming the argument, with nothing written. ``is_ue8m0=False``
and ``use_fnuz=True`` are refused: UE8M0 exponents over OCP E4M3 codes are the only format.

The three sparse-attention index builders (``compute_global_topk_indices_and_lens``,
``combine_topk_swa_indices``, ``build_flashinfer_mixed_sparse_indices``) are here too, from
``pagedkv.deepseek_v4_indices``, which allocates their outputs as upstream does and also takes
NumPy arrays.

The list is the registry's: every op whose upstream is vLLM's DeepSeek V4 model code
(``vllm/models/deepseek_v4/``), so a new op of that file needs no line here.
"""

from __future__ import annotations

from . import deepseek_v4_indices, ops, vllm_ops

# The index builders come from pagedkv.deepseek_v4_indices (it allocates their outputs as
# upstream does), the cache ops from pagedkv.vllm_ops (the caller's tensors, vLLM's names).
__all__ = sorted(op["name"] for op in ops() if "vllm/models/deepseek_v4/" in op["upstream"])
for _name in __all__:
    globals()[_name] = getattr(deepseek_v4_indices, _name, None) or getattr(vllm_ops, _name)
del _name
