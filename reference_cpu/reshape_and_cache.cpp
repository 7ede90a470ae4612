// CPU reference of reshape_and_cache: the specification (vLLM csrc/cache_kernels.cu @9803b00: reshape_and_cache_kernel) as plain loops.
//
// For every token with a slot s >= 0, block = s / block_size and offset = s % block_size, and for
// every head h and element d:
//   key_cache  [block, h, d / x, offset, d % x] = store(key  [token, h, d], k_scale)
//   value_cache[block, h, d,     offset]        = store(value[token, h, d], v_scale)
// where store() copies the bits ("auto") or encodes fp8(x / scale). Nothing else is touched.
#include "pagedkv/ops/reshape_and_cache.h"

#include <cstdint>

#include "cache_element.h"

namespace pagedkv {

void ReshapeAndCache::cpu(const Plan& plan, const Args& args) {
  const TensorView& key = args.key;
  const TensorView& value = args.value;
  const TensorView& key_cache = args.key_cache;
  const TensorView& value_cache = args.value_cache;
  const TensorView& slot_mapping = args.slot_mapping;
  const TensorView& k_scale = args.k_scale;
  const TensorView& v_scale = args.v_scale;

  // The scales are read only for fp8 caches ("auto" accepts any scale tensor, even an empty one).
  const bool fp8 = is_fp8(plan.cache_kind);
  const float key_scale = fp8 ? *static_cast<const float*>(k_scale.data) : 1.0f;
  const float value_scale = fp8 ? *static_cast<const float*>(v_scale.data) : 1.0f;

  const auto* slots = static_cast<const std::int64_t*>(slot_mapping.data);  // [num_tokens]
  // [T_pad, num_heads, head_size], rows key_stride / value_stride elements apart
  const auto* key_bytes = static_cast<const std::uint8_t*>(key.data);
  const auto* value_bytes = static_cast<const std::uint8_t*>(value.data);
  // [num_blocks, num_heads, head_size / x, block_size, x]
  auto* key_cache_bytes = static_cast<std::uint8_t*>(key_cache.data);
  // [num_blocks, num_heads, head_size, block_size]
  auto* value_cache_bytes = static_cast<std::uint8_t*>(value_cache.data);

  const std::int64_t activation_size = dtype_size(plan.activation_dtype);  // bytes per element
  const std::int64_t cache_element_size = key_cache.element_size();
  const std::int64_t num_heads = plan.num_heads;
  const std::int64_t head_size = plan.head_size;
  const std::int64_t block_size = plan.block_size;
  const std::int64_t x = plan.x;
  const std::int64_t chunks_per_head = head_size / x;  // key_cache.size(2)

  for (std::int64_t token = 0; token < plan.num_tokens; ++token) {
    const std::int64_t slot = slots[token];
    if (slot < 0) continue;  // padding token: nothing is written
    const std::int64_t block = slot / block_size;
    const std::int64_t offset = slot % block_size;

    for (std::int64_t head = 0; head < num_heads; ++head) {
      for (std::int64_t d = 0; d < head_size; ++d) {
        // Sources: a row per token (any pitch), heads and elements packed inside the row.
        const std::int64_t key_index = token * plan.key_stride + head * head_size + d;
        const std::int64_t value_index = token * plan.value_stride + head * head_size + d;
        // key_cache[block, head, d / x, offset, d % x]: the element's x-chunk sits next to the
        // same chunk of the block's other offsets.
        const std::int64_t key_cache_index =
            (((block * num_heads + head) * chunks_per_head + d / x) * block_size + offset) * x +
            d % x;
        // value_cache[block, head, d, offset]: transposed, one row of block_size per element d.
        const std::int64_t value_cache_index =
            ((block * num_heads + head) * head_size + d) * block_size + offset;

        cpu::store_cache_element(key_cache_bytes + key_cache_index * cache_element_size,
                                 key_bytes + key_index * activation_size, plan.activation_dtype,
                                 plan.cache_kind, key_scale);
        cpu::store_cache_element(value_cache_bytes + value_cache_index * cache_element_size,
                                 value_bytes + value_index * activation_size, plan.activation_dtype,
                                 plan.cache_kind, value_scale);
      }
    }
  }
}

}  // namespace pagedkv
