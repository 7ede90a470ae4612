/// \file
/// \brief Validation rules that every cache writer shares: the new tokens' key and value rows,
/// the cache dtype a `kv_cache_dtype` asks for, and slot_mapping.
///
/// reshape_and_cache and reshape_and_cache_flash (and the MLA writers to come) take the same
/// activations and the same slot_mapping; their contracts call these checks so that each rule is
/// written, and worded, once.
#pragma once

#include <cstdint>
#include <string_view>

#include "pagedkv/kv_cache_dtype.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv::checks {

/// \brief Sizes of the new tokens' rows.
struct TokenRows {
  std::int64_t num_heads = 0;  ///< key.size(1)
  std::int64_t head_size = 0;  ///< key.size(2)
};

/// \brief key and value are [T_pad, num_heads, head_size] rows of one activation dtype (f32, f16
/// or bf16); rows may have any pitch, heads and elements inside a row are packed.
/// \param key the new tokens' keys.
/// \param value the new tokens' values.
/// \return num_heads and head_size.
TokenRows token_rows(const TensorView& key, const TensorView& value);

/// \brief The cache dtype suits the cache kind: the activations' dtype for "auto" (upstream
/// reinterprets the cache without looking), one byte per element for fp8.
/// \param cache the key or value cache.
/// \param name its argument name.
/// \param cache_kind the parsed `kv_cache_dtype`.
/// \param kv_cache_dtype the string as given, for the message.
/// \param activation_dtype the dtype of key and value.
void cache_dtype_fits(const TensorView& cache, const char* name, KvCacheDtype cache_kind,
                      std::string_view kv_cache_dtype, DType activation_dtype);

/// \brief slot_mapping is a contiguous [num_tokens] i64 tensor (upstream reads int64 whatever the
/// dtype) with at most as many tokens as key and value have rows.
/// \param slot_mapping one slot per new token.
/// \param key the new tokens' keys.
/// \param value the new tokens' values.
/// \return num_tokens, slot_mapping.size(0).
std::int64_t slot_mapping_tokens(const TensorView& slot_mapping, const TensorView& key,
                                 const TensorView& value);

/// \brief Every slot is below num_blocks × block_size (upstream writes out of bounds); negative
/// slots mark padding. Reads slot_mapping: on the GPU one CUB reduction and a synchronization.
/// \param slot_mapping one slot per new token, already checked by slot_mapping_tokens().
/// \param num_blocks blocks in the cache.
/// \param block_size slots per block.
void slots_fit(const TensorView& slot_mapping, std::int64_t num_blocks, std::int64_t block_size);

}  // namespace pagedkv::checks
