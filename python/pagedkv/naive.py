"""pagedkv.naive: the naive CUDA kernels, the CPU loops translated directly.

One thread per element or row (kernels/**/naive.cu): correct and obvious. Arguments are CUDA
tensors (PyTorch, CuPy, through DLPack), except where an op's documentation says otherwise.
"""

from ._impl import make_ops

# One function per op of the registry (vLLM's names and argument order, plus ``stream``), and
# ``prepare``: see pagedkv._impl.
_functions = make_ops("naive", __name__)
globals().update(_functions)

__all__ = sorted(_functions)
