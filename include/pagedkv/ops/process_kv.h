/// \file
/// \brief `process_kv`: LMDeploy TurboMind's `invokeProcessKV_v2`: add the bias to each new
/// token's K and V, rotate K by its position (RoPE on write), quantize both to int8 or int4 with
/// one `[scale, zero]` per token and head (or keep them as they are), and store them in
/// TurboMind's paged blocks, which the call names by their byte offsets in the pool.
///
/// Sequence b's new tokens are the rows `cu_q_len[b] .. cu_q_len[b + 1] − 1` of k and v; they
/// are the last q_len of its k_len = `cu_k_len[b + 1] − cu_k_len[b]` tokens, so row qi goes to
/// position ti = k_len − q_len + qi, into the block `blocks[cu_block_num[b] + ti / block_seq_len]`
/// at row `ti % block_seq_len` (with context parallelism, rank cp_rank stores the positions
/// ti ≡ cp_rank mod cp_size at ti / cp_size). Where everything lies inside a block:
/// pagedkv/turbomind_kv.h.
///
/// Worked example: one sequence with 100 cached tokens gets 3 new ones (cu_q_len = {0, 3},
/// cu_k_len = {0, 103}); block_seq_len 64, so its rows 0, 1, 2 go to positions 100, 101, 102,
/// rows 36, 37, 38 of its second block `blocks[cu_block_num[0] + 1]`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "pagedkv/impl.h"
#include "pagedkv/op.h"
#include "pagedkv/tensor_view.h"
#include "pagedkv/turbomind_kv.h"

namespace pagedkv {

/// \brief What validation derives for process_kv and flatten_kv: the block layout, the pool,
/// the batch and the RoPE parameters. Strides in elements of their tensor.
struct TurbomindKvPlan {
  TurbomindLayout layout;           ///< where things lie in a layer region
  DType dtype = DType::bf16;        ///< f16 or bf16: the activations and the parameters
  int quant_bits = 16;              ///< 16, 8 or 4
  std::int64_t batch = 0;           ///< sequences
  std::int64_t rows = 0;            ///< rows of the activations (k / v, or the outputs)
  std::int64_t token_stride = 0;    ///< stride(0) of the activations
  std::int64_t head_stride = 0;     ///< stride(1) of the activations
  std::int64_t v_token_stride = 0;  ///< stride(0) of v (or v_out)
  std::int64_t v_head_stride = 0;   ///< stride(1) of v (or v_out)
  std::int64_t layer_offset = 0;    ///< layer_id × layer_size: the layer region in a block
  std::int64_t block_seq_len = 0;   ///< tokens per block
  std::int64_t cp_rank = 0;         ///< this rank
  std::int64_t cp_size = 1;         ///< ranks the positions are dealt to
  std::int64_t max_len = 0;         ///< max_q_len (process_kv) or max_seq_len (flatten_kv)
  TurbomindRope rope;               ///< RoPE parameters (type none: no rotation)
};

/// \cond INTERNAL
// The RoPE arguments both TurboMind ops take, documented once (Args must have these members).
template <class Args, class Arg>
void turbomind_rope_bases_argument(Arg&& arg) {
  arg(&Args::rope_bases, "rope_bases", ArgKind::optional_input,
      "[batch] f32, contiguous, or None: each sequence's RoPE base, for rope_type \"dynamic\" "
      "only (dynamic NTK: computed when the request is added, see "
      "pagedkv.lmdeploy.dynamic_ntk_base)");
}

// The RoPE parameters both TurboMind ops take, last (they all have defaults).
template <class Args, class Arg>
void turbomind_rope_arguments(Arg&& arg) {
  arg(&Args::rope_type, "rope_type", ArgKind::string,
      "\"none\" (no rotation), \"default\", \"linear\", \"dynamic\", \"yarn\" or \"llama3\": "
      "TurboMind's RoPE types (MRoPE is not implemented); pairs are adjacent (x[d], x[d + 1])");
  arg(&Args::rope_dim, "rope_dim", ArgKind::integer,
      "dims rotated (the first rope_dim of each head): a multiple of 8 in [8, head_dim]; "
      "ignored for \"none\"");
  arg(&Args::rope_base, "rope_base", ArgKind::real, "the RoPE base (theta), > 1");
  arg(&Args::rope_factor, "rope_factor", ArgKind::real,
      "the scaling factor: positions are divided by it (\"linear\"), the frequencies blended "
      "(\"yarn\", \"llama3\"); 0 or 1 for none; ignored by \"default\" and \"dynamic\"");
  arg(&Args::max_position_embeddings, "max_position_embeddings", ArgKind::integer,
      "\"yarn\": the model's max_position_embeddings (the correction range is computed from it)");
  arg(&Args::yarn_beta_fast, "yarn_beta_fast", ArgKind::real, "\"yarn\": beta_fast (32)");
  arg(&Args::yarn_beta_slow, "yarn_beta_slow", ArgKind::real, "\"yarn\": beta_slow (1)");
  arg(&Args::yarn_attention_factor, "yarn_attention_factor", ArgKind::real,
      "\"yarn\": cos and sin are multiplied by it (the mscale, e.g. 0.1 ln(factor) + 1)");
  arg(&Args::llama3_low_freq_factor, "llama3_low_freq_factor", ArgKind::real,
      "\"llama3\": low_freq_factor (1)");
  arg(&Args::llama3_high_freq_factor, "llama3_high_freq_factor", ArgKind::real,
      "\"llama3\": high_freq_factor (4), above low_freq_factor");
  arg(&Args::llama3_original_max_position_embeddings, "llama3_original_max_position_embeddings",
      ArgKind::integer, "\"llama3\": original_max_position_embeddings (8192)");
}

// Python defaults of the RoPE arguments (no rotation).
inline const char* turbomind_rope_default(std::string_view argument) {
  if (argument == "rope_type") return "\"none\"";
  if (argument == "rope_dim") return "0";
  if (argument == "rope_base") return "10000.0";
  if (argument == "rope_factor") return "1.0";
  if (argument == "max_position_embeddings") return "0";
  if (argument == "yarn_beta_fast") return "32.0";
  if (argument == "yarn_beta_slow") return "1.0";
  if (argument == "yarn_attention_factor") return "1.0";
  if (argument == "llama3_low_freq_factor") return "1.0";
  if (argument == "llama3_high_freq_factor") return "4.0";
  if (argument == "llama3_original_max_position_embeddings") return "8192";
  if (argument == "layer_id") return "0";
  if (argument == "cp_rank") return "0";
  if (argument == "cp_size") return "1";
  return nullptr;
}
/// \endcond

/// \brief process_kv: the op's arguments, its contract and its three implementations.
struct ProcessKv {
  /// \brief The pagedkv name (upstream: `invokeProcessKV_v2`).
  static constexpr const char* name = "process_kv";

  /// \brief The arguments, in upstream's order except that the RoPE parameters, which all
  /// have defaults, come last (documented in arguments()).
  struct Args {
    /// \name Arguments (documented in ProcessKv::arguments)
    /// @{
    TensorView kv_cache;            ///< see ProcessKv::arguments()
    TensorView blocks;              ///< see ProcessKv::arguments()
    TensorView k;                   ///< see ProcessKv::arguments()
    TensorView v;                   ///< see ProcessKv::arguments()
    TensorView k_bias;              ///< see ProcessKv::arguments()
    TensorView v_bias;              ///< see ProcessKv::arguments()
    TensorView cu_q_len;            ///< see ProcessKv::arguments()
    TensorView cu_k_len;            ///< see ProcessKv::arguments()
    TensorView cu_block_num;        ///< see ProcessKv::arguments()
    TensorView readonly_block_num;  ///< see ProcessKv::arguments()
    TensorView rope_bases;          ///< see ProcessKv::arguments()
    std::int64_t block_seq_len = 64;                       ///< see ProcessKv::arguments()
    std::int64_t max_q_len = 0;                            ///< see ProcessKv::arguments()
    std::int64_t quant_policy = 0;                         ///< see ProcessKv::arguments()
    std::int64_t layer_id = 0;                             ///< see ProcessKv::arguments()
    std::int64_t cp_rank = 0;                              ///< see ProcessKv::arguments()
    std::int64_t cp_size = 1;                              ///< see ProcessKv::arguments()
    std::string rope_type = "none";                        ///< see ProcessKv::arguments()
    std::int64_t rope_dim = 0;                             ///< see ProcessKv::arguments()
    double rope_base = 10000.0;                            ///< see ProcessKv::arguments()
    double rope_factor = 1.0;                              ///< see ProcessKv::arguments()
    std::int64_t max_position_embeddings = 0;              ///< see ProcessKv::arguments()
    double yarn_beta_fast = 32.0;                          ///< see ProcessKv::arguments()
    double yarn_beta_slow = 1.0;                           ///< see ProcessKv::arguments()
    double yarn_attention_factor = 1.0;                    ///< see ProcessKv::arguments()
    double llama3_low_freq_factor = 1.0;                   ///< see ProcessKv::arguments()
    double llama3_high_freq_factor = 4.0;                  ///< see ProcessKv::arguments()
    std::int64_t llama3_original_max_position_embeddings = 8192;  ///< see arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::kv_cache, "kv_cache", ArgKind::output,
        "u8 [num_blocks, block_bytes], rows 16-byte aligned (data and stride(0)): the pool of "
        "TurboMind blocks; each block holds the layer regions of get_cache_block_size(), the "
        "call writes layer layer_id's rows of its new tokens and nothing else");
    arg(&Args::blocks, "blocks", ArgKind::input,
        "[total_blocks] i64, contiguous: upstream's char** block pointers as byte offsets from "
        "kv_cache's first byte (block i at i × kv_cache.stride(0)); sequence b's blocks are "
        "blocks[cu_block_num[b] ..]");
    arg(&Args::k, "k", ArgKind::input,
        "[rows, head_num, head_dim] f16 or bf16, dims packed: the new tokens' keys (head_dim "
        "64 or 128; any token and head strides, e.g. a view into the fused qkv output)");
    arg(&Args::v, "v", ArgKind::input, "like k, same shape and dtype: the new tokens' values");
    arg(&Args::k_bias, "k_bias", ArgKind::optional_input,
        "[head_num, head_dim], k's dtype, contiguous, or None: added to every key first");
    arg(&Args::v_bias, "v_bias", ArgKind::optional_input,
        "[head_num, head_dim], k's dtype, contiguous, or None: added to every value");
    arg(&Args::cu_q_len, "cu_q_len", ArgKind::input,
        "[batch + 1] i32, contiguous, non-decreasing from >= 0: sequence b's new tokens are the "
        "rows cu_q_len[b] .. cu_q_len[b + 1] - 1 of k and v (absolute rows, not rebased)");
    arg(&Args::cu_k_len, "cu_k_len", ArgKind::input,
        "[batch + 1] i32, contiguous, non-decreasing: k_len = cu_k_len[b + 1] - cu_k_len[b] is "
        "sequence b's length after this step (>= its q_len); its new tokens are its last q_len");
    arg(&Args::cu_block_num, "cu_block_num", ArgKind::input,
        "[batch + 1] i32, contiguous, non-decreasing from >= 0, cu_block_num[batch] <= "
        "blocks.size(0): sequence b's blocks are blocks[cu_block_num[b] .. cu_block_num[b + 1] "
        "- 1], enough for its k_len tokens on this rank");
    arg(&Args::readonly_block_num, "readonly_block_num", ArgKind::optional_input,
        "[batch] i32, contiguous, >= 0, or None: sequence b's first readonly_block_num[b] "
        "logical blocks are already valid (prefix cache) and are not written");
    turbomind_rope_bases_argument<Args>(arg);
    arg(&Args::block_seq_len, "block_seq_len", ArgKind::integer,
        "tokens per block, in [1, 4096] (TurboMind's cache_block_seq_len, 64 by default)");
    arg(&Args::max_q_len, "max_q_len", ArgKind::integer,
        "at least every sequence's q_len and at most k.size(0): the launch covers this many "
        "tokens per sequence");
    arg(&Args::quant_policy, "quant_policy", ArgKind::integer,
        "0 (K and V as they are), 8 (int8 codes) or 4 (int4 codes), each token's and head's "
        "K and V with a [scale, zero] pair in k's dtype");
    arg(&Args::layer_id, "layer_id", ArgKind::integer,
        "the layer written: its region starts layer_id × layer_size bytes into each block and "
        "must end inside it (upstream at HEAD passes this offset in bytes, cache_block_offset)");
    arg(&Args::cp_rank, "cp_rank", ArgKind::integer,
        "context parallelism: this rank, 0 <= cp_rank < cp_size");
    arg(&Args::cp_size, "cp_size", ArgKind::integer,
        "context parallelism: ranks, >= 1; position ti is stored by rank ti mod cp_size at "
        "ti / cp_size");
    turbomind_rope_arguments<Args>(arg);
  }

  /// \brief The Python defaults: no RoPE, layer 0, one rank.
  /// \param argument an argument name.
  /// \return its default as Python writes it, or nullptr.
  static const char* default_value(std::string_view argument) {
    return turbomind_rope_default(argument);
  }

  /// \brief What validate() derives from the arguments.
  using Plan = TurbomindKvPlan;

  /// \brief The contract, shared by the three implementations.
  ///
  /// Checks every argument for `impl` and returns the plan; throws InvalidArgument (naming the
  /// argument, the expected and the actual value) before anything is written. It reads
  /// cu_q_len, cu_k_len, cu_block_num, readonly_block_num and blocks (on the GPU: copied back
  /// to the host, one synchronization), unless the call defers (inside a CUDA graph capture,
  /// or in the deferred error mode): then a check kernel on the call's stream checks them, and
  /// a fault makes the kernels write nothing (pagedkv/deferred_checks.h). Zero tokens is a
  /// valid call that writes nothing.
  ///
  /// Upstream checks only head_dim (an abort). This contract also rejects: a quant_policy
  /// other than 0, 4, 8; a head_dim other than 64 and 128 (pagedkv's instantiations) or
  /// block_seq_len outside [1, 4096]; a layer region past the end of the block; inconsistent
  /// cu_q_len / cu_k_len / cu_block_num (decreasing, q_len > k_len, rows past k, too few
  /// blocks, q_len > max_q_len); a block offset that is not a block of kv_cache (upstream
  /// dereferences any pointer); bad RoPE parameters (unknown type, rope_dim not a multiple of
  /// 8 or past head_dim, base <= 1, yarn or llama3 ranges that are empty).
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan the implementation executes.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: for each sequence, new token and head, the row as upstream computes
  /// it (bias, RoPE, statistics, codes), in the activation type's arithmetic.
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA: one thread per (token, head), the CPU loop as it is.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA: one 16-lane group per (token, head) row, 16-byte loads, the row's
  /// min / max by shuffles (the kernel file header lists the tricks).
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry (core/entries/process_kv.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
