/// \file
/// \brief `flatten_kv`: LMDeploy TurboMind's `invokeFlattenKV_v2`: read every token of each
/// sequence back from TurboMind's paged blocks into contiguous K and V rows, dequantizing int8 /
/// int4 codes with their `[scale, zero]` (and rotating K, where a RoPE type is given: upstream
/// has the path, its callers pass none, since process_kv rotated K on write).
///
/// Sequence b's k_len = `cu_k_len[b + 1] − cu_k_len[b]` tokens go to the rows
/// `cu_k_len[b] − cu_k_len[0] ..` of k_out and v_out (rebased to the first sequence); position
/// si comes from block `blocks[cu_block_num[b] + si / block_seq_len]`, row `si % block_seq_len`.
/// With context parallelism, rank cp_rank reads only its positions (si ≡ cp_rank mod cp_size),
/// compacted to rows `cu_k_len[b] − cu_k_len[0] + si / cp_size`; the other rows are not written.
///
/// Worked example: cu_k_len = {0, 70, 73}, block_seq_len 64: sequence 0's 70 tokens fill rows
/// 0..69 (its blocks 0 and 1), sequence 1's 3 tokens rows 70..72 (the first rows of its block 0).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "pagedkv/impl.h"
#include "pagedkv/op.h"
#include "pagedkv/ops/process_kv.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief flatten_kv: the op's arguments, its contract and its three implementations.
struct FlattenKv {
  /// \brief The pagedkv name (upstream: `invokeFlattenKV_v2`).
  static constexpr const char* name = "flatten_kv";

  /// \brief The arguments, in upstream's order except that the RoPE parameters, which all
  /// have defaults, come last (documented in arguments()).
  struct Args {
    /// \name Arguments (documented in FlattenKv::arguments)
    /// @{
    TensorView k_out;         ///< see FlattenKv::arguments()
    TensorView v_out;         ///< see FlattenKv::arguments()
    TensorView kv_cache;      ///< see FlattenKv::arguments()
    TensorView blocks;        ///< see FlattenKv::arguments()
    TensorView cu_k_len;      ///< see FlattenKv::arguments()
    TensorView cu_block_num;  ///< see FlattenKv::arguments()
    TensorView rope_bases;    ///< see FlattenKv::arguments()
    std::int64_t block_seq_len = 64;                       ///< see FlattenKv::arguments()
    std::int64_t max_seq_len = 0;                          ///< see FlattenKv::arguments()
    std::int64_t quant_policy = 0;                         ///< see FlattenKv::arguments()
    std::int64_t layer_id = 0;                             ///< see FlattenKv::arguments()
    std::int64_t cp_rank = 0;                              ///< see FlattenKv::arguments()
    std::int64_t cp_size = 1;                              ///< see FlattenKv::arguments()
    std::string rope_type = "none";                        ///< see FlattenKv::arguments()
    std::int64_t rope_dim = 0;                             ///< see FlattenKv::arguments()
    double rope_base = 10000.0;                            ///< see FlattenKv::arguments()
    double rope_factor = 1.0;                              ///< see FlattenKv::arguments()
    std::int64_t max_position_embeddings = 0;              ///< see FlattenKv::arguments()
    double yarn_beta_fast = 32.0;                          ///< see FlattenKv::arguments()
    double yarn_beta_slow = 1.0;                           ///< see FlattenKv::arguments()
    double yarn_attention_factor = 1.0;                    ///< see FlattenKv::arguments()
    double llama3_low_freq_factor = 1.0;                   ///< see FlattenKv::arguments()
    double llama3_high_freq_factor = 4.0;                  ///< see FlattenKv::arguments()
    std::int64_t llama3_original_max_position_embeddings = 8192;  ///< see arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::k_out, "k_out", ArgKind::output,
        "[rows, head_num, head_dim] f16 or bf16, dims packed, rows >= cu_k_len[batch] - "
        "cu_k_len[0]: every token's key, dequantized (any token and head strides, e.g. "
        "TurboMind's [head_num, 2, rows, head_dim] workspace)");
    arg(&Args::v_out, "v_out", ArgKind::output, "like k_out: every token's value");
    arg(&Args::kv_cache, "kv_cache", ArgKind::input,
        "u8 [num_blocks, block_bytes], rows 16-byte aligned: the pool of TurboMind blocks "
        "process_kv wrote");
    arg(&Args::blocks, "blocks", ArgKind::input,
        "[total_blocks] i64, contiguous: byte offsets of the blocks in kv_cache (block i at "
        "i × kv_cache.stride(0)); sequence b's blocks are blocks[cu_block_num[b] ..]");
    arg(&Args::cu_k_len, "cu_k_len", ArgKind::input,
        "[batch + 1] i32, contiguous, non-decreasing: sequence b's tokens are "
        "cu_k_len[b + 1] - cu_k_len[b]");
    arg(&Args::cu_block_num, "cu_block_num", ArgKind::input,
        "[batch + 1] i32, contiguous, non-decreasing from >= 0, cu_block_num[batch] <= "
        "blocks.size(0): enough blocks for each sequence's tokens on this rank");
    turbomind_rope_bases_argument<Args>(arg);
    arg(&Args::block_seq_len, "block_seq_len", ArgKind::integer, "tokens per block, in [1, 4096]");
    arg(&Args::max_seq_len, "max_seq_len", ArgKind::integer,
        "at least every sequence's k_len and at most k_out.size(0): the launch covers this many "
        "tokens per sequence");
    arg(&Args::quant_policy, "quant_policy", ArgKind::integer,
        "the policy the blocks were written with: 0, 8 (int8) or 4 (int4)");
    arg(&Args::layer_id, "layer_id", ArgKind::integer,
        "the layer read: its region starts layer_id × layer_size bytes into each block");
    arg(&Args::cp_rank, "cp_rank", ArgKind::integer, "context parallelism: this rank");
    arg(&Args::cp_size, "cp_size", ArgKind::integer, "context parallelism: ranks, >= 1");
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

  /// \brief The contract, shared by the three implementations: the rules of process_kv that
  /// apply to a read (pagedkv/ops/process_kv.h), with k_out and v_out holding the
  /// cu_k_len[batch] − cu_k_len[0] rows (upstream checks only head_dim).
  /// \param args the arguments.
  /// \param impl the implementation that will run.
  /// \return the plan the implementation executes.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: for each sequence, position and head, the row read, dequantized
  /// and (with a RoPE type) rotated.
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA: one thread per (token, head), the CPU loop as it is.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on.
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA: one lane group per row, vector loads of the codes, 16-byte stores.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on.
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry (core/entries/flatten_kv.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
