#include "cache_write_checks.h"

#include <string>

#include "pagedkv/checks.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"
#include "pagedkv/index_checks.h"

namespace pagedkv::checks {

TokenRows token_rows(const TensorView& key, const TensorView& value) {
  ndim_is(key, "key", 3);
  ndim_is(value, "value", 3);
  dtype_in(key, "key", {DType::f32, DType::f16, DType::bf16});
  dtype_is(value, "value", key.dtype);
  size_is(value, "value", 1, key.size(1), "num_heads = key.size(1)");
  size_is(value, "value", 2, key.size(2), "head_size = key.size(2)");
  non_negative_layout(key, "key");
  non_negative_layout(value, "value");
  packed_from(key, "key", 1);
  packed_from(value, "value", 1);
  return {key.size(1), key.size(2)};
}

void cache_dtype_fits(const TensorView& cache, const char* name, KvCacheDtype cache_kind,
                      std::string_view kv_cache_dtype, DType activation_dtype) {
  if (is_fp8(cache_kind)) {
    PAGEDKV_CHECK(is_byte_dtype(cache.dtype), name, ": kv_cache_dtype \"",
                  std::string(kv_cache_dtype),
                  "\" stores one byte per element, expected dtype u8, f8_e4m3 or f8_e5m2, got ",
                  dtype_name(cache.dtype));
  } else {
    PAGEDKV_CHECK(cache.dtype == activation_dtype, name, ": kv_cache_dtype \"",
                  std::string(kv_cache_dtype), "\" copies elements unchanged, expected dtype ",
                  dtype_name(activation_dtype), " (the dtype of key), got ",
                  dtype_name(cache.dtype));
  }
}

std::int64_t slot_mapping_tokens(const TensorView& slot_mapping, const TensorView& key,
                                 const TensorView& value) {
  ndim_is(slot_mapping, "slot_mapping", 1);
  dtype_is(slot_mapping, "slot_mapping", DType::i64);
  non_negative_layout(slot_mapping, "slot_mapping");
  PAGEDKV_CHECK(slot_mapping.is_contiguous(), "slot_mapping: expected a contiguous [num_tokens] ",
                "tensor, got ", slot_mapping.describe());
  const std::int64_t num_tokens = slot_mapping.size(0);
  // key and value may have more rows (CUDA-graph padding), never fewer.
  PAGEDKV_CHECK(num_tokens <= key.size(0), "slot_mapping.size(0) (num_tokens): expected at most ",
                key.size(0), " (key.size(0)), got ", num_tokens);
  PAGEDKV_CHECK(num_tokens <= value.size(0),
                "slot_mapping.size(0) (num_tokens): expected at most ", value.size(0),
                " (value.size(0)), got ", num_tokens);
  return num_tokens;
}

void slots_fit(const TensorView& slot_mapping, std::int64_t num_blocks, std::int64_t block_size) {
  if (slot_mapping.numel() == 0) return;  // zero tokens: nothing to read, nothing to launch
  // Deferred (a capture, pagedkv.vllm_ops, PAGEDKV_ERRORS=deferred): a check kernel on the
  // call's stream, whose fault the op's kernels read before writing (deferred_checks.h).
  const CheckScope* scope = CheckScope::current();
  if (scope != nullptr && scope->deferred && slot_mapping.device == Device::cuda) {
    enqueue_slot_check(*scope, slot_mapping.data, slot_mapping.numel(), num_blocks, block_size);
    return;
  }
  const IndexAt largest = max_index(slot_mapping);
  const std::int64_t num_slots = num_blocks * block_size;
  PAGEDKV_CHECK(largest.value < num_slots, "slot_mapping[", largest.position, "] = ",
                largest.value, ": expected a slot below num_blocks × block_size = ", num_blocks,
                " × ", block_size, " = ", num_slots, " (negative slots mark padding)");
}

}  // namespace pagedkv::checks
