/// \file
/// \brief Validation rules that the two indexer K cache ops share (indexer_k_quant_and_cache
/// and cp_gather_indexer_k_quant_cache): the head_dim the 128-element tiles allow and the
/// block-planar cache of codes and scales, each rule written, and worded, once.
#pragma once

#include <cstdint>

#include "pagedkv/tensor_view.h"

namespace pagedkv::checks {

/// \brief A head_dim the indexer cache holds: a positive multiple of 128 (one fp32 scale per
/// 128-element tile; upstream's kernels map 128 elements to one warp or one scale copy).
/// \param head_dim the elements per key.
/// \param name the argument it comes from, e.g. "k: head_dim = size(1)".
void indexer_head_dim(std::int64_t head_dim, const char* name);

/// \brief Bytes per slot of the indexer cache: head_dim codes plus one 4-byte scale per tile.
/// \param head_dim a multiple of 128.
/// \return head_dim + 4 × head_dim / 128 (132 for head_dim 128).
std::int64_t indexer_slot_bytes(std::int64_t head_dim);

/// \brief The indexer cache: 3-D `[num_blocks, block_size, indexer_slot_bytes(head_dim)]` of a
/// one-byte dtype (u8 or f8_e4m3), slots packed inside a block (the block holds all codes,
/// then all scales, so only the block stride may be free), blocks that do not overlap, and the
/// block base and stride multiples of 4 bytes (the scales are fp32 words).
/// \param kv_cache the cache.
/// \param name its argument name.
/// \param head_dim elements per key.
/// \param head_dim_source where head_dim comes from, for the message (e.g. "k.size(1)").
void indexer_cache(const TensorView& kv_cache, const char* name, std::int64_t head_dim,
                   const char* head_dim_source);

}  // namespace pagedkv::checks
