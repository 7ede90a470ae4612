// reshape_and_cache_flash, naive CUDA version: the CPU reference's loops in CUDA clothing.
//
// One thread per (token, head, element): the three nested loops of the CPU reference become one
// flat index, and each thread does what one innermost iteration does: read its slot, skip
// padding, convert one key element and one value element, store both at
//   block * block_stride + offset_in_block * page_stride + head * head_stride + d.
// Correct for every layout the contract accepts, and obvious. Not fast: one element per access,
// three 64-bit divisions and a slot load per thread, and a scale load per thread for fp8.
// Measured (H100, W1, 65536 tokens in random slots, NHD; % of a device copy of the same bytes):
// bf16 cache 26.8 %, fp8_e4m3 cache 21.4 %.
// The full story: chapter "Writing the cache", page "reshape_and_cache_flash".
#include "pagedkv/ops/reshape_and_cache_flash.h"

#include <algorithm>
#include <cstdint>

#include "common/convert.cuh"
#include "common/dispatch.cuh"
#include "common/fault.cuh"
#include "pagedkv/cuda_runtime.h"

namespace pagedkv::kernels::flash_naive {

/// Threads per block: a common choice for simple element-wise kernels.
constexpr int kThreadsPerBlock = 256;

/// \brief One thread per (token, head, element) of the new tokens, grid-stride.
/// \tparam Activation float, __half or __nv_bfloat16 (key/value elements).
/// \tparam kKind how the cache stores an element.
/// \param key [T_pad, num_heads, head_size], rows plan.key_stride apart.
/// \param value [T_pad, num_heads, head_size], rows plan.value_stride apart.
/// \param key_cache [num_blocks, block_size, num_heads, head_size] with the plan's strides.
/// \param value_cache same strides as key_cache.
/// \param slot_mapping [num_tokens]; negative = padding.
/// \param k_scale [1] or [num_heads]; read only for fp8.
/// \param v_scale [1] or [num_heads]; read only for fp8.
/// \param plan sizes and strides from validate_reshape_and_cache_flash().
/// \param fault the device's fault record: set by a deferred index check, it makes the kernel
/// return before writing anything.
template <typename Activation, KvCacheDtype kKind>
__global__ void reshape_and_cache_flash_kernel(
    const Activation* key, const Activation* value,
    typename CacheElement<Activation, kKind>::type* key_cache,
    typename CacheElement<Activation, kKind>::type* value_cache, const std::int64_t* slot_mapping,
    const float* k_scale, const float* v_scale, ReshapeAndCacheFlashPlan plan,
    const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred index check rejected the call
  const std::int64_t total = plan.num_tokens * plan.num_heads * plan.head_size;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < total; i += step) {
    // The flat index, unfolded into the CPU reference's three loop counters.
    const std::int64_t token = i / (plan.num_heads * plan.head_size);
    const std::int64_t head = (i / plan.head_size) % plan.num_heads;
    const std::int64_t d = i % plan.head_size;

    const std::int64_t slot = slot_mapping[token];
    if (slot < 0) continue;  // padding token: nothing is written
    const std::int64_t block = slot / plan.block_size;
    const std::int64_t offset_in_block = slot % plan.block_size;

    const std::int64_t key_element = token * plan.key_stride + head * plan.head_size + d;
    const std::int64_t value_element = token * plan.value_stride + head * plan.head_size + d;
    const std::int64_t cache_element = block * plan.block_stride +
                                       offset_in_block * plan.page_stride +
                                       head * plan.head_stride + d;

    float key_scale = 1.f;
    float value_scale = 1.f;
    if constexpr (is_fp8(kKind)) {  // "auto" never reads the scales
      const std::int64_t scale_index = plan.per_head_scale ? head : 0;
      key_scale = k_scale[scale_index];
      value_scale = v_scale[scale_index];
    }
    key_cache[cache_element] = to_cache<kKind>(key[key_element], key_scale);
    value_cache[cache_element] = to_cache<kKind>(value[value_element], value_scale);
  }
}

}  // namespace pagedkv::kernels::flash_naive

namespace pagedkv {

void ReshapeAndCacheFlash::naive(const Plan& plan, const Args& args, cudaStream_t stream) {
  const TensorView& key = args.key;
  const TensorView& value = args.value;
  const TensorView& key_cache = args.key_cache;
  const TensorView& value_cache = args.value_cache;
  const TensorView& slot_mapping = args.slot_mapping;
  const TensorView& k_scale = args.k_scale;
  const TensorView& v_scale = args.v_scale;
  using namespace pagedkv::kernels;
  const std::int64_t total = plan.num_tokens * plan.num_heads * plan.head_size;
  if (total == 0) return;  // zero tokens (or empty rows): nothing to do, and no empty grid
  const std::int64_t blocks_needed =
      (total + flash_naive::kThreadsPerBlock - 1) / flash_naive::kThreadsPerBlock;
  // The grid-stride loop covers whatever the grid does not; 2^30 blocks is far beyond any
  // realistic size and within the grid's x limit (2^31 - 1).
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>(blocks_needed, 1 << 30));
  const bool fp8 = is_fp8(plan.cache_kind);

  dispatch_activation_and_cache_kind(
      plan.activation_dtype, plan.cache_kind, [&](auto activation_tag, auto kind_tag) {
        using Activation = typename decltype(activation_tag)::type;
        constexpr KvCacheDtype kKind = decltype(kind_tag)::value;
        using Cache = typename CacheElement<Activation, kKind>::type;
        flash_naive::reshape_and_cache_flash_kernel<Activation, kKind>
            <<<blocks, flash_naive::kThreadsPerBlock, 0, stream>>>(
                static_cast<const Activation*>(key.data),
                static_cast<const Activation*>(value.data), static_cast<Cache*>(key_cache.data),
                static_cast<Cache*>(value_cache.data),
                static_cast<const std::int64_t*>(slot_mapping.data),
                fp8 ? static_cast<const float*>(k_scale.data) : nullptr,
                fp8 ? static_cast<const float*>(v_scale.data) : nullptr, plan, device_fault());
        PAGEDKV_CUDA_CHECK_LAUNCH();
      });
}

}  // namespace pagedkv
