/// \file
/// \brief `rotary_embedding`: rotary position embedding (RoPE), in place on every head of
/// `query` and, when given, of `key`, by the angles of each token's position.
///
/// Each head's elements `[rope_dim_offset, rope_dim_offset + rot_dim)` form rot_dim / 2 pairs;
/// the rest of the head is left as it is. With E = rot_dim / 2, NeoX style pairs element j with
/// element E + j (the two halves), GPT-J style pairs 2j with 2j + 1 (neighbours). Pair j of a
/// token at position p turns by the angle whose cosine is `cos_sin_cache[p, j]` and whose sine
/// is `s = cos_sin_cache[p, E + j]` (`−s` when `inverse`): (x, y) becomes
/// (x c − y s, y c + x s). In fp32, in that order: `fma(x, c, −(y·s))` and `fma(y, c, x·s)`,
/// each rounded once to the activation dtype, the same in the three implementations.
///
/// Worked example (rot_dim 4, NeoX, position 1 of a cache whose row 1 is (0, 1, 1, 0), i.e.
/// cos = (0, 1), sin = (1, 0)): a head (1, 2, 3, 4) has pairs (1, 3) and (2, 4); the first
/// turns by 90° to (−3, 1), the second stays: the head becomes (−3, 2, 1, 4).
#pragma once

#include <cstdint>
#include <string_view>

#include <cuda_runtime_api.h>

#include "pagedkv/impl.h"
#include "pagedkv/op.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief Everything the implementations need, derived once from the arguments by
/// RotaryEmbedding::validate(). Strides are in elements.
struct RotaryEmbeddingPlan {
  std::int64_t num_tokens = 0;         ///< positions.numel()
  std::int64_t num_heads = 0;          ///< query heads
  std::int64_t num_kv_heads = 0;       ///< key heads; 0 without key
  std::int64_t head_size = 0;          ///< elements per head
  std::int64_t rot_dim = 0;            ///< cos_sin_cache.size(1): rotated elements per head
  std::int64_t rope_dim_offset = 0;    ///< the first rotated element of a head
  std::int64_t max_position = 0;       ///< cos_sin_cache.size(0)
  std::int64_t query_token_stride = 0; ///< from one token of query to the next
  std::int64_t query_head_stride = 0;  ///< from one head of query to the next
  std::int64_t key_token_stride = 0;   ///< from one token of key to the next (0 without key)
  std::int64_t key_head_stride = 0;    ///< from one head of key to the next (0 without key)
  bool is_neox = true;                 ///< pairs (j, E + j), else (2j, 2j + 1)
  bool inverse = false;                ///< turn by −angle (the sines negated)
  DType dtype = DType::bf16;           ///< dtype of query and key
  DType cache_dtype = DType::f32;      ///< dtype of cos_sin_cache: f32 or dtype
};

/// \brief rotary_embedding: the op's arguments, its contract and its three implementations.
struct RotaryEmbedding {
  /// \brief The upstream name.
  static constexpr const char* name = "rotary_embedding";

