// The one contract of reshape_and_cache_flash (vLLM csrc/cache_kernels.cu @9803b00: reshape_and_cache_flash), shared by the CPU
// reference, the naive and the optimized CUDA kernels. Every rule throws InvalidArgument naming
// the argument, the expected and the actual value, before any byte is written.
//
// Beyond what upstream checks (k/v scale shapes, equal cache stride(0), the kv_cache_dtype
// dispatch), this contract also rejects what upstream silently gets wrong (chapter "Writing the cache", upstream quirks):
//   - an int32 slot_mapping (upstream reads it through an int64 pointer: garbage slots);
//   - slots >= num_blocks * block_size (upstream writes out of bounds);
//   - value_cache with other strides than key_cache (upstream addresses it with key_cache's);
//   - an "auto" cache whose dtype differs from the activations' (upstream reinterprets the bits);
//   - cache strides under which two elements share memory, or one buffer passed as both caches
//     (the writes would race);
// and it makes zero tokens a no-op (upstream launches an empty grid, a launch error).
#include "pagedkv/ops/reshape_and_cache_flash.h"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "cache_write_checks.h"
#include "pagedkv/checks.h"
#include "pagedkv/error.h"

namespace pagedkv {

namespace {

// Longest token row (num_heads × head_size elements) the kernels index with 32-bit integers.
constexpr std::int64_t kMaxRowElements = std::int64_t{1} << 29;


// k_scale / v_scale: read only for fp8 caches, one float or one per head.
void check_scale(const TensorView& scale, const char* name, std::int64_t num_heads,
                 Device device) {
  checks::device_is(scale, name, device);
  checks::dtype_is(scale, name, DType::f32);
  PAGEDKV_CHECK(scale.numel() == 1 || scale.numel() == num_heads, name,
                ": expected 1 element (per-tensor scale) or num_heads = ", num_heads,
                " elements (per-head scale), got ", scale.numel(), " (shape ",
                scale.shape_string(), ")");
  PAGEDKV_CHECK(scale.is_contiguous(), name, ": expected a contiguous tensor, got ",
                scale.describe());
  checks::not_null(scale, name);
}

}  // namespace

ReshapeAndCacheFlash::Plan ReshapeAndCacheFlash::validate(const Args& args, Impl impl) {
  const TensorView& key = args.key;
  const TensorView& value = args.value;
  const TensorView& key_cache = args.key_cache;
  const TensorView& value_cache = args.value_cache;
  const TensorView& slot_mapping = args.slot_mapping;
  const std::string_view kv_cache_dtype = args.kv_cache_dtype;
  const TensorView& k_scale = args.k_scale;
  const TensorView& v_scale = args.v_scale;
  // 1. Every tensor the op touches lives where the implementation computes.
  const Device device = impl_device(impl);
  checks::device_is(key, "key", device);
  checks::device_is(value, "value", device);
  checks::device_is(key_cache, "key_cache", device);
  checks::device_is(value_cache, "value_cache", device);
  checks::device_is(slot_mapping, "slot_mapping", device);

  // 2. Ranks and sane layouts.
  checks::ndim_is(key_cache, "key_cache", 4);
  checks::ndim_is(value_cache, "value_cache", 4);
  checks::non_negative_layout(key_cache, "key_cache");
  checks::non_negative_layout(value_cache, "value_cache");

  // 3. Activations: [T_pad, num_heads, head_size], f32/f16/bf16, the two inner dims packed.
  const checks::TokenRows rows = checks::token_rows(key, value);
  const std::int64_t num_heads = rows.num_heads;
  const std::int64_t head_size = rows.head_size;
  PAGEDKV_CHECK(num_heads * head_size <= kMaxRowElements, "key: num_heads × head_size = ",
                num_heads * head_size, " elements per token, expected at most ", kMaxRowElements);

  // 4. The cache kind ("bfloat16" / "float16" also require that activation dtype).
  const KvCacheDtype cache_kind = parse_kv_cache_dtype(kv_cache_dtype, key.dtype);

  // 5. Caches: logical [num_blocks, block_size, num_heads, head_size], last dim packed, the value
  //    cache exactly like the key cache (the kernels address both with one set of strides).
  checks::size_is(key_cache, "key_cache", 2, num_heads, "num_heads, key.size(1)");
  checks::size_is(key_cache, "key_cache", 3, head_size, "head_size, key.size(2)");
  checks::packed_from(key_cache, "key_cache", 3);
  for (int d = 0; d < 4; ++d) {
    const bool same = value_cache.size(d) == key_cache.size(d) &&
                      value_cache.stride(d) == key_cache.stride(d);
    PAGEDKV_CHECK(same, "value_cache: expected the shape and strides of key_cache (",
                  key_cache.describe(), "), got ", value_cache.describe());
  }
  checks::cache_dtype_fits(key_cache, "key_cache", cache_kind, kv_cache_dtype, key.dtype);
  checks::dtype_is(value_cache, "value_cache", key_cache.dtype);
  PAGEDKV_CHECK(value_cache.data != key_cache.data || key_cache.numel() == 0,
                "value_cache: expected other memory than key_cache, got the same data pointer");
  PAGEDKV_CHECK(checks::elements_are_distinct(key_cache), "key_cache: strides must give every element its ",
                "own memory, but ", key_cache.describe(), " maps several elements to one address");

  // 6. slot_mapping: [T] contiguous int64 (upstream reads int64 whatever the dtype), one slot per
  //    token; key and value may have more rows (CUDA-graph padding), never fewer.
  const std::int64_t num_tokens = checks::slot_mapping_tokens(slot_mapping, key, value);

  // 7. Scales: read only by the fp8 kinds; for "auto" they may be anything, even empty or null.
  bool per_head_scale = false;
  if (is_fp8(cache_kind)) {
    check_scale(k_scale, "k_scale", num_heads, device);
    check_scale(v_scale, "v_scale", num_heads, device);
    bool same_shape = v_scale.ndim == k_scale.ndim;
    for (int d = 0; same_shape && d < k_scale.ndim; ++d) {
      same_shape = v_scale.size(d) == k_scale.size(d);
    }
    PAGEDKV_CHECK(same_shape, "v_scale: expected the shape of k_scale ", k_scale.shape_string(),
                  ", got ", v_scale.shape_string());
    per_head_scale = k_scale.numel() > 1;
  }

  // 8. Memory behind every tensor that has elements.
  checks::not_null(key, "key");
  checks::not_null(value, "value");
  checks::not_null(key_cache, "key_cache");
  checks::not_null(value_cache, "value_cache");
  checks::not_null(slot_mapping, "slot_mapping");

  ReshapeAndCacheFlashPlan plan;
  plan.num_tokens = num_tokens;
  plan.num_heads = num_heads;
  plan.head_size = head_size;
  plan.block_size = key_cache.size(1);
  plan.num_blocks = key_cache.size(0);
  plan.key_stride = key.stride(0);
  plan.value_stride = value.stride(0);
  plan.block_stride = key_cache.stride(0);
  plan.page_stride = key_cache.stride(1);
  plan.head_stride = key_cache.stride(2);
  plan.activation_dtype = key.dtype;
  plan.cache_kind = cache_kind;
  plan.per_head_scale = per_head_scale;

  // 9. Every slot inside the cache (negative slots are padding and skipped). This reads
  //    slot_mapping: on the GPU one CUB reduction and a synchronization. Zero tokens: nothing to
  //    read, and the implementations launch nothing.
  checks::slots_fit(slot_mapping, plan.num_blocks, plan.block_size);
  return plan;
}

}  // namespace pagedkv
