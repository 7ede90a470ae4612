/// \file
/// \brief `concat_and_cache_mla`: write each new token's MLA latent vector (`kv_c`) and its
/// RoPE key part (`k_pe`), concatenated, as one entry of a paged cache.
///
/// This header is the op's one description: its arguments, the plan that validation produces
/// and the three implementations (CPU reference, naive CUDA, optimized CUDA).
///
/// Worked example (DeepSeek-V3: kv_lora_rank 512, rope_dim 64, block_size 64): the token with
/// slot 200 lands in block 3 at offset 8. With an "auto" bf16 cache its entry is
/// `kv_cache[3, 8, 0:576]`: elements 0-511 are `kv_c[t, :]`, elements 512-575 `k_pe[t, :]`.
/// With "fp8_ds_mla" the entry is 656 bytes: bytes 0-511 the fp8 E4M3 latent in four tiles of
/// 128, bytes 512-527 the four fp32 tile scales, bytes 528-655 the 64 bf16 RoPE values.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "pagedkv/impl.h"
#include "pagedkv/kv_cache_dtype.h"
#include "pagedkv/op.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief The bytes of one `fp8_ds_mla` cache entry (FlashMLA's sparse format).
constexpr std::int64_t kDsMlaEntryBytes = 656;
/// \brief kv_lora_rank, the only latent width the `fp8_ds_mla` entry holds.
constexpr std::int64_t kDsMlaLatent = 512;
/// \brief rope_dim, the only RoPE width the `fp8_ds_mla` entry holds.
constexpr std::int64_t kDsMlaRope = 64;
/// \brief Latent elements per tile of the `fp8_ds_mla` entry; each tile has its own scale.
constexpr std::int64_t kDsMlaTile = 128;
/// \brief Byte offset of the four fp32 tile scales in an `fp8_ds_mla` entry.
constexpr std::int64_t kDsMlaScaleOffset = 512;
/// \brief Byte offset of the 64 bf16 RoPE values in an `fp8_ds_mla` entry.
constexpr std::int64_t kDsMlaRopeOffset = 528;
/// \brief E4M3's largest finite value: a tile's scale is its amax / 448.
constexpr float kDsMlaFp8Max = 448.f;

/// \brief Everything the implementations need, derived once from the arguments by
/// ConcatAndCacheMla::validate(). Strides are in elements of their tensor (the cache's in
/// bytes for fp8_ds_mla).
struct ConcatAndCacheMlaPlan {
  std::int64_t num_tokens = 0;    ///< slot_mapping.size(0); kv_c and k_pe may have more rows
  std::int64_t kv_lora_rank = 0;  ///< kv_c.size(1): latent elements per token
  std::int64_t rope_dim = 0;      ///< k_pe.size(1): RoPE elements per token
  std::int64_t block_size = 0;    ///< kv_cache.size(1): slots per block
  std::int64_t num_blocks = 0;    ///< kv_cache.size(0)
  std::int64_t kv_c_stride = 0;   ///< kv_c.stride(0): elements between two tokens' rows
  std::int64_t k_pe_stride = 0;   ///< k_pe.stride(0)
  std::int64_t block_stride = 0;  ///< kv_cache.stride(0)
  std::int64_t entry_stride = 0;  ///< kv_cache.stride(1): between two slots of a block
  DType activation_dtype = DType::bf16;           ///< dtype of kv_c and k_pe
  KvCacheDtype cache_kind = KvCacheDtype::kAuto;  ///< element storage (E4M3 for fp8_ds_mla)
  bool ds_mla = false;  ///< "fp8_ds_mla": the 656-byte entry with per-tile scales
};

/// \brief concat_and_cache_mla: the op's arguments, its contract and its three implementations.
struct ConcatAndCacheMla {
  /// \brief The upstream name.
  static constexpr const char* name = "concat_and_cache_mla";

  /// \brief The arguments, in vLLM's order and with vLLM's names (documented in arguments()).
  struct Args {
    /// \name Arguments (documented in ConcatAndCacheMla::arguments)
    /// @{
    TensorView kv_c;             ///< see ConcatAndCacheMla::arguments()
    TensorView k_pe;             ///< see ConcatAndCacheMla::arguments()
    TensorView kv_cache;         ///< see ConcatAndCacheMla::arguments()
    TensorView slot_mapping;     ///< see ConcatAndCacheMla::arguments()
    std::string kv_cache_dtype;  ///< see ConcatAndCacheMla::arguments()
    TensorView scale;            ///< see ConcatAndCacheMla::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::kv_c, "kv_c", ArgKind::input,
        "[T_pad, kv_lora_rank] f32, f16 or bf16 (bf16 only for \"fp8_ds_mla\"): the new "
        "tokens' compressed latent vectors; rows may have any pitch, elements packed");
    arg(&Args::k_pe, "k_pe", ArgKind::input,
        "[T_pad, rope_dim], the dtype of kv_c: the new tokens' RoPE key parts; rows may have any "
        "pitch (in the model a slice of the kv_a projection's output)");
    arg(&Args::kv_cache, "kv_cache", ArgKind::output,
        "[num_blocks, block_size, entry], block and slot strides free, entry packed: entry = "
        "kv_lora_rank + rope_dim elements of kv_c's dtype (\"auto\") or bytes (fp8), or the "
        "656-byte fp8_ds_mla entry (u8 or f8_e4m3)");
    arg(&Args::slot_mapping, "slot_mapping", ArgKind::input,
        "[T] i64, contiguous, T <= kv_c.size(0) and k_pe.size(0): slot = block × block_size + "
        "offset for each token; negative slots (padding) are skipped");
    arg(&Args::kv_cache_dtype, "kv_cache_dtype", ArgKind::string,
        "\"auto\" / \"bfloat16\" / \"float16\" (bits copied), \"fp8\" / \"fp8_e4m3\" / "
        "\"fp8_e5m2\" (one byte, fp8(x / scale)), or \"fp8_ds_mla\" (the 656-byte entry: E4M3 "
        "latent with one scale per 128-element tile, bf16 RoPE)");
    arg(&Args::scale, "scale", ArgKind::input,
        "f32 [1] (one element): the cache scale; read only for \"fp8\", \"fp8_e4m3\" and "
        "\"fp8_e5m2\" (\"fp8_ds_mla\" computes its own tile scales)");
  }

  /// \brief What validate() derives from the arguments.
  using Plan = ConcatAndCacheMlaPlan;

  /// \brief The contract, shared by the three implementations.
  ///
  /// Checks every argument for `impl` and returns the plan; throws InvalidArgument (naming the
  /// argument, the expected and the actual value) before anything is written. It reads
  /// slot_mapping to check that every slot is below num_blocks × block_size (on the GPU one CUB
  /// reduction and a synchronization). Zero tokens is a valid call that writes nothing.
  ///
  /// Beyond upstream's checks it rejects an i32 slot_mapping, slots past the cache, an "auto"
  /// cache of another dtype than kv_c, a scale that is not one f32 element (fp8), entry
  /// strides under which two entries overlap, and f16 or f32 input for "fp8_ds_mla": that entry
  /// stores the RoPE part as bf16 bits, which FlashMLA reads as bf16, and upstream computes the
  /// f16 tile scales on raw bit patterns (quirk); only bf16 input has a meaning there.
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan the implementation executes.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: a loop over tokens, each entry written element by element.
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA: one thread per entry element (per tile for fp8_ds_mla).
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA: one warp per entry, 16-byte vectors (the kernel file header lists
  /// the tricks).
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry: family, sources, byte model, workloads
  /// (core/entries/concat_and_cache_mla.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
