// CPU reference of compute_global_topk_indices_and_lens (vLLM
// vllm/models/deepseek_v4/common/ops/cache_utils.py @03dc564, with the bounds-hardened
// revision's rules @4fec5ad): the specification in code.
//
// Token t belongs to request r = token_to_req_indices[t]. Each non-negative entry l of its row
// is a local compressed-token index: it lives in the request's block l / block_size, at offset
// l % block_size, so its global slot is block_table[r, l / block_size] × block_size +
// l % block_size. The slots are written to the left of the output row in the order of their
// entries; the rest of the row is -1 and topk_lens[t] counts the slots. A masked token
// (is_valid_token false) gets a row of -1 and length 0. An entry whose request, table column,
// block id or slot breaks the contract (only possible when the checks were deferred) is -1 and
// not counted.
#include <cstdint>
#include <limits>

#include "pagedkv/ops/compute_global_topk_indices_and_lens.h"

namespace pagedkv {

void ComputeGlobalTopkIndicesAndLens::cpu(const Plan& plan, const Args& args) {
  const auto* topk = static_cast<const std::int32_t*>(args.topk_indices.data);  // [T, K]
  const auto* req = static_cast<const std::int32_t*>(args.token_to_req_indices.data);  // [>= T]
  const auto* table = static_cast<const std::int32_t*>(args.block_table.data);  // [R, width]
  const auto* valid = static_cast<const std::uint8_t*>(args.is_valid_token.data);  // [>= T]
  auto* global = static_cast<std::int32_t*>(args.global_topk_indices.data);  // [T, K]
  auto* lens = static_cast<std::int32_t*>(args.topk_lens.data);              // [T]
  const std::int64_t B = plan.block_size;

  for (std::int64_t t = 0; t < plan.num_tokens; ++t) {
    const std::int32_t* in = topk + t * plan.topk_stride;
    std::int32_t* out = global + t * plan.output_stride;
    const std::int64_t r = req[t];
    const bool request_ok = valid[t] != 0 && r >= 0 && r < plan.num_requests;
    std::int64_t count = 0;
    for (std::int64_t i = 0; i < plan.topk; ++i) {
      const std::int64_t local = in[i];
      if (!request_ok || local < 0 || local / B >= plan.table_width) continue;
      const std::int64_t block = table[r * plan.block_table_stride + local / B];
      const std::int64_t slot = block * B + local % B;
      if (block < 0 || slot > std::numeric_limits<std::int32_t>::max()) continue;
      out[count++] = static_cast<std::int32_t>(slot);  // packed to the left, order kept
    }
    lens[t] = static_cast<std::int32_t>(count);
    for (std::int64_t i = count; i < plan.topk; ++i) out[i] = -1;
  }
}

}  // namespace pagedkv
