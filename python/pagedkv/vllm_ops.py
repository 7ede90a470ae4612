"""vLLM's ``_custom_ops`` functions, on torch tensors, computed by pagedkv.

Code written against ``vllm._custom_ops`` can call these unchanged::

    from pagedkv import vllm_ops as ops
    ops.reshape_and_cache_flash(key, value, key_cache, value_cache, slot_mapping,
                                kv_cache_dtype, k_scale, v_scale)

There is one function per op of the registry, made from the op's description: vLLM's name,
argument names and argument order. As in vLLM:

* fp8 caches are ``torch.uint8`` tensors (``float8_e4m3fn``/``float8_e5m2`` tensors work too);
* scales such as ``k_scale`` and ``v_scale`` are float32 tensors on the device of the cache;
* ``swap_blocks``'s ``block_mapping`` is an int64 CPU tensor ``[n, 2]``;
* the work runs on the current torch CUDA stream and nothing synchronizes.

CUDA tensors go to pagedkv.optimized; CPU tensors go to the CPU reference (vLLM itself has no
CPU path for most of these ops). Unlike vLLM, every argument is validated first: a bad call
raises ``ValueError`` (pagedkv.InvalidArgument) naming the argument, and nothing is written.

Like vLLM's ops, a CUDA call never synchronizes: the values of device index tensors
(slot_mapping, positions) are checked by a small kernel queued before the op's kernels, which
write nothing when it finds a bad value. That error is raised by the next pagedkv call on the
device or by ``pagedkv.check_errors()`` ("deferred" errors; ``pagedkv.set_error_mode(
"synchronous")`` or ``PAGEDKV_ERRORS=sync`` makes these calls raise it at once instead, outside
CUDA graph captures). Every function works inside ``torch.cuda.graph`` capture.

torch is imported only when a function is called, so ``import pagedkv.vllm_ops`` works without
it. ``register_torch_ops()`` also registers every op as ``torch.ops.pagedkv.<name>`` with
vLLM's schema (the tensors an op writes marked ``Tensor!``), for code that calls ops through
``torch.ops``.
"""

from __future__ import annotations

from typing import Any, Callable

from . import _core
from ._args import _type_kind, torch_current_stream
from ._impl import (TENSOR_KINDS, argument_converters, compile_call, converted_values_source,
                    optional_int)

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


def _cuda_tensor_among(tensors: tuple) -> Any:
    """The first CUDA tensor of ``tensors`` (None for an all-CPU call); every non-None entry
    must be a torch tensor."""
    _torch()  # a clear ImportError when torch is missing (a cached import: ~0.1 µs)
    found = None
    for tensor in tensors:
        if tensor is None:
            continue
        if _type_kind(type(tensor)) != "torch":
            raise TypeError(f"pagedkv.vllm_ops expects torch tensors, got {type(tensor).__name__}")
        if found is None and tensor.is_cuda:
            found = tensor
    return found


def schema(op_name: str) -> str:
    """vLLM's torch schema of an op: ``<name>(Tensor! out, Tensor input, ...) -> ()``."""
    op = _OPS[op_name]
    # An int that may be None is `int?` in a torch schema (vLLM's `int | None = None`).
    arguments = ", ".join(f"{a['schema_type']}{'?' if optional_int(a) else ''} {a['name']}"
                          + (f"={a['default']}" if a.get("default") else "")
                          for a in op["arguments"])
    return f"{op_name}({arguments}) -> ()"


def _make(op: dict) -> Callable:
    # One generated function per op (pagedkv._impl.compile_call): the arguments bound by Python
    # itself, converted once, then one call into the compiled module. CUDA calls defer the
    # errors of device index checks (prefer_deferred=True): vLLM's ops never synchronize, and a
    # synchronous slot check costs ~75 µs a call; see pagedkv.check_errors().
    tensor_positions = [i for i, a in enumerate(op["arguments"]) if a["kind"] in TENSOR_KINDS]
    tensors = "(" + "".join(f"_v[{i}], " for i in tensor_positions) + ")"
    values = converted_values_source(op)
    body = (f"    _cuda = _cuda_among({tensors})\n"
            f"    if _cuda is not None:\n"
            f"        _gpu({op['name']!r}, {values}, _stream(_cuda), True)\n"
            f"    else:\n"
            f"        _cpu({op['name']!r}, {values}, 0, False)\n")
    function = compile_call(op, False, body, {
        "_cuda_among": _cuda_tensor_among, "_gpu": _core.optimized.call, "_cpu": _core.cpu.call,
        "_stream": torch_current_stream, "_c": argument_converters(op)})
    function.__qualname__ = op["name"]
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
