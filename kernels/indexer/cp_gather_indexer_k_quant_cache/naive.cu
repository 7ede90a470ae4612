// cp_gather_indexer_k_quant_cache, naive CUDA version: the CPU reference's loop in CUDA
// clothing. One thread per output row below cu_seq_lens[-1]: it finds its sequence with a
// linear scan of cu_seq_lens, looks its block up in the block table and copies the slot's code
// bytes and scale bytes one byte at a time. Rows past cu_seq_lens[-1] get no thread (a
// deferred call, whose host never read cu_seq_lens, sizes the grid by the destinations' rows:
// the threads past cu_seq_lens[-1] return after reading it).
#include <cstdint>

#include "common/fault.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/cp_gather_indexer_k_quant_cache.h"

namespace pagedkv::kernels::indexer_gather_naive {

/// Threads per block.
constexpr int kThreadsPerBlock = 128;

/// \brief One thread per output row `row < plan.gathered_tokens`.
/// \param kv_cache [num_blocks, block_size, head_dim + 4 G] bytes, blocks plan.block_stride apart.
/// \param dst_k [rows, head_dim] bytes, rows plan.dst_k_stride apart.
/// \param dst_scale [rows, 4 G] bytes, rows plan.dst_scale_stride apart.
/// \param block_table [batch, max_blocks] i32, rows plan.block_table_stride apart.
/// \param cu_seq_lens [batch + 1] i32.
/// \param plan sizes and strides.
/// \param fault the device's fault record: set by a deferred check, the kernel writes nothing.
__global__ void cp_gather_indexer_k_quant_cache_kernel(const std::uint8_t* __restrict__ kv_cache,
                                                       std::uint8_t* __restrict__ dst_k,
                                                       std::uint8_t* __restrict__ dst_scale,
                                                       const std::int32_t* __restrict__ block_table,
                                                       const std::int32_t* __restrict__ cu_seq_lens,
                                                       CpGatherIndexerKQuantCachePlan plan,
                                                       const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred check rejected the call
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= plan.gathered_tokens) return;
  if (plan.gathered_on_device && row >= cu_seq_lens[plan.batch_size]) return;
  std::int64_t b = 0;  // the sequence whose rows cu_seq_lens[b] .. cu_seq_lens[b + 1] - 1 hold row
  while (cu_seq_lens[b + 1] <= row) ++b;
  const std::int64_t position = row - cu_seq_lens[b];
  const std::int64_t block = block_table[b * plan.block_table_stride + position / plan.block_size];
  const std::int64_t offset_in_block = position % plan.block_size;
  const std::uint8_t* block_bytes = kv_cache + block * plan.block_stride;
  const std::uint8_t* codes = block_bytes + offset_in_block * plan.head_dim;
  for (std::int64_t i = 0; i < plan.head_dim; ++i) dst_k[row * plan.dst_k_stride + i] = codes[i];
  const std::int64_t scale_bytes = 4 * plan.tiles_per_token;
  const std::uint8_t* scales =
      block_bytes + plan.block_size * plan.head_dim + offset_in_block * scale_bytes;
  for (std::int64_t i = 0; i < scale_bytes; ++i) {
    dst_scale[row * plan.dst_scale_stride + i] = scales[i];
  }
}

}  // namespace pagedkv::kernels::indexer_gather_naive

namespace pagedkv {

void CpGatherIndexerKQuantCache::naive(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels::indexer_gather_naive;
  if (plan.gathered_tokens == 0) return;  // nothing to gather, and no empty grid
  const auto blocks =
      static_cast<unsigned>((plan.gathered_tokens + kThreadsPerBlock - 1) / kThreadsPerBlock);
  cp_gather_indexer_k_quant_cache_kernel<<<blocks, kThreadsPerBlock, 0, stream>>>(
      static_cast<const std::uint8_t*>(args.kv_cache.data),
      static_cast<std::uint8_t*>(args.dst_k.data), static_cast<std::uint8_t*>(args.dst_scale.data),
      static_cast<const std::int32_t*>(args.block_table.data),
      static_cast<const std::int32_t*>(args.cu_seq_lens.data), plan, device_fault());
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv
