/// \file
/// \brief `reshape_and_cache`: write the new tokens' keys and values into the legacy paged
/// cache of vLLM's paged_attention kernels (key split into x-element chunks, value transposed).
///
/// This header is the op's one contract: the plan that validation produces and the three
/// implementations (CPU reference, naive CUDA, optimized CUDA) with one argument list.
///
/// Worked example (bf16, x = 8, block_size = 16): the token with slot 37 lands in block 2 at
/// offset 5. Its key elements d = 0..7 of head h form one 16-byte chunk at
/// `key_cache[2, h, 0, 5, 0:8]`; elements 8..15 go to `key_cache[2, h, 1, 5, 0:8]`, and so on.
/// Its value element d goes to `value_cache[2, h, d, 5]`: one element per value row, 32 bytes
/// away from the next d.
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
///
/// Checks every argument for `impl` and returns the plan; throws InvalidArgument (naming the
/// argument, the expected and the actual value) before anything is written. It reads
/// slot_mapping to check that every slot is below num_blocks × block_size (on the GPU this is
/// one CUB reduction and a synchronization).
///
/// Unlike upstream it rejects a head_size that is not a multiple of x (upstream leaves the tail
/// of every head unwritten) and writes every head however many there are (upstream drops the
/// (head, chunk) pairs beyond the first 512 of a token).
/// \param key [T_pad, num_heads, head_size] f32/f16/bf16; rows may have any pitch.
/// \param value [T_pad, num_heads, head_size], same dtype as key.
/// \param key_cache [num_blocks, num_heads, head_size / x, block_size, x], contiguous;
///        x × element size = 16 bytes; dtype = key's for "auto", one byte for fp8.
/// \param value_cache [num_blocks, num_heads, head_size, block_size], contiguous, same dtype
///        as key_cache.
/// \param slot_mapping [T] i64, contiguous, T <= key.size(0); slot = block × block_size +
///        offset; negative slots (padding) are skipped.
/// \param kv_cache_dtype "auto", "bfloat16", "float16", "fp8", "fp8_e4m3" or "fp8_e5m2".
/// \param k_scale f32 [1]; read only for fp8 caches.
/// \param v_scale f32 [1].
/// \param impl the implementation that will run (decides the device every tensor must be on).
/// \return the plan the implementation executes.
ReshapeAndCachePlan validate_reshape_and_cache(const TensorView& key, const TensorView& value,
                                               const TensorView& key_cache,
                                               const TensorView& value_cache,
                                               const TensorView& slot_mapping,
                                               std::string_view kv_cache_dtype,
                                               const TensorView& k_scale,
                                               const TensorView& v_scale, Impl impl);

namespace cpu {
/// \brief CPU reference of reshape_and_cache: plain loops over tokens, heads and elements.
///
/// Arguments as in validate_reshape_and_cache(); every tensor on the CPU.
/// \param key [T_pad, num_heads, head_size] f32/f16/bf16.
/// \param value [T_pad, num_heads, head_size], same dtype as key.
/// \param key_cache [num_blocks, num_heads, head_size / x, block_size, x], written.
/// \param value_cache [num_blocks, num_heads, head_size, block_size], written.
/// \param slot_mapping [T] i64; negative slots are skipped.
/// \param kv_cache_dtype "auto", "bfloat16", "float16", "fp8", "fp8_e4m3" or "fp8_e5m2".
/// \param k_scale f32 [1], fp8 only.
/// \param v_scale f32 [1], fp8 only.
void reshape_and_cache(const TensorView& key, const TensorView& value, const TensorView& key_cache,
                       const TensorView& value_cache, const TensorView& slot_mapping,
                       std::string_view kv_cache_dtype, const TensorView& k_scale,
                       const TensorView& v_scale);
}  // namespace cpu

