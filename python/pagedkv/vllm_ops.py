"""vLLM's ``_custom_ops`` cache functions, on torch tensors, computed by pagedkv.

Code written against ``vllm._custom_ops`` can call these unchanged::

    from pagedkv import vllm_ops as ops
    ops.reshape_and_cache_flash(key, value, key_cache, value_cache, slot_mapping,
                                kv_cache_dtype, k_scale, v_scale)

The names, argument order and argument names are vLLM's (see spec §1.1/§1.2). As in vLLM:

* fp8 caches are ``torch.uint8`` tensors (``float8_e4m3fn``/``float8_e5m2`` tensors work too);
* ``k_scale`` and ``v_scale`` are float32 tensors on the device of the cache, read only for fp8;
* ``swap_blocks``'s ``block_mapping`` is an int64 CPU tensor ``[n, 2]``;
* the work runs on the current torch CUDA stream and nothing synchronizes.

CUDA tensors go to pagedkv.optimized; CPU tensors go to the CPU reference (vLLM itself has no
CPU path for these ops). Unlike vLLM, every argument is validated first: a bad call raises
``ValueError`` (pagedkv.InvalidArgument) naming the argument, and nothing is written.

torch is imported only when a function is called, so ``import pagedkv.vllm_ops`` works without
it. ``register_torch_ops()`` also registers the three as ``torch.ops.pagedkv.<name>`` with vLLM's
schemas (mutated arguments marked), for code that calls ops through ``torch.ops``.
"""

from __future__ import annotations

from typing import Any

from . import cpu, optimized

__all__ = ["swap_blocks", "reshape_and_cache", "reshape_and_cache_flash", "register_torch_ops"]


def _torch():
    try:
        import torch
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "pagedkv.vllm_ops works on torch tensors and needs PyTorch (pip install torch); "
            "pagedkv.cpu / naive / optimized take NumPy arrays and any DLPack tensor without it"
        ) from error
    return torch


def _implementation_for(*tensors: Any):
    """pagedkv.optimized when any of ``tensors`` is on a CUDA device, else pagedkv.cpu."""
    torch = _torch()
    for tensor in tensors:
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"pagedkv.vllm_ops expects torch tensors, got {type(tensor).__name__}")
        if tensor.is_cuda:
            return optimized
    return cpu


def swap_blocks(src: Any, dst: Any, block_size_in_bytes: int, block_mapping: Any) -> None:
    """vLLM's ``swap_blocks``: copy block ``s`` of ``src`` over block ``d`` of ``dst`` for every
    row ``(s, d)`` of ``block_mapping`` (int64 CPU tensor ``[n, 2]``), in order.

    ``block_size_in_bytes`` is the size of one block (vLLM passes
    ``src.element_size() * src.stride(0)``). ``src``/``dst`` may be on the CPU or the GPU.
    """
    implementation = _implementation_for(src, dst)
    implementation.swap_blocks(src, dst, block_size_in_bytes, block_mapping)


def reshape_and_cache(key: Any, value: Any, key_cache: Any, value_cache: Any, slot_mapping: Any,
                      kv_cache_dtype: str, k_scale: Any, v_scale: Any) -> None:
    """vLLM's ``reshape_and_cache``: write ``key``/``value`` ``[T, H, D]`` into the legacy cache
    (``key_cache [N, H, D // x, block_size, x]``, ``value_cache [N, H, D, block_size]``) at the
    slots of ``slot_mapping`` (int64 ``[T]``, negative = skip)."""
    implementation = _implementation_for(key, key_cache)
    implementation.reshape_and_cache(key, value, key_cache, value_cache, slot_mapping,
                                     kv_cache_dtype, k_scale, v_scale)


def reshape_and_cache_flash(key: Any, value: Any, key_cache: Any, value_cache: Any,
                            slot_mapping: Any, kv_cache_dtype: str, k_scale: Any,
                            v_scale: Any) -> None:
    """vLLM's ``reshape_and_cache_flash``: write ``key``/``value`` ``[T, H, D]`` into a cache of
    logical shape ``[N, block_size, H, D]`` (NHD, or HND through permuted strides; both may be
    views of one joint K/V allocation) at the slots of ``slot_mapping``. ``k_scale``/``v_scale``
    hold one value or one per head."""
    implementation = _implementation_for(key, key_cache)
    implementation.reshape_and_cache_flash(key, value, key_cache, value_cache, slot_mapping,
                                           kv_cache_dtype, k_scale, v_scale)


# vLLM's schemas (spec §1.1): `Tensor!` marks the tensors an op writes.
_SCHEMAS = {
    "swap_blocks": "swap_blocks(Tensor src, Tensor! dst, int block_size_in_bytes, "
                   "Tensor block_mapping) -> ()",
    "reshape_and_cache": "reshape_and_cache(Tensor key, Tensor value, Tensor! key_cache, "
                         "Tensor! value_cache, Tensor slot_mapping, str kv_cache_dtype, "
                         "Tensor k_scale, Tensor v_scale) -> ()",
    "reshape_and_cache_flash": "reshape_and_cache_flash(Tensor key, Tensor value, "
                               "Tensor! key_cache, Tensor! value_cache, Tensor slot_mapping, "
                               "str kv_cache_dtype, Tensor k_scale, Tensor v_scale) -> ()",
}
_library = None


def register_torch_ops(namespace: str = "pagedkv") -> None:
    """Registers the three ops as ``torch.ops.<namespace>.<name>`` (CPU and CUDA kernels, and a
    no-op fake kernel so that torch.compile can trace calls). Calling it again does nothing."""
    global _library
    if _library is not None:
        return
    torch = _torch()
    library = torch.library.Library(namespace, "DEF")
    functions = {
        "swap_blocks": swap_blocks,
        "reshape_and_cache": reshape_and_cache,
        "reshape_and_cache_flash": reshape_and_cache_flash,
    }
    for name, schema in _SCHEMAS.items():
        library.define(schema)
        for dispatch_key in ("CPU", "CUDA"):
            library.impl(name, functions[name], dispatch_key)
        # The ops return nothing and only mutate their arguments: the fake kernel does nothing.
        torch.library.register_fake(f"{namespace}::{name}", lambda *args, **kwargs: None,
                                    lib=library)
    _library = library
