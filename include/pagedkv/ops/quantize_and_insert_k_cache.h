/// \file
/// \brief `quantize_and_insert_k_cache`: quantize each new token's DeepSeek V4 attention key
/// (448 NoPE + 64 RoPE bf16 elements) to fp8 E4M3 with one power-of-two (UE8M0) scale per 64
/// elements, and store it in the paged `fp8_ds_mla` K cache.
///
/// This header is the op's one description: its arguments, the plan that validation produces
/// and the three implementations (CPU reference, naive CUDA, optimized CUDA). It also holds the
/// constants of the page format, which dequantize_and_gather_k_cache reads back.
///
/// The page format (B = block_size tokens per page, block_stride = the cache's stride(0)):
/// - bytes `[0, B × 576)`: one 576-byte data record per token, token p at `p × 576`: 448 E4M3
///   codes (dims 0..447), then the 64 RoPE dims as raw little-endian bf16 (128 bytes);
/// - bytes `[B × 576, B × 584)`: one 8-byte scale record per token, token p at
///   `B × 576 + p × 8`: 7 UE8M0 exponents (one per 64-dim quant block), then a pad byte 0;
/// - bytes `[B × 584, block_stride)`: padding, never touched.
///
/// Worked example (B = 64): the token with slot 200 lands in page 3 at position 8. Its codes
/// are bytes `[8 × 576, 8 × 576 + 448) = [4608, 5056)` of page 3, its RoPE bf16 the next 128
/// bytes, its scale record the 8 bytes at `64 × 576 + 8 × 8 = 36928`. A quant block whose
/// largest |element| is 3.5 gets the exponent e = ceil(log2(3.5 / 448)) = -7, stored as
/// e + 127 = 120; its element 1.0 is stored as E4M3(1.0 × 2^7) = E4M3(128) = 0x70.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string_view>

#include "pagedkv/impl.h"
#include "pagedkv/op.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief Elements of one DeepSeek V4 key (one latent KV head).
constexpr std::int64_t kDsv4HeadDim = 512;
/// \brief The leading dims stored as fp8 (the "NoPE" part).
constexpr std::int64_t kDsv4NopeDim = 448;
/// \brief The trailing dims kept as bf16 (the already rotated "RoPE" part).
constexpr std::int64_t kDsv4RopeDim = 64;
/// \brief Elements per quantization block: each has its own UE8M0 exponent.
constexpr std::int64_t kDsv4QuantBlock = 64;
/// \brief Quantization blocks per token: 448 / 64 = 7.
constexpr std::int64_t kDsv4QuantBlocks = kDsv4NopeDim / kDsv4QuantBlock;
/// \brief Bytes of one token's data record: 448 codes + 64 × 2 bytes of bf16.
constexpr std::int64_t kDsv4TokenDataBytes = kDsv4NopeDim + 2 * kDsv4RopeDim;
/// \brief Bytes of one token's scale record: 7 exponents and one pad byte.
constexpr std::int64_t kDsv4TokenScaleBytes = 8;
/// \brief Bytes a token occupies in its page: 576 + 8 (upstream's HEAD_BYTES).
constexpr std::int64_t kDsv4TokenBytes = kDsv4TokenDataBytes + kDsv4TokenScaleBytes;
/// \brief E4M3's largest finite value: a block's codes span at most ±448.
constexpr float kDsv4Fp8Max = 448.f;
/// \brief The floor of a block's amax (upstream's "fmaxf(amax, 1e-4)"): an all-zero block gets
/// the exponent -22 (code 105).
constexpr float kDsv4AmaxFloor = 1e-4f;
/// \brief The bias of a UE8M0 code: code = exponent + 127.
constexpr int kDsv4ScaleBias = 127;

/// \brief Everything the implementations need, derived once from the arguments by
/// QuantizeAndInsertKCache::validate(). Strides are in elements of their tensor (bytes for the
/// cache).
struct QuantizeAndInsertKCachePlan {
  std::int64_t num_tokens = 0;    ///< slot_mapping.size(0): T (k may have more rows)
  std::int64_t block_size = 0;    ///< B: tokens per page
  std::int64_t num_blocks = 0;    ///< k_cache.size(0): pages
  std::int64_t k_stride = 0;      ///< k.stride(0): elements between two tokens' keys
  std::int64_t block_stride = 0;  ///< k_cache.stride(0): bytes between two pages
};

