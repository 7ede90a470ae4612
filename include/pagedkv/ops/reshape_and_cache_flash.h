/// \file
/// \brief `reshape_and_cache_flash`: write the new tokens' keys and values into a paged cache
/// laid out for FlashAttention / FlashInfer (NHD or HND, told apart by strides).
///
/// This header is the op's one contract: the plan that validation produces and the three
/// implementations (CPU reference, naive CUDA, optimized CUDA) with one argument list.
///
/// Worked example (block_size = 16, 8 heads of 128): the token with slot 37 lands in block 2 at
/// offset 5, and head h's 128 elements go to `key_cache[2, 5, h, 0:128]`. In memory that is
/// element `2 * block_stride + 5 * page_stride + h * head_stride`: NHD strides
/// (16·8·128, 8·128, 128, 1) put the token's 8 heads in one 1024-element run; HND strides
/// (16·8·128, 128, 16·128, 1) put each head in its own 128-element run, 16·128 elements apart.
/// A joint allocation `[num_blocks, 2, 16, 8, 128]` only doubles block_stride.
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
/// one CUB reduction and a synchronization). Zero tokens is a valid call that writes nothing.
///
/// Beyond upstream's checks it rejects an i32 slot_mapping (upstream misreads it), slots past
/// the cache (upstream writes out of bounds), a value_cache with other strides than key_cache
/// (upstream addresses it with key_cache's), an "auto" cache of another dtype than key (upstream
/// reinterprets the bits), cache strides under which two elements share memory and one buffer
/// passed as both caches. Several tokens with the same non-negative slot are the caller's error:
/// which one the slot ends up holding is not specified (the implementations may differ).
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
///
/// Arguments as in validate_reshape_and_cache_flash(); every tensor on the CPU.
/// \param key [T_pad, num_heads, head_size] f32/f16/bf16; rows may have any pitch.
/// \param value [T_pad, num_heads, head_size], same dtype as key.
/// \param key_cache [num_blocks, block_size, num_heads, head_size] logical shape, written.
/// \param value_cache same shape, dtype and strides as key_cache, written.
/// \param slot_mapping [T] i64; negative slots (padding) are skipped.
/// \param kv_cache_dtype "auto", "bfloat16", "float16", "fp8", "fp8_e4m3" or "fp8_e5m2".
/// \param k_scale f32 [1] or [num_heads]; read only for fp8 caches.
/// \param v_scale f32, same shape as k_scale; read only for fp8 caches.
void reshape_and_cache_flash(const TensorView& key, const TensorView& value,
                             const TensorView& key_cache, const TensorView& value_cache,
                             const TensorView& slot_mapping, std::string_view kv_cache_dtype,
                             const TensorView& k_scale, const TensorView& v_scale);
}  // namespace cpu

namespace naive {
/// \brief Naive CUDA reshape_and_cache_flash: one thread per (token, head, element).
///
/// Arguments as in validate_reshape_and_cache_flash(); tensors on the GPU.
/// \param key [T_pad, num_heads, head_size] f32/f16/bf16; rows may have any pitch.
/// \param value [T_pad, num_heads, head_size], same dtype as key.
/// \param key_cache [num_blocks, block_size, num_heads, head_size] logical shape, written.
/// \param value_cache same shape, dtype and strides as key_cache, written.
/// \param slot_mapping [T] i64; negative slots (padding) are skipped.
/// \param kv_cache_dtype "auto", "bfloat16", "float16", "fp8", "fp8_e4m3" or "fp8_e5m2".
/// \param k_scale f32 [1] or [num_heads]; read only for fp8 caches.
/// \param v_scale f32, same shape as k_scale; read only for fp8 caches.
/// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
void reshape_and_cache_flash(const TensorView& key, const TensorView& value,
                             const TensorView& key_cache, const TensorView& value_cache,
                             const TensorView& slot_mapping, std::string_view kv_cache_dtype,
                             const TensorView& k_scale, const TensorView& v_scale,
                             cudaStream_t stream = nullptr);
/// \brief Launches the naive kernel for an already validated plan (used for timing).
/// \param plan the plan validate_reshape_and_cache_flash() returned for these arguments.
/// \param key [T_pad, num_heads, head_size].
/// \param value [T_pad, num_heads, head_size].
/// \param key_cache [num_blocks, block_size, num_heads, head_size] logical shape, written.
/// \param value_cache same shape and strides as key_cache, written.
/// \param slot_mapping [T] i64.
/// \param k_scale f32 [1] or [num_heads] (fp8 only).
/// \param v_scale f32, same shape as k_scale (fp8 only).
/// \param stream the CUDA stream the kernel runs on.
void launch_reshape_and_cache_flash(const ReshapeAndCacheFlashPlan& plan, const TensorView& key,
                                    const TensorView& value, const TensorView& key_cache,
                                    const TensorView& value_cache, const TensorView& slot_mapping,
                                    const TensorView& k_scale, const TensorView& v_scale,
                                    cudaStream_t stream);
}  // namespace naive

namespace optimized {
/// \brief Optimized CUDA reshape_and_cache_flash. Same arguments and results as the naive one.
///
/// 16-byte vectors where every address allows them (narrower ones, down to one element, where
/// it does not), a group of threads per token and several loads in flight per thread (kernel
/// file header: the details).
/// \param key [T_pad, num_heads, head_size] f32/f16/bf16; rows may have any pitch.
/// \param value [T_pad, num_heads, head_size], same dtype as key.
/// \param key_cache [num_blocks, block_size, num_heads, head_size] logical shape, written.
/// \param value_cache same shape, dtype and strides as key_cache, written.
/// \param slot_mapping [T] i64; negative slots (padding) are skipped.
/// \param kv_cache_dtype "auto", "bfloat16", "float16", "fp8", "fp8_e4m3" or "fp8_e5m2".
/// \param k_scale f32 [1] or [num_heads]; read only for fp8 caches.
/// \param v_scale f32, same shape as k_scale; read only for fp8 caches.
/// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
void reshape_and_cache_flash(const TensorView& key, const TensorView& value,
                             const TensorView& key_cache, const TensorView& value_cache,
                             const TensorView& slot_mapping, std::string_view kv_cache_dtype,
                             const TensorView& k_scale, const TensorView& v_scale,
                             cudaStream_t stream = nullptr);
/// \brief Launches the optimized kernel for an already validated plan (used for timing).
/// \param plan the plan validate_reshape_and_cache_flash() returned for these arguments.
/// \param key [T_pad, num_heads, head_size].
/// \param value [T_pad, num_heads, head_size].
/// \param key_cache [num_blocks, block_size, num_heads, head_size] logical shape, written.
/// \param value_cache same shape and strides as key_cache, written.
/// \param slot_mapping [T] i64.
/// \param k_scale f32 [1] or [num_heads] (fp8 only).
/// \param v_scale f32, same shape as k_scale (fp8 only).
/// \param stream the CUDA stream the kernel runs on.
void launch_reshape_and_cache_flash(const ReshapeAndCacheFlashPlan& plan, const TensorView& key,
                                    const TensorView& value, const TensorView& key_cache,
                                    const TensorView& value_cache, const TensorView& slot_mapping,
                                    const TensorView& k_scale, const TensorView& v_scale,
                                    cudaStream_t stream);
}  // namespace optimized

}  // namespace pagedkv
