"""vLLM's ``_custom_ops`` functions, on torch tensors, computed by pagedkv.

Code written against ``vllm._custom_ops`` can call these unchanged::

    from pagedkv import vllm_ops as ops
    ops.reshape_and_cache_flash(key, value, key_cache, value_cache, slot_mapping,
                                kv_cache_dtype, k_scale, v_scale)
    ops.rms_norm(out, input, weight, epsilon)

There is one function per op of the registry, made from the op's description: vLLM's name,
argument names and argument order. As in vLLM:

* fp8 caches are ``torch.uint8`` tensors (``float8_e4m3fn``/``float8_e5m2`` tensors work too);
* scales such as ``k_scale`` and ``v_scale`` are float32 tensors on the device of the cache;
* ``swap_blocks``'s ``block_mapping`` is an int64 CPU tensor ``[n, 2]``;
* the work runs on the current torch CUDA stream and nothing synchronizes.

CUDA tensors go to pagedkv.optimized; CPU tensors go to the CPU reference (vLLM itself has no
CPU path for most of these ops). Unlike vLLM, every argument is validated first: a bad call
raises ``ValueError`` (pagedkv.InvalidArgument) naming the argument, and nothing is written.

torch is imported only when a function is called, so ``import pagedkv.vllm_ops`` works without
it. ``register_torch_ops()`` also registers every op as ``torch.ops.pagedkv.<name>`` with
vLLM's schema (the tensors an op writes marked ``Tensor!``), for code that calls ops through
``torch.ops``.
"""

from __future__ import annotations

from typing import Any, Callable

from . import _core, cpu, optimized
from ._impl import TENSOR_KINDS, signature_of

_OPS = {op["name"]: op for op in _core.ops()}


def _torch():
    try:
        import torch
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "pagedkv.vllm_ops works on torch tensors and needs PyTorch (pip install torch); "
            "pagedkv.cpu / naive / optimized take NumPy arrays and any DLPack tensor without it"
        ) from error
    return torch


def _implementation_for(tensors: list):
    """pagedkv.optimized when any of ``tensors`` is on a CUDA device, else pagedkv.cpu."""
    torch = _torch()
    for tensor in tensors:
        if tensor is None:
            continue
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"pagedkv.vllm_ops expects torch tensors, got {type(tensor).__name__}")
        if tensor.is_cuda:
            return optimized
    return cpu


def schema(op_name: str) -> str:
    """vLLM's torch schema of an op, e.g. ``rms_norm(Tensor! out, Tensor input, ...) -> ()``."""
    op = _OPS[op_name]
    arguments = ", ".join(f"{a['schema_type']} {a['name']}"
                          + (f"={a['default']}" if a.get("default") else "")
                          for a in op["arguments"])
    return f"{op_name}({arguments}) -> ()"


def _make(op: dict) -> Callable:
    signature = signature_of(op, with_stream=False)
    tensor_names = [a["name"] for a in op["arguments"] if a["kind"] in TENSOR_KINDS]

    def function(*args: Any, **kwargs: Any) -> None:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()  # seq_starts=None and the like
        implementation = _implementation_for([bound.arguments[n] for n in tensor_names])
        getattr(implementation, op["name"])(*bound.args, **bound.kwargs)

    function.__name__ = function.__qualname__ = op["name"]
    function.__signature__ = signature
    function.__module__ = __name__
    function.__doc__ = (f"vLLM's ``{op['name']}`` on torch tensors: {op['role']}\n\n"
                        f"Schema: ``{schema(op['name'])}``. CUDA tensors run pagedkv.optimized, "
                        "CPU tensors the CPU reference.")
    return function


globals().update({name: _make(op) for name, op in _OPS.items()})

__all__ = sorted(_OPS) + ["register_torch_ops", "schema"]

_library = None


def register_torch_ops(namespace: str = "pagedkv") -> None:
    """Registers every op as ``torch.ops.<namespace>.<name>`` with vLLM's schema (CPU and CUDA
    kernels, and a no-op fake kernel so that torch.compile can trace calls). Calling it again
    does nothing."""
    global _library
    if _library is not None:
        return
    torch = _torch()
    library = torch.library.Library(namespace, "DEF")
    for name in _OPS:
        library.define(schema(name))
        for dispatch_key in ("CPU", "CUDA"):
            library.impl(name, globals()[name], dispatch_key)
        # The ops return nothing and only mutate their arguments: the fake kernel does nothing.
        torch.library.register_fake(f"{namespace}::{name}", lambda *args, **kwargs: None,
                                    lib=library)
    _library = library
