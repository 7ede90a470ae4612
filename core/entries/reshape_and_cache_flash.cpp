// Registry entry of reshape_and_cache_flash, and its workload points (W1).
//
// One point: the new tokens' keys and values are views into a fused qkv activation
// [T, 32 + 8 + 8, 128] bf16; the key and value caches are the two halves of one allocation
// [2, num_blocks, ...] (FlashAttention's layout), each with the logical shape
// [num_blocks, block_size, num_kv_heads, head_size]:
//   NHD: physical [num_blocks, block_size, heads, head_size], strides (bs·H·D, H·D, D, 1)
//   HND: physical [num_blocks, heads, block_size, head_size], strides (bs·H·D, D, bs·D, 1)
#include <memory>
#include <string>
#include <vector>

#include "cache_write_case.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/reshape_and_cache_flash.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

// The glue between CacheWriteCase (cache_write_case.h), which runs every cache write the same way,
// and reshape_and_cache_flash: the op's entry points, the W1 variants it runs (the layout, NHD
// or HND, comes first), the layout of its two caches and its library baseline.
struct ReshapeAndCacheFlashGlue {
  using Op = ReshapeAndCacheFlash;

  explicit ReshapeAndCacheFlashGlue(const WorkloadPoint& point)
      : hnd(point.variant.rfind("HND", 0) == 0) {
    PAGEDKV_CHECK(hnd || point.variant.rfind("NHD", 0) == 0,
                  "reshape_and_cache_flash W1 variant: expected \"NHD ...\" or \"HND ...\", got \"",
                  point.variant, "\"");
  }

  // [num_blocks, block_size, num_kv_heads, head_size] logical; strides pick NHD or HND.
  TensorView key_cache(const CacheWriteShape& shape, const Buffer& caches, Device device) const {
    const std::int64_t bs = shape.block_size, h = shape.num_kv_heads, d = shape.head_size;
    const DType dtype = is_fp8(shape.cache_kind) ? DType::u8 : shape.activation_dtype;
    if (hnd)
      return TensorView::strided(caches.data(), dtype, {shape.num_blocks, bs, h, d},
                                 {bs * h * d, d, bs * d, 1}, device);
    return TensorView::strided(caches.data(), dtype, {shape.num_blocks, bs, h, d},
                               {bs * h * d, h * d, d, 1}, device);
  }
  // The second half of the allocation, with the key cache's strides.
  TensorView value_cache(const CacheWriteShape& shape, const Buffer& caches, Device device) const {
    TensorView view = key_cache(shape, caches, device);
    view.data = caches.data() + shape.cache_bytes();
    return view;
  }

  std::vector<UnitScatter> library_scatters(const CacheWriteShape& shape, const TokenInputs& in,
                                            const Buffer& caches) const {
    const TensorView kc = key_cache(shape, caches, Device::cuda);
    const DType dtype = shape.activation_dtype;
    // One row = the head_size elements of one (token, head): 16-byte units, contiguous in both
    // the activation and the cache in either layout.
    UnitScatter key;
    key.rows = UnitScatter::Rows::slots;
    key.unit_bytes = 16;
    key.num_rows = shape.num_tokens * shape.num_kv_heads;
    key.row_units = stride_in_units(shape.head_size, dtype, 16);
    key.slot_mapping = static_cast<const std::int64_t*>(in.slot_mapping.data);
    key.num_heads = shape.num_kv_heads;
    key.block_size = shape.block_size;
    key.src_token_stride = stride_in_units(in.key.stride(0), dtype, 16);
    key.src_head_stride = stride_in_units(in.key.stride(1), dtype, 16);
    key.dst_block_stride = stride_in_units(kc.stride(0), dtype, 16);
    key.dst_page_stride = stride_in_units(kc.stride(1), dtype, 16);
    key.dst_head_stride = stride_in_units(kc.stride(2), dtype, 16);
    key.dst_unit_step = 1;
    UnitScatter value = key;
    key.src = in.key.data;
    key.dst = kc.data;
    value.src = in.value.data;
    value.dst = value_cache(shape, caches, Device::cuda).data;
    return {key, value};
  }

  bool hnd;  // HND layout (heads before slots in a block), else NHD
};

std::vector<WorkloadPoint> points(const std::string& workload, bool quick) {
  if (workload != "W1") return {};
  return cache_write_points({"NHD bf16", "HND bf16", "NHD fp8_e4m3", "HND fp8_e4m3"}, quick);
}

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<CacheWriteCase<ReshapeAndCacheFlashGlue>>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry ReshapeAndCacheFlash::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "cache writes";
  entry.role =
      "Stores each new token's key and value in its slot of the paged KV cache that "
      "FlashAttention / FlashInfer read (NHD or HND layout), as is or quantized to fp8.";
  entry.upstream =
      "vLLM csrc/cache_kernels.cu: reshape_and_cache_flash (reshape_and_cache_flash_kernel)";
  entry.cpu_source = "reference_cpu/reshape_and_cache_flash.cpp";
  entry.naive_source = "kernels/cache_write/reshape_and_cache_flash/naive.cu";
  entry.optimized_source = "kernels/cache_write/reshape_and_cache_flash/optimized.cu";
  entry.byte_model = cache_write_byte_model();
  entry.agreement_rule = cache_write_agreement();
  entry.workloads = {"W1"};
  entry.workload_notes = cache_write_workload_notes();
  entry.points = &points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
