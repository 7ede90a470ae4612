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
            converted.append(_int_or_none(value, arg))
        elif kind == "float":
            converted.append(float(value))
        elif kind == "bool":
            converted.append(bool(value))
        else:
            converted.append(str(value))
    return converted


def optional_int(argument: dict) -> bool:
    """Whether an int argument may be None: vLLM's ``int | None = None`` (the description
    gives its default as "None"). The C++ op takes -1 for None."""
    return argument["kind"] == "int" and argument.get("default", "") == "None"


def _int_or_none(value: Any, argument: dict) -> int:
    """An int argument's value; None (where the argument allows it) becomes -1."""
    if value is None and optional_int(argument):
        return -1
    return int(value)


def _default(argument: dict) -> dict:
    """``{"default": value}`` for an argument vLLM's wrapper gives a default, else ``{}``."""
    text = argument.get("default", "")
    return {"default": ast.literal_eval(text)} if text else {}


def signature_of(op: dict, with_stream: bool) -> inspect.Signature:
    """The Python signature of an op: its arguments, then ``stream=None``.

    Optional tensors at the end of the argument list default to None, as in vLLM's wrappers
    (``cp_gather_cache(..., seq_starts=None)``); an argument the op's description gives a
    default has it, as vLLM's wrapper does.
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
              "and nothing was written. With deferred errors (pagedkv.set_error_mode; always "
              "inside a CUDA graph capture) a bad index value in a device tensor is raised by "
              "the next call on the device or by pagedkv.check_errors() instead.",
              "    RuntimeError (pagedkv.CudaError): a CUDA call failed."]
    return "\n".join(lines)


def parameter_list(op: dict, with_stream: bool) -> str:
    """The parameters of an op's function as Python source, e.g. ``"out, input, stream=None"``
    (what signature_of() describes)."""
    return str(signature_of(op, with_stream))[1:-1]


def argument_converters(op: dict) -> list:
    """One converter per argument, each called as ``converter(value, values)`` where ``values``
    holds all the call's arguments (a number given for a tensor becomes a one-element array next
    to the call's first tensor)."""
    arguments = op["arguments"]

    def tensor(value: Any, values: tuple) -> Any:
        if type(value) in (int, float):
            return scale_arg(value, _first_tensor(list(values), arguments))
        return tensor_arg(value)

    def optional_tensor(value: Any, values: tuple) -> Any:
        return None if value is None else tensor(value, values)

    by_kind = {"int": lambda v, _: int(v), "float": lambda v, _: float(v),
               "bool": lambda v, _: bool(v), "str": lambda v, _: str(v),
               "optional_input": optional_tensor, "optional_inout": optional_tensor}
    def int_or_none(value: Any, values: tuple) -> int:
        return -1 if value is None else int(value)

    return [int_or_none if optional_int(a) else by_kind.get(a["kind"], tensor)
            for a in arguments]


def compile_call(op: dict, with_stream: bool, body: str, namespace: dict) -> Callable:
    """A function with the op's own parameters whose body is ``body`` (Python source).

    Every call of an op goes through its function, so the function is generated with the real
    parameter list: Python binds the arguments itself, where ``inspect.Signature.bind`` took
    two thirds of a call's time (measured on the CPU reference of a 1 × 64 norm: 110 µs a call
    before, see the commit that made this). ``_v`` in ``body`` is the tuple of the arguments;
    ``namespace`` holds the names the body uses.
    """
    names = [a["name"] for a in op["arguments"]]
    source = (f"def {op['name']}({parameter_list(op, with_stream)}):\n"
              f"    _v = ({', '.join(names)}{',' if names else ''})\n"
              f"{body}")
    scope = dict(namespace)
    exec(compile(source, f"<pagedkv {op['name']}>", "exec"), scope)  # noqa: S102
    return scope[op["name"]]


def converted_values_source(op: dict) -> str:
    """The source of the converted argument list, e.g. ``[_c[0](_v[0], _v), ...]``."""
    count = len(op["arguments"])
    return "[" + ", ".join(f"_c[{i}](_v[{i}], _v)" for i in range(count)) + "]"


def _make_op(core: Any, op: dict, impl: str, module_name: str) -> Callable:
    tensor_positions = [i for i, a in enumerate(op["arguments"]) if a["kind"] in TENSOR_KINDS]
    tensors = "(" + "".join(f"_v[{i}], " for i in tensor_positions) + ")"
    # The CPU reference ignores the stream: only a given one is resolved (and checked).
    stream = ("0 if stream is None else _resolve(stream, ())" if impl == "cpu"
              else f"_resolve(stream, {tensors})")
    body = f"    _call({op['name']!r}, {converted_values_source(op)}, {stream})\n"
    function = compile_call(op, True, body, {"_call": core.call, "_c": argument_converters(op),
                                             "_resolve": resolve_stream})
    function.__qualname__ = op["name"]
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
