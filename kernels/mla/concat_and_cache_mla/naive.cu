// concat_and_cache_mla, naive CUDA version: the CPU reference's loops in CUDA clothing.
//
// auto and fp8: one thread per (token, entry element), flat index, grid-stride. Each thread
// reads its slot, skips padding, and stores one element (mla_entry.cuh's
// store_entry_element(), shared with the RoPE-fused writer).
// fp8_ds_mla: one thread per (token, part): parts 0-3 are the latent tiles (the thread finds
// the tile's amax, stores its scale and its 128 fp8 bytes), part 4 copies the 64 RoPE values.
// Correct for every layout the contract accepts, and obvious. Not fast: one element per
// access, 64-bit divisions and a slot load per thread, a whole tile in one thread.
// Not yet measured on a GPU.
#include "pagedkv/ops/concat_and_cache_mla.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>

#include "common/convert.cuh"
#include "common/dispatch.cuh"
#include "common/fault.cuh"
#include "mla/mla_entry.cuh"
#include "pagedkv/cuda_runtime.h"

namespace pagedkv::kernels::mla_naive {

/// Threads per block: a common choice for simple element-wise kernels.
constexpr int kThreadsPerBlock = 256;
/// Parts of a fp8_ds_mla entry handled by one thread each: four latent tiles and the RoPE part.
constexpr int kDsMlaParts = 5;

/// \brief One thread per (token, entry element), grid-stride.
/// \tparam Activation float, __half or __nv_bfloat16.
/// \tparam kKind how the cache stores an element.
/// \param kv_c [T_pad, kv_lora_rank], rows plan.kv_c_stride apart.
/// \param k_pe [T_pad, rope_dim], rows plan.k_pe_stride apart.
/// \param kv_cache [num_blocks, block_size, kv_lora_rank + rope_dim] with the plan's strides.
/// \param slot_mapping [num_tokens]; negative = padding.
/// \param scale [1]; read only for fp8.
/// \param plan sizes and strides from ConcatAndCacheMla::validate().
/// \param fault the device's fault record: set by a deferred index check, it makes the kernel
/// return before writing anything.
template <typename Activation, KvCacheDtype kKind>
__global__ void concat_and_cache_mla_kernel(
    const Activation* kv_c, const Activation* k_pe,
    typename CacheElement<Activation, kKind>::type* kv_cache, const std::int64_t* slot_mapping,
    const float* scale, ConcatAndCacheMlaPlan plan, const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred index check rejected the call
  const std::int64_t entry_elements = plan.kv_lora_rank + plan.rope_dim;
  const std::int64_t total = plan.num_tokens * entry_elements;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < total; i += step) {
    const std::int64_t token = i / entry_elements;
    const int element = static_cast<int>(i % entry_elements);
    const std::int64_t slot = slot_mapping[token];
    if (slot < 0) continue;  // padding token: nothing is written
    const std::int64_t block = slot / plan.block_size;
    const std::int64_t offset_in_block = slot % plan.block_size;
    const float cache_scale = is_fp8(kKind) ? scale[0] : 1.f;  // "auto" never reads it
    mla::store_entry_element<kKind>(
        kv_cache + block * plan.block_stride + offset_in_block * plan.entry_stride,
        kv_c + token * plan.kv_c_stride, k_pe + token * plan.k_pe_stride,
        static_cast<int>(plan.kv_lora_rank), element, cache_scale);
  }
}

