/// \file
/// \brief `paged_attention_v1`: decode attention over vLLM's legacy paged cache, one query
/// token per sequence, each sequence in one pass.
///
/// This header is the op's one description: its arguments in vLLM's order, and the contract
/// and the three implementations it shares with paged_attention_v2 (pagedkv/paged_attention.h).
///
/// Worked example (one sequence of 2 tokens, one head, head_size 2, scale 1): q = (1, 0),
/// keys (0, 0) and (ln 3, 0), values (4, 0) and (8, 4): logits 0 and ln 3, probabilities 1/4
/// and 3/4 (up to the 1e-6 of the denominator), out = (1/4 × 4 + 3/4 × 8, 3/4 × 4) = (7, 3).
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

/// \brief paged_attention_v1: the op's arguments, its contract and its three implementations.
struct PagedAttentionV1 {
  /// \brief The upstream name.
  static constexpr const char* name = "paged_attention_v1";

  /// \brief The arguments, in vLLM's order and with vLLM's names (documented in arguments()).
  struct Args {
    /// \name Arguments (documented in PagedAttentionV1::arguments)
    /// @{
    TensorView out;                                ///< see PagedAttentionV1::arguments()
    TensorView query;                              ///< see PagedAttentionV1::arguments()
    TensorView key_cache;                          ///< see PagedAttentionV1::arguments()
    TensorView value_cache;                        ///< see PagedAttentionV1::arguments()
    std::int64_t num_kv_heads = 0;                 ///< see PagedAttentionV1::arguments()
    double scale = 1.0;                            ///< see PagedAttentionV1::arguments()
    TensorView block_tables;                       ///< see PagedAttentionV1::arguments()
    TensorView seq_lens;                           ///< see PagedAttentionV1::arguments()
    std::int64_t block_size = 0;                   ///< see PagedAttentionV1::arguments()
    std::int64_t max_seq_len = 0;                  ///< see PagedAttentionV1::arguments()
    TensorView alibi_slopes;                       ///< see PagedAttentionV1::arguments()
    std::string kv_cache_dtype;                    ///< see PagedAttentionV1::arguments()
    TensorView k_scale;                            ///< see PagedAttentionV1::arguments()
    TensorView v_scale;                            ///< see PagedAttentionV1::arguments()
    std::int64_t tp_rank = 0;                      ///< see PagedAttentionV1::arguments()
    std::int64_t blocksparse_local_blocks = 0;     ///< see PagedAttentionV1::arguments()
    std::int64_t blocksparse_vert_stride = 0;      ///< see PagedAttentionV1::arguments()
    std::int64_t blocksparse_block_size = 64;      ///< see PagedAttentionV1::arguments()
    std::int64_t blocksparse_head_sliding_step = 0;  ///< see PagedAttentionV1::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written
  /// (the texts are shared with paged_attention_v2).
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    namespace docs = paged_attention_docs;
    arg(&Args::out, "out", ArgKind::output, docs::out);
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

  /// \brief The contract (shared with paged_attention_v2: validate_paged_attention()).
  ///
  /// Checks every argument for `impl` and returns the plan; throws InvalidArgument (naming the
  /// argument, the expected and the actual value) before anything is written. It reads seq_lens
  /// and every block id the sequences use (on the GPU two small copies and a synchronization);
  /// a call that defers its errors (a CUDA-graph capture, pagedkv.vllm_ops) checks the same
  /// rules in one kernel on its stream instead, and the kernels write nothing when one is
  /// broken. Zero sequences is a valid call that writes nothing.
  ///
  /// Upstream (vLLM csrc/attention/paged_attention_v1.cu) checks only the head size, the block
  /// size and the dtypes through its dispatch. This contract also rejects what upstream
  /// silently gets wrong: num_heads not a multiple of num_kv_heads, a block_size argument that
  /// is not the cache's, seq_lens of 0 or beyond max_seq_len or the block table's columns,
  /// block ids outside the pool, a value cache whose block or head stride differs from the
  /// key cache's, shapes that do not match, and any non-default blocksparse argument.
  /// Unlike upstream's v1, it has no shared-memory limit on max_seq_len.
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan the implementation executes.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference (attention::cpu()): upstream's single-pass softmax in float64.
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA (attention::naive()): one thread block per (sequence, query head).
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA (attention::optimized()): GQA-shared reads, 16-byte loads, the
  /// sequence split across thread blocks where the batch is small.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernels run on (nothing synchronizes after them).
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry: family, sources, byte model, workloads
  /// (core/entries/paged_attention.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

/// \brief The pointers of a paged_attention_v1 call, for the shared implementations
/// (core/paged_attention.cpp).
/// \param plan what PagedAttentionV1::validate() returned.
/// \param args the arguments.
/// \return the data (workspace pointers null for v1).
PagedAttentionData paged_attention_data(const PagedAttentionPlan& plan,
                                        const PagedAttentionV1::Args& args);

}  // namespace pagedkv
