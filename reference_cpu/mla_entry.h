/// \file
/// \brief One MLA cache entry on the CPU: the latent row and the RoPE row of a token,
/// concatenated and stored as the cache stores them. Shared by the CPU references of
/// concat_and_cache_mla and concat_and_cache_mla_rope_fused, so that the entry is written out
/// once.
#pragma once

#include <cstdint>

#include "pagedkv/dtype.h"
#include "pagedkv/kv_cache_dtype.h"

namespace pagedkv::cpu {

/// \brief Stores `[kv_c_row, k_pe_row]` as one entry of kv_lora_rank + rope_dim cache elements:
/// the activations' bits for kAuto, `fp8(float(x) / scale)` bytes for the fp8 kinds.
/// \param entry first byte of the entry.
/// \param kv_c_row the token's kv_lora_rank latent elements (packed).
/// \param k_pe_row the token's rope_dim RoPE elements (packed).
/// \param kv_lora_rank latent elements.
/// \param rope_dim RoPE elements.
/// \param activation_dtype f32, f16 or bf16.
/// \param cache_kind how the cache stores an element.
/// \param scale the fp8 scale (ignored for kAuto).
void store_mla_entry(std::uint8_t* entry, const std::uint8_t* kv_c_row,
                     const std::uint8_t* k_pe_row, std::int64_t kv_lora_rank,
                     std::int64_t rope_dim, DType activation_dtype, KvCacheDtype cache_kind,
                     float scale);

/// \brief The scale of one 128-element tile of the fp8_ds_mla entry: `max(amax / 448, FLT_MIN)`,
/// amax taken over the values (fmax: a NaN element is ignored, as on the GPU).
/// \param tile the tile's 128 bf16 values (bits).
/// \return the scale, as stored in the entry.
float ds_mla_tile_scale(const std::uint16_t* tile);

/// \brief Stores one 656-byte fp8_ds_mla entry: the 512 bf16 latent values as E4M3 in four tiles
/// of 128, each divided by its own scale (bytes 0-511), the four fp32 scales (bytes 512-527,
/// little-endian), then the 64 bf16 RoPE values copied bit for bit (bytes 528-655).
/// \param entry first byte of the entry.
/// \param kv_c_row the token's 512 bf16 latent values.
/// \param k_pe_row the token's 64 bf16 RoPE values.
void store_ds_mla_entry(std::uint8_t* entry, const std::uint8_t* kv_c_row,
                        const std::uint8_t* k_pe_row);

}  // namespace pagedkv::cpu
