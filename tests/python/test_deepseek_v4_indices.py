"""pagedkv.deepseek_v4_indices: DeepSeek V4's index builders with upstream's signatures.

CPU part (NumPy arrays, no torch needed): the headers' worked examples and the spec's combine
example written out by hand, the output shapes upstream allocates, a bad call raising ValueError
that names the argument, and zero tokens. Torch part: CPU torch tensors give torch tensors on
the CPU reference; CUDA tensors (marked ``cuda``) give the CPU reference's result bit for bit.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from pagedkv import deepseek_v4_indices as dsv4


def i32(values):
    return np.asarray(values, dtype=np.int32)


def test_signatures_are_upstreams():
    # vllm/models/deepseek_v4/common/ops/cache_utils.py @03dc564956172b5b2835be7a84ddde5de1d5dba6
    assert list(inspect.signature(dsv4.compute_global_topk_indices_and_lens).parameters) == [
        "topk_indices", "token_to_req_indices", "block_table", "block_size", "is_valid_token"]
    assert list(inspect.signature(dsv4.combine_topk_swa_indices).parameters) == [
        "topk_indices", "query_start_loc", "seq_lens", "gather_lens", "window_size",
        "compress_ratio", "topk", "M", "N"]
    parameters = inspect.signature(dsv4.build_flashinfer_mixed_sparse_indices).parameters
    assert list(parameters) == [
        "decode_swa_indices", "decode_compressed_indices", "decode_compressed_topk_lens",
        "prefill_topk_indices", "query_start_loc", "seq_lens", "token_to_req_indices",
        "swa_block_table", "swa_block_size", "compressed_block_table", "compressed_block_size",
        "window_size", "compress_ratio", "topk", "decode_compressed_indices_are_local",
        "decode_is_valid_token"]
    assert parameters["decode_compressed_indices_are_local"].default is False
    assert parameters["decode_is_valid_token"].default is None


def test_global_topk_worked_example():
    global_topk, lens = dsv4.compute_global_topk_indices_and_lens(
        i32([[0, 64, -1, 130], [0, 64, -1, 130]]), i32([0, 0]), i32([[10, 11, 12, 13]]), 64,
        np.array([True, False]))
    assert global_topk.dtype == np.int32 and global_topk.shape == (2, 4)
    np.testing.assert_array_equal(global_topk, [[640, 704, 770, -1], [-1, -1, -1, -1]])
    np.testing.assert_array_equal(lens, [3, 0])


def test_combine_spec_example():
    topk = i32([[0, -1], [0, -1], [0, -1], [0, -1], [1, 0], [0, 1]])
    combined, lens = dsv4.combine_topk_swa_indices(topk, i32([0, 6]), i32([9]), i32([9]), 8, 4,
                                                   2, 20, 5)
    assert combined.shape == (6, dsv4.combined_topk_width(2, 8)) == (6, 128)
    np.testing.assert_array_equal(lens, [5, 6, 7, 8, 10, 10])
    np.testing.assert_array_equal(combined[0, :6], [0, 5, 6, 7, 8, -1])
    np.testing.assert_array_equal(combined[5, :11], [0, 1, 6, 7, 8, 9, 10, 11, 12, 13, -1])
    assert (combined[:, 10:] == -1).all()


def test_mixed_worked_example():
    sparse, lens = dsv4.build_flashinfer_mixed_sparse_indices(
        i32([[100, 101, 102, 103]]), None, None, i32([[0, -1], [0, 1]]), i32([0, 1, 3]),
        i32([10, 6]), i32([0, 1, 1]), i32([[1, 2], [7, 9]]), 4, i32([[4], [3]]), 2, 4, 4, 2)
    assert sparse.shape == (3, 4 + dsv4.mixed_sparse_compressed_width(2, 0)) == (3, 8)
    np.testing.assert_array_equal(sparse, [[100, 101, 102, 103, -1, -1, -1, -1],
                                           [29, 30, 31, 36, 6, -1, -1, -1],
                                           [30, 31, 36, 37, 6, -1, -1, -1]])
    np.testing.assert_array_equal(lens, [4, 5, 5])


def test_mixed_local_decode_indices():
    sparse, lens = dsv4.build_flashinfer_mixed_sparse_indices(
        i32([[1, 2, 3, 4], [5, 6, 7, 8]]), i32([[0, 3, -1], [0, 1, 1]]), None,
        np.zeros((0, 2), np.int32), i32([0, 1, 2]), i32([40, 9]), i32([0, 1]),
        i32([[0, 0], [0, 0]]), 4, i32([[5, 8, 2], [6, 6, 6]]), 2, 4, 4, 2,
        decode_compressed_indices_are_local=True, decode_is_valid_token=np.array([True, False]))
    np.testing.assert_array_equal(sparse, [[1, 2, 3, 4, 10, 17, -1, -1],
                                           [5, 6, 7, 8, -1, -1, -1, -1]])
    np.testing.assert_array_equal(lens, [6, 4])


def test_bad_calls_name_the_argument():
    with pytest.raises(ValueError, match="topk_indices"):
        dsv4.compute_global_topk_indices_and_lens(i32([[0, 8]]), i32([0]), i32([[3, 6]]), 4,
                                                  np.array([True]))
    with pytest.raises(ValueError, match="token_to_req_indices"):
        dsv4.compute_global_topk_indices_and_lens(
            i32([[0]]), np.zeros(1, np.int64), i32([[3]]), 4, np.array([True]))
    with pytest.raises(ValueError, match="window_size"):
        dsv4.combine_topk_swa_indices(i32([[0]]), i32([0, 1]), i32([4]), i32([4]), 6, 4, 1, 10, 2)
    with pytest.raises(ValueError, match="compress_ratio"):
        dsv4.combine_topk_swa_indices(i32([[0]]), i32([0, 1]), i32([4]), i32([4]), 8, 2, 1, 10, 2)


def test_zero_tokens():
    global_topk, lens = dsv4.compute_global_topk_indices_and_lens(
        np.zeros((0, 8), np.int32), np.zeros(0, np.int32), i32([[1]]), 64, np.zeros(0, bool))
    assert global_topk.shape == (0, 8) and lens.shape == (0,)


def test_torch_cpu_tensors():
    torch = pytest.importorskip("torch")
    global_topk, lens = dsv4.compute_global_topk_indices_and_lens(
        torch.tensor([[0, 64, -1, 130]], dtype=torch.int32), torch.tensor([0], dtype=torch.int32),
        torch.tensor([[10, 11, 12, 13]], dtype=torch.int32), 64, torch.tensor([True]))
    assert isinstance(global_topk, torch.Tensor) and global_topk.dtype == torch.int32
    assert global_topk.tolist() == [[640, 704, 770, -1]] and lens.tolist() == [3]


@pytest.mark.cuda
def test_cuda_matches_cpu():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    tokens, k, blocks = 300, 2048, 64
    table = rng.permutation(1 << 16)[: 4 * blocks].reshape(4, blocks).astype(np.int32)
    topk = rng.integers(-1, blocks * 64, size=(tokens, k)).astype(np.int32)
    req = rng.integers(0, 4, size=tokens).astype(np.int32)
    valid = rng.random(tokens) < 0.9
    expected = dsv4.compute_global_topk_indices_and_lens(topk, req, table, 64, valid)
    cuda = [torch.from_numpy(a).cuda() for a in (topk, req, table, valid)]
    actual = dsv4.compute_global_topk_indices_and_lens(cuda[0], cuda[1], cuda[2], 64, cuda[3])
    torch.cuda.synchronize()
    for got, want in zip(actual, expected):
        np.testing.assert_array_equal(got.cpu().numpy(), want)
