/// \file
/// \brief `paged_attention_v2`: decode attention over vLLM's legacy paged cache, each sequence
/// split into partitions of 512 tokens whose results are merged by their log-sum-exp (vLLM's
/// flash-decoding). The second argument is `exp_sum`, as vLLM's Python wrapper names it (its
/// C++ schema says `exp_sums`).
///
/// This header is the op's one description: its arguments in vLLM's order, and the contract
/// and the three implementations it shares with paged_attention_v1 (pagedkv/paged_attention.h).
///
/// Worked example (one head, a sequence of 1000 tokens): partition 0 holds tokens 0..511 and
/// partition 1 tokens 512..999. Each writes its largest logit m_p to max_logits[s, h, p], its
/// sum S_p of exp(logit - m_p) to exp_sum[s, h, p] and its own normalized output o_p to
/// tmp_out[s, h, p, :]; then out = (w_0 o_0 + w_1 o_1) / (w_0 + w_1) with
/// w_p = S_p × exp(m_p - max(m_0, m_1)): the softmax over all 1000 tokens, exactly (up to
/// rounding and the 1e-6 of each denominator).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "pagedkv/impl.h"
#include "pagedkv/op.h"
#include "pagedkv/paged_attention.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief paged_attention_v2: the op's arguments, its contract and its three implementations.
struct PagedAttentionV2 {
  /// \brief The upstream name.
  static constexpr const char* name = "paged_attention_v2";

  /// \brief The arguments, in vLLM's order and with vLLM's names (documented in arguments()).
  struct Args {
    /// \name Arguments (documented in PagedAttentionV2::arguments)
    /// @{
    TensorView out;                                ///< see PagedAttentionV2::arguments()
    TensorView exp_sum;                            ///< see PagedAttentionV2::arguments()
    TensorView max_logits;                         ///< see PagedAttentionV2::arguments()
    TensorView tmp_out;                            ///< see PagedAttentionV2::arguments()
    TensorView query;                              ///< see PagedAttentionV2::arguments()
    TensorView key_cache;                          ///< see PagedAttentionV2::arguments()
    TensorView value_cache;                        ///< see PagedAttentionV2::arguments()
    std::int64_t num_kv_heads = 0;                 ///< see PagedAttentionV2::arguments()
    double scale = 1.0;                            ///< see PagedAttentionV2::arguments()
    TensorView block_tables;                       ///< see PagedAttentionV2::arguments()
    TensorView seq_lens;                           ///< see PagedAttentionV2::arguments()
    std::int64_t block_size = 0;                   ///< see PagedAttentionV2::arguments()
    std::int64_t max_seq_len = 0;                  ///< see PagedAttentionV2::arguments()
    TensorView alibi_slopes;                       ///< see PagedAttentionV2::arguments()
    std::string kv_cache_dtype;                    ///< see PagedAttentionV2::arguments()
    TensorView k_scale;                            ///< see PagedAttentionV2::arguments()
    TensorView v_scale;                            ///< see PagedAttentionV2::arguments()
    std::int64_t tp_rank = 0;                      ///< see PagedAttentionV2::arguments()
    std::int64_t blocksparse_local_blocks = 0;     ///< see PagedAttentionV2::arguments()
    std::int64_t blocksparse_vert_stride = 0;      ///< see PagedAttentionV2::arguments()
    std::int64_t blocksparse_block_size = 64;      ///< see PagedAttentionV2::arguments()
    std::int64_t blocksparse_head_sliding_step = 0;  ///< see PagedAttentionV2::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written
  /// (the texts are shared with paged_attention_v1).
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    namespace docs = paged_attention_docs;
    arg(&Args::out, "out", ArgKind::output, docs::out);
    arg(&Args::exp_sum, "exp_sum", ArgKind::output, docs::exp_sum);
    arg(&Args::max_logits, "max_logits", ArgKind::output, docs::max_logits);
    arg(&Args::tmp_out, "tmp_out", ArgKind::output, docs::tmp_out);
    arg(&Args::query, "query", ArgKind::input, docs::query);
    arg(&Args::key_cache, "key_cache", ArgKind::input, docs::key_cache);
    arg(&Args::value_cache, "value_cache", ArgKind::input, docs::value_cache);
    arg(&Args::num_kv_heads, "num_kv_heads", ArgKind::integer, docs::num_kv_heads);
    arg(&Args::scale, "scale", ArgKind::real, docs::scale);
    arg(&Args::block_tables, "block_tables", ArgKind::input, docs::block_tables);
    arg(&Args::seq_lens, "seq_lens", ArgKind::input, docs::seq_lens);
    arg(&Args::block_size, "block_size", ArgKind::integer, docs::block_size);
    arg(&Args::max_seq_len, "max_seq_len", ArgKind::integer, docs::max_seq_len);
    arg(&Args::alibi_slopes, "alibi_slopes", ArgKind::optional_input, docs::alibi_slopes);
    arg(&Args::kv_cache_dtype, "kv_cache_dtype", ArgKind::string, docs::kv_cache_dtype);
    arg(&Args::k_scale, "k_scale", ArgKind::input, docs::k_scale);
    arg(&Args::v_scale, "v_scale", ArgKind::input, docs::v_scale);
    arg(&Args::tp_rank, "tp_rank", ArgKind::integer, docs::tp_rank);
    arg(&Args::blocksparse_local_blocks, "blocksparse_local_blocks", ArgKind::integer,
        docs::blocksparse_local_blocks);
    arg(&Args::blocksparse_vert_stride, "blocksparse_vert_stride", ArgKind::integer,
        docs::blocksparse_vert_stride);
    arg(&Args::blocksparse_block_size, "blocksparse_block_size", ArgKind::integer,
        docs::blocksparse_block_size);
    arg(&Args::blocksparse_head_sliding_step, "blocksparse_head_sliding_step", ArgKind::integer,
        docs::blocksparse_head_sliding_step);
  }

