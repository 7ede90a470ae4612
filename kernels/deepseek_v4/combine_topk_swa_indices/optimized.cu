// combine_topk_swa_indices, optimized CUDA version. Per row the op reads at most topk i32
// entries and writes `width` i32 entries and one length; the window rows and the -1 tail are
// computed, not read. So the job is wide, coalesced stores and finding a row's request cheaply.
//
// Byte model: Tc × width × 4 written (combined_indices) + Tc × 4 written (combined_lens) +
// Tc × min(topk, Kw) × 4 read (the top-k entries a full-length query uses; fewer near the start
// of a sequence) + 12 bytes per request (query_start_loc, seq_lens, gather_lens). At a prefill
// chunk of 8192 tokens with topk 2048 and window 128 that is about 140 MiB; at small batches the
// op is one launch and its floor is the launch latency, the same as a copy kernel's.
//
// What this version does differently from the naive one (not yet measured on a GPU):
//   C1 one CTA of 128 threads per row, four adjacent columns per thread: a warp writes 512
//      contiguous bytes of a row instead of 32 rows `width` entries apart.
//   C2 16-byte stores: a thread's four columns leave with one store (when the rows are 16-byte
//      aligned and width % 4 == 0; else four 4-byte stores).
//   C3 the request by binary search over query_start_loc (log2(Rc) steps), done once per CTA
//      by thread 0 and broadcast through shared memory with the row's kl, sl and offsets.
//   C4 each column is written once: its value is chosen by its place (top-k part, window part,
//      tail) instead of a -1 pass that the later writes partly overwrite.
#include <cstdint>

#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/combine_topk_swa_indices.h"

namespace pagedkv::kernels::combine_optimized {

/// Threads per CTA (trick C1).
constexpr int kThreads = 128;

/// \brief What every column of a row needs, found once by thread 0 (trick C3).
struct RowContext {
  std::int64_t kl;            ///< top-k columns in use
  std::int64_t sl;            ///< window columns in use
  std::int64_t topk_base;     ///< M × b: the request's first workspace row
  std::int64_t compressed;    ///< min(N, seq_len / compress_ratio): valid top-k values
  std::int64_t window_first;  ///< the SWA-region row of the window's first position
  bool owned;                 ///< a request owns the row
};

/// \brief The largest b in [0, Rc) with query_start_loc[b] - base <= t (trick C3), or -1.
__device__ std::int64_t request_of(const std::int32_t* query_start_loc, std::int64_t Rc,
                                   std::int64_t base, std::int64_t t) {
  std::int64_t lo = 0, hi = Rc;  // the answer + 1 lies in [lo, hi]
  while (lo < hi) {
    const std::int64_t mid = (lo + hi) / 2;
    if (query_start_loc[mid] - base <= t) lo = mid + 1; else hi = mid;
  }
  return lo - 1;
}

/// \brief The value of column `c` of the row (trick C4).
__device__ __forceinline__ std::int32_t column_value(const RowContext& row,
                                                     const std::int32_t* topk_row,
                                                     std::int64_t topk_width, std::int64_t N,
                                                     std::int64_t M, std::int64_t c) {
  if (!row.owned) return -1;
  if (c < row.kl) {
    const std::int64_t v = c < topk_width ? __ldg(topk_row + c) : -1;
    return v >= 0 && v < row.compressed ? static_cast<std::int32_t>(row.topk_base + v) : -1;
  }
  if (c < row.kl + row.sl) {
    const std::int64_t swa_row = row.window_first + (c - row.kl);
    return swa_row >= 0 && N + swa_row < M
               ? static_cast<std::int32_t>(row.topk_base + N + swa_row)
               : -1;
  }
  return -1;
}

/// \brief One CTA per row `blockIdx.x` (trick C1).
/// \param topk_indices [Tc, Kw] i32, rows plan.topk_stride apart (not read when topk is 0).
/// \param query_start_loc [Rc + 1] i32.
/// \param seq_lens [Rc] i32.
/// \param gather_lens [Rc] i32.
/// \param combined [Tc, width] i32, rows plan.output_stride apart.
/// \param lens [Tc] i32.
/// \param plan sizes, strides and the integer arguments.
__global__ void __launch_bounds__(kThreads)
    combine_topk_swa_kernel(const std::int32_t* __restrict__ topk_indices,
                            const std::int32_t* __restrict__ query_start_loc,
                            const std::int32_t* __restrict__ seq_lens,
                            const std::int32_t* __restrict__ gather_lens,
                            std::int32_t* __restrict__ combined, std::int32_t* __restrict__ lens,
                            CombineTopkSwaIndicesPlan plan) {
  __shared__ RowContext shared_row;
  const std::int64_t t = blockIdx.x;
  if (threadIdx.x == 0) {
    RowContext row{0, 0, 0, 0, 0, false};
    const std::int64_t base = plan.num_requests > 0 ? query_start_loc[0] : 0;
    const std::int64_t b = request_of(query_start_loc, plan.num_requests, base, t);
    if (b >= 0 && t < query_start_loc[b + 1] - base) {
      const std::int64_t first = query_start_loc[b] - base;
      const std::int64_t q_len = query_start_loc[b + 1] - base - first;
      const std::int64_t L = seq_lens[b];
      const std::int64_t pos = L - q_len + (t - first);
      if (pos >= 0) {
        row.owned = true;
        row.kl = min((pos + 1) / plan.compress_ratio, plan.topk);
        row.sl = min(pos + 1, plan.window_size);
        row.topk_base = plan.M * b;
        row.compressed = min(plan.N, L / plan.compress_ratio);
        row.window_first = pos - row.sl + 1 - (L - gather_lens[b]);
      }
    }
    shared_row = row;
    lens[t] = static_cast<std::int32_t>(row.kl + row.sl);
  }
  __syncthreads();
  const RowContext row = shared_row;
  const std::int32_t* topk_row = topk_indices + t * plan.topk_stride;
  std::int32_t* out = combined + t * plan.output_stride;
  for (std::int64_t c = threadIdx.x * 4; c < plan.width; c += kThreads * 4) {
    if (plan.vector_rows) {  // C2: width % 4 == 0, so all four columns exist
      const int4 v = make_int4(column_value(row, topk_row, plan.topk_width, plan.N, plan.M, c),
                               column_value(row, topk_row, plan.topk_width, plan.N, plan.M, c + 1),
                               column_value(row, topk_row, plan.topk_width, plan.N, plan.M, c + 2),
                               column_value(row, topk_row, plan.topk_width, plan.N, plan.M, c + 3));
      *reinterpret_cast<int4*>(out + c) = v;
    } else {
      for (std::int64_t j = c; j < c + 4 && j < plan.width; ++j) {
        out[j] = column_value(row, topk_row, plan.topk_width, plan.N, plan.M, j);
      }
    }
  }
}

}  // namespace pagedkv::kernels::combine_optimized

namespace pagedkv {

void CombineTopkSwaIndices::optimized(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels::combine_optimized;
  if (plan.num_tokens == 0) return;  // nothing to write, and no empty grid
  combine_topk_swa_kernel<<<static_cast<unsigned>(plan.num_tokens), kThreads, 0, stream>>>(
      static_cast<const std::int32_t*>(args.topk_indices.data),
      static_cast<const std::int32_t*>(args.query_start_loc.data),
      static_cast<const std::int32_t*>(args.seq_lens.data),
      static_cast<const std::int32_t*>(args.gather_lens.data),
      static_cast<std::int32_t*>(args.combined_indices.data),
      static_cast<std::int32_t*>(args.combined_lens.data), plan);
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv
