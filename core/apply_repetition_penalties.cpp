// The one contract of apply_repetition_penalties, shared by the CPU reference, the naive and
// the optimized CUDA kernels (upstream: vLLM csrc/sampler.cu, apply_repetition_penalties_).
// Every rule throws InvalidArgument naming the argument, the expected and the actual value,
// before any byte is written.
//
// Upstream checks that the four tensors are contiguous; their shapes and dtypes it trusts
// (a mask of another shape is read out of bounds, penalties of another dtype are reinterpreted
// as the logits' dtype). This contract also checks every shape, the masks' dtype (bool), the
// penalties' length and dtype (the logits'), and that logits share memory with nothing it
// reads. Zero sequences is a no-op. The penalty values are applied as given, as upstream.
#include "pagedkv/ops/apply_repetition_penalties.h"

#include "norm_checks.h"
#include "pagedkv/checks.h"
#include "pagedkv/error.h"

namespace pagedkv {

namespace {

// A [num_seqs, vocab_size] bool mask, contiguous.
void check_mask(const TensorView& mask, const char* name, const TensorView& logits) {
  checks::ndim_is(mask, name, 2);
  checks::size_is(mask, name, 0, logits.size(0), "num_seqs, logits.size(0)");
  checks::size_is(mask, name, 1, logits.size(1), "vocab_size, logits.size(1)");
  checks::dtype_is(mask, name, DType::b8);
  PAGEDKV_CHECK(mask.is_contiguous(), name, ": expected a contiguous tensor, got ",
                mask.describe());
}

}  // namespace

ApplyRepetitionPenalties::Plan ApplyRepetitionPenalties::validate(const Args& args, Impl impl) {
  // 1. Every tensor lives where the implementation computes.
  const Device device = impl_device(impl);
  checks::device_is(args.logits, "logits", device);
  checks::device_is(args.prompt_mask, "prompt_mask", device);
  checks::device_is(args.output_mask, "output_mask", device);
  checks::device_is(args.repetition_penalties, "repetition_penalties", device);

  // 2. logits [num_seqs, vocab_size], f32/f16/bf16, contiguous.
  const TensorView& logits = args.logits;
  checks::ndim_is(logits, "logits", 2);
  checks::dtype_in(logits, "logits", {DType::f32, DType::f16, DType::bf16});
  checks::non_negative_layout(logits, "logits");
  PAGEDKV_CHECK(logits.is_contiguous(), "logits: expected a contiguous tensor, got ",
                logits.describe());

  // 3. The two masks: logits' shape, bool, contiguous.
  check_mask(args.prompt_mask, "prompt_mask", logits);
  check_mask(args.output_mask, "output_mask", logits);

  // 4. One penalty per sequence, in the dtype of logits (upstream reads it as that type).
  const TensorView& penalties = args.repetition_penalties;
  checks::ndim_is(penalties, "repetition_penalties", 1);
  checks::size_is(penalties, "repetition_penalties", 0, logits.size(0), "num_seqs, logits.size(0)");
  checks::dtype_is(penalties, "repetition_penalties", logits.dtype);
  PAGEDKV_CHECK(penalties.is_contiguous(),
                "repetition_penalties: expected a contiguous tensor, got ", penalties.describe());

  // 5. Memory behind every tensor, and logits (written) apart from what is read.
  checks::not_null(logits, "logits");
  checks::not_null(args.prompt_mask, "prompt_mask");
  checks::not_null(args.output_mask, "output_mask");
  checks::not_null(penalties, "repetition_penalties");
  checks::memory_apart(logits, "logits", args.prompt_mask, "prompt_mask");
  checks::memory_apart(logits, "logits", args.output_mask, "output_mask");
  checks::memory_apart(logits, "logits", penalties, "repetition_penalties");

  Plan plan;
  plan.num_seqs = logits.size(0);
  plan.vocab_size = logits.size(1);
  plan.dtype = logits.dtype;
  return plan;
}

}  // namespace pagedkv
