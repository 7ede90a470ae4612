"""pagedkv.naive: the naive CUDA kernels, the CPU loops translated directly.

One thread per element or row (kernels/**/naive.cu): correct and obvious. Arguments are CUDA
tensors (PyTorch, CuPy, through DLPack); swap_blocks also takes host memory on one side.
"""

from ._impl import make_ops

_ops = make_ops("naive", __name__)

swap_blocks = _ops.swap_blocks
reshape_and_cache = _ops.reshape_and_cache
reshape_and_cache_flash = _ops.reshape_and_cache_flash
prepare = _ops.prepare

__all__ = ["swap_blocks", "reshape_and_cache", "reshape_and_cache_flash", "prepare"]
