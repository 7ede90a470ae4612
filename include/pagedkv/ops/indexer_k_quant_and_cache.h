/// \file
/// \brief `indexer_k_quant_and_cache`: quantize each new token's sparse-attention indexer key
/// (DeepSeek-V3.2's "lightning indexer") to fp8 E4M3 with one scale per 128 elements, and store
/// codes and scales in the indexer's paged K cache.
///
/// This header is the op's one description: its arguments, the plan that validation produces
/// and the three implementations (CPU reference, naive CUDA, optimized CUDA). It also holds the
/// constants of the indexer cache layout, which cp_gather_indexer_k_quant_cache reads back.
///
/// The cache layout (the format DeepGEMM's paged MQA-logits kernel reads): a `[num_blocks,
/// block_size, head_dim + 4 × head_dim / 128]` byte tensor, 132 bytes per slot for head_dim 128,
/// but NOT one 132-byte record per slot. Each block is split in two planes: first the fp8 codes
/// of all its slots (`block_size × head_dim` bytes, slot o at `[o × head_dim, (o + 1) ×
/// head_dim)`), then all their fp32 scales (slot o, tile g at byte `block_size × head_dim +
/// (o × G + g) × 4`, G = head_dim / 128).
///
/// Worked example (head_dim 128, block_size 64): the token with slot 200 lands in block 3 at
/// offset 8. Its 128 codes are bytes `[8 × 128, 9 × 128) = [1024, 1152)` of block 3, its scale
/// the 4 bytes at `64 × 128 + 8 × 4 = 8224` of block 3. With amax = 3.5 the scale is
/// 3.5 / 448 = 0.0078125 (exactly 2^-7: a power of two already, so "ue8m0" keeps it), and an
/// element 1.0 is stored as E4M3(1.0 / 0.0078125) = E4M3(128) = 0x70.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "pagedkv/dtype.h"
#include "pagedkv/impl.h"
#include "pagedkv/op.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief Elements per quantization tile of the indexer K cache: each tile of 128 consecutive
/// key elements has its own scale (the only tile size the upstream kernels handle).
constexpr std::int64_t kIndexerQuantBlock = 128;
/// \brief Bytes of one tile scale (fp32) in the indexer K cache.
constexpr std::int64_t kIndexerScaleBytes = 4;
/// \brief E4M3's largest finite value: a tile's scale is max(amax, 1e-4) / 448.
constexpr float kIndexerFp8Max = 448.f;
/// \brief The floor of a tile's amax, so that an all-zero tile gets a positive scale.
constexpr float kIndexerAmaxFloor = 1e-4f;

/// \brief Everything the implementations need, derived once from the arguments by
/// IndexerKQuantAndCache::validate(). Strides are in elements of their tensor (bytes for the
/// cache).
struct IndexerKQuantAndCachePlan {
  std::int64_t num_tokens = 0;       ///< k.size(0); slot_mapping may have more entries
  std::int64_t head_dim = 0;         ///< k.size(1): elements per key, a multiple of 128
  std::int64_t tiles_per_token = 0;  ///< head_dim / 128: scales per token (G)
  std::int64_t block_size = 0;       ///< kv_cache.size(1): slots per block
  std::int64_t num_blocks = 0;       ///< kv_cache.size(0)
  std::int64_t k_stride = 0;         ///< k.stride(0): elements between two tokens' keys
  std::int64_t block_stride = 0;     ///< kv_cache.stride(0): bytes between two blocks
  DType k_dtype = DType::bf16;       ///< bf16 or f16
  bool ue8m0 = false;                ///< scales rounded up to a power of two
};

/// \brief indexer_k_quant_and_cache: the op's arguments, its contract and its three
/// implementations.
struct IndexerKQuantAndCache {
  /// \brief The upstream name.
  static constexpr const char* name = "indexer_k_quant_and_cache";

