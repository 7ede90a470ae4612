// The one contract of reshape_and_cache: every check the three implementations share, made
// before any byte is written. Upstream checks only the dtype dispatch (vLLM csrc/cache_kernels.cu @9803b00, reshape_and_cache); the rest below
// are the checks it forgets (chapter "Writing the cache", upstream quirks: slot dtype and range, "auto" reinterpreting the cache,
// head_size % x, zero tokens).
#include "pagedkv/ops/reshape_and_cache.h"

#include <string>

#include "cache_write_checks.h"
#include "pagedkv/checks.h"
#include "pagedkv/error.h"

namespace pagedkv {

namespace {

// A contiguous tensor is required for the caches: the kernels compute their addresses from the
// shape alone, as upstream does.
void contiguous_is_required(const TensorView& tensor, const char* name, const char* layout) {
  PAGEDKV_CHECK(tensor.is_contiguous(), name, ": expected a contiguous ", layout, ", got ",
                tensor.describe());
}

}  // namespace

ReshapeAndCache::Plan ReshapeAndCache::validate(const Args& args, Impl impl) {
  const TensorView& key = args.key;
  const TensorView& value = args.value;
  const TensorView& key_cache = args.key_cache;
  const TensorView& value_cache = args.value_cache;
  const TensorView& slot_mapping = args.slot_mapping;
  const std::string_view kv_cache_dtype = args.kv_cache_dtype;
  const TensorView& k_scale = args.k_scale;
  const TensorView& v_scale = args.v_scale;
  // --- key, value: [T_pad, num_heads, head_size] rows of one activation dtype.
  const checks::TokenRows rows = checks::token_rows(key, value);
  const std::int64_t num_heads = rows.num_heads;
  const std::int64_t head_size = rows.head_size;

  // --- kv_cache_dtype: "bfloat16" / "float16" also require key of that dtype.
  const KvCacheDtype cache_kind = parse_kv_cache_dtype(kv_cache_dtype, key.dtype);

  // --- key_cache [num_blocks, num_heads, head_size / x, block_size, x] and
  // value_cache [num_blocks, num_heads, head_size, block_size], both contiguous.
  checks::ndim_is(key_cache, "key_cache", 5);
  checks::ndim_is(value_cache, "value_cache", 4);
  checks::cache_dtype_fits(key_cache, "key_cache", cache_kind, kv_cache_dtype, key.dtype);
  checks::dtype_is(value_cache, "value_cache", key_cache.dtype);
  contiguous_is_required(key_cache, "key_cache",
                         "[num_blocks, num_heads, head_size / x, block_size, x] cache");
  contiguous_is_required(value_cache, "value_cache",
                         "[num_blocks, num_heads, head_size, block_size] cache");

  // One x-chunk of the key cache is 16 bytes: x = 8 for 16-bit elements, 4 for f32, 16 for fp8.
  const std::int64_t x = key_cache.size(4);
  const std::int64_t expected_x = 16 / key_cache.element_size();
  PAGEDKV_CHECK(x == expected_x, "key_cache.size(4) (x): expected ", expected_x,
                " (16 bytes / ", key_cache.element_size(), "-byte ", dtype_name(key_cache.dtype),
                " elements), got ", x, " (shape ", key_cache.shape_string(), ")");
  // Upstream leaves the last head_size % x elements of every head unwritten; we reject.
  PAGEDKV_CHECK(head_size % x == 0, "key.size(2) (head_size): expected a multiple of x = ", x,
                " (key_cache.size(4)), got ", head_size);

  const std::int64_t num_blocks = key_cache.size(0);
  const std::int64_t block_size = key_cache.size(3);
  checks::size_is(key_cache, "key_cache", 1, num_heads, "num_heads = key.size(1)");
  checks::size_is(key_cache, "key_cache", 2, head_size / x, "head_size / x = key.size(2) / x");
  checks::size_is(value_cache, "value_cache", 0, num_blocks, "num_blocks = key_cache.size(0)");
  checks::size_is(value_cache, "value_cache", 1, num_heads, "num_heads = key.size(1)");
  checks::size_is(value_cache, "value_cache", 2, head_size, "head_size = key.size(2)");
  checks::size_is(value_cache, "value_cache", 3, block_size, "block_size = key_cache.size(3)");

  // --- slot_mapping [T] i64, no more tokens than key and value have rows.
  const std::int64_t num_tokens = checks::slot_mapping_tokens(slot_mapping, key, value);

  // --- scales: read (element 0) only for fp8 caches; for "auto" any tensor is accepted.
  const bool fp8 = is_fp8(cache_kind);
  if (fp8) {
    checks::dtype_is(k_scale, "k_scale", DType::f32);
    checks::dtype_is(v_scale, "v_scale", DType::f32);
    PAGEDKV_CHECK(k_scale.numel() == 1, "k_scale: expected 1 element (a per-tensor scale), got ",
                  k_scale.numel(), " (shape ", k_scale.shape_string(), ")");
    PAGEDKV_CHECK(v_scale.numel() == 1, "v_scale: expected 1 element (a per-tensor scale), got ",
                  v_scale.numel(), " (shape ", v_scale.shape_string(), ")");
  }

  // --- devices: every tensor the implementation touches lives where it computes.
  const Device device = impl_device(impl);
  checks::device_is(key, "key", device);
  checks::device_is(value, "value", device);
  checks::device_is(key_cache, "key_cache", device);
  checks::device_is(value_cache, "value_cache", device);
  checks::device_is(slot_mapping, "slot_mapping", device);
  if (fp8) {
    checks::device_is(k_scale, "k_scale", device);
    checks::device_is(v_scale, "v_scale", device);
  }

  // --- null pointers of tensors that have elements.
  checks::not_null(key, "key");
  checks::not_null(value, "value");
  checks::not_null(key_cache, "key_cache");
  checks::not_null(value_cache, "value_cache");
  checks::not_null(slot_mapping, "slot_mapping");
  if (fp8) {
    checks::not_null(k_scale, "k_scale");
    checks::not_null(v_scale, "v_scale");
  }

  // --- every slot inside the cache (upstream writes out of bounds). Negative = padding.
  checks::slots_fit(slot_mapping, num_blocks, block_size);

  ReshapeAndCachePlan plan;
  plan.num_tokens = num_tokens;
  plan.num_heads = num_heads;
  plan.head_size = head_size;
  plan.block_size = block_size;
  plan.num_blocks = num_blocks;
  plan.x = x;
  plan.key_stride = key.stride(0);
  plan.value_stride = value.stride(0);
  plan.activation_dtype = key.dtype;
  plan.cache_kind = cache_kind;
  return plan;
}

}  // namespace pagedkv