/// \brief quantize_and_insert_k_cache: the op's arguments, its contract and its three
/// implementations.
struct QuantizeAndInsertKCache {
  /// \brief The upstream name.
  static constexpr const char* name = "quantize_and_insert_k_cache";

  /// \brief The arguments, in vLLM's order and with vLLM's names (documented in arguments()).
  struct Args {
    /// \name Arguments (documented in QuantizeAndInsertKCache::arguments)
    /// @{
    TensorView k;                  ///< see QuantizeAndInsertKCache::arguments()
    TensorView k_cache;            ///< see QuantizeAndInsertKCache::arguments()
    TensorView slot_mapping;       ///< see QuantizeAndInsertKCache::arguments()
    std::int64_t block_size = 64;  ///< see QuantizeAndInsertKCache::arguments()
    bool is_ue8m0 = true;          ///< see QuantizeAndInsertKCache::arguments()
    bool use_fnuz = false;         ///< see QuantizeAndInsertKCache::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::k, "k", ArgKind::input,
        "[>= T, 512] bf16: the new tokens' keys, 448 NoPE dims then 64 already rotated RoPE "
        "dims; rows of any pitch, elements packed");
    arg(&Args::k_cache, "k_cache", ArgKind::output,
        "u8 pages, [num_blocks, block_stride] or the view [num_blocks, block_size, 584]: per "
        "page block_size 576-byte data records (448 E4M3 codes + 64 bf16), then block_size "
        "8-byte scale records (7 UE8M0 exponents + a pad byte 0); the page stride "
        "(stride(0), bytes) is free but at least block_size × 584");
    arg(&Args::slot_mapping, "slot_mapping", ArgKind::input,
        "[T] i64, contiguous: slot = page × block_size + position for token t; negative slots "
        "(padding, upstream's -1) are skipped");
    arg(&Args::block_size, "block_size", ArgKind::integer,
        "B, tokens per page (64 in DeepSeek V4's SWA cache; 2 to 256 in its compressed caches)");
    arg(&Args::is_ue8m0, "is_ue8m0", ArgKind::boolean,
        "must be True: the exponents are UE8M0 codes (upstream asserts it; no other scale "
        "format exists)");
    arg(&Args::use_fnuz, "use_fnuz", ArgKind::boolean,
        "must be False: the FNUZ fp8 variant (ROCm gfx942) is not implemented (upstream raises "
        "on every other platform too)");
  }

  /// \brief vLLM's defaults: `block_size=64, is_ue8m0=True, use_fnuz=False`.
  /// \param argument an argument name.
  /// \return its default as Python writes it, or nullptr.
  static const char* default_value(std::string_view argument) {
    if (argument == "block_size") return "64";
    if (argument == "is_ue8m0") return "True";
    if (argument == "use_fnuz") return "False";
    return nullptr;
  }

  /// \brief What validate() derives from the arguments.
  using Plan = QuantizeAndInsertKCachePlan;

  /// \brief The contract, shared by the three implementations.
  ///
  /// Checks every argument for `impl` and returns the plan; throws InvalidArgument (naming the
  /// argument, the expected and the actual value) before anything is written. It reads
  /// slot_mapping to check that every slot is below num_blocks × block_size (on the GPU one CUB
  /// reduction and a synchronization, or a deferred check kernel). Zero tokens is a valid call
  /// that writes nothing.
  ///
  /// Upstream checks only k's rank, width and dtype and is_ue8m0. This contract also rejects
  /// what upstream silently gets wrong: slots past the cache and negative slots other than -1
  /// (upstream writes out of bounds; here every negative slot is padding), a slot_mapping that
  /// is not i64, fewer key rows than slots, a cache that is not u8 or whose pages are smaller
  /// than block_size × 584 bytes, a 3-D cache view whose size(1) is not block_size, and
  /// use_fnuz = True. Rows of k may have any pitch (upstream assumes 512).
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan the implementation executes.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: a loop over tokens and their 7 quant blocks.
  /// \note The exponent ceil(log2(amax / 448)) is found exactly from amax's exponent and
  /// mantissa bits (no log2: a float log2 gets exact powers of two wrong, see the chapter).
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA: one thread per (token, quant block), the CPU loop as it is.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA: one warp per token, 16-byte loads, the block amax by warp
  /// shuffles (the kernel file header lists the tricks).
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry: family, sources, byte model, workloads
  /// (core/entries/quantize_and_insert_k_cache.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
