"""pagedkv.cpu: the CPU reference of every op, the specification in code.

Plain loops over tokens, heads and elements (reference_cpu/*.cpp). Arguments live in host memory:
NumPy arrays (or CPU torch tensors). The results are the baseline the CUDA implementations must
match bit for bit.
"""

from ._impl import make_ops

_ops = make_ops("cpu", __name__)

swap_blocks = _ops.swap_blocks
reshape_and_cache = _ops.reshape_and_cache
reshape_and_cache_flash = _ops.reshape_and_cache_flash
prepare = _ops.prepare

__all__ = ["swap_blocks", "reshape_and_cache", "reshape_and_cache_flash", "prepare"]
