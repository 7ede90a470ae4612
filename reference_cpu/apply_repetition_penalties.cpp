// CPU reference of apply_repetition_penalties (vLLM csrc/sampler.cu:
// apply_repetition_penalties_kernel): two plain loops over sequences and tokens.
//
// A masked logit l with the sequence's penalty p becomes l / p when l > 0, else l · p (zero
// and negative logits, and NaN, take the product). Both operands are read as float (exact),
// the division or product is one IEEE float32 operation and the result is rounded once to the
// logits' dtype: what the kernels do (c10::Half / c10::BFloat16 arithmetic upstream goes
// through float the same way), so the three implementations are bit-identical.
#include "pagedkv/ops/apply_repetition_penalties.h"

#include <cstdint>

#include "cache_element.h"
#include "norm_row.h"

namespace pagedkv {

void ApplyRepetitionPenalties::cpu(const Plan& plan, const Args& args) {
  auto* logits = static_cast<std::uint8_t*>(args.logits.data);  // [num_seqs, vocab_size]
  const auto* prompt_mask = static_cast<const std::uint8_t*>(args.prompt_mask.data);
  const auto* output_mask = static_cast<const std::uint8_t*>(args.output_mask.data);
  const auto* penalties = static_cast<const std::uint8_t*>(args.repetition_penalties.data);
  const std::int64_t element_bytes = dtype_size(plan.dtype);

  for (std::int64_t seq = 0; seq < plan.num_seqs; ++seq) {
    const float penalty = cpu::load_activation(penalties + seq * element_bytes, plan.dtype);
    for (std::int64_t token = 0; token < plan.vocab_size; ++token) {
      const std::int64_t at = seq * plan.vocab_size + token;
      if (prompt_mask[at] == 0 && output_mask[at] == 0) continue;  // not seen: unchanged
      std::uint8_t* element = logits + at * element_bytes;
      const float logit = cpu::load_activation(element, plan.dtype);
      const float penalized = logit > 0.0f ? logit / penalty : logit * penalty;
      cpu::store_activation(element, plan.dtype, penalized);
    }
  }
}

}  // namespace pagedkv