namespace naive {
/// \brief Naive CUDA reshape_and_cache: one thread per (token, head, element).
///
/// Arguments as in validate_reshape_and_cache(); tensors on the GPU.
/// \param key [T_pad, num_heads, head_size] f32/f16/bf16.
/// \param value [T_pad, num_heads, head_size], same dtype as key.
/// \param key_cache [num_blocks, num_heads, head_size / x, block_size, x], written.
/// \param value_cache [num_blocks, num_heads, head_size, block_size], written.
/// \param slot_mapping [T] i64; negative slots are skipped.
/// \param kv_cache_dtype "auto", "bfloat16", "float16", "fp8", "fp8_e4m3" or "fp8_e5m2".
/// \param k_scale f32 [1], fp8 only.
/// \param v_scale f32 [1], fp8 only.
/// \param stream the CUDA stream the kernel runs on.
void reshape_and_cache(const TensorView& key, const TensorView& value, const TensorView& key_cache,
                       const TensorView& value_cache, const TensorView& slot_mapping,
                       std::string_view kv_cache_dtype, const TensorView& k_scale,
                       const TensorView& v_scale, cudaStream_t stream = nullptr);
/// \brief Launches the naive kernel for an already validated plan (used for timing).
/// \param plan the plan returned by validate_reshape_and_cache() for these arguments.
/// \param key [T_pad, num_heads, head_size].
/// \param value [T_pad, num_heads, head_size].
/// \param key_cache [num_blocks, num_heads, head_size / x, block_size, x], written.
/// \param value_cache [num_blocks, num_heads, head_size, block_size], written.
/// \param slot_mapping [T] i64.
/// \param k_scale f32 [1] (fp8 only).
/// \param v_scale f32 [1] (fp8 only).
/// \param stream the CUDA stream the kernel runs on.
void launch_reshape_and_cache(const ReshapeAndCachePlan& plan, const TensorView& key,
                              const TensorView& value, const TensorView& key_cache,
                              const TensorView& value_cache, const TensorView& slot_mapping,
                              const TensorView& k_scale, const TensorView& v_scale,
                              cudaStream_t stream);
}  // namespace naive

namespace optimized {
/// \brief Optimized CUDA reshape_and_cache. Same arguments and results as the naive one.
///
/// Tiles of 32 tokens per head are staged through shared memory so that contiguous slots give
/// coalesced 16-byte stores on the transposed value side (kernel file header: the details).
/// \param key [T_pad, num_heads, head_size] f32/f16/bf16.
/// \param value [T_pad, num_heads, head_size], same dtype as key.
/// \param key_cache [num_blocks, num_heads, head_size / x, block_size, x], written.
/// \param value_cache [num_blocks, num_heads, head_size, block_size], written.
/// \param slot_mapping [T] i64; negative slots are skipped.
/// \param kv_cache_dtype "auto", "bfloat16", "float16", "fp8", "fp8_e4m3" or "fp8_e5m2".
/// \param k_scale f32 [1], fp8 only.
/// \param v_scale f32 [1], fp8 only.
/// \param stream the CUDA stream the kernel runs on.
void reshape_and_cache(const TensorView& key, const TensorView& value, const TensorView& key_cache,
                       const TensorView& value_cache, const TensorView& slot_mapping,
                       std::string_view kv_cache_dtype, const TensorView& k_scale,
                       const TensorView& v_scale, cudaStream_t stream = nullptr);
/// \brief Launches the optimized kernel for an already validated plan (used for timing).
/// \param plan the plan returned by validate_reshape_and_cache() for these arguments.
/// \param key [T_pad, num_heads, head_size].
/// \param value [T_pad, num_heads, head_size].
/// \param key_cache [num_blocks, num_heads, head_size / x, block_size, x], written.
/// \param value_cache [num_blocks, num_heads, head_size, block_size], written.
/// \param slot_mapping [T] i64.
/// \param k_scale f32 [1] (fp8 only).
/// \param v_scale f32 [1] (fp8 only).
/// \param stream the CUDA stream the kernel runs on.
void launch_reshape_and_cache(const ReshapeAndCachePlan& plan, const TensorView& key,
                              const TensorView& value, const TensorView& key_cache,
                              const TensorView& value_cache, const TensorView& slot_mapping,
                              const TensorView& k_scale, const TensorView& v_scale,
                              cudaStream_t stream);
}  // namespace optimized

}  // namespace pagedkv
