/// \file
/// \brief `paged_attention_rocm`: vLLM's decode attention for AMD GPUs (csrc/rocm/attention.cu,
/// torch.ops._rocm_C.paged_attention), the math of paged_attention_v2 over the same legacy
/// paged cache with its own arguments and limits: partitions of 256 tokens (always merged),
/// query_start_loc to locate each sequence's query row in a mixed batch, fp8_out_scale for an
/// fp8 output, head sizes 64 and 128, block sizes 16 and 32, f16 / bf16 queries, "auto" or
/// fp8 E4M3 caches, 1 to 16 query heads per kv head.
///
/// Upstream runs on AMD's matrix instructions only (MFMA, 64-lane wavefronts); pagedkv runs the
/// same semantics through the CUDA kernels it shares with v1 and v2 (pagedkv/paged_attention.h)
/// with the partition size as a parameter.
///
/// Worked example (one head, a sequence of 300 tokens): partition 0 holds tokens 0..255 and
/// partition 1 tokens 256..299; out = (w_0 o_0 + w_1 o_1) / (w_0 + w_1 + 1e-6) with
/// w_p = S_p × exp(m_p - max(m_0, m_1)), as v2. A sequence of 200 tokens has one partition,
/// and unlike v2 it is merged too: out = o_0 × S_0 / (S_0 + 1e-6). With query_start_loc =
/// [0, 1, 4, 5] the sequences own query rows {0}, {1, 2, 3}, {4}: sequences 0 and 2 are
/// decoded into out rows 0 and 4, sequence 1 (three query tokens, a prefill or a speculative
/// chunk) is left to another kernel and nothing of it is written.
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

/// \brief paged_attention_rocm: the op's arguments, its contract and its three implementations.
struct PagedAttentionRocm {
  /// \brief The upstream name (vLLM's Python wrapper; the torch op is _rocm_C.paged_attention).
  static constexpr const char* name = "paged_attention_rocm";

  /// \brief The arguments, in vLLM's order and with vLLM's names (documented in arguments()).
  struct Args {
    /// \name Arguments (documented in PagedAttentionRocm::arguments)
    /// @{
    TensorView out;                       ///< see PagedAttentionRocm::arguments()
    TensorView exp_sum;                   ///< see PagedAttentionRocm::arguments()
    TensorView max_logits;                ///< see PagedAttentionRocm::arguments()
    TensorView tmp_out;                   ///< see PagedAttentionRocm::arguments()
    TensorView query;                     ///< see PagedAttentionRocm::arguments()
    TensorView key_cache;                 ///< see PagedAttentionRocm::arguments()
    TensorView value_cache;               ///< see PagedAttentionRocm::arguments()
    std::int64_t num_kv_heads = 0;        ///< see PagedAttentionRocm::arguments()
    double scale = 1.0;                   ///< see PagedAttentionRocm::arguments()
    TensorView block_tables;              ///< see PagedAttentionRocm::arguments()
    TensorView seq_lens;                  ///< see PagedAttentionRocm::arguments()
    TensorView query_start_loc;           ///< see PagedAttentionRocm::arguments()
    std::int64_t block_size = 0;          ///< see PagedAttentionRocm::arguments()
    std::int64_t max_seq_len = 0;         ///< see PagedAttentionRocm::arguments()
    TensorView alibi_slopes;              ///< see PagedAttentionRocm::arguments()
    std::string kv_cache_dtype;           ///< see PagedAttentionRocm::arguments()
    TensorView k_scale;                   ///< see PagedAttentionRocm::arguments()
    TensorView v_scale;                   ///< see PagedAttentionRocm::arguments()
    TensorView fp8_out_scale;             ///< see PagedAttentionRocm::arguments()
    std::string mfma_type = "f16";        ///< see PagedAttentionRocm::arguments()
    bool use_interleaved_v_cache = false;  ///< see PagedAttentionRocm::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order (the texts shared with v1 and v2
  /// where the argument means the same).
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    namespace docs = paged_attention_docs;
    arg(&Args::out, "out", ArgKind::output, docs::out_rocm);
    arg(&Args::exp_sum, "exp_sum", ArgKind::output, docs::exp_sum_rocm);
    arg(&Args::max_logits, "max_logits", ArgKind::output, docs::max_logits);
    arg(&Args::tmp_out, "tmp_out", ArgKind::output, docs::tmp_out_rocm);
    arg(&Args::query, "query", ArgKind::input, docs::query_rocm);
    arg(&Args::key_cache, "key_cache", ArgKind::input, docs::key_cache);
    arg(&Args::value_cache, "value_cache", ArgKind::input, docs::value_cache);
    arg(&Args::num_kv_heads, "num_kv_heads", ArgKind::integer, docs::num_kv_heads);
    arg(&Args::scale, "scale", ArgKind::real, docs::scale);
    arg(&Args::block_tables, "block_tables", ArgKind::input, docs::block_tables);
    arg(&Args::seq_lens, "seq_lens", ArgKind::input, docs::seq_lens);
    arg(&Args::query_start_loc, "query_start_loc", ArgKind::optional_input,
        docs::query_start_loc);
    arg(&Args::block_size, "block_size", ArgKind::integer, docs::block_size_rocm);
    arg(&Args::max_seq_len, "max_seq_len", ArgKind::integer, docs::max_seq_len_rocm);
    arg(&Args::alibi_slopes, "alibi_slopes", ArgKind::optional_input, docs::alibi_slopes);
    arg(&Args::kv_cache_dtype, "kv_cache_dtype", ArgKind::string, docs::kv_cache_dtype_rocm);
    arg(&Args::k_scale, "k_scale", ArgKind::input, docs::k_scale);
    arg(&Args::v_scale, "v_scale", ArgKind::input, docs::v_scale);
    arg(&Args::fp8_out_scale, "fp8_out_scale", ArgKind::optional_input, docs::fp8_out_scale);
    arg(&Args::mfma_type, "mfma_type", ArgKind::string, docs::mfma_type);
    arg(&Args::use_interleaved_v_cache, "use_interleaved_v_cache", ArgKind::boolean,
        docs::use_interleaved_v_cache);
  }

