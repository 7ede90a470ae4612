// build_flashinfer_mixed_sparse_indices, naive CUDA version: the CPU reference's loops in CUDA
// clothing. One thread per token row: a decode row copies its SWA slots and copies or
// translates its compressed indices; a prefill row finds its position, looks each window
// position and each local index up in the block tables (sparse_index.cuh), one column at a
// time. Every access is 4 bytes, and a warp's threads touch rows W + P entries apart.
#include <cstdint>

#include "deepseek_v4/build_flashinfer_mixed_sparse_indices/pointers.cuh"
#include "deepseek_v4/sparse_index.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/build_flashinfer_mixed_sparse_indices.h"

namespace pagedkv::kernels::mixed_sparse_naive {

using mixed_sparse::Pointers;

/// Threads per block.
constexpr int kThreadsPerBlock = 128;

/// \brief Local index `l` of request `r` as a compressed slot, or -1 (the contract's rule).
__device__ std::int32_t compressed_slot(const Pointers& p,
                                        const BuildFlashinferMixedSparseIndicesPlan& plan,
                                        std::int64_t r, std::int64_t l) {
  if (r < 0 || r >= plan.num_requests || l >= p.seq_lens[r] / plan.compress_ratio) return -1;
  const sparse_index::TableRow row =
      sparse_index::table_row(p.ctable, plan.compressed_rows, plan.compressed_stride,
                              plan.compressed_width, plan.compressed_block_size, r);
  return sparse_index::global_slot(row, l);
}

/// \brief One thread per token row `u < Td + Tp`.
/// \param p the call's pointers.
/// \param plan sizes, strides and the integer arguments.
__global__ void mixed_sparse_kernel(Pointers p, BuildFlashinferMixedSparseIndicesPlan plan) {
  const std::int64_t u = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (u >= plan.num_decode + plan.num_prefill) return;
  const std::int64_t W = plan.window;
  const std::int64_t P = plan.compressed_columns;
  std::int32_t* row = p.out + u * plan.output_stride;
  if (u < plan.num_decode) {
    for (std::int64_t o = 0; o < W; ++o) row[o] = p.decode_swa[u * plan.decode_swa_stride + o];
    const bool valid = p.decode_valid == nullptr || p.decode_valid[u];
    std::int64_t count = 0;
    for (std::int64_t o = 0; o < P; ++o) {
      const std::int32_t v =
          o < plan.decode_topk ? p.decode_topk[u * plan.decode_topk_stride + o] : -1;
      if (!plan.decode_local) {
        row[W + o] = v;
      } else {
        row[W + o] = valid ? compressed_slot(p, plan, p.req[u], v) : -1;
        count += row[W + o] >= 0;
      }
    }
    std::int64_t compressed = 0;
    if (plan.decode_local) {
      compressed = count;
    } else if (plan.decode_topk > 0) {
      compressed = p.decode_lens != nullptr
                       ? min(static_cast<std::int64_t>(max(p.decode_lens[u], 0)), plan.decode_topk)
                       : plan.decode_topk;
    }
    p.lens[u] = static_cast<std::int32_t>(W + compressed);
    return;
  }
  for (std::int64_t o = 0; o < W + P; ++o) row[o] = -1;
  p.lens[u] = 0;
  const std::int64_t r = p.req[u];
  if (r < 0 || r >= plan.num_requests || u < p.qsl[r] || u >= p.qsl[r + 1]) return;
  const std::int64_t pos = p.seq_lens[r] - (p.qsl[r + 1] - p.qsl[r]) + (u - p.qsl[r]);
  if (pos < 0) return;
  const std::int64_t sl = min(pos + 1, W);
  const std::int64_t kl = min((pos + 1) / plan.compress_ratio, plan.topk);
  const sparse_index::TableRow swa_row = sparse_index::table_row(
      p.swa_table, plan.swa_rows, plan.swa_stride, plan.swa_width, plan.swa_block_size, r);
  for (std::int64_t o = 0; o < sl; ++o) row[o] = sparse_index::global_slot(swa_row, pos - sl + 1 + o);
  const std::int64_t pi = u - plan.num_decode;
  for (std::int64_t o = 0; o < kl; ++o) {
    const std::int64_t l =
        o < plan.prefill_topk ? p.prefill_topk[pi * plan.prefill_topk_stride + o] : -1;
    row[W + o] = l < 0 ? -1 : compressed_slot(p, plan, r, l);
  }
  p.lens[u] = static_cast<std::int32_t>(W + kl);
}

}  // namespace pagedkv::kernels::mixed_sparse_naive

namespace pagedkv {

void BuildFlashinferMixedSparseIndices::naive(const Plan& plan, const Args& args,
                                              cudaStream_t stream) {
  using namespace pagedkv::kernels::mixed_sparse_naive;
  const std::int64_t T = plan.num_decode + plan.num_prefill;
  if (T == 0) return;  // nothing to write, and no empty grid
  const Pointers p = kernels::mixed_sparse::pointers_of(plan, args);
  const auto blocks = static_cast<unsigned>((T + kThreadsPerBlock - 1) / kThreadsPerBlock);
  mixed_sparse_kernel<<<blocks, kThreadsPerBlock, 0, stream>>>(p, plan);
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv
