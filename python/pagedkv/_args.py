"""Argument preparation shared by pagedkv.cpu, pagedkv.naive and pagedkv.optimized.

The compiled functions in ``pagedkv._core`` take arrays (through DLPack or the buffer protocol),
``(array, dtype_name)`` pairs for raw bits, and an integer stream. This module turns what a user
naturally passes into that form:

* NumPy arrays with an ``ml_dtypes`` dtype (``bfloat16``, ``float8_e4m3fn``, ``float8_e5m2``)
  become raw-bit views tagged with their type (NumPy cannot export these dtypes by DLPack);
* PyTorch float8 tensors become ``uint8`` views (a cache byte is a cache byte);
* a Python number given as ``k_scale``/``v_scale`` becomes a one-element float32 array on the
  device of ``key``;
* ``stream=None`` becomes the current PyTorch (or CuPy) stream of the CUDA tensors, or 0 (the
  legacy default stream) for other arrays.

Nothing here imports torch or cupy: their objects are recognised by their type's module name.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["RawBits", "bfloat16_bits", "tensor_arg", "scale_arg", "resolve_stream",
           "torch_current_stream"]


class RawBits(NamedTuple):
    """An array whose bits hold elements of another type, e.g. bf16 bits in a uint16 array.

    The compiled module reads ``array`` as it is (same shape, strides and device) and treats its
    elements as ``dtype`` ("bf16", "f8_e4m3" or "f8_e5m2").
    """

    array: Any
    dtype: str


def bfloat16_bits(array: Any) -> RawBits:
    """Marks a uint16 (or int16) array as holding bfloat16 bit patterns.

    NumPy has no bfloat16 type. Keep bf16 values on the CPU as their raw 16-bit patterns in a
    uint16 array (pagedkv.float32_to_bfloat16_bits() makes them) and pass
    ``bfloat16_bits(array)`` wherever an op expects a bf16 tensor; an output passed this way is
    written in place.
    """
    itemsize = getattr(getattr(array, "dtype", None), "itemsize", None)
    if itemsize != 2:
        raise ValueError(f"bfloat16_bits: expected an array of 2-byte elements, got {getattr(array, 'dtype', type(array))}")
    return RawBits(array, "bf16")


# ml_dtypes type name -> (raw view dtype, name the compiled module understands)
_ML_DTYPES = {
    "bfloat16": (np.uint16, "bf16"),
    "float8_e4m3fn": (np.uint8, "f8_e4m3"),
    "float8_e5m2": (np.uint8, "f8_e5m2"),
}


# Every call converts every tensor argument, so the common cases are decided by one type
# lookup (a dict keyed by the exact type) instead of string tests on module names.
_TYPE_KIND: dict = {np.ndarray: "numpy"}


def _type_kind(cls: type) -> str:
    kind = _TYPE_KIND.get(cls)
    if kind is None:
        module = cls.__module__
        kind = ("torch" if module.startswith("torch") else
                "cupy" if module.startswith("cupy") else
                "numpy" if issubclass(cls, np.ndarray) else "other")
        _TYPE_KIND[cls] = kind
    return kind


def _is_torch_tensor(obj: Any) -> bool:
    return _type_kind(type(obj)) == "torch"


def _is_cupy_array(obj: Any) -> bool:
    return _type_kind(type(obj)) == "cupy"


_TORCH_FLOAT8: dict = {}  # torch float8 dtype -> name the compiled module understands


def _torch_float8() -> dict:
    if not _TORCH_FLOAT8:
        import torch  # only called with a torch tensor in hand: already imported

        for attribute, name in (("float8_e4m3fn", "f8_e4m3"), ("float8_e5m2", "f8_e5m2")):
            dtype = getattr(torch, attribute, None)
            if dtype is not None:
                _TORCH_FLOAT8[dtype] = name
        _TORCH_FLOAT8.setdefault(None, "")  # not empty even on a torch without float8
    return _TORCH_FLOAT8


def tensor_arg(obj: Any) -> Any:
    """The form of one tensor argument that pagedkv._core accepts."""
    kind = _type_kind(type(obj))
    if kind == "numpy":
        # NumPy's own dtypes (numbers below 256) pass unchanged; ml_dtypes' are user dtypes.
        if obj.dtype.num < 256:
            return obj
    elif kind == "torch":
        if obj.requires_grad:
            obj = obj.detach()  # same memory; torch refuses to export a tensor that needs grad
        name = _torch_float8().get(obj.dtype)
        if name:
            # DLPack export of float8 tensors depends on the torch version; the byte view always
            # works and carries the type in the tag.
            import torch

            return (obj.view(torch.uint8), name)
        return obj
    if isinstance(obj, RawBits):
        return tuple(obj)
    if isinstance(obj, np.ndarray):
        # NumPy itself has no dtype with these names: they come from ml_dtypes. NumPy's own
        # dtypes (float16, float32, ...) go through DLPack unchanged.
        special = _ML_DTYPES.get(obj.dtype.name)
        if special is not None:
            view_dtype, name = special
            return (obj.view(view_dtype), name)
        return obj
    return obj


def scale_arg(scale: Any, like: Any) -> Any:
    """k_scale / v_scale: a number becomes a float32 array of one element next to ``like``."""
    if type(scale) not in (int, float):  # a tensor (bool is not a scale either)
        return tensor_arg(scale)
    if _is_torch_tensor(like):
        import torch

        return torch.tensor([float(scale)], dtype=torch.float32, device=like.device)
    if _is_cupy_array(like):
        import cupy

        with cupy.cuda.Device(like.device.id):
            return cupy.asarray([float(scale)], dtype=cupy.float32)
    return np.array([float(scale)], dtype=np.float32)


def torch_current_stream(tensor: Any) -> int:
    """The current torch stream of ``tensor``'s CUDA device, as an integer cudaStream_t."""
    import torch  # already imported: tensor is a torch tensor

    # torch's raw getter (what its own generated code calls) skips building a Stream object.
    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    if raw is not None:
        return int(raw(tensor.device.index))
    return int(torch.cuda.current_stream(tensor.device).cuda_stream)


def resolve_stream(stream: Any, tensors: tuple) -> int:
    """The integer cudaStream_t for a call.

    ``stream`` may be None, an int, a ``torch.cuda.Stream`` (``.cuda_stream``) or a CuPy stream
    (``.ptr``). None means: the current stream of the first CUDA torch tensor or CuPy array
    among ``tensors`` (so pagedkv runs in order with the surrounding PyTorch work, as vLLM's own
    ops do), otherwise 0, the legacy default stream.
    """
    if stream is None:
        for t in tensors:
            if isinstance(t, tuple):
                t = t[0]
            if _is_torch_tensor(t) and t.is_cuda:
                return torch_current_stream(t)
            if _is_cupy_array(t):
                import cupy

                with cupy.cuda.Device(t.device.id):
                    return int(cupy.cuda.get_current_stream().ptr)
        return 0
    if isinstance(stream, int):
        return stream
    for attribute in ("cuda_stream", "ptr"):
        handle = getattr(stream, attribute, None)
        if isinstance(handle, int):
            return handle
    raise TypeError(f"stream: expected None, an int, a torch.cuda.Stream or a CuPy stream, got {type(stream).__name__}")
