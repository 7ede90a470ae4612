// cp_gather_cache, naive CUDA version: the CPU reference's loops in CUDA clothing.
//
// One thread per (dst row, entry byte), flat index, grid-stride. The CPU loop walks sequences
// and knows the sequence of every row; a thread starts from its row instead, so it finds the
// sequence by a binary search of cu_seq_lens (cp_gather_cache.cuh), then its position, block
// and slot, and copies one byte. Bytes, because the op never looks at the values: one code
// path is bit-exact for every dtype and every entry width.
// Correct for every layout the contract accepts, and obvious. Not fast: one byte per access,
// a binary search, a block-table load and 64-bit divisions for every byte.
// A deferred call (its sequences checked on the device) sizes the grid by dst's rows, not by
// the rows gathered, which only the device knows: idle threads return after one load.
// Not yet measured on a GPU.
#include <algorithm>
#include <cstdint>

#include "cache_read/cp_gather_cache/cp_gather_cache.cuh"
#include "common/fault.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/cp_gather_cache.h"

namespace pagedkv::kernels::cp_gather_naive {

/// Threads per block: a common choice for simple element-wise kernels.
constexpr int kThreadsPerBlock = 256;

/// \brief One thread per (dst row, entry byte), grid-stride.
/// \param src_cache [num_blocks, block_size, entry] bytes with the plan's strides.
/// \param dst [num_tokens.., entry] bytes, rows plan.dst_row_stride apart.
/// \param block_table [batch_size, width] i32, rows plan.block_table_stride apart.
/// \param cu_seq_lens [batch_size + 1] i32.
/// \param seq_starts [batch_size] i32, or nullptr.
/// \param plan sizes and strides from CpGatherCache::validate().
/// \param fault the device's fault record: set by a deferred check, the kernel writes nothing.
__global__ void cp_gather_cache_kernel(const std::uint8_t* src_cache, std::uint8_t* dst,
                                       const std::int32_t* block_table,
                                       const std::int32_t* cu_seq_lens,
                                       const std::int32_t* seq_starts, CpGatherCachePlan plan,
                                       const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred check rejected the call
  const std::int64_t total = cp_gather::rows_to_write(plan, cu_seq_lens) * plan.entry_bytes;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < total; i += step) {
    const std::int64_t row = i / plan.entry_bytes;
    const std::int64_t byte = i % plan.entry_bytes;
    const std::int64_t b = cp_gather::sequence_of_row(cu_seq_lens, plan.batch_size, row);
    const std::int64_t entry =
        cp_gather::entry_offset(plan, block_table, cu_seq_lens, seq_starts, b, row);
    dst[row * plan.dst_row_stride + byte] = src_cache[entry + byte];
  }
}

/// \brief Blocks for `total` threads' worth of work (the loop is grid-stride).
/// \param total work items.
/// \return the grid size.
inline unsigned blocks_for(std::int64_t total) {
  const std::int64_t needed = (total + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return static_cast<unsigned>(std::min<std::int64_t>(needed, 1 << 30));
}

}  // namespace pagedkv::kernels::cp_gather_naive

namespace pagedkv {

void CpGatherCache::naive(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels;
  const std::int64_t total = plan.num_tokens * plan.entry_bytes;
  if (total == 0) return;  // no sequence, empty sequences or empty entries: nothing to do
  cp_gather_naive::cp_gather_cache_kernel<<<cp_gather_naive::blocks_for(total),
                                            cp_gather_naive::kThreadsPerBlock, 0, stream>>>(
      static_cast<const std::uint8_t*>(args.src_cache.data),
      static_cast<std::uint8_t*>(args.dst.data),
      static_cast<const std::int32_t*>(args.block_table.data),
      static_cast<const std::int32_t*>(args.cu_seq_lens.data),
      plan.has_seq_starts ? static_cast<const std::int32_t*>(args.seq_starts.data) : nullptr,
      plan, device_fault());
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv
