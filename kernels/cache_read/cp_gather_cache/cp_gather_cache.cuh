/// \file
/// \brief What the naive and the optimized cp_gather_cache kernels share: finding the sequence
/// that owns a dst row, and the address of the cache entry a row copies.
#pragma once

#include <cstdint>

#include "pagedkv/ops/cp_gather_cache.h"

namespace pagedkv::kernels::cp_gather {

/// \brief The dst rows the call writes: the plan's count, or, when the plan only bounds it (a
/// deferred call, whose host never read cu_seq_lens), cu_seq_lens[batch_size] read here, one
/// load that every thread of a warp shares. A rejected call has returned before this.
/// \param plan the validated plan.
/// \param cu_seq_lens [batch_size + 1] cumulative token counts.
/// \return the rows to write.
__device__ __forceinline__ std::int64_t rows_to_write(const CpGatherCachePlan& plan,
                                                      const std::int32_t* cu_seq_lens) {
  if (!plan.num_tokens_on_device) return plan.num_tokens;
  const std::int64_t total = cu_seq_lens[plan.batch_size];
  return total < plan.num_tokens ? total : plan.num_tokens;
}

/// \brief The sequence b whose rows contain `row`: cu_seq_lens[b] <= row < cu_seq_lens[b + 1].
///
/// A binary search for the last b with cu_seq_lens[b] <= row: empty sequences (equal
/// neighbouring counts) are stepped over, since their range holds no row. The contract
/// guarantees cu_seq_lens[0] == 0, no decrease, and row < cu_seq_lens[batch_size].
/// \param cu_seq_lens [batch_size + 1] cumulative token counts.
/// \param batch_size sequences, >= 1.
/// \param row a dst row, 0 <= row < cu_seq_lens[batch_size].
/// \return the sequence.
__device__ __forceinline__ std::int64_t sequence_of_row(const std::int32_t* cu_seq_lens,
                                                        std::int64_t batch_size,
                                                        std::int64_t row) {
  std::int64_t low = 0;            // cu_seq_lens[low] <= row always
  std::int64_t high = batch_size;  // cu_seq_lens[high] > row always
  while (high - low > 1) {
    const std::int64_t middle = (low + high) / 2;
    if (cu_seq_lens[middle] <= row) {
      low = middle;
    } else {
      high = middle;
    }
  }
  return low;
}

/// \brief Byte offset in src_cache of the entry that dst row `row` of sequence `b` copies.
/// \param plan the validated plan.
/// \param block_table [batch_size, width] i32, rows plan.block_table_stride apart.
/// \param cu_seq_lens [batch_size + 1].
/// \param seq_starts [batch_size] or nullptr (all starts 0).
/// \param b the sequence owning `row`.
/// \param row the dst row.
/// \return bytes from src_cache's first element to the entry.
__device__ __forceinline__ std::int64_t entry_offset(const CpGatherCachePlan& plan,
                                                     const std::int32_t* block_table,
                                                     const std::int32_t* cu_seq_lens,
                                                     const std::int32_t* seq_starts,
                                                     std::int64_t b, std::int64_t row) {
  const std::int64_t start = seq_starts != nullptr ? seq_starts[b] : 0;
  const std::int64_t position = start + (row - cu_seq_lens[b]);  // inside sequence b
  const std::int64_t block = block_table[b * plan.block_table_stride + position / plan.block_size];
  return block * plan.cache_block_stride + (position % plan.block_size) * plan.cache_entry_stride;
}

}  // namespace pagedkv::kernels::cp_gather
