/// \file
/// \brief Reading the MLA cache back on the CPU, shared by the CPU references of the gather ops
/// (gather_and_maybe_dequant_cache, cp_gather_and_upconvert_fp8_kv_cache): where a sequence's
/// token lives (the block lookup), and one entry decoded into one workspace row.
#pragma once

#include <cstdint>

#include "pagedkv/dtype.h"
#include "pagedkv/kv_cache_dtype.h"

namespace pagedkv::cpu {

/// \brief The paged cache as the readers see it: position p of sequence b lives in block
/// `block_table[b, p / block_size]`, slot `p % block_size` of it.
struct CacheLookup {
  const std::uint8_t* cache = nullptr;        ///< src_cache's first byte
  std::int64_t element_bytes = 1;             ///< bytes of one cache element
  std::int64_t block_stride = 0;              ///< src_cache.stride(0), elements
  std::int64_t entry_stride = 0;              ///< src_cache.stride(1), elements
  std::int64_t block_size = 1;                ///< slots per block
  const std::int32_t* block_table = nullptr;  ///< [batch, max_blocks], rows table_stride apart
  std::int64_t table_stride = 0;              ///< block_table.stride(0)

  /// \brief The entry of position `position` of sequence `sequence`.
  /// \param sequence the sequence (row of block_table).
  /// \param position the token's position in the sequence's blocks.
  /// \return the entry's first byte.
  const std::uint8_t* entry(std::int64_t sequence, std::int64_t position) const {
    const std::int64_t block = block_table[sequence * table_stride + position / block_size];
    const std::int64_t slot = position % block_size;
    return cache + (block * block_stride + slot * entry_stride) * element_bytes;
  }
};

/// \brief One 576-element entry read into one workspace row: the bits copied for kAuto (the
/// cache holds the row's dtype), `float(fp8) × scale` rounded into `row_dtype` for fp8.
/// \param row the workspace row's first byte, [576] of row_dtype.
/// \param entry the entry's first byte.
/// \param row_dtype f32, f16 or bf16.
/// \param cache_kind how the cache stores an element.
/// \param scale the fp8 scale (ignored for kAuto).
void load_mla_entry(std::uint8_t* row, const std::uint8_t* entry, DType row_dtype,
                    KvCacheDtype cache_kind, float scale);

/// \brief One 656-byte fp8_ds_mla entry decoded into a bf16 row of 576: latent value i is
/// `bf16(float(fp8 byte i) × scale of tile i / 128)` (the four fp32 tile scales at bytes
/// 512-527), then the 64 bf16 RoPE values at bytes 528-655 copied bit for bit.
/// \param row the workspace row's first byte, [576] bf16.
/// \param entry the entry's first byte.
/// \param latent_format how the latent bytes read: kFp8E4m3 (what the writer stores), or
/// kFp8E5m2 for a cache tensor of dtype f8_e5m2 (cp_gather_and_upconvert_fp8_kv_cache).
void load_ds_mla_entry(std::uint8_t* row, const std::uint8_t* entry, KvCacheDtype latent_format);

}  // namespace pagedkv::cpu
