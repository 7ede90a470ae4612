"""Every op through pagedkv.vllm_ops inside ``torch.cuda.graph``, on side streams, and with a bad
index found on the device (deferred errors). Registry-driven: the calls come from the op cards
(registry_calls.py). CUDA tests are marked ``cuda``; without torch the file is skipped."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import pagedkv  # noqa: E402
from pagedkv import vllm_ops  # noqa: E402
import registry_calls  # noqa: E402

OPS = registry_calls.op_names()


def cuda_call(name: str) -> list:
    """A valid CUDA call of ``name``; arguments the op wants on the host (swap_blocks's
    block_mapping) are found by trial, as the C++ tests do."""
    on_cpu = set()
    names = [a["name"] for a in next(op for op in pagedkv.ops() if op["name"] == name)["arguments"]]
    while True:
        values = registry_calls.torch_call(name, "cuda", on_cpu=frozenset(on_cpu))
        try:
            getattr(vllm_ops, name)(*values)
            torch.cuda.synchronize()
            pagedkv.check_errors()
            return registry_calls.torch_call(name, "cuda", on_cpu=frozenset(on_cpu))
        except ValueError as error:
            moved = {i for i, n in enumerate(names)
                     if str(error).startswith(n + ":") and "cpu" in str(error) and i not in on_cpu}
            if not moved:
                raise
            on_cpu |= moved


def tensors_of(values: list) -> list:
    return [v for v in values if isinstance(v, torch.Tensor)]


def same_bytes(a: list, b: list) -> bool:
    return all(torch.equal(x.cpu().contiguous().view(torch.uint8).flatten(),
                           y.cpu().contiguous().view(torch.uint8).flatten())
               for x, y in zip(tensors_of(a), tensors_of(b)))


@pytest.mark.cuda
@pytest.mark.parametrize("name", OPS)
def test_captured_call_replays_like_an_eager_call(name):
    eager = cuda_call(name)
    getattr(vllm_ops, name)(*eager)
    torch.cuda.synchronize()

    captured = cuda_call(name)
    initial = [t.clone() for t in tensors_of(captured)]
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        getattr(vllm_ops, name)(*captured)
    torch.cuda.synchronize()
    assert same_bytes(captured, initial)  # capturing ran nothing
    graph.replay()
    torch.cuda.synchronize()
    assert same_bytes(captured, eager)
    pagedkv.check_errors()


@pytest.mark.cuda
@pytest.mark.parametrize("name", OPS)
def test_call_on_a_side_stream_honours_it(name):
    expected = cuda_call(name)
    getattr(vllm_ops, name)(*expected)
    torch.cuda.synchronize()
    values = cuda_call(name)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        getattr(vllm_ops, name)(*values)  # vllm_ops runs on the current torch stream
    side.synchronize()
    assert same_bytes(values, expected)


def slot_ops() -> list:
    return [op["name"] for op in pagedkv.ops()
            if any(a["name"] == "slot_mapping" for a in op["arguments"])]


@pytest.mark.cuda
@pytest.mark.parametrize("name", slot_ops())
def test_bad_slot_in_a_graph_writes_nothing_and_is_reported_later(name):
    values = cuda_call(name)
    position = [a["name"] for a in next(op for op in pagedkv.ops()
                                        if op["name"] == name)["arguments"]].index("slot_mapping")
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        getattr(vllm_ops, name)(*values)
    values[position][0] = 1 << 40  # broken after the capture: checked at replay time
    before = [t.clone() for t in tensors_of(values)]
    graph.replay()  # raises nothing: nothing waits for the check
    torch.cuda.synchronize()
    assert same_bytes(values, before)
    with pytest.raises(ValueError, match=r"slot_mapping\[0\] = 1099511627776.*deferred"):
        pagedkv.check_errors()
    pagedkv.check_errors()  # reported once


@pytest.mark.cuda
def test_deferred_error_is_raised_by_the_next_call():
    name = "reshape_and_cache_flash"
    values = cuda_call(name)
    values[4][0] = 1 << 40  # slot_mapping
    before = [t.clone() for t in tensors_of(values)]
    vllm_ops.reshape_and_cache_flash(*values)  # deferred: returns at once
    torch.cuda.synchronize()
    assert same_bytes(values, before)
    good = cuda_call(name)
    with pytest.raises(ValueError, match="slot_mapping"):
        vllm_ops.reshape_and_cache_flash(*good)
    vllm_ops.reshape_and_cache_flash(*good)  # reported and cleared: runs now
    torch.cuda.synchronize()
    pagedkv.check_errors()


@pytest.mark.cuda
def test_synchronous_mode_raises_at_once_with_the_usual_message():
    values = cuda_call("reshape_and_cache_flash")
    values[4][0] = 1 << 40
    before = [t.clone() for t in tensors_of(values)]
    pagedkv.set_error_mode("synchronous")
    try:
        with pytest.raises(ValueError, match=r"slot_mapping\[0\] = 1099511627776: expected a slot"):
            vllm_ops.reshape_and_cache_flash(*values)
    finally:
        pagedkv.set_error_mode("automatic")
    torch.cuda.synchronize()
    assert same_bytes(values, before)


# One sequence rule of each gather, broken after the capture: (argument, element 0's new
# value, what the message says).
GATHER_BREAKS = {
    "cp_gather_cache": ("cu_seq_lens", 1, r"cu_seq_lens\[0\]"),
    "gather_and_maybe_dequant_cache": ("cu_seq_lens", 1, r"cu_seq_lens\[0\]"),
    "cp_gather_indexer_k_quant_cache": ("cu_seq_lens", 1, r"cu_seq_lens\[0\]"),
    "cp_gather_and_upconvert_fp8_kv_cache": ("seq_lens", -1, r"seq_lens\[0\] = -1"),
    "dequantize_and_gather_k_cache": ("seq_lens", -1, r"seq_lens\[0\] = -1: expected a sequence"),
}


@pytest.mark.cuda
@pytest.mark.parametrize("name", sorted(GATHER_BREAKS))
def test_broken_sequence_in_a_graph_writes_nothing_and_is_reported_later(name):
    argument, value, message = GATHER_BREAKS[name]
    values = cuda_call(name)
    position = [a["name"] for a in next(op for op in pagedkv.ops()
                                        if op["name"] == name)["arguments"]].index(argument)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        getattr(vllm_ops, name)(*values)
    values[position][0] = value  # broken after the capture: checked at replay time
    before = [t.clone() for t in tensors_of(values)]
    graph.replay()
    torch.cuda.synchronize()
    assert same_bytes(values, before)
    with pytest.raises(ValueError, match=message + ".*deferred.*" + name):
        pagedkv.check_errors()
    pagedkv.check_errors()  # reported once
