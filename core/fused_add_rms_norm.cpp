// The one contract of fused_add_rms_norm, shared by the CPU reference, the naive and the
// optimized CUDA kernels (upstream: vLLM csrc/layernorm_kernels.cu, fused_add_rms_norm). Every
// rule throws InvalidArgument naming the argument, the expected and the actual value, before
// any byte is written.
//
// Upstream checks the dtypes of residual and weight against input, residual.is_contiguous()
// and weight.is_contiguous(); it addresses input rows with input.stride(-2) only. This contract
// also
//   - accepts 1 to 4 dimensions with any non-negative leading strides (as rms_norm), and makes
//     zero rows a no-op;
//   - checks every shape, rejects a non-finite or negative epsilon and rows longer than 2^24;
//   - rejects what would race, since both input and residual are overwritten: input strides
//     that map two rows onto the same memory, input and residual sharing memory (also the
//     exact alias: each element would receive two different results), and weight sharing
//     memory with either of them.
#include "pagedkv/ops/fused_add_rms_norm.h"

#include "norm_checks.h"
#include "pagedkv/checks.h"
#include "pagedkv/error.h"

namespace pagedkv {

FusedAddRmsNorm::Plan FusedAddRmsNorm::validate(const Args& args, Impl impl) {
  // 1. Every tensor lives where the implementation computes.
  const Device device = impl_device(impl);
  checks::device_is(args.input, "input", device);
  checks::device_is(args.residual, "residual", device);
  checks::device_is(args.weight, "weight", device);

  // 2. The rows [..., hidden_size] (1 to 4 dimensions, f32/f16/bf16, the last one packed),
  //    residual packed like input, weight [hidden_size], epsilon usable as a float.
  const checks::NormOperands operands =
      checks::norm_operands(args.input, args.residual, "residual", args.weight, args.epsilon);

  // 3. Memory behind every tensor that has elements.
  checks::not_null(args.input, "input");
  checks::not_null(args.residual, "residual");
  checks::not_null(args.weight, "weight");

  // 4. Written memory belongs to one element of one tensor.
  checks::rows_are_distinct(args.input, "input", operands.rows, operands.hidden_size);
  checks::memory_apart(args.residual, "residual", args.input, "input");
  checks::memory_apart(args.input, "input", args.weight, "weight");
  checks::memory_apart(args.residual, "residual", args.weight, "weight");

  Plan plan;
  plan.rows = operands.rows;
  plan.hidden_size = operands.hidden_size;
  plan.dtype = operands.dtype;
  plan.epsilon = operands.epsilon;
  return plan;
}

}  // namespace pagedkv