  /// \brief The arguments, in vLLM's order and with vLLM's names (documented in arguments()).
  struct Args {
    /// \name Arguments (documented in RotaryEmbedding::arguments)
    /// @{
    TensorView positions;              ///< see RotaryEmbedding::arguments()
    TensorView query;                  ///< see RotaryEmbedding::arguments()
    TensorView key;                    ///< see RotaryEmbedding::arguments()
    std::int64_t head_size = 0;        ///< see RotaryEmbedding::arguments()
    TensorView cos_sin_cache;          ///< see RotaryEmbedding::arguments()
    bool is_neox = true;               ///< see RotaryEmbedding::arguments()
    std::int64_t rope_dim_offset = 0;  ///< see RotaryEmbedding::arguments()
    bool inverse = false;              ///< see RotaryEmbedding::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::positions, "positions", ArgKind::input,
        "[T] or [B, S] i64, contiguous: each token's position, the row of cos_sin_cache it "
        "uses; every position in [0, cos_sin_cache.size(0))");
    arg(&Args::query, "query", ArgKind::inout,
        "[T, H * head_size] or [T, H, head_size] (or [B, S, ...]: positions' leading dims) f32, "
        "f16 or bf16, last dim contiguous, token and head strides free: rotated in place");
    arg(&Args::key, "key", ArgKind::optional_inout,
        "None, or query's forms with num_kv_heads heads (num_heads a multiple of it), the dtype "
        "of query: rotated in place");
    arg(&Args::head_size, "head_size", ArgKind::integer,
        "elements per head of query and key");
    arg(&Args::cos_sin_cache, "cos_sin_cache", ArgKind::input,
        "[max_position, rot_dim] f32 or the dtype of query, contiguous: row p is rot_dim / 2 "
        "cosines then rot_dim / 2 sines of position p; rot_dim even, rot_dim + rope_dim_offset "
        "<= head_size");
    arg(&Args::is_neox, "is_neox", ArgKind::boolean,
        "true: pairs (j, rot_dim / 2 + j) (GPT-NeoX style); false: pairs (2j, 2j + 1) (GPT-J)");
    arg(&Args::rope_dim_offset, "rope_dim_offset", ArgKind::integer,
        "the first rotated element of each head (elements before it and after rot_dim more "
        "stay as they are)");
    arg(&Args::inverse, "inverse", ArgKind::boolean,
        "true: turn by the opposite angle (the sines negated), undoing the rotation");
  }

  /// \brief The defaults of vLLM's Python wrapper (`rope_dim_offset=0, inverse=False`).
  /// \param argument an argument's name.
  /// \return the default as Python writes it, or nullptr for an argument without one.
  static const char* default_value(std::string_view argument) {
    if (argument == "rope_dim_offset") return "0";
    if (argument == "inverse") return "False";
    return nullptr;
  }

  /// \brief What validate() derives from the arguments.
  using Plan = RotaryEmbeddingPlan;

  /// \brief The largest rot_dim: the optimized kernel keeps a whole cos_sin_cache row (as
  /// fp32, 32 KiB at this size) in shared memory. Real models rotate at most a few hundred.
  static constexpr std::int64_t kMaxRotDim = 8192;
  /// \brief The most elements of query (num_heads × head_size) or key per token: the kernels
  /// count a token's pairs in 32-bit integers (upstream counts its elements in int).
  static constexpr std::int64_t kMaxTokenElements = std::int64_t{1} << 30;

  /// \brief The contract, shared by the three implementations.
  ///
  /// Checks every argument for `impl` and returns the plan; throws InvalidArgument (naming the
  /// argument, the expected and the actual value) before anything is written. It reads
  /// positions (on the GPU one CUB reduction and a synchronization). Zero tokens is a valid
  /// call that writes nothing.
  ///
  /// Beyond upstream's checks (positions' and query's / key's leading dims, heads a multiple
  /// of head_size, num_heads % num_kv_heads, rot_dim + rope_dim_offset <= head_size) it rejects
  /// positions outside cos_sin_cache (negative ones too), an odd rot_dim or one above
  /// kMaxRotDim, more than kMaxTokenElements elements per token, a last dim that is
  /// not contiguous, a key of another dtype than query, leading dims that do not flatten to one
  /// token stride, and heads that overlap. Where upstream gives key query's head stride, each
  /// tensor here keeps its own.
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan the implementation executes.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: a loop over tokens, heads and pairs, one pair rotated at a time.
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA: one block per token, its threads striding over (head, pair).
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA: 16-byte vectors of pairs, the block's cos/sin rows staged once in
  /// shared memory, several tokens per block (the kernel file header lists the tricks).
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry: family, sources, byte model, workload W11
  /// (core/entries/rotary_embedding.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
