// Registry entry of reshape_and_cache (the legacy paged-attention cache), and its workload
// points (W1).
//
// One point: the new tokens' keys and values are views into a fused qkv activation
// [T, 32 + 8 + 8, 128] bf16; the key and value caches are the two halves of one allocation:
//   key_cache   [num_blocks, num_kv_heads, head_size / x, block_size, x], x × element = 16 bytes
//   value_cache [num_blocks, num_kv_heads, head_size, block_size]
// so a key lands as 16-byte chunks block_size chunks apart, and a value element by element,
// block_size elements apart (the transposed layout the v1/v2 attention kernels read).
#include <memory>
#include <string>
#include <vector>

#include "cache_write_case.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/reshape_and_cache.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

// The glue between CacheWriteCase (cache_write_case.h), which runs every cache write the same way,
// and reshape_and_cache: the op's entry points, the W1 variants it runs, the layout of its two
// caches and its library baseline.
struct ReshapeAndCacheGlue {
  using Op = ReshapeAndCache;

  explicit ReshapeAndCacheGlue(const WorkloadPoint& point) {
    PAGEDKV_CHECK(point.variant == "bf16" || point.variant == "fp8_e4m3",
                  "reshape_and_cache W1 variant: expected \"bf16\" or \"fp8_e4m3\", got \"",
                  point.variant, "\"");
  }

  // [num_blocks, num_kv_heads, head_size / x, block_size, x], contiguous.
  TensorView key_cache(const CacheWriteShape& shape, const Buffer& caches, Device device) const {
    const std::int64_t bs = shape.block_size, h = shape.num_kv_heads, d = shape.head_size;
    const std::int64_t x = 16 / shape.cache_element_size();
    return TensorView::contiguous(caches.data(), cache_dtype(shape),
                                  {shape.num_blocks, h, d / x, bs, x}, device);
  }
  // [num_blocks, num_kv_heads, head_size, block_size], contiguous, in the second half.
  TensorView value_cache(const CacheWriteShape& shape, const Buffer& caches, Device device) const {
    const std::int64_t bs = shape.block_size, h = shape.num_kv_heads, d = shape.head_size;
    return TensorView::contiguous(caches.data() + shape.cache_bytes(), cache_dtype(shape),
                                  {shape.num_blocks, h, d, bs}, device);
  }
  // fp8 caches are bytes, as vLLM allocates them.
  static DType cache_dtype(const CacheWriteShape& shape) {
    return is_fp8(shape.cache_kind) ? DType::u8 : shape.activation_dtype;
  }

  std::vector<UnitScatter> library_scatters(const CacheWriteShape& shape, const TokenInputs& in,
                                            const Buffer& caches) const {
    const DType dtype = shape.activation_dtype;
    const std::int64_t bs = shape.block_size, h = shape.num_kv_heads, d = shape.head_size;
    const std::int64_t x = 16 / shape.cache_element_size();
    // Key: a row is one (token, head); its units are the head_size / x chunks of 16 bytes, each
    // going to key_cache[block, head, chunk, offset, :], block_size units apart.
    UnitScatter key;
    key.rows = UnitScatter::Rows::slots;
    key.unit_bytes = 16;
    key.num_rows = shape.num_tokens * h;
    key.row_units = d / x;
    key.slot_mapping = static_cast<const std::int64_t*>(in.slot_mapping.data);
    key.num_heads = h;
    key.block_size = bs;
    key.src_token_stride = stride_in_units(in.key.stride(0), dtype, 16);
    key.src_head_stride = stride_in_units(in.key.stride(1), dtype, 16);
    key.dst_block_stride = h * (d / x) * bs;
    key.dst_page_stride = 1;
    key.dst_head_stride = (d / x) * bs;
    key.dst_unit_step = bs;
    key.src = in.key.data;
    key.dst = caches.data();
    // Value: the units are single elements, each going to value_cache[block, head, d, offset].
    UnitScatter value = key;
    value.unit_bytes = static_cast<int>(dtype_size(dtype));
    value.row_units = d;
    value.src_token_stride = in.value.stride(0);
    value.src_head_stride = in.value.stride(1);
    value.dst_block_stride = h * d * bs;
    value.dst_page_stride = 1;
    value.dst_head_stride = d * bs;
    value.dst_unit_step = bs;
    value.src = in.value.data;
    value.dst = caches.data() + shape.cache_bytes();
    return {key, value};
  }
};

std::vector<WorkloadPoint> points(const std::string& workload, bool quick) {
  if (workload != "W1") return {};
  return cache_write_points({"bf16", "fp8_e4m3"}, quick);
}

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<CacheWriteCase<ReshapeAndCacheGlue>>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry ReshapeAndCache::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "cache writes";
  entry.role =
      "Stores each new token's key and value in its slot of the legacy paged KV cache that "
      "vLLM's paged_attention v1/v2 kernels read (key in 16-byte chunks, value transposed), as "
      "is or quantized to fp8.";
  entry.upstream = "vLLM csrc/cache_kernels.cu: reshape_and_cache (reshape_and_cache_kernel)";
  entry.cpu_source = "reference_cpu/reshape_and_cache.cpp";
  entry.naive_source = "kernels/cache_write/reshape_and_cache/naive.cu";
  entry.optimized_source = "kernels/cache_write/reshape_and_cache/optimized.cu";
  entry.byte_model = cache_write_byte_model();
  entry.agreement_rule = cache_write_agreement();
  entry.workloads = {"W1"};
  entry.workload_notes = cache_write_workload_notes();
  entry.points = &points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
