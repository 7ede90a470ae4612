// The rules that the indexer K cache ops share. See indexer_checks.h.
#include "indexer_checks.h"

#include <cstdint>

#include "pagedkv/checks.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/indexer_k_quant_and_cache.h"

namespace pagedkv::checks {

void indexer_head_dim(std::int64_t head_dim, const char* name) {
  PAGEDKV_CHECK(head_dim > 0 && head_dim % kIndexerQuantBlock == 0, name, ": expected a positive ",
                "multiple of ", kIndexerQuantBlock, " (one scale per ", kIndexerQuantBlock,
                "-element tile), got ", head_dim);
}

std::int64_t indexer_slot_bytes(std::int64_t head_dim) {
  return head_dim + kIndexerScaleBytes * (head_dim / kIndexerQuantBlock);
}

void indexer_cache(const TensorView& kv_cache, const char* name, std::int64_t head_dim,
                   const char* head_dim_source) {
  ndim_is(kv_cache, name, 3);
  non_negative_layout(kv_cache, name);
  PAGEDKV_CHECK(kv_cache.dtype == DType::u8 || kv_cache.dtype == DType::f8_e4m3, name,
                ": the indexer cache stores bytes, expected dtype u8 or f8_e4m3, got ",
                dtype_name(kv_cache.dtype));
  const std::int64_t slot_bytes = indexer_slot_bytes(head_dim);
  PAGEDKV_CHECK(kv_cache.size(2) == slot_bytes, name, ": size(2) must be head_dim + 4 × head_dim",
                " / ", kIndexerQuantBlock, " = ", slot_bytes,
                " bytes per slot (head_dim = ", head_dim, ", ", head_dim_source, "), got ",
                kv_cache.size(2), " (shape ", kv_cache.shape_string(), ")");
  // Within a block the codes of all slots come first, then all scales: the kernels address the
  // block as one run of block_size × slot_bytes bytes, so dims 1 and 2 must be packed.
  packed_from(kv_cache, name, 1);
  const std::int64_t block_bytes = kv_cache.size(1) * slot_bytes;
  PAGEDKV_CHECK(kv_cache.size(0) <= 1 || kv_cache.stride(0) >= block_bytes, name,
                ": blocks overlap: stride(0) = ", kv_cache.stride(0), " bytes, one block is ",
                block_bytes, " bytes (", kv_cache.describe(), ")");
  PAGEDKV_CHECK(
      kv_cache.stride(0) % kIndexerScaleBytes == 0, name,
      ": the fp32 scales need 4-byte words: stride(0) must be a multiple of 4 bytes, got ",
      kv_cache.stride(0));
  PAGEDKV_CHECK(reinterpret_cast<std::uintptr_t>(kv_cache.data) % kIndexerScaleBytes == 0, name,
                ": the fp32 scales need 4-byte words: the data pointer must be 4-byte aligned");
}

}  // namespace pagedkv::checks
