"""merge_attn_states through the Python package.

CPU part: pagedkv.cpu against an independent NumPy formulation (upstream's float32 steps with
exp and log from float64; the ulp bounds of the C++ tests), the special rows (empty key sets in
FlashAttention 2's and 3's conventions, two empty sets, tokens without prefix context), fp8
output, the layouts (a token-major LSE through its transpose), the validation rules through the
bindings, ``pagedkv.merge`` and the invariant the op exists for: a dense attention computed here
in float64, split over two key sets and merged, equals the attention over all the keys.
CUDA part (marked ``cuda``): pagedkv.naive and pagedkv.optimized bit-identical to each other and
within the ulp bound of the CPU reference on torch tensors; pagedkv.vllm_ops and pagedkv.merge on
CUDA tensors, fp8 output as torch.float8_e4m3fn; the exact-merge invariant on the GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

import cases
import pagedkv
from pagedkv import merge as merge_module

ULP_BITS = {"f32": 24, "f16": 11, "bf16": 8}
OUTPUT_BOUND = {"f32": 16.0, "f16": 1.0, "bf16": 1.0}  # MergeAttnStates::ulp_bound
LSE_BOUND = 8.0  # MergeAttnStates::kLseUlpBound
PACK = {"f32": 4, "f16": 8, "bf16": 8}


def to_float64(array: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bf16":
        return pagedkv.bfloat16_bits_to_float32(array).astype(np.float64)
    return array.astype(np.float64)


def from_float(values: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bf16":
        return pagedkv.float32_to_bfloat16_bits(values.astype(np.float32))
    return values.astype(cases.STORAGE[dtype])


def ulp(dtype: str, magnitude: np.ndarray) -> np.ndarray:
    """One ulp of `dtype` at `magnitude` (normal range, which these tests draw)."""
    exponent = np.floor(np.log2(np.maximum(magnitude, 1e-30)))
    return np.exp2(exponent - (ULP_BITS[dtype] - 1))


def weights(lp: np.ndarray, ls: np.ndarray):
    """Upstream's float32 steps: inf to -inf, the max, two exponentials (float64, rounded to
    float32), their sum, the scales and the LSE. Returns (p_scale, s_scale, lse, merge)."""
    lp = np.where(np.isinf(lp), np.float32(-np.inf), lp).astype(np.float32)
    ls = np.where(np.isinf(ls), np.float32(-np.inf), ls).astype(np.float32)
    m = np.fmax(lp, ls)
    merge = ~np.isinf(m)
    safe = np.where(merge, m, np.float32(0))
    with np.errstate(invalid="ignore", over="ignore"):
        a = np.exp((lp - safe).astype(np.float64)).astype(np.float32)
        b = np.exp((ls - safe).astype(np.float64)).astype(np.float32)
        z = (a + b).astype(np.float32)
        lse = (np.log(z.astype(np.float64)).astype(np.float32) + safe).astype(np.float32)
    return a / z, b / z, np.where(merge, lse, m), merge


def random_call(dtype: str, n: int, h: int, d: int, seed: int):
    rng = np.random.default_rng(seed)
    p = from_float(rng.uniform(-4, 4, (n, h, d)).astype(np.float32), dtype)
    s = from_float(rng.uniform(-4, 4, (n, h, d)).astype(np.float32), dtype)
    lp = rng.uniform(-4, 12, (h, n)).astype(np.float32)
    ls = (lp + rng.choice([-1, 1], (h, n)) * np.exp2(rng.uniform(-8, 6, (h, n)))).astype(np.float32)
    return p, s, lp, ls


@pytest.mark.parametrize("dtype", cases.ACTIVATION_DTYPES)
def test_cpu_matches_numpy(dtype):
    n, h, d = 7, 5, 3 * PACK[dtype]
    p, s, lp, ls = random_call(dtype, n, h, d, cases.seed_of("merge", dtype))
    out = cases.poisoned((n, h, d), cases.STORAGE[dtype])
    out_lse = np.full((h, n), np.nan, np.float32)
    pagedkv.cpu.merge_attn_states(cases.as_arg(out, dtype), cases.as_arg(p, dtype), lp,
                                  cases.as_arg(s, dtype), ls, out_lse)
    ps, ss, lse, _ = weights(lp, ls)
    pf, sf = to_float64(p, dtype), to_float64(s, dtype)
    expected = pf * ps.T[..., None] + sf * ss.T[..., None]  # the merge, before its roundings
    magnitude = np.abs(pf) * ps.T[..., None] + np.abs(sf) * ss.T[..., None]
    error = np.abs(to_float64(out, dtype) - expected) / ulp(dtype, magnitude)
    # One rounding to T, plus the float32 steps' few f32 ulps (far below one ulp of f16/bf16).
    assert error.max() <= (4.0 if dtype == "f32" else 1.0)
    lse_error = np.abs(out_lse.astype(np.float64) - lse) / ulp("f32", np.maximum(np.abs(lse), 1))
    assert lse_error.max() <= 2.0


def test_cpu_special_rows():
    """Empty key sets (+inf: FlashAttention 2, -inf: FlashAttention 3), two empty sets, and
    tokens without prefix context."""
    n, h, d = 6, 2, 8
    rng = np.random.default_rng(1)
    p = rng.standard_normal((n, h, d)).astype(np.float32)
    s = rng.standard_normal((n, h, d)).astype(np.float32)
    lp = np.array([[np.inf, -np.inf, 1.0, 1.0, np.inf, 2.0]] * h, np.float32)
    ls = np.array([[0.5, 0.5, np.inf, -np.inf, -np.inf, np.inf]] * h, np.float32)
    out = np.full((n, h, d), np.nan, np.float32)
    out_lse = np.full((h, n), np.nan, np.float32)
    pagedkv.cpu.merge_attn_states(out, p, lp, s, ls, out_lse, 5)
    np.testing.assert_array_equal(out[:2], s[:2])  # empty prefix: the suffix
    np.testing.assert_array_equal(out[2:4], p[2:4])  # empty suffix: the prefix
    np.testing.assert_array_equal(out[4], p[4])  # both empty: the prefix row
    np.testing.assert_array_equal(out[5], s[5])  # token 5 >= P: copied, raw LSE kept
    np.testing.assert_array_equal(out_lse, [[0.5, 0.5, 1.0, 1.0, -np.inf, np.inf]] * h)


def test_cpu_fp8_output():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    n, h, d = 4, 3, 16
    p, s, lp, ls = random_call("bf16", n, h, d, 3)
    scale = np.array([0.02], np.float32)
    out = np.zeros((n, h, d), np.uint8)
    pagedkv.cpu.merge_attn_states(pagedkv.RawBits(out, "f8_e4m3"), pagedkv.bfloat16_bits(p), lp,
                                  pagedkv.bfloat16_bits(s), ls, None, None, scale)
    ps, ss, _, _ = weights(lp, ls)
    merged = (to_float64(p, "bf16") * ps.T[..., None] + to_float64(s, "bf16") * ss.T[..., None])
    values = np.clip(merged.astype(np.float32) * (np.float32(1) / scale[0]), -448, 448)
    expected = values.astype(ml_dtypes.float8_e4m3fn).astype(np.float64)
    got = out.view(ml_dtypes.float8_e4m3fn).astype(np.float64)
    # One fp8 rounding apart at most (the float32 merge may sit on the other side of a tie).
    spacing = np.exp2(np.floor(np.log2(np.maximum(np.abs(values), 2.0**-6))) - 3)
    assert (np.abs(got - expected) <= spacing).all()
    # fp8 needs output_scale, and output_scale needs fp8.
    with pytest.raises(pagedkv.InvalidArgument, match="an fp8 output needs output_scale"):
        pagedkv.cpu.merge_attn_states(pagedkv.RawBits(out, "f8_e4m3"), pagedkv.bfloat16_bits(p),
                                      lp, pagedkv.bfloat16_bits(s), ls)
    with pytest.raises(pagedkv.InvalidArgument, match="because output_scale is given"):
        pagedkv.cpu.merge_attn_states(pagedkv.bfloat16_bits(p.copy()), pagedkv.bfloat16_bits(p),
                                      lp, pagedkv.bfloat16_bits(s), ls, None, None, scale)


def test_cpu_layouts_give_the_same_values():
    """Padded heads, each tensor with its own strides, token-major LSEs seen through .T."""
    n, h, d = 5, 4, 16
    p, s, lp, ls = random_call("f32", n, h, d, 4)
    packed = np.zeros((n, h, d), np.float32)
    packed_lse = np.zeros((h, n), np.float32)
    pagedkv.cpu.merge_attn_states(packed, p, lp, s, ls, packed_lse)
    wide_p = np.zeros((n, h, d + 8), np.float32)
    wide_p[..., :d] = p
    wide_out = np.full((n, h + 1, d + 4), 7.0, np.float32)
    token_major_lp, token_major_ls = np.ascontiguousarray(lp.T), np.ascontiguousarray(ls.T)
    out_lse = np.zeros((n, h), np.float32)
    pagedkv.cpu.merge_attn_states(wide_out[:, :h, :d], wide_p[..., :d], token_major_lp.T, s,
                                  token_major_ls.T, out_lse.T)
    np.testing.assert_array_equal(wide_out[:, :h, :d], packed)
    np.testing.assert_array_equal(out_lse.T, packed_lse)
    assert (wide_out[:, h:] == 7.0).all() and (wide_out[..., d:] == 7.0).all()


def test_cpu_rejects_and_writes_nothing():
    n, h, d = 3, 2, 16
    p, s, lp, ls = random_call("f32", n, h, d, 5)
    out = np.full((n, h, d), 7.0, np.float32)
    out_lse = np.full((h, n), 7.0, np.float32)
    call = pagedkv.cpu.merge_attn_states
    with pytest.raises(pagedkv.InvalidArgument, match="a token-major"):
        call(out, p, np.ascontiguousarray(lp.T), s, ls, out_lse)
    with pytest.raises(pagedkv.InvalidArgument, match="suffix_lse: expected dtype f32"):
        call(out, p, lp, s, ls.astype(np.float16), out_lse)
    with pytest.raises(pagedkv.InvalidArgument, match="is not a multiple of 4"):
        call(out[..., :6], p[..., :6], lp, s[..., :6], ls)
    with pytest.raises(pagedkv.InvalidArgument, match="prefill_tokens_with_context"):
        call(out, p, lp, s, ls, out_lse, n + 1)
    with pytest.raises(pagedkv.InvalidArgument, match="output_lse: expected"):
        call(out, p, lp, s, ls, out_lse[:1])
    with pytest.raises(pagedkv.InvalidArgument, match="suffix_output"):
        call(out, p, lp, s.astype(np.float16), ls)
    assert (out == 7.0).all() and (out_lse == 7.0).all()
    call(np.zeros((0, h, d), np.float32), p[:0], lp[:, :0], s[:0], ls[:, :0])  # zero tokens


def test_merge_allocates_the_outputs():
    p, s, lp, ls = random_call("bf16", 4, 3, 8, 6)
    out, out_lse = merge_module.merge(pagedkv.bfloat16_bits(p), lp, pagedkv.bfloat16_bits(s), ls)
    assert isinstance(out, pagedkv.RawBits) and out.array.shape == (4, 3, 8)
    expected = np.zeros_like(p)
    expected_lse = np.zeros((3, 4), np.float32)
    pagedkv.cpu.merge_attn_states(pagedkv.bfloat16_bits(expected), pagedkv.bfloat16_bits(p), lp,
                                  pagedkv.bfloat16_bits(s), ls, expected_lse)
    np.testing.assert_array_equal(out.array, expected)
    np.testing.assert_array_equal(out_lse, expected_lse)


# ---------------------------------------------------------------------------------------------
# The invariant: the LSE merge is exact.

def dense_attention(q, k, v, first, last):
    """Attention of every query over keys [first, last) in float64: (output [N, H, D],
    lse [H, N]); an empty set gives output 0 and LSE -inf."""
    n, h, d = q.shape
    if first >= last:
        return np.zeros((n, h, d)), np.full((h, n), -np.inf)
    scores = np.einsum("nhd,lhd->hnl", q, k[first:last]) / np.sqrt(d)
    m = scores.max(axis=-1, keepdims=True)
    e = np.exp(scores - m)
    total = e.sum(axis=-1, keepdims=True)
    out = np.einsum("hnl,lhd->nhd", e / total, v[first:last])
    return out, (m + np.log(total))[..., 0]


def attention_problem(n=4, h=3, d=32, keys=41, seed=9):
    rng = np.random.default_rng(seed)
    return (2.0 * rng.standard_normal((n, h, d)), rng.standard_normal((keys, h, d)),
            1.0 + rng.standard_normal((keys, h, d)))


def exact_merge_error(merged, merged_lse, dtype, q, k, v, split):
    """The largest |merged - whole| / bound, with the bound of the C++ test (the parts rounded
    to the dtype, their LSEs to f32, the float32 merge and the final rounding)."""
    keys = k.shape[0]
    whole, whole_lse = dense_attention(q, k, v, 0, keys)
    oa, la = dense_attention(q, k, v, 0, split)
    ob, lb = dense_attention(q, k, v, split, keys)
    u_t, u_32 = 2.0 ** -ULP_BITS[dtype], 2.0 ** -24
    with np.errstate(invalid="ignore"):
        wa = np.where(np.isinf(la), 0.0, np.exp(la - whole_lse)).T[..., None]
        wb = np.where(np.isinf(lb), 0.0, np.exp(lb - whole_lse)).T[..., None]
    terms = (np.where(np.isinf(la), 0.0, np.abs(la)) + np.where(np.isinf(lb), 0.0, np.abs(lb)))
    m = wa * np.abs(oa) + wb * np.abs(ob)
    bound = (u_t * m + wa * wb * u_32 * terms.T[..., None] * (np.abs(oa) + np.abs(ob))
             + 16 * u_32 * m + ulp(dtype, m))
    lse_bound = u_32 * terms + 10 * ulp("f32", np.maximum(np.abs(whole_lse), 1.0))
    return max((np.abs(merged - whole) / bound).max(),
               (np.abs(merged_lse - whole_lse) / lse_bound).max())


def split_parts(q, k, v, split, dtype, empty_lse):
    """The two parts as a kernel stores them: outputs rounded to the dtype, LSEs to f32."""
    parts = []
    for first, last in ((0, split), (split, k.shape[0])):
        out, lse = dense_attention(q, k, v, first, last)
        lse = np.where(np.isinf(lse), empty_lse, lse).astype(np.float32)
        parts += [from_float(out.astype(np.float32), dtype), lse]
    return parts


@pytest.mark.parametrize("dtype", ("f32", "bf16"))
@pytest.mark.parametrize("split", (0, 1, 20, 41))
def test_lse_merge_is_exact_cpu(dtype, split):
    q, k, v = attention_problem()
    p, lp, s, ls = split_parts(q, k, v, split, dtype, np.inf)  # FlashAttention 2's empty set
    out, out_lse = merge_module.merge(cases.as_arg(p, dtype), lp, cases.as_arg(s, dtype), ls)
    merged = to_float64(out.array if isinstance(out, pagedkv.RawBits) else out, dtype)
    assert exact_merge_error(merged, out_lse.astype(np.float64), dtype, q, k, v, split) <= 1.0


# ---------------------------------------------------------------------------------------------
# torch: vllm_ops on CPU tensors, and the CUDA implementations.

def _torch():
    return pytest.importorskip("torch")


def test_vllm_ops_cpu_tensors_and_none():
    torch = _torch()
    p, s, lp, ls = (torch.from_numpy(a) for a in random_call("f32", 3, 2, 8, 12))
    from pagedkv import vllm_ops
    out = torch.empty_like(p)
    vllm_ops.merge_attn_states(out, p, lp, s, ls)  # prefill_tokens_with_context None: all
    expected = np.zeros((3, 2, 8), np.float32)
    pagedkv.cpu.merge_attn_states(expected, p.numpy(), lp.numpy(), s.numpy(), ls.numpy())
    np.testing.assert_array_equal(out.numpy(), expected)
    vllm_ops.merge_attn_states(out, p, lp, s, ls, None, 0)  # P = 0: the suffix
    assert torch.equal(out, s)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ("f32", "f16", "bf16"))
@pytest.mark.parametrize("fp8", (False, True))
def test_cuda_naive_equals_optimized_and_agrees_with_cpu(dtype, fp8):
    torch = _torch()
    import torch_cases as tc
    n, h, d = 97, 32, 128
    p, s, lp, ls = random_call(dtype, n, h, d, cases.seed_of("cuda merge", dtype, fp8))
    tensors = [torch.from_numpy(a) for a in (p, s)]
    if dtype == "bf16":
        tensors = [t.view(torch.bfloat16) for t in tensors]
    p_t, s_t = (t.cuda() for t in tensors)
    lp_t, ls_t = torch.from_numpy(lp).cuda(), torch.from_numpy(ls).cuda()
    scale = torch.tensor([0.02], dtype=torch.float32, device="cuda") if fp8 else None
    out_dtype = torch.float8_e4m3fn if fp8 else tc.DTYPES[dtype]
    results = []
    for impl in ("naive", "optimized"):
        out = torch.empty(n, h, d, dtype=out_dtype, device="cuda")
        out_lse = torch.empty(h, n, dtype=torch.float32, device="cuda")
        getattr(pagedkv, impl).merge_attn_states(out, p_t, lp_t, s_t, ls_t, out_lse, 60, scale)
        results.append((out, out_lse))
    torch.cuda.synchronize()
    (naive, naive_lse), (optimized, optimized_lse) = results
    assert torch.equal(naive.view(torch.uint8), optimized.view(torch.uint8))
    assert torch.equal(naive_lse, optimized_lse)
    # Against the CPU reference on the same tensors.
    cpu_out = torch.empty(n, h, d, dtype=out_dtype)
    cpu_lse = torch.empty(h, n, dtype=torch.float32)
    from pagedkv import vllm_ops
    vllm_ops.merge_attn_states(cpu_out, p_t.cpu(), lp_t.cpu(), s_t.cpu(), ls_t.cpu(), cpu_lse, 60,
                               scale.cpu() if fp8 else None)
    got, want = optimized.cpu().double(), cpu_out.double()
    ps, ss, _, _ = weights(lp, ls)
    magnitude = (np.abs(to_float64(p, dtype)) * ps.T[..., None]
                 + np.abs(to_float64(s, dtype)) * ss.T[..., None])
    magnitude[60:] = np.abs(to_float64(s, dtype))[60:]
    if fp8:
        magnitude = np.minimum(magnitude / 0.02, 448.0)
        spacing = np.exp2(np.floor(np.log2(np.maximum(magnitude, 2.0**-6))) - 3)
        assert ((got - want).abs().numpy() <= spacing).all()
    else:
        error = (got - want).abs().numpy() / ulp(dtype, np.maximum(magnitude, want.abs().numpy()))
        assert error.max() <= OUTPUT_BOUND[dtype]
    lse_want = cpu_lse.double().numpy()
    lse_error = np.abs(optimized_lse.cpu().double().numpy() - lse_want) / ulp(
        "f32", np.maximum(np.abs(lse_want), 1.0))
    assert lse_error.max() <= LSE_BOUND
    # vllm_ops on CUDA tensors runs the optimized kernel.
    again = torch.empty_like(optimized)
    vllm_ops.merge_attn_states(again, p_t, lp_t, s_t, ls_t, None, 60, scale)
    torch.cuda.synchronize()
    assert torch.equal(again.view(torch.uint8), optimized.view(torch.uint8))


@pytest.mark.cuda
@pytest.mark.parametrize("split", (0, 13, 41))
def test_lse_merge_is_exact_cuda(split):
    torch = _torch()
    q, k, v = attention_problem()
    p, lp, s, ls = split_parts(q, k, v, split, "bf16", -np.inf)  # FlashAttention 3's empty set
    p_t = torch.from_numpy(p).view(torch.bfloat16).cuda()
    s_t = torch.from_numpy(s).view(torch.bfloat16).cuda()
    out, out_lse = merge_module.merge(p_t, torch.from_numpy(lp).cuda(), s_t,
                                      torch.from_numpy(ls).cuda())
    torch.cuda.synchronize()
    merged = out.float().cpu().double().numpy()
    assert exact_merge_error(merged, out_lse.cpu().double().numpy(), "bf16", q, k, v, split) <= 1.0
