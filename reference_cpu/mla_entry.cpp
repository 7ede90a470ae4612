// One MLA cache entry on the CPU, written once for both MLA writers' CPU references. The
// element conversion itself is cache_element.cpp's (bit copy, or fp8 of x / scale).
#include "mla_entry.h"

#include <cfloat>
#include <cmath>
#include <cstring>

#include "cache_element.h"
#include "numerics.h"
#include "pagedkv/ops/concat_and_cache_mla.h"

namespace pagedkv::cpu {

void store_mla_entry(std::uint8_t* entry, const std::uint8_t* kv_c_row,
                     const std::uint8_t* k_pe_row, std::int64_t kv_lora_rank,
                     std::int64_t rope_dim, DType activation_dtype, KvCacheDtype cache_kind,
                     float scale) {
  const std::int64_t activation_bytes = dtype_size(activation_dtype);
  const std::int64_t cache_bytes = is_fp8(cache_kind) ? 1 : activation_bytes;
  // Elements 0 .. kv_lora_rank-1 come from kv_c, the next rope_dim from k_pe.
  for (std::int64_t i = 0; i < kv_lora_rank; ++i) {
    store_cache_element(entry + i * cache_bytes, kv_c_row + i * activation_bytes,
                        activation_dtype, cache_kind, scale);
  }
  for (std::int64_t j = 0; j < rope_dim; ++j) {
    store_cache_element(entry + (kv_lora_rank + j) * cache_bytes, k_pe_row + j * activation_bytes,
                        activation_dtype, cache_kind, scale);
  }
}

float ds_mla_tile_scale(const std::uint16_t* tile) {
  float amax = 0.f;
  for (std::int64_t i = 0; i < kDsMlaTile; ++i) {
    // On the values, not on the bit patterns (upstream's fp16 quirk).
    amax = std::fmax(amax, std::fabs(numerics::bf16_bits_to_float(tile[i])));
  }
  // FLT_MIN floor: an all-zero tile gets a tiny positive scale instead of a 0 / 0.
  return std::fmax(amax / kDsMlaFp8Max, FLT_MIN);
}

void store_ds_mla_entry(std::uint8_t* entry, const std::uint8_t* kv_c_row,
                        const std::uint8_t* k_pe_row) {
  std::uint16_t latent[kDsMlaLatent];  // the bf16 bits; memcpy: rows need no alignment
  std::memcpy(latent, kv_c_row, sizeof latent);
  for (std::int64_t tile = 0; tile < kDsMlaLatent / kDsMlaTile; ++tile) {
    const std::uint16_t* values = latent + tile * kDsMlaTile;
    const float scale = ds_mla_tile_scale(values);
    for (std::int64_t i = 0; i < kDsMlaTile; ++i) {
      // A true fp32 division by the tile's scale, then E4M3 with saturation.
      entry[tile * kDsMlaTile + i] =
          numerics::float_to_fp8_e4m3(numerics::bf16_bits_to_float(values[i]) / scale);
    }
    std::memcpy(entry + kDsMlaScaleOffset + 4 * tile, &scale, sizeof scale);  // little-endian
  }
  std::memcpy(entry + kDsMlaRopeOffset, k_pe_row, kDsMlaRope * sizeof(std::uint16_t));
}

}  // namespace pagedkv::cpu
