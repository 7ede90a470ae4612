/// \file
/// \brief `reshape_and_cache`: write the new tokens' keys and values into the legacy paged
/// cache of vLLM's paged_attention kernels (key split into x-element chunks, value transposed).
///
/// This header is the op's one description: its arguments, the plan that validation produces
/// and the three implementations (CPU reference, naive CUDA, optimized CUDA).
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
#include "pagedkv/op.h"
#include "pagedkv/kv_cache_dtype.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief Everything the implementations need, derived once by ReshapeAndCache::validate().
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

/// \brief reshape_and_cache: the op's arguments, its contract and its three implementations.
struct ReshapeAndCache {
  /// \brief The upstream name.
  static constexpr const char* name = "reshape_and_cache";

  /// \brief The arguments, in vLLM's order and with vLLM's names (documented in arguments()).
  struct Args {
    /// \name Arguments (documented in ReshapeAndCache::arguments)
    /// @{
    TensorView key;              ///< see ReshapeAndCache::arguments()
    TensorView value;            ///< see ReshapeAndCache::arguments()
    TensorView key_cache;        ///< see ReshapeAndCache::arguments()
    TensorView value_cache;      ///< see ReshapeAndCache::arguments()
    TensorView slot_mapping;     ///< see ReshapeAndCache::arguments()
    std::string kv_cache_dtype;  ///< see ReshapeAndCache::arguments()
    TensorView k_scale;          ///< see ReshapeAndCache::arguments()
    TensorView v_scale;          ///< see ReshapeAndCache::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::key, "key", ArgKind::input,
        "[T_pad, num_heads, head_size] f32, f16 or bf16: the new tokens' keys; rows may have "
        "any pitch (e.g. a slice of the fused qkv activation), heads and elements packed");
    arg(&Args::value, "value", ArgKind::input,
        "[T_pad, num_heads, head_size], the dtype of key: the new tokens' values");
    arg(&Args::key_cache, "key_cache", ArgKind::output,
        "[num_blocks, num_heads, head_size / x, block_size, x], contiguous, x × element size "
        "= 16 bytes; key's dtype for \"auto\", one byte for fp8");
    arg(&Args::value_cache, "value_cache", ArgKind::output,
        "[num_blocks, num_heads, head_size, block_size], contiguous, the dtype of key_cache");
    arg(&Args::slot_mapping, "slot_mapping", ArgKind::input,
        "[T] i64, contiguous, T <= key.size(0): slot = block × block_size + offset for each "
        "token; negative slots (padding) are skipped");
    arg(&Args::kv_cache_dtype, "kv_cache_dtype", ArgKind::string,
        "how the cache stores an element: \"auto\" (key's dtype, bits copied), \"bfloat16\", "
        "\"float16\", \"fp8\" / \"fp8_e4m3\" or \"fp8_e5m2\" (one byte, fp8(x / scale))");
    arg(&Args::k_scale, "k_scale", ArgKind::input,
        "f32 [1]; read only for fp8 caches");
    arg(&Args::v_scale, "v_scale", ArgKind::input,
        "f32 [1]; read only for fp8 caches");
  }

  /// \brief What validate() derives from the arguments.
  using Plan = ReshapeAndCachePlan;

  /// \brief The contract, shared by the three implementations.
  ///
  /// Checks every argument for `impl` and returns the plan; throws InvalidArgument (naming the
  /// argument, the expected and the actual value) before anything is written. It reads
  /// slot_mapping to check that every slot is below num_blocks × block_size (on the GPU this is
  /// one CUB reduction and a synchronization).
  ///
  /// Unlike upstream it rejects a head_size that is not a multiple of x (upstream leaves the tail
  /// of every head unwritten) and writes every head however many there are (upstream drops the
  /// (head, chunk) pairs beyond the first 512 of a token).
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan the implementation executes.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: plain loops over tokens, heads and elements.
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA: one thread per (token, head, element).
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA: the same bytes as the naive one (the kernel file header lists
  /// the tricks).
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry: family, sources, byte model, workloads
  /// (core/entries/reshape_and_cache.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