/// \brief fp8_ds_mla: one thread per (token, part), grid-stride; parts 0-3 are latent tiles,
/// part 4 the RoPE values.
/// \param kv_c [T_pad, 512] bf16, rows plan.kv_c_stride apart.
/// \param k_pe [T_pad, 64] bf16, rows plan.k_pe_stride apart.
/// \param kv_cache [num_blocks, block_size, 656] bytes with the plan's strides.
/// \param slot_mapping [num_tokens]; negative = padding.
/// \param plan sizes and strides.
/// \param fault the device's fault record: set by a deferred index check, it makes the kernel
/// return before writing anything.
__global__ void concat_and_cache_ds_mla_kernel(const __nv_bfloat16* kv_c, const __nv_bfloat16* k_pe,
                                               std::uint8_t* kv_cache,
                                               const std::int64_t* slot_mapping,
                                               ConcatAndCacheMlaPlan plan,
                                               const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred index check rejected the call
  const std::int64_t total = plan.num_tokens * kDsMlaParts;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < total; i += step) {
    const std::int64_t token = i / kDsMlaParts;
    const int part = static_cast<int>(i % kDsMlaParts);
    const std::int64_t slot = slot_mapping[token];
    if (slot < 0) continue;  // padding token: nothing is written
    const std::int64_t block = slot / plan.block_size;
    const std::int64_t offset_in_block = slot % plan.block_size;
    std::uint8_t* entry = kv_cache + block * plan.block_stride + offset_in_block * plan.entry_stride;
    // Byte stores below: the contract allows any entry stride, so an entry may start at any
    // byte and wider stores could be misaligned.
    if (part == kDsMlaParts - 1) {  // the RoPE values, bf16 bits copied
      const auto* rope = reinterpret_cast<const std::uint8_t*>(k_pe + token * plan.k_pe_stride);
      for (int b = 0; b < 2 * kDsMlaRope; ++b) entry[kDsMlaRopeOffset + b] = rope[b];
      continue;
    }
    const __nv_bfloat16* tile = kv_c + token * plan.kv_c_stride + part * kDsMlaTile;
    float amax = 0.f;
    for (int e = 0; e < kDsMlaTile; ++e) amax = fmaxf(amax, fabsf(to_float(tile[e])));
    const float tile_scale = fmaxf(amax / kDsMlaFp8Max, FLT_MIN);
    for (int e = 0; e < kDsMlaTile; ++e) {
      entry[part * kDsMlaTile + e] = encode_fp8<KvCacheDtype::kFp8E4m3>(to_float(tile[e]), tile_scale);
    }
    const std::uint32_t scale_bits = __float_as_uint(tile_scale);  // stored little-endian
    for (int b = 0; b < 4; ++b) {
      entry[kDsMlaScaleOffset + 4 * part + b] = static_cast<std::uint8_t>(scale_bits >> (8 * b));
    }
  }
}

/// \brief Blocks for `total` threads' worth of work (the loops are grid-stride).
/// \param total work items.
/// \return the grid size.
inline unsigned blocks_for(std::int64_t total) {
  const std::int64_t needed = (total + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return static_cast<unsigned>(std::min<std::int64_t>(needed, 1 << 30));
}

}  // namespace pagedkv::kernels::mla_naive

namespace pagedkv {

void ConcatAndCacheMla::naive(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels;
  if (plan.num_tokens == 0) return;  // zero tokens: nothing to do, and no empty grid
  const auto* slots = static_cast<const std::int64_t*>(args.slot_mapping.data);
  if (plan.ds_mla) {
    mla_naive::concat_and_cache_ds_mla_kernel<<<mla_naive::blocks_for(plan.num_tokens *
                                                                      mla_naive::kDsMlaParts),
                                                mla_naive::kThreadsPerBlock, 0, stream>>>(
        static_cast<const __nv_bfloat16*>(args.kv_c.data),
        static_cast<const __nv_bfloat16*>(args.k_pe.data),
        static_cast<std::uint8_t*>(args.kv_cache.data), slots, plan, device_fault());
    PAGEDKV_CUDA_CHECK_LAUNCH();
    return;
  }
  const std::int64_t total = plan.num_tokens * (plan.kv_lora_rank + plan.rope_dim);
  if (total == 0) return;
  const bool fp8 = is_fp8(plan.cache_kind);
  dispatch_activation_and_cache_kind(
      plan.activation_dtype, plan.cache_kind, [&](auto activation_tag, auto kind_tag) {
        using Activation = typename decltype(activation_tag)::type;
        constexpr KvCacheDtype kKind = decltype(kind_tag)::value;
        using Cache = typename CacheElement<Activation, kKind>::type;
        mla_naive::concat_and_cache_mla_kernel<Activation, kKind>
            <<<mla_naive::blocks_for(total), mla_naive::kThreadsPerBlock, 0, stream>>>(
                static_cast<const Activation*>(args.kv_c.data),
                static_cast<const Activation*>(args.k_pe.data),
                static_cast<Cache*>(args.kv_cache.data), slots,
                fp8 ? static_cast<const float*>(args.scale.data) : nullptr, plan, device_fault());
        PAGEDKV_CUDA_CHECK_LAUNCH();
      });
}

}  // namespace pagedkv
