/// \file
/// \brief Validation rules that DeepSeek V4's two K-cache ops share (quantize_and_insert_k_cache
/// and dequantize_and_gather_k_cache): the block size, the `fp8_ds_mla` page tensor and the
/// flags that name formats pagedkv does not implement, each rule written, and worded, once.
#pragma once

#include <cstdint>

#include "pagedkv/tensor_view.h"

namespace pagedkv::checks {

/// \brief The pages of a DeepSeek V4 K cache, as validation found them.
struct Dsv4Pages {
  std::int64_t num_blocks = 0;    ///< size(0)
  std::int64_t block_stride = 0;  ///< stride(0), bytes
};

/// \brief block_size is a positive number of tokens per page, at most kDsv4MaxBlockSize.
/// \param block_size the argument.
void dsv4_block_size(std::int64_t block_size);

/// \brief The largest block_size accepted: far above the 256 upstream's callers use, and
/// small enough that a page's byte count stays an exact int64 product.
constexpr std::int64_t kDsv4MaxBlockSize = 1 << 20;

/// \brief The cache is u8 pages of at least block_size × 584 bytes: either the 2-D
/// `[num_blocks, block_stride]` view (bytes packed, size(1) >= block_size × 584) or the 3-D
/// byte-count view `[num_blocks, block_size, 584]` (dims 1 and 2 packed); pages must not
/// overlap (stride(0) >= block_size × 584 when there are several).
/// \param k_cache the cache.
/// \param name its argument name.
/// \param block_size tokens per page, already checked.
/// \return num_blocks and the page stride.
Dsv4Pages dsv4_pages(const TensorView& k_cache, const char* name, std::int64_t block_size);

/// \brief use_fnuz is false: the FNUZ E4M3 variant (ROCm gfx942) is not implemented.
/// \param use_fnuz the argument.
void dsv4_not_fnuz(bool use_fnuz);

}  // namespace pagedkv::checks