  /// \brief The arguments, in vLLM's order and with vLLM's names (documented in arguments()).
  struct Args {
    /// \name Arguments (documented in IndexerKQuantAndCache::arguments)
    /// @{
    TensorView k;                       ///< see IndexerKQuantAndCache::arguments()
    TensorView kv_cache;                ///< see IndexerKQuantAndCache::arguments()
    TensorView slot_mapping;            ///< see IndexerKQuantAndCache::arguments()
    std::int64_t quant_block_size = 0;  ///< see IndexerKQuantAndCache::arguments()
    std::string kv_cache_dtype;         ///< see IndexerKQuantAndCache::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::k, "k", ArgKind::input,
        "[T, head_dim] bf16 or f16, head_dim a multiple of 128: the new tokens' indexer keys; "
        "rows may have any pitch, elements packed");
    arg(&Args::kv_cache, "kv_cache", ArgKind::output,
        "[num_blocks, block_size, head_dim + 4 × head_dim / 128] u8 or f8_e4m3 (132 bytes per "
        "slot for head_dim 128): per block, all slots' fp8 codes, then all their fp32 scales; "
        "the block stride is free (a multiple of 4 bytes), the rest packed");
    arg(&Args::slot_mapping, "slot_mapping", ArgKind::input,
        "[>= T] i64, contiguous: slot = block × block_size + offset for token t < T = k.size(0) "
        "(entries past T are not read); negative slots (padding) are skipped");
    arg(&Args::quant_block_size, "quant_block_size", ArgKind::integer,
        "elements per scale: must be 128 (the tile size upstream's kernel is written for)");
    arg(&Args::kv_cache_dtype, "kv_cache_dtype", ArgKind::string,
        "the scale format (upstream's C++ name: scale_fmt): \"ue8m0\" rounds each scale up to "
        "a power of two, any other string keeps the fp32 scale; the codes are E4M3 either way");
  }

  /// \brief What validate() derives from the arguments.
  using Plan = IndexerKQuantAndCachePlan;

  /// \brief The contract, shared by the three implementations.
  ///
  /// Checks every argument for `impl` and returns the plan; throws InvalidArgument (naming the
  /// argument, the expected and the actual value) before anything is written. It reads
  /// slot_mapping to check that every slot is below num_blocks × block_size (on the GPU one CUB
  /// reduction and a synchronization). Zero tokens is a valid call that writes nothing.
  ///
  /// Beyond upstream's checks (same device, head_dim divisible by quant_block_size) it rejects
  /// what upstream silently gets wrong: a quant_block_size other than 128 and a head_dim that
  /// is not a multiple of 128 (upstream's kernel maps one warp to 128 elements whatever
  /// quant_block_size says), f32 keys (upstream reads them as if they were 16-bit), an i32
  /// slot_mapping (read as int64 upstream), fewer slots than keys, slots past the cache, and a
  /// cache whose size(2) is not head_dim + 4 × head_dim / 128 or whose slots are not packed.
  /// f16 keys are accepted and quantized correctly: upstream takes the amax of their raw bit
  /// patterns (wrong scales), pagedkv that of their values.
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan the implementation executes.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: a loop over tokens and their 128-element tiles.
  /// \note "ue8m0" rounds a scale up to the next power of two exactly, on its exponent bits;
  /// upstream computes `exp2f(ceilf(log2f(scale)))`. The float formula could go wrong only for
  /// a scale less than 2^-18 (relative) above a power of two, where log2f can round to the
  /// integer; no bf16 or f16 amax gives such a scale, so the two agree on every valid input
  /// (tests/test_indexer_k_quant_and_cache.cpp checks all 16-bit amax values). The bit method
  /// is used because it is the same integer operation on the CPU and the GPU, whereas log2f and
  /// exp2f would come from two different libraries (the host's libm and CUDA's).
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA: one thread per (token, tile), the CPU loop as it is.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA: eight lanes (a quarter warp) per tile, 16-byte vectors, the amax by
  /// warp shuffles (the kernel file header lists the tricks).
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry: family, sources, byte model, workloads
  /// (core/entries/indexer_k_quant_and_cache.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
