/// \file
/// \brief `concat_and_cache_mla_rope_fused`: rotate the new tokens' query and key RoPE parts
/// in place, then write `[kv_c, rotated k_pe]` into the MLA cache, in one pass.
///
/// This header is the op's one description: its arguments, the plan that validation produces
/// and the three implementations (CPU reference, naive CUDA, optimized CUDA).
///
/// Worked example (rot_dim 64, so 32 pairs): for NeoX style the pair i is (x[i], x[32 + i]),
/// for GPT-J style (x[2i], x[2i + 1]); with c = cos_sin_cache[p, i], s = cos_sin_cache[p, 32 + i]
/// and p = positions[t] the pair becomes (x c − y s, y c + x s). In fp32, in that order:
/// `fma(x, c, −(y·s))` and `fma(y, c, x·s)`, each rounded once to the activation dtype.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "pagedkv/impl.h"
#include "pagedkv/kv_cache_dtype.h"
#include "pagedkv/op.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief Everything the implementations need, derived once from the arguments by
/// ConcatAndCacheMlaRopeFused::validate(). Strides are in elements.
struct ConcatAndCacheMlaRopeFusedPlan {
  std::int64_t num_tokens = 0;      ///< q_pe.size(0) = k_pe.size(0) = kv_c.size(0) = slots
  std::int64_t num_q_heads = 0;     ///< q_pe.size(1)
  std::int64_t rot_dim = 0;         ///< q_pe.size(2) = k_pe.size(1) = cos_sin_cache.size(1)
  std::int64_t kv_lora_rank = 0;    ///< kv_c.size(1)
  std::int64_t max_position = 0;    ///< cos_sin_cache.size(0)
  std::int64_t q_token_stride = 0;  ///< q_pe.stride(0)
  std::int64_t q_head_stride = 0;   ///< q_pe.stride(1)
  std::int64_t k_pe_stride = 0;     ///< k_pe.stride(0)
  std::int64_t kv_c_stride = 0;     ///< kv_c.stride(0)
  std::int64_t block_size = 0;      ///< kv_cache.size(1)
  std::int64_t num_blocks = 0;      ///< kv_cache.size(0)
  std::int64_t block_stride = 0;    ///< kv_cache.stride(0)
  std::int64_t entry_stride = 0;    ///< kv_cache.stride(1)
  bool is_neox = true;              ///< pairs (i, rot_dim/2 + i), else (2i, 2i + 1)
  DType activation_dtype = DType::bf16;           ///< dtype of q_pe, k_pe, kv_c, cos_sin_cache
  KvCacheDtype cache_kind = KvCacheDtype::kAuto;  ///< how the cache stores an element
};

/// \brief concat_and_cache_mla_rope_fused: the op's arguments, its contract and its three
/// implementations.
struct ConcatAndCacheMlaRopeFused {
  /// \brief The upstream name.
  static constexpr const char* name = "concat_and_cache_mla_rope_fused";

