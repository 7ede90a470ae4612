// The rules that DeepSeek V4's K-cache ops share. See deepseek_v4_checks.h.
#include "deepseek_v4_checks.h"

#include <cstdint>

#include "pagedkv/checks.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/quantize_and_insert_k_cache.h"

namespace pagedkv::checks {

void dsv4_block_size(std::int64_t block_size) {
  PAGEDKV_CHECK(block_size >= 1 && block_size <= kDsv4MaxBlockSize,
                "block_size: expected tokens per page in [1, ", kDsv4MaxBlockSize, "], got ",
                block_size);
}

Dsv4Pages dsv4_pages(const TensorView& k_cache, const char* name, std::int64_t block_size) {
  const std::int64_t page_bytes = block_size * kDsv4TokenBytes;
  PAGEDKV_CHECK(k_cache.ndim == 2 || k_cache.ndim == 3, name,
                ": expected [num_blocks, block_stride] or [num_blocks, block_size, ",
                kDsv4TokenBytes, "] bytes, got ", k_cache.describe());
  non_negative_layout(k_cache, name);
  PAGEDKV_CHECK(k_cache.dtype == DType::u8, name,
                ": the pages hold bytes (fp8 codes, bf16 bits and exponents), expected dtype u8, "
                "got ",
                dtype_name(k_cache.dtype));
  packed_from(k_cache, name, 1);
  if (k_cache.ndim == 3) {
    PAGEDKV_CHECK(k_cache.size(1) == block_size, name, ": size(1) = ", k_cache.size(1),
                  " must equal block_size = ", block_size, " (", k_cache.describe(), ")");
    PAGEDKV_CHECK(k_cache.size(2) == kDsv4TokenBytes, name, ": size(2) must be ", kDsv4TokenBytes,
                  " bytes per token (576 data + 8 scale), got ", k_cache.describe());
  } else {
    PAGEDKV_CHECK(k_cache.size(1) >= page_bytes, name, ": a page of block_size = ", block_size,
                  " tokens needs block_size × ", kDsv4TokenBytes, " = ", page_bytes,
                  " bytes, but size(1) = ", k_cache.size(1), " (", k_cache.describe(), ")");
  }
  PAGEDKV_CHECK(k_cache.size(0) <= 1 || k_cache.stride(0) >= page_bytes, name,
                ": pages overlap: stride(0) = ", k_cache.stride(0), " bytes, a page of ",
                block_size, " tokens is ", page_bytes, " bytes (", k_cache.describe(), ")");
  return {k_cache.size(0), k_cache.stride(0)};
}

void dsv4_not_fnuz(bool use_fnuz) {
  PAGEDKV_CHECK(!use_fnuz, "use_fnuz: expected False: the FNUZ fp8 format (ROCm gfx942) is not ",
                "implemented, pages hold OCP E4M3 codes");
}

}  // namespace pagedkv::checks
