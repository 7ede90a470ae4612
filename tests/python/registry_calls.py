"""One valid call of every op of the registry, built from its card (``pagedkv._core.sample_call``):
the registry-driven tests use it, so that a new op is tested without a line written here."""

from __future__ import annotations

import numpy as np

import pagedkv

# dtype name (pagedkv) -> NumPy storage of its packed bytes
STORAGE = {"f32": np.float32, "f16": np.float16, "bf16": np.uint16, "u8": np.uint8,
           "f8_e4m3": np.uint8, "f8_e5m2": np.uint8, "i32": np.int32, "i64": np.int64,
           "bool": np.bool_}


def op_names() -> list:
    return [op["name"] for op in pagedkv.ops()]


def numpy_call(name: str, size: int = 4) -> list:
    """The call's arguments for pagedkv.cpu: NumPy arrays (bf16 tagged as raw bits, fp8 as
    ml_dtypes-free raw bytes tagged with their kind), scalars as they are, None for absent."""
    values = []
    for value in pagedkv._core.sample_call(name, size):
        if isinstance(value, tuple):
            data, dtype, shape = value
            array = np.frombuffer(data, dtype=STORAGE[dtype]).reshape(shape).copy()
            values.append(pagedkv.RawBits(array, dtype) if dtype in ("bf16", "f8_e4m3", "f8_e5m2")
                          else array)
        else:
            values.append(value)
    return values


def torch_call(name: str, device: str, size: int = 4, on_cpu: frozenset = frozenset()) -> list:
    """The same call on torch tensors on ``device`` (arguments whose index is in ``on_cpu``
    stay on the CPU), with torch's own bfloat16 and float8 dtypes."""
    import torch

    dtypes = {"bf16": torch.bfloat16, "f8_e4m3": torch.float8_e4m3fn,
              "f8_e5m2": torch.float8_e5m2}
    values = []
    for i, value in enumerate(pagedkv._core.sample_call(name, size)):
        if isinstance(value, tuple):
            data, dtype, shape = value
            array = np.frombuffer(data, dtype=STORAGE[dtype]).reshape(shape).copy()
            tensor = torch.from_numpy(array)
            if dtype in dtypes:
                tensor = tensor.view(dtypes[dtype])
            values.append(tensor if i in on_cpu else tensor.to(device))
        else:
            values.append(value)
    return values
