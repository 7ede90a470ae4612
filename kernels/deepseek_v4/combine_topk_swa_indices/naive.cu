// combine_topk_swa_indices, naive CUDA version: the CPU reference's loop in CUDA clothing.
// One thread per output row scans query_start_loc for its request, then writes the row's
// columns one by one: the top-k entries, the window rows, the -1 tail. Every access is 4 bytes
// and a warp's threads write rows `width` entries apart: uncoalesced.
#include <cstdint>

#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/combine_topk_swa_indices.h"

namespace pagedkv::kernels::combine_naive {

/// Threads per block.
constexpr int kThreadsPerBlock = 128;

/// \brief One thread per row `t < plan.num_tokens`.
/// \param topk_indices [Tc, Kw] i32, rows plan.topk_stride apart (not read when topk is 0).
/// \param query_start_loc [Rc + 1] i32.
/// \param seq_lens [Rc] i32.
/// \param gather_lens [Rc] i32.
/// \param combined [Tc, width] i32, rows plan.output_stride apart.
/// \param lens [Tc] i32.
/// \param plan sizes, strides and the integer arguments.
__global__ void combine_topk_swa_kernel(const std::int32_t* __restrict__ topk_indices,
                                        const std::int32_t* __restrict__ query_start_loc,
                                        const std::int32_t* __restrict__ seq_lens,
                                        const std::int32_t* __restrict__ gather_lens,
                                        std::int32_t* __restrict__ combined,
                                        std::int32_t* __restrict__ lens,
                                        CombineTopkSwaIndicesPlan plan) {
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= plan.num_tokens) return;
  std::int32_t* row = combined + t * plan.output_stride;
  for (std::int64_t c = 0; c < plan.width; ++c) row[c] = -1;
  lens[t] = 0;
  const std::int64_t base = plan.num_requests > 0 ? query_start_loc[0] : 0;
  std::int64_t b = -1;  // the last request whose first token is at or before t
  for (std::int64_t r = 0; r < plan.num_requests; ++r) {
    if (query_start_loc[r] - base <= t) b = r;
  }
  if (b < 0 || t >= query_start_loc[b + 1] - base) return;
  const std::int64_t first = query_start_loc[b] - base;
  const std::int64_t q_len = query_start_loc[b + 1] - base - first;
  const std::int64_t L = seq_lens[b];
  const std::int64_t pos = L - q_len + (t - first);
  if (pos < 0) return;
  const std::int64_t kl = min((pos + 1) / plan.compress_ratio, plan.topk);
  const std::int64_t sl = min(pos + 1, plan.window_size);
  const std::int64_t gather_start = L - gather_lens[b];
  const std::int64_t compressed = min(plan.N, L / plan.compress_ratio);
  for (std::int64_t o = 0; o < kl; ++o) {
    const std::int64_t v = o < plan.topk_width ? topk_indices[t * plan.topk_stride + o] : -1;
    if (v >= 0 && v < compressed) row[o] = static_cast<std::int32_t>(plan.M * b + v);
  }
  for (std::int64_t i = 0; i < sl; ++i) {
    const std::int64_t swa_row = pos - sl + 1 + i - gather_start;
    if (swa_row >= 0 && plan.N + swa_row < plan.M) {
      row[kl + i] = static_cast<std::int32_t>(plan.M * b + plan.N + swa_row);
    }
  }
  lens[t] = static_cast<std::int32_t>(kl + sl);
}

}  // namespace pagedkv::kernels::combine_naive

namespace pagedkv {

void CombineTopkSwaIndices::naive(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels::combine_naive;
  if (plan.num_tokens == 0) return;  // nothing to write, and no empty grid
  const auto blocks =
      static_cast<unsigned>((plan.num_tokens + kThreadsPerBlock - 1) / kThreadsPerBlock);
  combine_topk_swa_kernel<<<blocks, kThreadsPerBlock, 0, stream>>>(
      static_cast<const std::int32_t*>(args.topk_indices.data),
      static_cast<const std::int32_t*>(args.query_start_loc.data),
      static_cast<const std::int32_t*>(args.seq_lens.data),
      static_cast<const std::int32_t*>(args.gather_lens.data),
      static_cast<std::int32_t*>(args.combined_indices.data),
      static_cast<std::int32_t*>(args.combined_lens.data), plan);
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv
