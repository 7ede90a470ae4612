/// \file
/// \brief Validation rules that TurboMind's two KV ops share (process_kv and flatten_kv): the
/// quant policy, the pool of blocks and the layer region in it, the activations, the RoPE
/// parameters (derived as upstream's `init_rope_kernel_param` derives them) and the values of
/// the batch (cumulative lengths, block counts, block offsets), each rule written once.
#pragma once

#include <cstdint>
#include <string>

#include "pagedkv/deferred_checks.h"
#include "pagedkv/ops/process_kv.h"
#include "pagedkv/tensor_view.h"
#include "pagedkv/turbomind_kv.h"

namespace pagedkv::checks {

/// \brief The largest block_seq_len accepted (upstream's default is 64; positions in a block
/// stay small ints).
constexpr std::int64_t kTurbomindMaxBlockSeqLen = 4096;

/// \brief quant_policy is 0, 4 or 8.
/// \param quant_policy the argument.
/// \return the policy.
QuantPolicy turbomind_policy(std::int64_t quant_policy);

/// \brief The activations (k / v or k_out / v_out): [rows, head_num, head_dim] f16 or bf16 with
/// packed dims, head_dim 64 or 128, both alike.
/// \param k the keys.
/// \param k_name its name.
/// \param v the values.
/// \param v_name its name.
/// \param written whether the op writes them (flatten_kv): then no two elements may overlap.
/// \param plan receives dtype, rows, strides and the layout's head_num and head_dim.
void turbomind_activations(const TensorView& k, const char* k_name, const TensorView& v,
                           const char* v_name, bool written, TurbomindKvPlan& plan);

/// \brief block_seq_len, layer_id, cp_rank / cp_size and the pool: kv_cache is u8
/// [num_blocks, block_bytes] with packed bytes, 16-byte aligned rows, and the layer region
/// [layer_id × layer_size, (layer_id + 1) × layer_size) lies inside each block.
/// \param kv_cache the pool.
/// \param block_seq_len tokens per block.
/// \param layer_id the layer.
/// \param cp_rank this rank.
/// \param cp_size ranks.
/// \param policy the quant policy.
/// \param plan holds head_num and head_dim; receives the layout and the layer offset.
void turbomind_pool(const TensorView& kv_cache, std::int64_t block_seq_len, std::int64_t layer_id,
                    std::int64_t cp_rank, std::int64_t cp_size, QuantPolicy policy,
                    TurbomindKvPlan& plan);

/// \brief The RoPE arguments of a call, as both ops take them.
struct TurbomindRopeArgs {
  const TensorView* rope_bases = nullptr;  ///< [batch] f32, or no data
  std::string rope_type;                   ///< the type's name
  std::int64_t rope_dim = 0;               ///< rotated dims
  double rope_base = 0.0;                  ///< base
  double rope_factor = 0.0;                ///< factor
  std::int64_t max_position_embeddings = 0;  ///< yarn
  double yarn_beta_fast = 0.0;               ///< yarn
  double yarn_beta_slow = 0.0;               ///< yarn
  double yarn_attention_factor = 0.0;        ///< yarn
  double llama3_low_freq_factor = 0.0;       ///< llama3
  double llama3_high_freq_factor = 0.0;      ///< llama3
  std::int64_t llama3_original_max_position_embeddings = 0;  ///< llama3
};

/// \brief The RoPE arguments of `args` (process_kv's or flatten_kv's).
/// \tparam Args the op's Args.
/// \param args the arguments.
/// \return the RoPE part.
template <class Args>
TurbomindRopeArgs rope_args_of(const Args& args) {
  return {&args.rope_bases,
          args.rope_type,
          args.rope_dim,
          args.rope_base,
          args.rope_factor,
          args.max_position_embeddings,
          args.yarn_beta_fast,
          args.yarn_beta_slow,
          args.yarn_attention_factor,
          args.llama3_low_freq_factor,
          args.llama3_high_freq_factor,
          args.llama3_original_max_position_embeddings};
}

/// \brief The RoPE parameters: checks the type, rope_dim (a multiple of 8 in [8, head_dim]),
/// the base and the type's own values, and derives the kernel parameters. rope_bases must be
/// given for "dynamic" only (f32 [batch], contiguous, on `device`, each > 1 when read).
/// \param rope the RoPE arguments.
/// \param head_dim elements per head.
/// \param batch sequences.
/// \param device where rope_bases must live.
/// \param device_check the deferred check of the batch (turbomind_batch filled it), or nullptr:
/// then the bases of "dynamic" are left to it instead of read back.
/// \return the kernel parameters.
TurbomindRope turbomind_rope(const TurbomindRopeArgs& rope, int head_dim, std::int64_t batch,
                             Device device, TurbomindCheck* device_check = nullptr);

/// \brief The index tensors of a call and what they are checked against.
struct TurbomindBatch {
  const TensorView* cu_q_len = nullptr;            ///< process_kv only
  const TensorView* cu_k_len = nullptr;            ///< both
  const TensorView* cu_block_num = nullptr;        ///< both
  const TensorView* readonly_block_num = nullptr;  ///< process_kv only (may have no data)
  const TensorView* blocks = nullptr;              ///< both
  const char* rows_name = "k";  ///< the activation whose rows the sequences use
  std::int64_t max_len = 0;     ///< max_q_len or max_seq_len
  const char* max_len_name = "max_q_len";  ///< its name
};

/// \brief The shapes of the index tensors (i32 / i64, contiguous, [batch + 1] / [batch] /
/// [total_blocks]), max_len in [0, plan.rows], and their values: cu_q_len from >= 0 and
/// non-decreasing, its last value <= rows; cu_k_len non-decreasing with q_len <= k_len (and
/// k_len <= max_len, or q_len <= max_len), for flatten_kv cu_k_len[batch] − cu_k_len[0] <=
/// rows; cu_block_num from >= 0, non-decreasing, its last value <= blocks.size(0), enough blocks
/// for each sequence's tokens on this rank; readonly_block_num >= 0; and every listed block
/// offset the first byte of a row of kv_cache. On the GPU the values are copied to the host
/// first (one synchronization), unless the call defers: then only the shapes are checked here,
/// and `device_check` receives what a check kernel reads (enqueue_turbomind_check; the values'
/// rules in the same order, worded alike). Fills plan.batch and plan.max_len.
/// \param batch the tensors.
/// \param kv_cache the pool (for the block offsets).
/// \param plan receives batch and max_len; holds rows and block_seq_len and cp.
/// \param device_check nullptr to check the values now; else receives the deferred check.
void turbomind_batch(const TurbomindBatch& batch, const TensorView& kv_cache,
                     TurbomindKvPlan& plan, TurbomindCheck* device_check = nullptr);

}  // namespace pagedkv::checks
