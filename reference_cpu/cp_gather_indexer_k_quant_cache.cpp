// CPU reference of cp_gather_indexer_k_quant_cache (vLLM csrc/cache_kernels.cu @9803b00:
// cp_gather_indexer_k_quant_cache_kernel): the specification in code. Sequence b fills output
// rows cu_seq_lens[b] .. cu_seq_lens[b + 1] - 1; its position p lives in block
// block_table[b, p / block_size] at slot o = p % block_size. The slot's codes (head_dim bytes of
// the block's code plane) go to dst_k's row, its G scales (4 G bytes of the block's scale plane)
// to dst_scale's row. A pure byte copy; rows past cu_seq_lens[-1] are never touched.
//
// The offsets are spelled out here on purpose, not shared with the kernels: a bug in one
// formula cannot hide in both.
#include "pagedkv/ops/cp_gather_indexer_k_quant_cache.h"

#include <cstdint>
#include <cstring>

namespace pagedkv {

void CpGatherIndexerKQuantCache::cpu(const Plan& plan, const Args& args) {
  const auto* kv_cache = static_cast<const std::uint8_t*>(args.kv_cache.data);  // [N, B, slot]
  auto* dst_k = static_cast<std::uint8_t*>(args.dst_k.data);                    // [rows, head_dim]
  auto* dst_scale = static_cast<std::uint8_t*>(args.dst_scale.data);            // [rows, 4 G]
  const auto* block_table = static_cast<const std::int32_t*>(args.block_table.data);  // [b, M]
  const auto* cu_seq_lens = static_cast<const std::int32_t*>(args.cu_seq_lens.data);  // [b + 1]
  const std::int64_t scale_bytes = kIndexerScaleBytes * plan.tiles_per_token;

  for (std::int64_t b = 0; b < plan.batch_size; ++b) {
    const std::int64_t first_row = cu_seq_lens[b];
    const std::int64_t length = cu_seq_lens[b + 1] - first_row;
    for (std::int64_t position = 0; position < length; ++position) {
      const std::int64_t block =
          block_table[b * plan.block_table_stride + position / plan.block_size];
      const std::int64_t offset_in_block = position % plan.block_size;
      const std::uint8_t* block_bytes = kv_cache + block * plan.block_stride;
      const std::int64_t row = first_row + position;
      // The code plane: slot o's head_dim bytes.
      std::memcpy(dst_k + row * plan.dst_k_stride, block_bytes + offset_in_block * plan.head_dim,
                  static_cast<std::size_t>(plan.head_dim));
      // The scale plane, after block_size × head_dim code bytes: slot o's G scales.
      std::memcpy(dst_scale + row * plan.dst_scale_stride,
                  block_bytes + plan.block_size * plan.head_dim + offset_in_block * scale_bytes,
                  static_cast<std::size_t>(scale_bytes));
    }
  }
}

}  // namespace pagedkv
