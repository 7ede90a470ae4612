// CPU reference of cp_gather_cache (vLLM csrc/cache_kernels.cu @9803b00: cp_gather_cache):
// the specification in code.
//
// For each sequence b, its tokens p = 0, 1, ... are positions seq_starts[b] + p of the sequence;
// position `pos` is slot pos % block_size of block block_table[b, pos / block_size], and its
// entry is copied, byte for byte, into dst row cu_seq_lens[b] + p. Nothing else is written.
#include <cstdint>
#include <cstring>

#include "pagedkv/ops/cp_gather_cache.h"

namespace pagedkv {

void CpGatherCache::cpu(const Plan& plan, const Args& args) {
  // The op copies bytes: the cache and dst are addressed in bytes (the plan's strides are).
  const auto* cache = static_cast<const std::uint8_t*>(args.src_cache.data);  // [N, bs, entry]
  auto* dst = static_cast<std::uint8_t*>(args.dst.data);                       // [rows, entry]
  const auto* block_table = static_cast<const std::int32_t*>(args.block_table.data);  // [B, W]
  const auto* cu_seq_lens = static_cast<const std::int32_t*>(args.cu_seq_lens.data);  // [B + 1]
  const auto* seq_starts = static_cast<const std::int32_t*>(args.seq_starts.data);    // [B] or null

  for (std::int64_t b = 0; b < plan.batch_size; ++b) {
    const std::int64_t first_row = cu_seq_lens[b];
    const std::int64_t num_tokens = cu_seq_lens[b + 1] - cu_seq_lens[b];
    const std::int64_t start = plan.has_seq_starts ? seq_starts[b] : 0;
    const std::int32_t* blocks_of_b = block_table + b * plan.block_table_stride;
    for (std::int64_t p = 0; p < num_tokens; ++p) {
      const std::int64_t position = start + p;
      const std::int64_t block = blocks_of_b[position / plan.block_size];
      const std::int64_t slot = position % plan.block_size;
      const std::uint8_t* entry =
          cache + block * plan.cache_block_stride + slot * plan.cache_entry_stride;
      std::memcpy(dst + (first_row + p) * plan.dst_row_stride, entry,
                  static_cast<std::size_t>(plan.entry_bytes));
    }
  }
}

}  // namespace pagedkv
