/// \file
/// \brief `reshape_and_cache`: write the new tokens' keys and values into the legacy paged
/// cache of vLLM's paged_attention kernels (key split into x-element chunks, value transposed).
#pragma once

#include <cstdint>
#include <string_view>

#include <cuda_runtime_api.h>

#include "pagedkv/impl.h"
#include "pagedkv/kv_cache_dtype.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief Everything the implementations need, derived once by validate_reshape_and_cache().
struct ReshapeAndCachePlan {
  std::int64_t num_tokens = 0;    ///< slot_mapping.size(0)
  std::int64_t num_heads = 0;     ///< key.size(1)
  std::int64_t head_size = 0;     ///< key.size(2)
  std::int64_t block_size = 0;    ///< key_cache.size(3)
  std::int64_t num_blocks = 0;    ///< key_cache.size(0)
  std::int64_t x = 0;             ///< key_cache.size(4): elements per 16-byte key chunk
  std::int64_t key_stride = 0;    ///< key.stride(0)
  std::int64_t value_stride = 0;  ///< value.stride(0)
  DType activation_dtype = DType::bf16;           ///< dtype of key and value
  KvCacheDtype cache_kind = KvCacheDtype::kAuto;  ///< how the cache stores elements
};

/// \brief The contract of reshape_and_cache, shared by the three implementations.
/// \param key [T_pad, num_heads, head_size] f32/f16/bf16; rows may have any pitch.
/// \param value [T_pad, num_heads, head_size], same dtype as key.
/// \param key_cache [num_blocks, num_heads, head_size / x, block_size, x], contiguous;
///        x × element size = 16 bytes.
/// \param value_cache [num_blocks, num_heads, head_size, block_size], contiguous.
/// \param slot_mapping [T] i64; negative slots are skipped.
/// \param kv_cache_dtype "auto", "bfloat16", "float16", "fp8", "fp8_e4m3" or "fp8_e5m2".
/// \param k_scale f32 [1]; read only for fp8 caches.
/// \param v_scale f32 [1].
/// \param impl the implementation that will run.
/// \return the plan the implementation executes.
ReshapeAndCachePlan validate_reshape_and_cache(const TensorView& key, const TensorView& value,
                                               const TensorView& key_cache,
                                               const TensorView& value_cache,
                                               const TensorView& slot_mapping,
                                               std::string_view kv_cache_dtype,
                                               const TensorView& k_scale,
                                               const TensorView& v_scale, Impl impl);

namespace cpu {
/// \brief CPU reference of reshape_and_cache. Arguments as in validate_reshape_and_cache().
void reshape_and_cache(const TensorView& key, const TensorView& value, const TensorView& key_cache,
                       const TensorView& value_cache, const TensorView& slot_mapping,
                       std::string_view kv_cache_dtype, const TensorView& k_scale,
                       const TensorView& v_scale);
}  // namespace cpu

namespace naive {
/// \brief Naive CUDA reshape_and_cache: one thread per (token, head, element).
void reshape_and_cache(const TensorView& key, const TensorView& value, const TensorView& key_cache,
                       const TensorView& value_cache, const TensorView& slot_mapping,
                       std::string_view kv_cache_dtype, const TensorView& k_scale,
                       const TensorView& v_scale, cudaStream_t stream = nullptr);
/// \brief Launches the naive kernel for an already validated plan (used for timing).
void launch_reshape_and_cache(const ReshapeAndCachePlan& plan, const TensorView& key,
                              const TensorView& value, const TensorView& key_cache,
                              const TensorView& value_cache, const TensorView& slot_mapping,
                              const TensorView& k_scale, const TensorView& v_scale,
                              cudaStream_t stream);
}  // namespace naive

namespace optimized {
/// \brief Optimized CUDA reshape_and_cache. Same arguments and results as the naive one.
void reshape_and_cache(const TensorView& key, const TensorView& value, const TensorView& key_cache,
                       const TensorView& value_cache, const TensorView& slot_mapping,
                       std::string_view kv_cache_dtype, const TensorView& k_scale,
                       const TensorView& v_scale, cudaStream_t stream = nullptr);
/// \brief Launches the optimized kernel for an already validated plan (used for timing).
void launch_reshape_and_cache(const ReshapeAndCachePlan& plan, const TensorView& key,
                              const TensorView& value, const TensorView& key_cache,
                              const TensorView& value_cache, const TensorView& slot_mapping,
                              const TensorView& k_scale, const TensorView& v_scale,
                              cudaStream_t stream);
}  // namespace optimized

}  // namespace pagedkv
