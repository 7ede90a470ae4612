// Reading the MLA cache back on the CPU, written once for both gather ops' CPU references. The
// element conversion is cache_element.cpp's dequantize_cache_element().
#include "mla_gather.h"

#include <cstring>

#include "cache_element.h"
#include "pagedkv/ops/concat_and_cache_mla.h"
#include "pagedkv/ops/gather_and_maybe_dequant_cache.h"

namespace pagedkv::cpu {

void load_mla_entry(std::uint8_t* row, const std::uint8_t* entry, DType row_dtype,
                    KvCacheDtype cache_kind, float scale) {
  const std::int64_t row_bytes = dtype_size(row_dtype);
  if (cache_kind == KvCacheDtype::kAuto) {  // the cache holds the row's dtype: copy the bits
    std::memcpy(row, entry, static_cast<std::size_t>(kMlaGatherRow * row_bytes));
    return;
  }
  for (std::int64_t i = 0; i < kMlaGatherRow; ++i) {
    dequantize_cache_element(row + i * row_bytes, row_dtype, entry[i], cache_kind, scale);
  }
}

void load_ds_mla_entry(std::uint8_t* row, const std::uint8_t* entry, KvCacheDtype latent_format) {
  for (std::int64_t i = 0; i < kDsMlaLatent; ++i) {
    float tile_scale;  // little-endian fp32 at bytes 512 + 4 × tile; memcpy: any alignment
    std::memcpy(&tile_scale, entry + kDsMlaScaleOffset + 4 * (i / kDsMlaTile), sizeof tile_scale);
    dequantize_cache_element(row + 2 * i, DType::bf16, entry[i], latent_format, tile_scale);
  }
  // The RoPE part is bf16 already: its 128 bytes land after the 512 latent values.
  std::memcpy(row + 2 * kDsMlaLatent, entry + kDsMlaRopeOffset, 2 * kDsMlaRope);
}

}  // namespace pagedkv::cpu
