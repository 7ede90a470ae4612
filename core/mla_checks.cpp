// Validation rules shared by the MLA cache writers. See mla_checks.h.
#include "mla_checks.h"

#include <string>

#include "cache_write_checks.h"
#include "pagedkv/checks.h"
#include "pagedkv/error.h"

namespace pagedkv::checks {

void mla_rows(const TensorView& rows, const char* name) {
  ndim_is(rows, name, 2);
  non_negative_layout(rows, name);
  packed_from(rows, name, 1);
}

void mla_entries_distinct(const TensorView& kv_cache, const char* name,
                          std::int64_t entry_elements) {
  const std::int64_t block_size = kv_cache.size(1);
  // Two slots of a block must not share an element, nor two blocks.
  PAGEDKV_CHECK(block_size <= 1 || kv_cache.stride(1) >= entry_elements, name,
                ": stride(1) must step over a whole entry of ", entry_elements,
                " elements, got ", kv_cache.describe());
  const std::int64_t block_span = (block_size - 1) * kv_cache.stride(1) + entry_elements;
  PAGEDKV_CHECK(kv_cache.size(0) <= 1 || block_size == 0 || kv_cache.stride(0) >= block_span,
                name, ": stride(0) must step over a whole block of ", block_span,
                " elements, got ", kv_cache.describe());
}

void mla_cache(const TensorView& kv_cache, const char* name, std::int64_t entry_elements,
               KvCacheDtype cache_kind, std::string_view kv_cache_dtype, DType activation_dtype) {
  ndim_is(kv_cache, name, 3);
  non_negative_layout(kv_cache, name);
  PAGEDKV_CHECK(kv_cache.size(2) == entry_elements, name,
                ": entry size, size(2), must be kv_lora_rank + rope_dim = ", entry_elements,
                ", got ", kv_cache.size(2), " (shape ", kv_cache.shape_string(), ")");
  packed_from(kv_cache, name, 2);
  cache_dtype_fits(kv_cache, name, cache_kind, kv_cache_dtype, activation_dtype);
  mla_entries_distinct(kv_cache, name, entry_elements);
}

void one_f32_scale(const TensorView& scale, const char* name, Device device) {
  device_is(scale, name, device);
  dtype_is(scale, name, DType::f32);
  PAGEDKV_CHECK(scale.numel() == 1, name, ": expected one element (a per-tensor scale), got ",
                scale.numel(), " (shape ", scale.shape_string(), ")");
  not_null(scale, name);
}

}  // namespace pagedkv::checks
