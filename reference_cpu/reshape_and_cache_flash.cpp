// CPU reference of reshape_and_cache_flash (vLLM csrc/cache_kernels.cu @9803b00: reshape_and_cache_flash_kernel): the specification in
// code. Token t goes to slot s = slot_mapping[t], i.e. block s / block_size, position
// s % block_size inside it; every head's row of head_size elements is stored there, in the key
// cache and in the value cache, converted as kv_cache_dtype says. Negative slots are padding.
//
// The cache is addressed with its own strides (block, page, head; the element stride is 1), so
// the one loop below writes the NHD layout, the HND layout and the joint K/V allocations alike.
// The offsets are spelled out here on purpose, not shared with the kernels: a bug in one
// formula cannot hide in both.
#include <cstdint>

#include "cache_element.h"
#include "pagedkv/ops/reshape_and_cache_flash.h"

namespace pagedkv {

void ReshapeAndCacheFlash::cpu(const Plan& plan, const Args& args) {
  const TensorView& key = args.key;
  const TensorView& value = args.value;
  const TensorView& key_cache = args.key_cache;
  const TensorView& value_cache = args.value_cache;
  const TensorView& slot_mapping = args.slot_mapping;
  const TensorView& k_scale = args.k_scale;
  const TensorView& v_scale = args.v_scale;

  const auto* key_bytes = static_cast<const std::uint8_t*>(key.data);      // [T_pad, H, D]
  const auto* value_bytes = static_cast<const std::uint8_t*>(value.data);  // [T_pad, H, D]
  auto* key_cache_bytes = static_cast<std::uint8_t*>(key_cache.data);      // [N, B, H, D] strided
  auto* value_cache_bytes = static_cast<std::uint8_t*>(value_cache.data);  // same strides
  const auto* slots = static_cast<const std::int64_t*>(slot_mapping.data);  // [T]
  const std::int64_t activation_bytes = dtype_size(plan.activation_dtype);
  const std::int64_t cache_bytes = key_cache.element_size();  // activation size or 1 (fp8)

  for (std::int64_t token = 0; token < plan.num_tokens; ++token) {
    const std::int64_t slot = slots[token];
    if (slot < 0) continue;  // padding token: nothing is written
    const std::int64_t block = slot / plan.block_size;
    const std::int64_t offset_in_block = slot % plan.block_size;

    for (std::int64_t head = 0; head < plan.num_heads; ++head) {
      // The scales are only read for fp8 caches ("auto" copies bits and may pass no scale).
      float key_scale = 1.f;
      float value_scale = 1.f;
      if (is_fp8(plan.cache_kind)) {
        const std::int64_t scale_index = plan.per_head_scale ? head : 0;
        key_scale = static_cast<const float*>(k_scale.data)[scale_index];
        value_scale = static_cast<const float*>(v_scale.data)[scale_index];
      }

      for (std::int64_t d = 0; d < plan.head_size; ++d) {
        // Source: row `token` (pitch key_stride), then the packed [num_heads, head_size] row.
        const std::int64_t key_element = token * plan.key_stride + head * plan.head_size + d;
        const std::int64_t value_element = token * plan.value_stride + head * plan.head_size + d;
        // Destination: the same formula for both caches (they share their strides).
        const std::int64_t cache_element = block * plan.block_stride +
                                           offset_in_block * plan.page_stride +
                                           head * plan.head_stride + d;

        cpu::store_cache_element(key_cache_bytes + cache_element * cache_bytes,
                                 key_bytes + key_element * activation_bytes, plan.activation_dtype,
                                 plan.cache_kind, key_scale);
        cpu::store_cache_element(value_cache_bytes + cache_element * cache_bytes,
                                 value_bytes + value_element * activation_bytes,
                                 plan.activation_dtype, plan.cache_kind, value_scale);
      }
    }
  }
}

}  // namespace pagedkv
