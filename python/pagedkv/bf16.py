"""bfloat16 on NumPy, which has no bfloat16 type: values are kept as raw 16-bit patterns.

A bfloat16 number is the top half of a float32 (sign, 8 exponent bits, 7 mantissa bits). So:

* float32 -> bf16 bits: round the float32 bits to nearest even at bit 16, keep the top half;
* bf16 bits -> float32: put the 16 bits back on top of 16 zero bits (exact).

Pass bf16 data to an op as ``pagedkv.bfloat16_bits(bits)`` (a uint16 array tagged as bf16). If the
``ml_dtypes`` package is installed, arrays of ``ml_dtypes.bfloat16`` are accepted directly.
PyTorch bfloat16 tensors (CPU or CUDA) need none of this: they travel through DLPack as bf16.
"""

from __future__ import annotations

import numpy as np

__all__ = ["float32_to_bfloat16_bits", "bfloat16_bits_to_float32"]


def float32_to_bfloat16_bits(values) -> np.ndarray:
    """float32 values -> bf16 bit patterns (uint16), rounding to nearest even.

    Same as CUDA's ``__float2bfloat16_rn``: values past the largest bf16 round to +-inf, and any
    NaN becomes the canonical NaN 0x7FFF.
    """
    bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    lowest_kept_bit = (bits >> 16) & 1
    rounded = ((bits + 0x7FFF + lowest_kept_bit) >> 16).astype(np.uint16)
    is_nan = np.isnan(np.asarray(values, dtype=np.float32))
    return np.where(is_nan, np.uint16(0x7FFF), rounded).astype(np.uint16)


def bfloat16_bits_to_float32(bits) -> np.ndarray:
    """bf16 bit patterns (uint16) -> float32 values (exact)."""
    bits = np.asarray(bits)
    if bits.dtype.itemsize != 2:
        raise ValueError(f"bfloat16_bits_to_float32: expected 2-byte elements, got {bits.dtype}")
    return (bits.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
