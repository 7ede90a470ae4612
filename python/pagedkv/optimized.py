"""pagedkv.optimized: the optimized CUDA kernels.

Same arguments and the same bytes as pagedkv.naive and pagedkv.cpu, as fast as the hardware
allows (kernels/**/optimized.cu explains each trick). This is what pagedkv.vllm_ops calls.
"""

from ._impl import make_ops

_ops = make_ops("optimized", __name__)

swap_blocks = _ops.swap_blocks
reshape_and_cache = _ops.reshape_and_cache
reshape_and_cache_flash = _ops.reshape_and_cache_flash
prepare = _ops.prepare

__all__ = ["swap_blocks", "reshape_and_cache", "reshape_and_cache_flash", "prepare"]