  /// \brief The defaults of vLLM's Python wrapper: fp8_out_scale None, mfma_type "f16" (its
  /// default while VLLM_ROCM_FP8_MFMA_PAGE_ATTN is unset), use_interleaved_v_cache False.
  /// \param argument the argument's name.
  /// \return its default as Python writes it, or nullptr.
  static const char* default_value(std::string_view argument) {
    if (argument == "fp8_out_scale") return "None";
    if (argument == "mfma_type") return "'f16'";
    if (argument == "use_interleaved_v_cache") return "False";
    return nullptr;
  }

  /// \brief What validate() derives from the arguments.
  using Plan = PagedAttentionPlan;

  /// \brief The contract: v2's (validate_paged_attention()) with rocm's limits, plus
  /// query_start_loc, fp8_out_scale, mfma_type and use_interleaved_v_cache.
  ///
  /// Upstream (csrc/rocm/attention.cu: paged_attention) dispatches on the query dtype
  /// ("Unsupported data type"), kv_cache_dtype ("Unsupported KV cache dtype"), head size
  /// ("Unsupported head size", 64 or 128), block size ("Unsupported block size", 16 or 32),
  /// the GQA ratio ("Unsupported gqa ratio", 1 to 16) and the merge's partition count
  /// ("Unsupported npar_loops", at most 8 × 64 partitions); pagedkv checks each of them before
  /// anything runs, naming the argument, and everything v2's contract checks. With
  /// query_start_loc, num_seqs is query_start_loc.size(0) - 1 (upstream: block_tables.size(0)),
  /// query and out have one row per query token, and query_start_loc is read back on the host
  /// (non-decreasing, within query's rows).
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan the implementation executes.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference (attention::cpu()): v2's float64 reference over 256-token
  /// partitions, the single partition merged, the rows of query_start_loc, the fp8 output.
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA (attention::naive()): v2's naive kernels with partitions of 256.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernels run on (nothing synchronizes after them).
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA (attention::optimized()): v2's optimized kernels with partitions of
  /// 256: one thread block per (partition, sequence, kv head) for its query heads, as upstream's
  /// one workgroup per kv head.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernels run on (nothing synchronizes after them).
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry: family, sources, byte model, workloads
  /// (core/entries/paged_attention.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

/// \brief The pointers of a paged_attention_rocm call, for the shared implementations
/// (core/paged_attention.cpp).
/// \param plan what PagedAttentionRocm::validate() returned.
/// \param args the arguments.
/// \return the data.
PagedAttentionData paged_attention_data(const PagedAttentionPlan& plan,
                                        const PagedAttentionRocm::Args& args);

}  // namespace pagedkv
