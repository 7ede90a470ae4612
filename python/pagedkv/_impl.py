"""Builds the op functions of pagedkv.cpu, pagedkv.naive and pagedkv.optimized.

Every op comes from the registry (``_core.ops()``), which holds each op's arguments as the op's
C++ description gives them: vLLM's names, in vLLM's order, each with its kind (input, output or
inout tensor, optional tensor, int, float, bool, str), its documentation and, where vLLM's
wrapper has one, its default. The functions here are made from that list, so an op added in C++
appears in Python with nothing written here.

The three modules get the same functions with the same signatures (plus an optional
``stream``); only the compiled implementation behind them differs.
"""

from __future__ import annotations

import ast
import inspect
from typing import Any, Callable, Optional

from . import _core
from ._args import resolve_stream, scale_arg, tensor_arg

TENSOR_KINDS = ("input", "output", "inout", "optional_input", "optional_inout")
OPTIONAL_KINDS = ("optional_input", "optional_inout")

_CUDA_STREAM_DOC = (
    "None (default): the current stream of the torch/CuPy CUDA tensors, else the legacy "
    "default stream (0); or an int handle, a torch.cuda.Stream or a CuPy stream. Nothing "
    "synchronizes: the call returns once the work is queued."
)
_IMPLS = {
    "cpu": dict(
        title="CPU reference of",
        devices="Tensors in host memory: NumPy arrays (ml_dtypes bfloat16/float8 work, or "
        "pagedkv.bfloat16_bits for raw bf16 bits) or CPU tensors.",
        stream="accepted so that the three implementations have one signature; the CPU "
        "reference runs synchronously and ignores it.",
    ),
    "naive": dict(
        title="Naive CUDA",
        devices="Tensors in CUDA memory (torch or CuPy CUDA tensors, through DLPack); an op may "
        "say otherwise for an argument (its documentation above does).",
        stream=_CUDA_STREAM_DOC,
    ),
}
_IMPLS["optimized"] = dict(_IMPLS["naive"], title="Optimized CUDA")


def _first_tensor(values: list, arguments: list) -> Any:
    for value, arg in zip(values, arguments):
        if arg["kind"] in TENSOR_KINDS and value is not None and not isinstance(value, (int, float)):
            return value
    return None


def convert_arguments(op: dict, values: list) -> list:
    """The op's arguments in the form ``_core`` takes, converted by their kinds.

    A tensor argument given as a Python number becomes a one-element float32 array next to the
    op's first tensor (vLLM's k_scale / v_scale are such tensors).
    """
    like = _first_tensor(values, op["arguments"])
    converted = []
    for value, arg in zip(values, op["arguments"]):
        kind = arg["kind"]
        if kind in OPTIONAL_KINDS and value is None:
            converted.append(None)
        elif kind in TENSOR_KINDS:
            converted.append(scale_arg(value, like))
        elif kind == "int":
            converted.append(int(value))
        elif kind == "float":
            converted.append(float(value))
        elif kind == "bool":
            converted.append(bool(value))
        else:
            converted.append(str(value))
    return converted


def _default(argument: dict) -> dict:
    """``{"default": value}`` for an argument vLLM's wrapper gives a default, else ``{}``."""
    text = argument.get("default", "")
    return {"default": ast.literal_eval(text)} if text else {}


def signature_of(op: dict, with_stream: bool) -> inspect.Signature:
    """The Python signature of an op: its arguments, then ``stream=None``.

    Optional tensors at the end of the argument list default to None, as in vLLM's wrappers
    (``cp_gather_cache(..., seq_starts=None)``); an argument the op's description gives a
    default has it (``rotary_embedding(..., rope_dim_offset=0, inverse=False)``).
    """
    arguments = op["arguments"]
    optional_tail = len(arguments)
    while optional_tail > 0 and (arguments[optional_tail - 1]["kind"] == "optional_input"
                                 or _default(arguments[optional_tail - 1])):
        optional_tail -= 1
    parameters = [inspect.Parameter(a["name"], inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    **(_default(a) or ({"default": None}
                                                       if i >= optional_tail else {})))
                  for i, a in enumerate(arguments)]
    if with_stream:
        parameters.append(inspect.Parameter("stream", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                            default=None))
    return inspect.Signature(parameters)


def _docstring(op: dict, impl: str) -> str:
    text = _IMPLS[impl]
    lines = [f"{text['title']} {op['name']}: {op['role']}", "", "Args:"]
    for arg in op["arguments"]:
        lines.append(f"    {arg['name']} ({arg['schema_type']}): {arg['doc']}.")
    lines += [f"    stream: {text['stream']}", "", text["devices"], "",
              f"Upstream: {op['upstream']}.", "",
              "Raises:",
              "    ValueError (pagedkv.InvalidArgument): a bad argument; the message names it, "
              "and nothing was written.",
              "    RuntimeError (pagedkv.CudaError): a CUDA call failed."]
    return "\n".join(lines)


def _make_op(core: Any, op: dict, impl: str, module_name: str) -> Callable:
    signature = signature_of(op, with_stream=True)
    tensor_names = [a["name"] for a in op["arguments"] if a["kind"] in TENSOR_KINDS]

    def function(*args: Any, **kwargs: Any) -> None:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = [bound.arguments[a["name"]] for a in op["arguments"]]
        stream = resolve_stream(bound.arguments["stream"],
                                tuple(bound.arguments[n] for n in tensor_names))
        core.call(op["name"], convert_arguments(op, values), stream)

    function.__name__ = function.__qualname__ = op["name"]
    function.__signature__ = signature
    function.__doc__ = _docstring(op, impl)
    function.__module__ = module_name
    return function


def make_ops(impl: str, module_name: str) -> dict:
    """The op functions of one implementation ("cpu", "naive" or "optimized"), and ``prepare``."""
    core = getattr(_core, impl)
    registry = {op["name"]: op for op in _core.ops()}
    functions = {name: _make_op(core, op, impl, module_name) for name, op in registry.items()}

    def prepare(op_name: str, *args: Any, **kwargs: Any) -> "_core.PreparedCall":
        """Validates one call of ``op_name`` now and returns a callable that runs it again.

        The arguments are those of the op, without ``stream``. The returned
        ``pagedkv.PreparedCall`` keeps the arrays alive; ``call(stream)`` runs the op on them.
        It runs the validated plan directly (no argument checks, no slot-range check, no
        synchronization): this is what timing loops should call.
        """
        if op_name not in registry:
            raise ValueError(f"prepare: unknown op {op_name!r} (expected one of {sorted(registry)})")
        op = registry[op_name]
        try:
            bound = signature_of(op, with_stream=False).bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"prepare({op_name!r}): {error}") from None
        bound.apply_defaults()  # an optional tensor left out (e.g. seq_starts) is None
        values = [bound.arguments[a["name"]] for a in op["arguments"]]
        return core.prepare(op_name, convert_arguments(op, values))

    prepare.__module__ = module_name
    functions["prepare"] = prepare
    return functions
