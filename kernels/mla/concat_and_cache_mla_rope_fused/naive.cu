// concat_and_cache_mla_rope_fused, naive CUDA version: the CPU reference's loops in CUDA
// clothing, and upstream's shape of work.
//
// One block per token. Its threads take the query pairs (head, i) in a strided loop and rotate
// each in place (rope.cuh's rotate_in_place(): the CPU reference's operations, FMA explicit).
// Padding tokens stop there. The others rotate the key's pairs, wait for each other
// (__syncthreads: the entry reads the rotated key back from memory), then store the entry
// element by element (mla_entry.cuh's store_entry_element(), shared with concat_and_cache_mla).
// Correct and obvious. Not fast: one element per access, cos and sin loaded for every pair.
// Not yet measured on a GPU.
#include "pagedkv/ops/concat_and_cache_mla_rope_fused.h"

#include <algorithm>
#include <cstdint>

#include "common/convert.cuh"
#include "common/dispatch.cuh"
#include "common/fault.cuh"
#include "mla/mla_entry.cuh"
#include "mla/rope.cuh"
#include "pagedkv/cuda_runtime.h"

namespace pagedkv::kernels::rope_fused_naive {

/// Threads per block.
constexpr int kThreadsPerBlock = 256;

/// \brief One block per token, grid-stride over tokens.
/// \tparam T float, __half or __nv_bfloat16.
/// \tparam kKind how the cache stores an element.
/// \param positions [>= T].
/// \param q_pe [T, num_q_heads, rot_dim] with the plan's strides; rotated in place.
/// \param k_pe [T, rot_dim], rows plan.k_pe_stride apart; rotated in place.
/// \param kv_c [T, kv_lora_rank], rows plan.kv_c_stride apart.
/// \param cos_sin_cache [max_position, rot_dim].
/// \param slot_mapping [T]; negative = padding.
/// \param kv_cache [num_blocks, block_size, kv_lora_rank + rot_dim] with the plan's strides.
/// \param scale [1]; read only for fp8.
/// \param plan sizes and strides.
/// \param fault the device's fault record: set by a deferred index check, it makes the kernel
/// return before writing anything.
template <typename T, KvCacheDtype kKind>
__global__ void rope_fused_kernel(const std::int64_t* positions, T* q_pe, T* k_pe, const T* kv_c,
                                  const T* cos_sin_cache, const std::int64_t* slot_mapping,
                                  typename CacheElement<T, kKind>::type* kv_cache,
                                  const float* scale, ConcatAndCacheMlaRopeFusedPlan plan,
                                  const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred index check rejected the call
  const int half = static_cast<int>(plan.rot_dim / 2);
  for (std::int64_t token = blockIdx.x; token < plan.num_tokens; token += gridDim.x) {
    const T* cos_row = cos_sin_cache + positions[token] * plan.rot_dim;  // then half sines
    const auto pair_first = [&](int i) { return plan.is_neox ? i : 2 * i; };
    const auto pair_second = [&](int i) { return plan.is_neox ? half + i : 2 * i + 1; };
    // Every query pair, padding tokens included.
    for (std::int64_t item = threadIdx.x; item < plan.num_q_heads * half; item += blockDim.x) {
      const std::int64_t head = item / half;
      const int i = static_cast<int>(item % half);
      T* q_head = q_pe + token * plan.q_token_stride + head * plan.q_head_stride;
      mla::rotate_in_place(q_head + pair_first(i), q_head + pair_second(i), cos_row[i],
                           cos_row[half + i]);
    }
    const std::int64_t slot = slot_mapping[token];  // the same for the whole block
    if (slot >= 0) {
      T* k_row = k_pe + token * plan.k_pe_stride;
      for (int i = threadIdx.x; i < half; i += blockDim.x) {
        mla::rotate_in_place(k_row + pair_first(i), k_row + pair_second(i), cos_row[i],
                             cos_row[half + i]);
      }
      __syncthreads();  // the entry reads the rotated key written by other threads
      const std::int64_t block = slot / plan.block_size;
      const std::int64_t offset_in_block = slot % plan.block_size;
      const float cache_scale = is_fp8(kKind) ? scale[0] : 1.f;
      const std::int64_t entry_elements = plan.kv_lora_rank + plan.rot_dim;
      for (int e = threadIdx.x; e < entry_elements; e += blockDim.x) {
        mla::store_entry_element<kKind>(
            kv_cache + block * plan.block_stride + offset_in_block * plan.entry_stride,
            kv_c + token * plan.kv_c_stride, k_row, static_cast<int>(plan.kv_lora_rank), e,
            cache_scale);
      }
    }
    __syncthreads();  // the next token's threads must not overtake this one's in-place writes
  }
}

}  // namespace pagedkv::kernels::rope_fused_naive

namespace pagedkv {

void ConcatAndCacheMlaRopeFused::naive(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels;
  if (plan.num_tokens == 0) return;  // zero tokens: nothing to do, and no empty grid
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>(plan.num_tokens, 1 << 30));
  const bool fp8 = is_fp8(plan.cache_kind);
  dispatch_activation_and_cache_kind(
      plan.activation_dtype, plan.cache_kind, [&](auto activation_tag, auto kind_tag) {
        using T = typename decltype(activation_tag)::type;
        constexpr KvCacheDtype kKind = decltype(kind_tag)::value;
        using Cache = typename CacheElement<T, kKind>::type;
        rope_fused_naive::rope_fused_kernel<T, kKind>
            <<<blocks, rope_fused_naive::kThreadsPerBlock, 0, stream>>>(
                static_cast<const std::int64_t*>(args.positions.data),
                static_cast<T*>(args.q_pe.data), static_cast<T*>(args.k_pe.data),
                static_cast<const T*>(args.kv_c.data),
                static_cast<const T*>(args.cos_sin_cache.data),
                static_cast<const std::int64_t*>(args.slot_mapping.data),
                static_cast<Cache*>(args.kv_cache.data),
                fp8 ? static_cast<const float*>(args.kv_cache_scale.data) : nullptr, plan,
                device_fault());
        PAGEDKV_CUDA_CHECK_LAUNCH();
      });
}

}  // namespace pagedkv
