/// \file
/// \brief `reshape_and_cache_flash`: write the new tokens' keys and values into a paged cache
/// laid out for FlashAttention / FlashInfer (NHD or HND, told apart by strides).
///
/// This header is the op's one description: its arguments, the plan that validation produces
/// and the three implementations (CPU reference, naive CUDA, optimized CUDA).
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
#include "pagedkv/op.h"
#include "pagedkv/kv_cache_dtype.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief Everything the implementations need, derived once from the arguments by
/// ReshapeAndCacheFlash::validate(). Strides are in elements.
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

/// \brief reshape_and_cache_flash: the op's arguments, its contract and its three implementations.
struct ReshapeAndCacheFlash {
  /// \brief The upstream name.
  static constexpr const char* name = "reshape_and_cache_flash";

  /// \brief The arguments, in vLLM's order and with vLLM's names (documented in arguments()).
  struct Args {
    /// \name Arguments (documented in ReshapeAndCacheFlash::arguments)
    /// @{
    TensorView key;              ///< see ReshapeAndCacheFlash::arguments()
    TensorView value;            ///< see ReshapeAndCacheFlash::arguments()
    TensorView key_cache;        ///< see ReshapeAndCacheFlash::arguments()
    TensorView value_cache;      ///< see ReshapeAndCacheFlash::arguments()
    TensorView slot_mapping;     ///< see ReshapeAndCacheFlash::arguments()
    std::string kv_cache_dtype;  ///< see ReshapeAndCacheFlash::arguments()
    TensorView k_scale;          ///< see ReshapeAndCacheFlash::arguments()
    TensorView v_scale;          ///< see ReshapeAndCacheFlash::arguments()
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
        "[num_blocks, block_size, num_heads, head_size] logical shape, any strides with a "
        "packed last dimension (NHD, HND, or a view into a joint K/V allocation); key's dtype "
        "for \"auto\", one byte for fp8");
    arg(&Args::value_cache, "value_cache", ArgKind::output,
        "the shape, dtype and strides of key_cache, other memory");
    arg(&Args::slot_mapping, "slot_mapping", ArgKind::input,
        "[T] i64, contiguous, T <= key.size(0): slot = block × block_size + offset for each "
        "token; negative slots (padding) are skipped");
    arg(&Args::kv_cache_dtype, "kv_cache_dtype", ArgKind::string,
        "how the cache stores an element: \"auto\" (key's dtype, bits copied), \"bfloat16\", "
        "\"float16\", \"fp8\" / \"fp8_e4m3\" or \"fp8_e5m2\" (one byte, fp8(x / scale))");
    arg(&Args::k_scale, "k_scale", ArgKind::input,
        "f32 [1] or [num_heads] (per head); read only for fp8 caches");
    arg(&Args::v_scale, "v_scale", ArgKind::input,
        "f32, the shape of k_scale; read only for fp8 caches");
  }

  /// \brief What validate() derives from the arguments.
  using Plan = ReshapeAndCacheFlashPlan;

  /// \brief The contract, shared by the three implementations.
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
  /// (core/entries/reshape_and_cache_flash.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