  /// \brief The defaults of vLLM's Python wrapper: tp_rank 0 and the blocksparse arguments'.
  /// \param argument the argument's name.
  /// \return its default as Python writes it, or nullptr.
  static const char* default_value(std::string_view argument) {
    return paged_attention_default(argument);
  }

  /// \brief What validate() derives from the arguments.
  using Plan = PagedAttentionPlan;

  /// \brief The contract (shared with paged_attention_v1: validate_paged_attention()), plus
  /// the workspaces: exp_sum and max_logits f32 [num_seqs, num_heads, P'] and tmp_out
  /// [num_seqs, num_heads, P', head_size] with P' >= ceil(max_seq_len / 512) (upstream indexes
  /// them with its own P and never looks at their shapes).
  ///
  /// Checks every argument for `impl` and returns the plan; throws InvalidArgument (naming the
  /// argument, the expected and the actual value) before anything is written; see
  /// PagedAttentionV1::validate() for the rules the two share and what upstream does not
  /// check.
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan the implementation executes.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference (attention::cpu()): each partition's softmax and output in float64,
  /// rounded to T as upstream stores them, then upstream's merge.
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA (attention::naive()): one thread block per (sequence, query head,
  /// partition), then one per (sequence, query head) for the merge.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernels run on (nothing synchronizes after them).
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA (attention::optimized()): one thread block per (partition,
  /// sequence, kv head) reading each key and value once for all its query heads, then the
  /// merge.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernels run on (nothing synchronizes after them).
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry: family, sources, byte model, workloads
  /// (core/entries/paged_attention.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

/// \brief The pointers of a paged_attention_v2 call, for the shared implementations
/// (core/paged_attention.cpp).
/// \param plan what PagedAttentionV2::validate() returned.
/// \param args the arguments.
/// \return the data (workspace pointers null for v1).
PagedAttentionData paged_attention_data(const PagedAttentionPlan& plan,
                                        const PagedAttentionV2::Args& args);

}  // namespace pagedkv
