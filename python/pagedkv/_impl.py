"""Builds the op functions of pagedkv.cpu, pagedkv.naive and pagedkv.optimized.

The three modules get the same functions with the same signatures (vLLM's names and argument
names, plus an optional ``stream``); only the compiled implementation behind them differs.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Optional

from . import _core
from ._args import resolve_stream, scale_arg, tensor_arg

_SWAP_BLOCKS_DOC = """{impl_title} swap_blocks: copy whole blocks from ``src`` to ``dst``.

Each tensor is a sequence of equally sized blocks of ``block_size_in_bytes`` bytes (vLLM passes
``src.element_size() * src.stride(0)``). For every row ``(s, d)`` of ``block_mapping``, in
order, block ``s`` of ``src`` is copied over block ``d`` of ``dst``; nothing else in ``dst``
changes.

Args:
    src: source array (any dtype). {devices_swap}
    dst: destination array (any dtype), written in place.
    block_size_in_bytes: bytes per block.
    block_mapping: ``[num_pairs, 2]`` int64 (or int32) host array of (src_block, dst_block).
    stream: {stream_doc}

Raises:
    ValueError (pagedkv.InvalidArgument): a bad argument; the message names it, and nothing
        was written.
    RuntimeError (pagedkv.CudaError): a CUDA call failed.
"""

_CACHE_WRITE_DOC = """{impl_title} {op}: write the new tokens' keys and values into the paged cache.

Token ``t`` goes to slot ``slot_mapping[t]`` (block ``slot // block_size``, offset
``slot % block_size``); negative slots (vLLM pads with -1) are skipped. {layout}

