"""pagedkv.optimized: the optimized CUDA kernels.

Same arguments and the same bytes as pagedkv.naive and pagedkv.cpu, as fast as the hardware
allows (kernels/**/optimized.cu explains each trick). This is what pagedkv.vllm_ops calls.
"""

from ._impl import make_ops

# One function per op of the registry (vLLM's names and argument order, plus ``stream``), and
# ``prepare``: see pagedkv._impl.
_functions = make_ops("optimized", __name__)
globals().update(_functions)

__all__ = sorted(_functions)
