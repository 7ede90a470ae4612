// The one contract of rms_norm, shared by the CPU reference, the naive and the optimized CUDA
// kernels (upstream: vLLM csrc/layernorm_kernels.cu, rms_norm). Every rule throws
// InvalidArgument naming the argument, the expected and the actual value, before any byte is
// written.
//
// Upstream checks out.is_contiguous(), input.stride(-1) == 1 (it copies the input otherwise),
// weight.is_contiguous(), a rank of 2 to 4, and (implicitly, through data_ptr<scalar_t>()) that
// weight has the dtype of input. This contract also
//   - accepts a 1-D input (one row) and makes zero rows a no-op;
//   - checks weight's size and every shape, rejects a non-finite or negative epsilon and rows
//     longer than 2^24 elements;
//   - rejects out sharing memory with input unless it IS input (same pointer, same contiguous
//     layout: in place, every element is read before it is written by the same thread), and out
//     sharing memory with weight (other row blocks would read the weight being overwritten).
#include "pagedkv/ops/rms_norm.h"

#include "norm_checks.h"
#include "pagedkv/checks.h"
#include "pagedkv/error.h"

namespace pagedkv {

RmsNorm::Plan RmsNorm::validate(const Args& args, Impl impl) {
  // 1. Every tensor lives where the implementation computes.
  const Device device = impl_device(impl);
  checks::device_is(args.out, "out", device);
  checks::device_is(args.input, "input", device);
  checks::device_is(args.weight, "weight", device);

  // 2. The rows: [..., hidden_size], 1 to 4 dimensions, f32/f16/bf16, the last one packed.
  const RowLayout rows = checks::norm_rows(args.input, "input");
  const int last = args.input.ndim - 1;
  const std::int64_t hidden_size = args.input.size(last);

  // 3. out like input, but packed; weight [hidden_size]; epsilon usable as a float.
  checks::packed_like(args.out, "out", args.input, "input");
  checks::norm_weight(args.weight, "weight", hidden_size, args.input.dtype);
  const float epsilon = checks::norm_epsilon(args.epsilon);

  // 4. Memory behind every tensor that has elements.
  checks::not_null(args.out, "out");
  checks::not_null(args.input, "input");
  checks::not_null(args.weight, "weight");

  // 5. out is input itself (in place) or memory of its own; never the weight.
  const bool in_place = args.out.data == args.input.data && args.input.is_contiguous();
  if (!in_place) checks::memory_apart(args.out, "out", args.input, "input");
  checks::memory_apart(args.out, "out", args.weight, "weight");

  Plan plan;
  plan.rows = rows;
  plan.hidden_size = hidden_size;
  plan.dtype = args.input.dtype;
  plan.epsilon = epsilon;
  return plan;
}

}  // namespace pagedkv
