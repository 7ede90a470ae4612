// rotary_embedding, naive CUDA version: the CPU reference's loops in CUDA clothing, and
// upstream's shape of work (vLLM csrc/pos_encoding_kernels.cu @0f5257e: rotary_embedding_kernel).
//
// One block per token (grid-stride over tokens). Its threads take the query's pairs
// (head, j) in a strided loop, then the key's, and rotate each in place: load x, y, the cosine
// and the sine, rope.cuh's rotate_pair() (the CPU reference's operations, FMA explicit), round,
// store. Every pair belongs to one thread, so nothing waits for anything.
// Correct and obvious. Not fast: one element per access, the cosine and sine loaded again for
// every head, every pair's index divided out. Not yet measured on a GPU.
// Registers (nvcc 13.0.88, -Xptxas -v, code=sm_90): 28 in every instantiation, no spills.
#include "pagedkv/ops/rotary_embedding.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "common/convert.cuh"
#include "common/fault.cuh"
#include "mla/rope.cuh"
#include "pagedkv/cuda_runtime.h"
#include "rotary/rotary_dispatch.cuh"

namespace pagedkv::kernels::rotary_naive {

/// Most threads per block (upstream: min(num_heads * rot_dim / 2, 512)).
constexpr int kMaxThreadsPerBlock = 512;

/// \brief Rotates pair j of one head in place.
/// \tparam T float, __half or __nv_bfloat16.
/// \tparam Cache float or T: the element type of cos_sin_cache.
/// \param rotated the head's first rotated element (rope_dim_offset applied).
/// \param cos_row the position's cos_sin_cache row: half cosines, then half sines.
/// \param j the pair.
/// \param plan sizes and flags.
template <typename T, typename Cache>
__device__ void rotate_pair_at(T* rotated, const Cache* cos_row, std::int64_t j,
                               const RotaryEmbeddingPlan& plan) {
  const std::int64_t half = plan.rot_dim / 2;
  T* x_at = rotated + (plan.is_neox ? j : 2 * j);
  T* y_at = rotated + (plan.is_neox ? half + j : 2 * j + 1);
  const float c = to_float(cos_row[j]);
  const float s = to_float(cos_row[half + j]);
  const float2 r = mla::rotate_pair(to_float(*x_at), to_float(*y_at), c, plan.inverse ? -s : s);
  *x_at = mla::from_float<T>(r.x);
  *y_at = mla::from_float<T>(r.y);
}

/// \brief One block per token, grid-stride over tokens; threads stride over (head, pair).
/// \tparam T float, __half or __nv_bfloat16.
/// \tparam Cache float or T.
/// \param positions [T].
/// \param query [T, num_heads, head_size] with the plan's strides; rotated in place.
/// \param key [T, num_kv_heads, head_size] with the plan's strides (unread when
/// plan.num_kv_heads is 0: no key); rotated in place.
/// \param cos_sin_cache [max_position, rot_dim].
/// \param plan sizes, strides and flags.
/// \param fault the device's fault record: set by a deferred index check, it makes the kernel
/// return before writing anything.
template <typename T, typename Cache>
__global__ void rotary_embedding_kernel(const std::int64_t* positions, T* query, T* key,
                                        const Cache* cos_sin_cache, RotaryEmbeddingPlan plan,
                                        const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred index check rejected the call
  const std::int64_t half = plan.rot_dim / 2;
  for (std::int64_t token = blockIdx.x; token < plan.num_tokens; token += gridDim.x) {
    const Cache* cos_row = cos_sin_cache + positions[token] * plan.rot_dim;
    T* query_row = query + token * plan.query_token_stride + plan.rope_dim_offset;
    for (std::int64_t item = threadIdx.x; item < plan.num_heads * half; item += blockDim.x) {
      const std::int64_t head = item / half;
      rotate_pair_at(query_row + head * plan.query_head_stride, cos_row, item % half, plan);
    }
    if (plan.num_kv_heads == 0) continue;  // no key
    T* key_row = key + token * plan.key_token_stride + plan.rope_dim_offset;
    for (std::int64_t item = threadIdx.x; item < plan.num_kv_heads * half; item += blockDim.x) {
      const std::int64_t head = item / half;
      rotate_pair_at(key_row + head * plan.key_head_stride, cos_row, item % half, plan);
    }
  }
}

}  // namespace pagedkv::kernels::rotary_naive

namespace pagedkv {

void RotaryEmbedding::naive(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels;
  if (plan.num_tokens == 0) return;  // zero tokens: nothing to do, and no empty grid
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>(plan.num_tokens, 1 << 30));
  const auto threads = static_cast<unsigned>(
      std::min<std::int64_t>(plan.num_heads * (plan.rot_dim / 2), rotary_naive::kMaxThreadsPerBlock));
  dispatch_activation_and_cache(plan.dtype, plan.cache_dtype, [&](auto activation_tag,
                                                                  auto cache_tag) {
    using T = typename decltype(activation_tag)::type;
    using Cache = typename decltype(cache_tag)::type;
    rotary_naive::rotary_embedding_kernel<T, Cache><<<blocks, threads, 0, stream>>>(
        static_cast<const std::int64_t*>(args.positions.data), static_cast<T*>(args.query.data),
        static_cast<T*>(args.key.data), static_cast<const Cache*>(args.cos_sin_cache.data), plan,
        device_fault());
    PAGEDKV_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace pagedkv
