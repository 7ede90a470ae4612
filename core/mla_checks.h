/// \file
/// \brief Validation rules that the two MLA cache writers share (concat_and_cache_mla and
/// concat_and_cache_mla_rope_fused): the latent and RoPE rows, the `[num_blocks, block_size,
/// entry]` cache and the one-element fp8 scale, each rule written, and worded, once.
#pragma once

#include <cstdint>
#include <string_view>

#include "pagedkv/kv_cache_dtype.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv::checks {

/// \brief Longest cache entry (kv_lora_rank + rope_dim elements) the kernels index with int.
constexpr std::int64_t kMaxMlaEntryElements = std::int64_t{1} << 24;

/// \brief A row tensor of the MLA writers: 2-D, non-negative layout, elements packed (rows may
/// have any pitch).
/// \param rows kv_c or k_pe.
/// \param name its argument name.
void mla_rows(const TensorView& rows, const char* name);

/// \brief The MLA cache: 3-D `[num_blocks, block_size, entry]`, entry packed, entries of
/// `entry_elements` elements that do not overlap, the dtype the cache kind needs (the
/// activations' dtype for "auto", one byte for fp8).
/// \param kv_cache the cache.
/// \param name its argument name.
/// \param entry_elements kv_lora_rank + rope_dim.
/// \param cache_kind the parsed `kv_cache_dtype`.
/// \param kv_cache_dtype the string as given, for the message.
/// \param activation_dtype the dtype of kv_c and k_pe.
void mla_cache(const TensorView& kv_cache, const char* name, std::int64_t entry_elements,
               KvCacheDtype cache_kind, std::string_view kv_cache_dtype, DType activation_dtype);

/// \brief Entries of `entry_elements` (in the cache's elements) never overlap: stride(1) steps over
/// a whole entry, stride(0) over a whole block.
/// \param kv_cache the 3-D cache.
/// \param name its argument name.
/// \param entry_elements elements of one entry.
void mla_entries_distinct(const TensorView& kv_cache, const char* name,
                          std::int64_t entry_elements);

/// \brief A per-tensor fp8 scale: one f32 element, contiguous, on `device`, with memory.
/// \param scale the scale tensor.
/// \param name its argument name.
/// \param device where the implementation computes.
void one_f32_scale(const TensorView& scale, const char* name, Device device);

}  // namespace pagedkv::checks
