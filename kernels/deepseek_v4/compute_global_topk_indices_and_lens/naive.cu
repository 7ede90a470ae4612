// compute_global_topk_indices_and_lens, naive CUDA version: the CPU reference's loop in CUDA
// clothing. One thread per token walks its K entries in order, translates each local index
// through the request's block table row (sparse_index.cuh) and appends the slot to the left of
// its output row; then it fills the rest with -1 and writes the count. Every load and store is
// 4 bytes, and a warp's 32 threads read 32 rows K entries apart: uncoalesced.
#include <cstdint>

#include "deepseek_v4/sparse_index.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/compute_global_topk_indices_and_lens.h"

namespace pagedkv::kernels::global_topk_naive {

/// Threads per block.
constexpr int kThreadsPerBlock = 128;

/// \brief One thread per token `t < plan.num_tokens`.
/// \param topk_indices [T, K] i32, rows plan.topk_stride apart: local indices, < 0 empty.
/// \param token_to_req [>= T] i32: each token's request.
/// \param block_table [R, width] i32, rows plan.block_table_stride apart.
/// \param is_valid [>= T] bool: false for padding tokens.
/// \param global [T, K] i32, rows plan.output_stride apart: the slots, then -1.
/// \param lens [T] i32: slots per row.
/// \param plan sizes and strides.
__global__ void compute_global_topk_kernel(const std::int32_t* __restrict__ topk_indices,
                                           const std::int32_t* __restrict__ token_to_req,
                                           const std::int32_t* __restrict__ block_table,
                                           const bool* __restrict__ is_valid,
                                           std::int32_t* __restrict__ global,
                                           std::int32_t* __restrict__ lens,
                                           ComputeGlobalTopkIndicesAndLensPlan plan) {
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= plan.num_tokens) return;
  const sparse_index::TableRow row = sparse_index::table_row(
      block_table, is_valid[t] ? plan.num_requests : 0, plan.block_table_stride,
      plan.table_width, plan.block_size, token_to_req[t]);  // a masked token: no row at all
  const std::int32_t* in = topk_indices + t * plan.topk_stride;
  std::int32_t* out = global + t * plan.output_stride;
  std::int64_t count = 0;
  for (std::int64_t i = 0; i < plan.topk; ++i) {
    const std::int32_t slot = sparse_index::global_slot(row, in[i]);
    if (slot >= 0) out[count++] = slot;
  }
  lens[t] = static_cast<std::int32_t>(count);
  for (std::int64_t i = count; i < plan.topk; ++i) out[i] = -1;
}

}  // namespace pagedkv::kernels::global_topk_naive

namespace pagedkv {

void ComputeGlobalTopkIndicesAndLens::naive(const Plan& plan, const Args& args,
                                            cudaStream_t stream) {
  using namespace pagedkv::kernels::global_topk_naive;
  if (plan.num_tokens == 0) return;  // nothing to write, and no empty grid
  const auto blocks =
      static_cast<unsigned>((plan.num_tokens + kThreadsPerBlock - 1) / kThreadsPerBlock);
  compute_global_topk_kernel<<<blocks, kThreadsPerBlock, 0, stream>>>(
      static_cast<const std::int32_t*>(args.topk_indices.data),
      static_cast<const std::int32_t*>(args.token_to_req_indices.data),
      static_cast<const std::int32_t*>(args.block_table.data),
      static_cast<const bool*>(args.is_valid_token.data),
      static_cast<std::int32_t*>(args.global_topk_indices.data),
      static_cast<std::int32_t*>(args.topk_lens.data), plan);
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv
