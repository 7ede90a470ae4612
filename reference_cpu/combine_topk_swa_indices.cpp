// CPU reference of combine_topk_swa_indices (vLLM
// vllm/models/deepseek_v4/common/ops/cache_utils.py @03dc564, with the bounds-hardened rules of
// @4fec5ad): the specification in code.
//
// Request b owns the query tokens query_start_loc[b] - query_start_loc[0] .. (next) - 1 and the
// workspace rows M × b .. M × b + M - 1: its compressed tokens from row 0, its last
// gather_lens[b] positions from row N. A query at position pos may use kl = min((pos + 1) /
// compress_ratio, topk) compressed tokens and sl = min(pos + 1, window_size) window tokens
// (positions pos - sl + 1 .. pos). Its row holds those kl top-k entries as workspace rows, then
// the sl window rows, then -1; its length is kl + sl. A top-k entry that is no compressed token
// of the request (negative, or at least min(N, seq_len / compress_ratio)) is -1 but still
// counted (upstream's hardened rule); so is a window row outside the request's SWA region,
// which only a deferred call with bad gather_lens can produce. A row no request owns is all -1
// with length 0.
#include <algorithm>
#include <cstdint>

#include "pagedkv/ops/combine_topk_swa_indices.h"

namespace pagedkv {

void CombineTopkSwaIndices::cpu(const Plan& plan, const Args& args) {
  const auto* topk = static_cast<const std::int32_t*>(args.topk_indices.data);  // [Tc, Kw]
  const auto* qsl = static_cast<const std::int32_t*>(args.query_start_loc.data);  // [Rc + 1]
  const auto* seq_lens = static_cast<const std::int32_t*>(args.seq_lens.data);    // [Rc]
  const auto* gather_lens = static_cast<const std::int32_t*>(args.gather_lens.data);  // [Rc]
  auto* combined = static_cast<std::int32_t*>(args.combined_indices.data);  // [Tc, width]
  auto* lens = static_cast<std::int32_t*>(args.combined_lens.data);         // [Tc]
  const std::int64_t base = plan.num_requests > 0 ? qsl[0] : 0;

  for (std::int64_t t = 0; t < plan.num_tokens; ++t) {
    std::int32_t* row = combined + t * plan.output_stride;
    std::fill(row, row + plan.width, -1);
    lens[t] = 0;
    // The request: the last one whose first token is at or before t, if t is one of its tokens.
    std::int64_t b = -1;
    for (std::int64_t r = 0; r < plan.num_requests; ++r) {
      if (qsl[r] - base <= t) b = r;
    }
    if (b < 0 || t >= qsl[b + 1] - base) continue;  // no request owns this row
    const std::int64_t first = qsl[b] - base;
    const std::int64_t q_len = qsl[b + 1] - base - first;
    const std::int64_t L = seq_lens[b];
    const std::int64_t pos = L - q_len + (t - first);  // the query's position in its sequence
    if (pos < 0) continue;
    const std::int64_t kl = std::min((pos + 1) / plan.compress_ratio, plan.topk);
    const std::int64_t sl = std::min(pos + 1, plan.window_size);
    const std::int64_t gather_start = L - gather_lens[b];  // position held by row N
    const std::int64_t compressed = std::min(plan.N, L / plan.compress_ratio);
    for (std::int64_t o = 0; o < kl; ++o) {
      const std::int64_t v = o < plan.topk_width ? topk[t * plan.topk_stride + o] : -1;
      if (v >= 0 && v < compressed) row[o] = static_cast<std::int32_t>(plan.M * b + v);
    }
    for (std::int64_t i = 0; i < sl; ++i) {
      const std::int64_t swa_row = pos - sl + 1 + i - gather_start;  // inside the SWA region
      if (swa_row >= 0 && plan.N + swa_row < plan.M) {
        row[kl + i] = static_cast<std::int32_t>(plan.M * b + plan.N + swa_row);
      }
    }
    lens[t] = static_cast<std::int32_t>(kl + sl);
  }
}

}  // namespace pagedkv
