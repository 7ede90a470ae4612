"""pagedkv.cpu: the CPU reference of every op, the specification in code.

Plain loops (reference_cpu/*.cpp). Arguments live in host memory: NumPy arrays (or CPU torch
tensors). The results are the baseline the CUDA implementations must match: bit for bit for the
copy, quantize and index ops, within a documented tolerance for reductions (the norms).
"""

from ._impl import make_ops

# One function per op of the registry (vLLM's names and argument order, plus ``stream``), and
# ``prepare``: see pagedkv._impl.
_functions = make_ops("cpu", __name__)
globals().update(_functions)

__all__ = sorted(_functions)