Args:
    key: ``[num_tokens(+padding), num_heads, head_size]`` float32, float16 or bfloat16 (see
        pagedkv.bfloat16_bits for bf16 in NumPy); rows may have any pitch.
    value: same shape and dtype as ``key``.
    key_cache: {key_cache_doc} Written in place.
    value_cache: {value_cache_doc} Written in place.
    slot_mapping: ``[num_tokens]`` int64.
    kv_cache_dtype: "auto" (copy the bits; the cache has key's dtype), "bfloat16", "float16",
        "fp8" / "fp8_e4m3" or "fp8_e5m2" (one byte per element, ``fp8(x / scale)``; the cache
        is uint8 as vLLM allocates it).
    k_scale: float32 array {scale_shape} (or a Python number), read only for fp8 caches.
    v_scale: like ``k_scale``.
    stream: {stream_doc}

{devices_write}

Raises:
    ValueError (pagedkv.InvalidArgument): a bad argument; the message names it, and nothing
        was written.
    RuntimeError (pagedkv.CudaError): a CUDA call failed.
"""

_LAYOUTS = {
    "reshape_and_cache_flash": dict(
        layout="The cache is FlashAttention's: one slot holds all heads of a token (NHD), or, with "
        "permuted strides, each head holds all slots of a block (HND).",
        key_cache_doc="logical shape ``[num_blocks, block_size, num_heads, head_size]`` with "
        "any strides whose last one is 1 (NHD, HND, or a view into a joint K/V allocation).",
        value_cache_doc="same shape, dtype and strides as ``key_cache``.",
        scale_shape="of shape ``[1]`` or ``[num_heads]`` (per head)",
    ),
    "reshape_and_cache": dict(
        layout="The cache is the legacy paged-attention layout: the key is split in chunks of "
        "``x`` elements (16 bytes), the value is stored transposed.",
        key_cache_doc="``[num_blocks, num_heads, head_size // x, block_size, x]``, contiguous.",
        value_cache_doc="``[num_blocks, num_heads, head_size, block_size]``, contiguous.",
        scale_shape="of shape ``[1]``",
    ),
}

_CUDA_STREAM_DOC = (
    "None (default): the current stream of the torch/CuPy CUDA tensors, else the legacy "
    "default stream (0); or an int handle, a torch.cuda.Stream or a CuPy stream. Nothing "
    "synchronizes: the call returns once the work is queued."
)
_IMPLS = {
    "cpu": dict(
        impl_title="CPU reference of",
        devices_swap="Both src and dst in host memory (NumPy arrays, CPU tensors).",
        devices_write="Every array must be in host memory (NumPy arrays or CPU tensors).",
        stream_doc="accepted so that the three implementations have one signature; the CPU "
        "reference runs synchronously and ignores it.",
    ),
    "naive": dict(
        impl_title="Naive CUDA",
        devices_swap="src and dst may each be in host or device memory, at least one on the GPU.",
        devices_write="Every array, scales included, must be CUDA memory (torch or CuPy CUDA "
        "tensors).",
        stream_doc=_CUDA_STREAM_DOC,
    ),
}
_IMPLS["optimized"] = dict(_IMPLS["naive"], impl_title="Optimized CUDA")


def make_ops(impl: str, module_name: str) -> SimpleNamespace:
    """The op functions of one implementation ("cpu", "naive" or "optimized")."""
    core = getattr(_core, impl)
    text = _IMPLS[impl]

    def swap_blocks(src: Any, dst: Any, block_size_in_bytes: int, block_mapping: Any,
                    stream: Optional[Any] = None) -> None:
        src_, dst_, mapping_ = tensor_arg(src), tensor_arg(dst), tensor_arg(block_mapping)
        core.swap_blocks(src_, dst_, int(block_size_in_bytes), mapping_,
                         resolve_stream(stream, (src, dst)))

    def _cache_write(op_name: str):
        compiled = getattr(core, op_name)

        def op(key: Any, value: Any, key_cache: Any, value_cache: Any, slot_mapping: Any,
               kv_cache_dtype: str, k_scale: Any, v_scale: Any,
               stream: Optional[Any] = None) -> None:
            compiled(tensor_arg(key), tensor_arg(value), tensor_arg(key_cache),
                     tensor_arg(value_cache), tensor_arg(slot_mapping), str(kv_cache_dtype),
                     scale_arg(k_scale, key), scale_arg(v_scale, key),
                     resolve_stream(stream, (key, key_cache)))

        op.__name__ = op.__qualname__ = op_name
        op.__doc__ = _CACHE_WRITE_DOC.format(op=op_name, **text, **_LAYOUTS[op_name])
        return op

    swap_blocks.__doc__ = _SWAP_BLOCKS_DOC.format(**text)

    def prepare(op_name: str, *args: Any, **kwargs: Any) -> "_core.PreparedCall":
        """Validates one call of ``op_name`` now and returns a callable that runs it again.

        The arguments are those of the op, without ``stream``. The returned
        ``pagedkv.PreparedCall`` keeps the arrays alive; ``call(stream)`` runs the op on them.
        For the CUDA implementations it launches the kernels of the validated plan directly (no
        argument checks, no slot-range check, no synchronization): this is what timing loops
        should call. The CPU reference runs its checked call again.
        """
        names = {
            "swap_blocks": ("src", "dst", "block_size_in_bytes", "block_mapping"),
            "reshape_and_cache": ("key", "value", "key_cache", "value_cache", "slot_mapping",
                                  "kv_cache_dtype", "k_scale", "v_scale"),
            "reshape_and_cache_flash": ("key", "value", "key_cache", "value_cache",
                                        "slot_mapping", "kv_cache_dtype", "k_scale", "v_scale"),
        }
        if op_name not in names:
            raise ValueError(f"prepare: unknown op {op_name!r} (expected one of {sorted(names)})")
        bound = dict(zip(names[op_name], args))
        for name, value in kwargs.items():
            if name not in names[op_name] or name in bound:
                raise TypeError(f"prepare({op_name!r}): unexpected or repeated argument {name!r}")
            bound[name] = value
        missing = [n for n in names[op_name] if n not in bound]
        if missing:
            raise TypeError(f"prepare({op_name!r}): missing arguments {missing}")
        compiled = getattr(core, "prepare_" + op_name)
        if op_name == "swap_blocks":
            return compiled(tensor_arg(bound["src"]), tensor_arg(bound["dst"]),
                            int(bound["block_size_in_bytes"]), tensor_arg(bound["block_mapping"]))
        key = bound["key"]
        return compiled(tensor_arg(key), tensor_arg(bound["value"]), tensor_arg(bound["key_cache"]),
                        tensor_arg(bound["value_cache"]), tensor_arg(bound["slot_mapping"]),
                        str(bound["kv_cache_dtype"]), scale_arg(bound["k_scale"], key),
                        scale_arg(bound["v_scale"], key))

    ops = SimpleNamespace(
        swap_blocks=swap_blocks,
        reshape_and_cache=_cache_write("reshape_and_cache"),
        reshape_and_cache_flash=_cache_write("reshape_and_cache_flash"),
        prepare=prepare,
    )
    for function in vars(ops).values():
        function.__module__ = module_name
    return ops
