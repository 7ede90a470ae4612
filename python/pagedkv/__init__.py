"""pagedkv: vLLM's paged KV cache ops, each in three implementations side by side.

Modules:
    pagedkv.cpu        the readable CPU reference (NumPy arrays)
    pagedkv.naive      the naive CUDA kernels (CUDA tensors through DLPack: PyTorch, CuPy)
    pagedkv.optimized  the optimized CUDA kernels (same arguments, same bytes)
    pagedkv.vllm_ops   vLLM's ``_custom_ops`` signatures on torch tensors (imports torch lazily)
    pagedkv.deepseek_v4  DeepSeek V4's cache utilities with vLLM's signatures (torch tensors)
    pagedkv.lmdeploy   LMDeploy TurboMind's paged KV cache ops and the size of its blocks
    pagedkv.attention  paged attention (v1, v2) with vLLM's signatures, v2's workspaces and
                       vLLM's choice between the two
    pagedkv.bf16       bfloat16 as raw uint16 bits for NumPy

The three implementation modules have the same functions with the same signatures: one per op
of the registry (``pagedkv.ops()`` lists them, with their arguments), with vLLM's names and
argument order plus an optional ``stream``, and ``prepare`` (validate once, run many times).

Errors: a rejected argument raises ``pagedkv.InvalidArgument`` (a ``ValueError``) with the C++
message, which names the argument, the expected and the actual value; nothing has been written
then. A failing CUDA call raises ``pagedkv.CudaError`` (a ``RuntimeError``).

The values of device index tensors (slot_mapping, positions, and the gathers' cu_seq_lens,
seq_starts, token_to_seq, seq_lens, gather_lens, workspace_starts and block_table, and paged
attention's seq_lens and block_tables) are checked
either before the launch, by reading them back (synchronous errors, the default of
pagedkv.naive/optimized), or by a small kernel on the call's stream whose fault makes the op's
kernels write nothing, raised later by the next call or by ``check_errors()`` (deferred errors:
pagedkv.vllm_ops, and every call inside a CUDA graph capture). ``set_error_mode()`` chooses for all
calls.
"""

from __future__ import annotations

from . import _core
from ._args import RawBits, bfloat16_bits
from ._core import CudaError, InvalidArgument, PreparedCall
from .bf16 import bfloat16_bits_to_float32, float32_to_bfloat16_bits
from . import cpu, naive, optimized  # noqa: E402  (after _core: they bind its functions)

__version__: str = _core.__version__

#: CUDA architectures the kernels were compiled for (e.g. "90").
cuda_architectures: str = _core.cuda_architectures

IMPLEMENTATIONS = ("cpu", "naive", "optimized")


def cuda_available() -> bool:
    """True when a CUDA device and driver can be used; False (never an error) without a GPU."""
    return bool(_core.cuda_available())


def ops() -> list:
    """The op registry, one dict per op, in catalogue order.

    Keys: name, family, role, upstream, cpu_source, naive_source, optimized_source (paths from
    the repository root), byte_model, agreement_rule, workloads, workload_notes, arguments (one dict per
    argument, in vLLM's order: name, kind, schema_type, doc).
    """
    return list(_core.ops())


def set_error_mode(mode: str) -> None:
    """When bad values in device index tensors are reported: "automatic" (the default:
    synchronous for pagedkv.naive/optimized, deferred for pagedkv.vllm_ops and inside CUDA
    graph captures), "synchronous" (before the launch, except inside a capture) or "deferred"
    (by the next call or check_errors()). PAGEDKV_ERRORS=sync|deferred sets the first value."""
    _core.set_error_mode(mode)


def error_mode() -> str:
    """The current error mode: "automatic", "synchronous" or "deferred"."""
    return str(_core.error_mode())


def check_errors() -> None:
    """Waits for the current CUDA device and raises the error a deferred index check found
    since the last report: ``InvalidArgument`` (a ``ValueError``) naming the op, the argument,
    the element and its value. Until it is reported, the guarded ops of that device write
    nothing. Does nothing when there is no error; not for use inside a CUDA graph capture."""
    _core.check_errors()


def implementation(name: str):
    """The module of implementation ``name`` ("cpu", "naive" or "optimized")."""
    modules = {"cpu": cpu, "naive": naive, "optimized": optimized}
    if name not in modules:
        raise ValueError(f"implementation: expected one of {IMPLEMENTATIONS}, got {name!r}")
    return modules[name]


__all__ = [
    "CudaError",
    "IMPLEMENTATIONS",
    "InvalidArgument",
    "PreparedCall",
    "RawBits",
    "bfloat16_bits",
    "bfloat16_bits_to_float32",
    "check_errors",
    "cpu",
    "cuda_architectures",
    "cuda_available",
    "error_mode",
    "float32_to_bfloat16_bits",
    "implementation",
    "naive",
    "ops",
    "optimized",
    "set_error_mode",
]
