// The one contract of the gated activations silu_and_mul, gelu_and_mul and gelu_tanh_and_mul,
// shared by the CPU reference, the naive and the optimized CUDA kernels (upstream: vLLM
// csrc/activation_kernels.cu, act_and_mul_kernel and its launcher). Every rule throws
// InvalidArgument naming the argument, the expected and the actual value, before any byte is
// written.
//
// Upstream checks nothing beyond the dtype dispatch: it takes d = input.size(-1) / 2 and
// trusts out to be [..., d] and both tensors to be contiguous. This contract rejects what
// upstream would silently get wrong: an odd last dimension (upstream drops the last element of
// up and misplaces the halves), an out of another shape or dtype, a last dimension that is not
// packed, out overlapping input. Zero rows is a no-op.
#include "pagedkv/act_and_mul.h"

#include "norm_checks.h"
#include "pagedkv/checks.h"
#include "pagedkv/error.h"

namespace pagedkv {

template <Activation kActivation>
typename ActAndMul<kActivation>::Plan ActAndMul<kActivation>::validate(const Args& args,
                                                                       Impl impl) {
  // 1. Every tensor lives where the implementation computes.
  const Device device = impl_device(impl);
  checks::device_is(args.out, "out", device);
  checks::device_is(args.input, "input", device);

  // 2. input [..., 2 d]: 1 to 4 dimensions, f32/f16/bf16, the last one packed and even.
  const TensorView& input = args.input;
  PAGEDKV_CHECK(input.ndim >= 1 && input.ndim <= 4, "input",
                ": expected 1 to 4 dimensions [..., 2 d], got ", input.ndim, " (shape ",
                input.shape_string(), ")");
  checks::dtype_in(input, "input", {DType::f32, DType::f16, DType::bf16});
  checks::non_negative_layout(input, "input");
  const int last = input.ndim - 1;
  const std::int64_t width = input.size(last);
  PAGEDKV_CHECK(width % 2 == 0, "input: expected an even last dimension 2 d (the gate half, ",
                "then the up half), got size(", last, ") = ", width, " (shape ",
                input.shape_string(), ")");
  PAGEDKV_CHECK(width / 2 <= (std::int64_t{1} << 30), "input: expected d = size(", last,
                ") / 2 <= 2^30 (row-internal indices are int), got ", width / 2);
  checks::packed_from(input, "input", last);
  // The leading dimensions, padded in front to three: where each row starts (norm_rows' rule,
  // minus its limits on the row length).
  std::int64_t sizes[3] = {1, 1, 1}, strides[3] = {0, 0, 0};
  for (int d = 0; d < last; ++d) {
    sizes[3 - last + d] = input.size(d);
    strides[3 - last + d] = input.stride(d);
  }

  // 3. out [..., d]: the leading shape of input, the dtype of input, contiguous.
  const TensorView& out = args.out;
  bool same_shape = out.ndim == input.ndim;
  for (int d = 0; same_shape && d < last; ++d) same_shape = out.size(d) == input.size(d);
  same_shape = same_shape && out.size(last) == width / 2;
  PAGEDKV_CHECK(same_shape, "out: expected the shape of input with the last dimension halved (",
                "input ", input.shape_string(), "), got ", out.shape_string());
  checks::dtype_is(out, "out", input.dtype);
  PAGEDKV_CHECK(out.is_contiguous(), "out: expected a contiguous tensor (row r at r × d), got ",
                out.describe());

  // 4. Memory behind both, and out apart from input (the op is not in place).
  checks::not_null(out, "out");
  checks::not_null(input, "input");
  checks::memory_apart(out, "out", input, "input");

  Plan plan;
  plan.rows.num_rows = sizes[0] * sizes[1] * sizes[2];
  plan.rows.size1 = sizes[1];
  plan.rows.size2 = sizes[2];
  plan.rows.stride0 = strides[0];
  plan.rows.stride1 = strides[1];
  plan.rows.stride2 = strides[2];
  plan.d = width / 2;
  plan.dtype = input.dtype;
  return plan;
}

template struct ActAndMul<Activation::silu>;
template struct ActAndMul<Activation::gelu>;
template struct ActAndMul<Activation::gelu_tanh>;

}  // namespace pagedkv
