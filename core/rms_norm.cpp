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

  // 2. The rows [..., hidden_size] (1 to 4 dimensions, f32/f16/bf16, the last one packed),
  //    out packed like input, weight [hidden_size], epsilon usable as a float.
  const checks::NormOperands operands =
      checks::norm_operands(args.input, args.out, "out", args.weight, args.epsilon);

  // 3. Memory behind every tensor that has elements.
  checks::not_null(args.out, "out");
  checks::not_null(args.input, "input");
  checks::not_null(args.weight, "weight");

  // 4. out is input itself (in place) or memory of its own; never the weight.
  const bool in_place = args.out.data == args.input.data && args.input.is_contiguous();
  if (!in_place) checks::memory_apart(args.out, "out", args.input, "input");
  checks::memory_apart(args.out, "out", args.weight, "weight");

  Plan plan;
  plan.rows = operands.rows;
  plan.hidden_size = operands.hidden_size;
  plan.dtype = operands.dtype;
  plan.epsilon = operands.epsilon;
  return plan;
}

}  // namespace pagedkv
