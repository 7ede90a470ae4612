/// \file
/// \brief `reshape_and_cache_flash`: write the new tokens' keys and values into a paged cache
/// laid out for FlashAttention / FlashInfer (NHD or HND, told apart by strides).
///
/// This header is the op's one contract: the plan that validation produces and the three
/// implementations (CPU reference, naive CUDA, optimized CUDA) with one argument list.
#pragma once

#include <cstdint>
#include <string_view>

#include <cuda_runtime_api.h>

#include "pagedkv/impl.h"
#include "pagedkv/kv_cache_dtype.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief Everything the implementations need, derived once from the arguments by
/// validate_reshape_and_cache_flash(). Strides are in elements.
struct ReshapeAndCacheFlashPlan {
  std::int64_t num_tokens = 0;    ///< slot_mapping.size(0); key may have more (padded) rows
  std::int64_t num_heads = 0;     ///< key.size(1)
  std::int64_t head_size = 0;     ///< key.size(2)
  std::int64_t block_size = 0;    ///< key_cache.size(1): slots per block
  std::int64_t num_blocks = 0;    ///< key_cache.size(0)
  std::int64_t key_stride = 0;    ///< key.stride(0): elements between two tokens' rows
  std::int64_t value_stride = 0;  ///< value.stride(0)
  std::int64_t block_stride = 0;  ///< cache stride(0), shared by key_cache and value_cache
  std::int64_t page_stride = 0;   ///< cache stride(1): between two slots of a block
  std::int64_t head_stride = 0;   ///< cache stride(2): between two heads of a slot
  DType activation_dtype = DType::bf16;     ///< dtype of key and value
  KvCacheDtype cache_kind = KvCacheDtype::kAuto;  ///< how the cache stores elements
  bool per_head_scale = false;    ///< k_scale/v_scale hold num_heads values (else one)
};

/// \brief The contract of reshape_and_cache_flash, shared by the three implementations.
///
/// Checks every argument for `impl` and returns the plan; throws InvalidArgument (naming the
/// argument, the expected and the actual value) before anything is written. It reads
/// slot_mapping to check that every slot is below num_blocks × block_size (on the GPU this is
/// one CUB reduction and a synchronization).
/// \param key [T_pad, num_heads, head_size] f32/f16/bf16; rows may have any pitch.
/// \param value [T_pad, num_heads, head_size], same dtype as key.
/// \param key_cache [num_blocks, block_size, num_heads, head_size] logical shape, any strides
///        with a packed last dimension; dtype = key's for "auto", one byte for fp8.
/// \param value_cache same shape, dtype and strides as key_cache.
/// \param slot_mapping [T] i64; slot = block × block_size + offset; negative slots are skipped.
/// \param kv_cache_dtype "auto", "bfloat16", "float16", "fp8", "fp8_e4m3" or "fp8_e5m2".
/// \param k_scale f32 [1] or [num_heads]; read only for fp8 caches.
/// \param v_scale f32, same shape as k_scale.
/// \param impl the implementation that will run (decides the device every tensor must be on).
/// \return the plan the implementation executes.
ReshapeAndCacheFlashPlan validate_reshape_and_cache_flash(
    const TensorView& key, const TensorView& value, const TensorView& key_cache,
    const TensorView& value_cache, const TensorView& slot_mapping, std::string_view kv_cache_dtype,
    const TensorView& k_scale, const TensorView& v_scale, Impl impl);

namespace cpu {
/// \brief CPU reference of reshape_and_cache_flash: plain loops over tokens, heads and elements.
/// Arguments as in validate_reshape_and_cache_flash(); every tensor on the CPU.
void reshape_and_cache_flash(const TensorView& key, const TensorView& value,
                             const TensorView& key_cache, const TensorView& value_cache,
                             const TensorView& slot_mapping, std::string_view kv_cache_dtype,
                             const TensorView& k_scale, const TensorView& v_scale);
}  // namespace cpu

namespace naive {
/// \brief Naive CUDA reshape_and_cache_flash: one thread per (token, head, element).
/// Arguments as in validate_reshape_and_cache_flash(); tensors on the GPU; runs on `stream`.
void reshape_and_cache_flash(const TensorView& key, const TensorView& value,
                             const TensorView& key_cache, const TensorView& value_cache,
                             const TensorView& slot_mapping, std::string_view kv_cache_dtype,
                             const TensorView& k_scale, const TensorView& v_scale,
                             cudaStream_t stream = nullptr);
/// \brief Launches the naive kernel for an already validated plan (used for timing).
void launch_reshape_and_cache_flash(const ReshapeAndCacheFlashPlan& plan, const TensorView& key,
                                    const TensorView& value, const TensorView& key_cache,
                                    const TensorView& value_cache, const TensorView& slot_mapping,
                                    const TensorView& k_scale, const TensorView& v_scale,
                                    cudaStream_t stream);
}  // namespace naive

namespace optimized {
/// \brief Optimized CUDA reshape_and_cache_flash. Same arguments and results as the naive one.
void reshape_and_cache_flash(const TensorView& key, const TensorView& value,
                             const TensorView& key_cache, const TensorView& value_cache,
                             const TensorView& slot_mapping, std::string_view kv_cache_dtype,
                             const TensorView& k_scale, const TensorView& v_scale,
                             cudaStream_t stream = nullptr);
/// \brief Launches the optimized kernel for an already validated plan (used for timing).
void launch_reshape_and_cache_flash(const ReshapeAndCacheFlashPlan& plan, const TensorView& key,
                                    const TensorView& value, const TensorView& key_cache,
                                    const TensorView& value_cache, const TensorView& slot_mapping,
                                    const TensorView& k_scale, const TensorView& v_scale,
                                    cudaStream_t stream);
}  // namespace optimized

}  // namespace pagedkv