  /// \brief The arguments, in vLLM's order and with vLLM's names (documented in arguments()).
  struct Args {
    /// \name Arguments (documented in ConcatAndCacheMlaRopeFused::arguments)
    /// @{
    TensorView positions;        ///< see ConcatAndCacheMlaRopeFused::arguments()
    TensorView q_pe;             ///< see ConcatAndCacheMlaRopeFused::arguments()
    TensorView k_pe;             ///< see ConcatAndCacheMlaRopeFused::arguments()
    TensorView kv_c;             ///< see ConcatAndCacheMlaRopeFused::arguments()
    TensorView cos_sin_cache;    ///< see ConcatAndCacheMlaRopeFused::arguments()
    bool is_neox = true;         ///< see ConcatAndCacheMlaRopeFused::arguments()
    TensorView slot_mapping;     ///< see ConcatAndCacheMlaRopeFused::arguments()
    TensorView kv_cache;         ///< see ConcatAndCacheMlaRopeFused::arguments()
    std::string kv_cache_dtype;  ///< see ConcatAndCacheMlaRopeFused::arguments()
    TensorView kv_cache_scale;   ///< see ConcatAndCacheMlaRopeFused::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::positions, "positions", ArgKind::input,
        "[>= T] i64, contiguous: each token's position, the row of cos_sin_cache it uses; "
        "every position in [0, cos_sin_cache.size(0))");
    arg(&Args::q_pe, "q_pe", ArgKind::inout,
        "[T, num_q_heads, rot_dim] f32, f16 or bf16, token and head strides free, elements "
        "packed: the queries' RoPE parts, rotated in place for every token, padding included");
    arg(&Args::k_pe, "k_pe", ArgKind::inout,
        "[T, rot_dim], the dtype of q_pe, rows of any pitch: the keys' RoPE parts, rotated in "
        "place for tokens with a slot (padding tokens keep theirs)");
    arg(&Args::kv_c, "kv_c", ArgKind::input,
        "[T, kv_lora_rank], the dtype of q_pe, rows of any pitch: the latent vectors");
    arg(&Args::cos_sin_cache, "cos_sin_cache", ArgKind::input,
        "[max_position, rot_dim], the dtype of q_pe, contiguous: row p is rot_dim / 2 cosines "
        "then rot_dim / 2 sines of position p");
    arg(&Args::is_neox, "is_neox", ArgKind::boolean,
        "true: pairs (i, rot_dim / 2 + i) (GPT-NeoX style); false: pairs (2i, 2i + 1) (GPT-J)");
    arg(&Args::slot_mapping, "slot_mapping", ArgKind::input,
        "[T] i64, contiguous: each token's cache slot; negative slots (padding) are skipped");
    arg(&Args::kv_cache, "kv_cache", ArgKind::output,
        "[num_blocks, block_size, kv_lora_rank + rot_dim], block and slot strides free, entry "
        "packed: q_pe's dtype for \"auto\", one byte for fp8");
    arg(&Args::kv_cache_dtype, "kv_cache_dtype", ArgKind::string,
        "\"auto\" / \"bfloat16\" / \"float16\" (bits copied) or \"fp8\" / \"fp8_e4m3\" / "
        "\"fp8_e5m2\" (one byte, fp8(x / scale)); \"fp8_ds_mla\" is not supported");
    arg(&Args::kv_cache_scale, "kv_cache_scale", ArgKind::input,
        "f32 [1] (one element): the cache scale; read only for fp8 caches");
  }

  /// \brief What validate() derives from the arguments.
  using Plan = ConcatAndCacheMlaRopeFusedPlan;

  /// \brief The contract, shared by the three implementations.
  ///
  /// Checks every argument for `impl` and returns the plan; throws InvalidArgument (naming the
  /// argument, the expected and the actual value) before anything is written. It reads
  /// positions and slot_mapping (on the GPU two CUB reductions and synchronizations). Zero
  /// tokens is a valid call that writes nothing.
  ///
  /// Upstream's observable behaviour is kept: q_pe is rotated for every token, padding tokens
  /// (negative slot) included, while a padding token's k_pe and cache entry stay untouched.
  /// The arithmetic is pagedkv's: in fp32, `x_new = fma(x, c, −(y·s))` and
  /// `y_new = fma(y, c, x·s)`, rounded once to the activation dtype (upstream rounds each 16-bit
  /// product and sum; results may differ from upstream's in the last bit of f16 / bf16). Beyond
  /// upstream's checks it
  /// rejects positions outside cos_sin_cache, an odd rot_dim, slots past the cache, an "auto"
  /// cache of another dtype than q_pe and overlapping cache entries.
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan the implementation executes.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: a loop over tokens, pairs rotated one by one, then the entry.
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA: one block per token, thread-strided loops over pairs and elements.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA: 16-byte vectors of pairs, cos/sin loaded once per thread, the
  /// entry written by one warp (the kernel file header lists the tricks).
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry: family, sources, byte model, workloads
  /// (core/entries/concat_and_cache_mla_rope_fused.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
