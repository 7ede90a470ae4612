/// \file
/// \brief What the paged attention ops `paged_attention_v1`, `paged_attention_v2` and
/// `paged_attention_rocm` share: their arguments' documentation, the contract's plan, the
/// supported sizes and the three implementations, written once. Each op is a struct of its own
/// (ops/paged_attention_v1.h, ops/paged_attention_v2.h, ops/paged_attention_rocm.h) that adds
/// its arguments, its upstream name and its registry card.
///
/// Decode attention over vLLM's legacy paged cache (what reshape_and_cache writes): one query
/// token per sequence s and query head h attends over the seq_lens[s] tokens of its kv head
/// g = h / (num_heads / num_kv_heads), token t living at slot t % block_size of block
/// block_tables[s, t / block_size]:
/// \code
/// logit[t] = scale * dot(q[s, h, :], K[t, g, :]) (+ alibi_slopes[h] * (t - L + 1))
/// p[t]     = round_T(exp(logit[t] - max) / (sum_t exp(logit[t] - max) + 1e-6))
/// out[s, h, d] = round_T(sum_t p[t] * V[t, g, d])
/// \endcode
/// with K and V dequantized to the query's dtype T (`round_T(float(fp8) × scale)`) for fp8
/// caches. paged_attention_v2 computes the same over 512-token partitions and merges them by
/// their log-sum-exp (exp_sums, max_logits, tmp_out); paged_attention_rocm over 256-token
/// partitions, always merged, with query rows located by query_start_loc and an optional fp8
/// output.
///
/// Agreement (the reduction class): each GPU version is compared with the float64 CPU
/// reference by the norm-wise relative error, within attention_tolerance()
/// (pagedkv/agreement.h).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "pagedkv/dtype.h"
#include "pagedkv/impl.h"
#include "pagedkv/kv_cache_dtype.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief Tokens per partition of paged_attention_v2 (vLLM's `_PARTITION_SIZE`): the workspaces
/// hold one (max logit, exp sum, partial output) per 512 tokens of a sequence.
inline constexpr std::int64_t kPagedAttentionPartitionSize = 512;

/// \brief Tokens per partition of paged_attention_rocm (T_PAR_SIZE = PARTITION_SIZE = 256 in
/// vLLM csrc/rocm/attention.cu): the workspaces hold one entry per 256 tokens.
inline constexpr std::int64_t kPagedAttentionRocmPartitionSize = 256;

/// \brief The most partitions paged_attention_rocm's merge takes: NPAR_LOOPS <= 8 passes of a
/// 64-lane wavefront (8 × 64 × 256 tokens = 131072, upstream's "128K context").
inline constexpr std::int64_t kPagedAttentionRocmMaxPartitions = 8 * 64;

/// \brief Whether vLLM instantiates paged attention for this head size: 32, 64, 80, 96, 112,
/// 120, 128, 192 and 256 (pagedkv supports exactly these).
/// \param head_size elements per head.
/// \return whether it is one of them.
constexpr bool paged_attention_head_size_supported(std::int64_t head_size) {
  switch (head_size) {
    case 32: case 64: case 80: case 96: case 112: case 120: case 128: case 192: case 256:
      return true;
    default:
      return false;
  }
}

/// \brief Whether vLLM instantiates paged attention for this block size: 8, 16 and 32.
/// \param block_size tokens per cache block.
/// \return whether it is one of them.
constexpr bool paged_attention_block_size_supported(std::int64_t block_size) {
  return block_size == 8 || block_size == 16 || block_size == 32;
}

/// \brief Everything the implementations need, derived once by the contract
/// (core/paged_attention.cpp). Strides are in elements.
struct PagedAttentionPlan {
  std::int64_t num_seqs = 0;      ///< query.size(0)
  std::int64_t num_heads = 0;     ///< query.size(1)
  std::int64_t num_kv_heads = 0;  ///< num_kv_heads = key_cache.size(1)
  std::int64_t head_size = 0;     ///< query.size(2)
  std::int64_t block_size = 0;    ///< block_size = key_cache.size(3)
  std::int64_t num_blocks = 0;    ///< key_cache.size(0): the pool
  std::int64_t x = 0;             ///< key_cache.size(4): elements per 16-byte key chunk
  std::int64_t max_seq_len = 0;   ///< max_seq_len: no sequence is longer
  /// Tokens per partition: 0 for paged_attention_v1 (no workspaces), 512 for
  /// paged_attention_v2.
  std::int64_t partition_size = 0;
  /// ceil(max_seq_len / partition_size): the partitions a sequence may have (0 for v1).
  std::int64_t max_partitions = 0;
  std::int64_t query_stride[2] = {0, 0};  ///< query.stride(0), query.stride(1)
  std::int64_t out_stride[2] = {0, 0};    ///< out.stride(0), out.stride(1)
  std::int64_t block_stride = 0;  ///< key_cache.stride(0) = value_cache.stride(0)
  std::int64_t head_stride = 0;   ///< key_cache.stride(1) = value_cache.stride(1)
  std::int64_t table_stride = 0;  ///< block_tables.stride(0)
  std::int64_t table_width = 0;   ///< block_tables.size(1)
  std::int64_t alibi_stride = 0;  ///< alibi_slopes.stride(0) (when given)
  std::int64_t exp_sums_stride[3] = {0, 0, 0};    ///< v2: exp_sums' strides
  std::int64_t max_logits_stride[3] = {0, 0, 0};  ///< v2: max_logits' strides
  std::int64_t tmp_out_stride[3] = {0, 0, 0};     ///< v2: tmp_out's first three strides
  DType dtype = DType::bf16;                      ///< dtype of query, out and tmp_out
  KvCacheDtype cache_kind = KvCacheDtype::kAuto;  ///< how the caches store elements
  float scale = 1.f;                              ///< the softmax scale, as the kernels use it
  bool has_alibi = false;                         ///< alibi_slopes was given
  /// paged_attention_rocm: a single partition is merged like several (out = tmp_out × S /
  /// (S + 1e-6)) instead of copied, as upstream's reduce kernel does.
  bool merge_single_partition = false;
  /// paged_attention_rocm with fp8_out_scale: out is fp8 E4M3, fp8(out / fp8_out_scale)
  /// clamped to ±448.
  bool fp8_output = false;
};

/// \brief The data of one call, for the three implementations: host pointers for the CPU
/// reference, device pointers for the kernels. What a workspace pointer is for v1: null.
struct PagedAttentionData {
  void* out = nullptr;                        ///< [num_seqs, num_heads, head_size], T
  const void* query = nullptr;                ///< [num_seqs, num_heads, head_size], T
  const void* key_cache = nullptr;            ///< [num_blocks, num_kv_heads, D / x, B, x]
  const void* value_cache = nullptr;          ///< [num_blocks, num_kv_heads, D, B]
  const std::int32_t* block_tables = nullptr;  ///< [num_seqs, table_width], rows table_stride apart
  const std::int32_t* seq_lens = nullptr;     ///< [num_seqs]
  const float* alibi_slopes = nullptr;        ///< [num_heads], or null
  const float* k_scale = nullptr;             ///< one f32 (fp8 caches only), else null
  const float* v_scale = nullptr;             ///< one f32 (fp8 caches only), else null
  float* exp_sums = nullptr;    ///< v2: [num_seqs, num_heads, >= max_partitions], else null
  float* max_logits = nullptr;  ///< v2: [num_seqs, num_heads, >= max_partitions], else null
  void* tmp_out = nullptr;      ///< v2: [num_seqs, num_heads, >= max_partitions, D], else null
  /// paged_attention_rocm: [num_seqs + 1] i32, the first query row of each sequence (its rows
  /// run to the next entry), or null: sequence s reads query row s and writes out row s.
  const std::int32_t* query_start_loc = nullptr;
  const float* fp8_out_scale = nullptr;  ///< paged_attention_rocm: one f32, or null
};

#if defined(__CUDACC__)
/// \brief `__host__ __device__ inline` under nvcc, `inline` for the host compiler:
/// attention_query_row() runs on both sides.
#define PAGEDKV_ATTENTION_FN __host__ __device__ inline
#else
#define PAGEDKV_ATTENTION_FN inline
#endif

/// \brief The query row (and out row) of sequence s, or -1 when the call leaves the sequence
/// alone: without query_start_loc, row s; with it, row query_start_loc[s] when the sequence
/// has exactly one query token, else -1 (vLLM csrc/rocm/attention.cu:
/// paged_attention_ll4mi_QKV_mfma16_kernel and paged_attention_ll4mi_reduce_kernel return at
/// once for such sequences, which vLLM's prefill path handles).
/// \param data the call's pointers (host or device, as the caller runs).
/// \param s the sequence.
/// \return the row, or -1.
PAGEDKV_ATTENTION_FN std::int64_t attention_query_row(const PagedAttentionData& data,
                                                      std::int64_t s) {
  if (data.query_start_loc == nullptr) return s;
  const std::int64_t begin = data.query_start_loc[s];
  return data.query_start_loc[s + 1] - begin == 1 ? begin : -1;
}

/// \cond INTERNAL
// The documentation of the paged attention arguments, written once for v1 and v2 (the API
// pages show it in each op's argument table, from the registry).
namespace paged_attention_docs {
/// \brief `out`.
inline constexpr const char* out =
    "[num_seqs, num_heads, head_size], the dtype of query, the last dimension packed, the "
    "others with any strides: the attention output of each sequence's query token";
/// \brief `query`.
inline constexpr const char* query =
    "[num_seqs, num_heads, head_size] f32, f16 or bf16, the last dimension packed, the others "
    "with any strides (e.g. a slice of the fused qkv activation): one decode token per "
    "sequence; head_size 32, 64, 80, 96, 112, 120, 128, 192 or 256";
/// \brief `key_cache`.
inline constexpr const char* key_cache =
    "[num_blocks, num_kv_heads, head_size / x, block_size, x], x × element size = 16 bytes: the "
    "legacy key cache reshape_and_cache writes (query's dtype for \"auto\", one byte for fp8); "
    "the last three dimensions packed, blocks and heads with any strides";
/// \brief `value_cache`.
inline constexpr const char* value_cache =
    "[num_blocks, num_kv_heads, head_size, block_size], the dtype of key_cache, the last two "
    "dimensions packed, with key_cache's block and head strides (upstream reads it with them)";
/// \brief `num_kv_heads`.
inline constexpr const char* num_kv_heads =
    "kv heads of the caches (key_cache.size(1)); num_heads must be a multiple: query head h "
    "reads kv head h / (num_heads / num_kv_heads) (GQA, MQA)";
/// \brief `scale`.
inline constexpr const char* scale =
    "the softmax scale, finite, applied to every q . k (usually 1 / sqrt(head_size)); used as "
    "a float";
/// \brief `block_tables`.
inline constexpr const char* block_tables =
    "[>= num_seqs, max_blocks_per_seq] i32, rows of any pitch, columns packed: the physical "
    "block of each block_size tokens of a sequence; the columns a sequence does not reach may "
    "hold anything";
/// \brief `seq_lens`.
inline constexpr const char* seq_lens =
    "[>= num_seqs] i32, contiguous: tokens of each sequence, 1 <= seq_len <= max_seq_len, "
    "within block_tables' columns";
/// \brief `block_size`.
inline constexpr const char* block_size =
    "tokens per cache block: 8, 16 or 32, and key_cache.size(3)";
/// \brief `max_seq_len`.
inline constexpr const char* max_seq_len =
    "the longest seq_len the call allows (v2: sizes the partitions, ceil(max_seq_len / 512))";
/// \brief `alibi_slopes`.
inline constexpr const char* alibi_slopes =
    "None, or [num_heads] f32: ALiBi, alibi_slopes[h] × (t - seq_len + 1) added to the logit of "
    "token t";
/// \brief `kv_cache_dtype`.
inline constexpr const char* kv_cache_dtype =
    "how the caches store an element: \"auto\" (query's dtype), \"bfloat16\", \"float16\", "
    "\"fp8\" / \"fp8_e4m3\" or \"fp8_e5m2\" (one byte, read as float(fp8) × scale, rounded to "
    "query's dtype)";
/// \brief `k_scale`.
inline constexpr const char* k_scale = "f32 [1], read on the device; only for fp8 caches";
/// \brief `v_scale`.
inline constexpr const char* v_scale = "f32 [1], read on the device; only for fp8 caches";
/// \brief `tp_rank`.
inline constexpr const char* tp_rank =
    "the tensor-parallel rank; upstream uses it only for blocksparse attention, which pagedkv "
    "does not implement: any value is accepted and ignored";
/// \brief `blocksparse_local_blocks`.
inline constexpr const char* blocksparse_local_blocks =
    "must be 0: blocksparse attention (Phi-3-small's) is not implemented, no production caller "
    "remains";
/// \brief `blocksparse_vert_stride`.
inline constexpr const char* blocksparse_vert_stride =
    "must be 0: blocksparse attention is not implemented (upstream enables it above 1)";
/// \brief `blocksparse_block_size`.
inline constexpr const char* blocksparse_block_size =
    "must be 64 (the default): blocksparse attention is not implemented";
/// \brief `blocksparse_head_sliding_step`.
inline constexpr const char* blocksparse_head_sliding_step =
    "must be 0: blocksparse attention is not implemented";
/// \brief `exp_sum` (v2; vLLM's C++ schema calls it exp_sums).
inline constexpr const char* exp_sum =
    "[num_seqs, num_heads, >= ceil(max_seq_len / 512)] f32, any strides: for each partition a "
    "sequence has, sum over its tokens of exp(logit - max_logit); the other entries are left "
    "untouched";
/// \brief `max_logits` (v2).
inline constexpr const char* max_logits =
    "the shape of exp_sum, f32, any strides: for each partition a sequence has, its largest "
    "logit";
/// \brief `tmp_out` (v2).
inline constexpr const char* tmp_out =
    "[num_seqs, num_heads, exp_sum.size(2), head_size], query's dtype, the last dimension "
    "packed: for each partition a sequence has, its output normalized by its own exp sum";
/// \brief `exp_sum` (rocm: partitions of 256).
inline constexpr const char* exp_sum_rocm =
    "[num_seqs, num_heads, >= ceil(max_seq_len / 256)] f32, any strides: for each partition of "
    "256 tokens a decoded sequence has, sum over its tokens of exp(logit - max_logit); the "
    "other entries are left untouched";
/// \brief `tmp_out` (rocm).
inline constexpr const char* tmp_out_rocm =
    "[num_seqs, num_heads, exp_sum.size(2), head_size], query's dtype, the last dimension "
    "packed: for each 256-token partition a decoded sequence has, its output normalized by its "
    "own exp sum";
/// \brief `out` (rocm).
inline constexpr const char* out_rocm =
    "[query.size(0), num_heads, head_size], the last dimension packed, the others with any "
    "strides: query's dtype, or f8_e4m3 exactly when fp8_out_scale is given; row "
    "query_start_loc[s] (row s without it) is written for each decoded sequence, the other rows "
    "are left untouched";
/// \brief `query` (rocm).
inline constexpr const char* query_rocm =
    "[num_query_tokens, num_heads, head_size] f16 or bf16, the last dimension packed, the "
    "others with any strides; head_size 64 or 128; without query_start_loc one row per "
    "sequence";
/// \brief `query_start_loc` (rocm).
inline constexpr const char* query_start_loc =
    "None, or [num_seqs + 1] i32, contiguous, non-decreasing, from >= 0 to <= query.size(0): "
    "sequence s owns query rows query_start_loc[s] .. query_start_loc[s + 1] - 1; a sequence "
    "with exactly one row is decoded from that row into the same row of out, the others "
    "(prefills, several tokens) are skipped and nothing of theirs is written, as upstream";
/// \brief `block_size` (rocm).
inline constexpr const char* block_size_rocm =
    "tokens per cache block: 16 or 32 (upstream's ROCm instantiations), and key_cache.size(3)";
/// \brief `max_seq_len` (rocm).
inline constexpr const char* max_seq_len_rocm =
    "the longest seq_len the call allows: sizes the partitions, ceil(max_seq_len / 256), at "
    "most 512 of them (max_seq_len <= 131072: the merge's NPAR_LOOPS <= 8)";
/// \brief `kv_cache_dtype` (rocm).
inline constexpr const char* kv_cache_dtype_rocm =
    "\"auto\" (query's dtype), or \"fp8\" / \"fp8_e4m3\" (one byte, read as float(fp8) x scale, "
    "rounded to query's dtype); upstream's ROCm op has no e5m2";
/// \brief `fp8_out_scale` (rocm).
inline constexpr const char* fp8_out_scale =
    "None, or f32 [1], read on the device: out is then f8_e4m3, each element "
    "fp8(out / fp8_out_scale) clamped to +-448 (upstream multiplies by 1 / fp8_out_scale)";
/// \brief `mfma_type` (rocm).
inline constexpr const char* mfma_type =
    "\"f16\" or \"fp8\": which AMD matrix instructions upstream uses for an fp8 cache; pagedkv "
    "runs the same math either way (no MFMA on NVIDIA), anything else is rejected";
/// \brief `use_interleaved_v_cache` (rocm).
inline constexpr const char* use_interleaved_v_cache =
    "must be False: the interleaved value layout of newer upstream versions is not implemented";
}  // namespace paged_attention_docs
/// \endcond

/// \brief The default of an argument in vLLM's wrappers (tp_rank and the blocksparse
/// arguments), as Python writes it; nullptr for the others.
/// \param argument the argument's name.
/// \return the default, or nullptr.
const char* paged_attention_default(std::string_view argument);

/// \brief The arguments the contract checks, as the two ops give them (v1 leaves the
/// workspaces without data).
struct PagedAttentionArguments {
  const TensorView* out = nullptr;         ///< out
  const TensorView* exp_sums = nullptr;    ///< v2's exp_sum, or nullptr
  const TensorView* max_logits = nullptr;  ///< v2's max_logits, or nullptr
  const TensorView* tmp_out = nullptr;     ///< v2's tmp_out, or nullptr
  const TensorView* query = nullptr;       ///< query
  const TensorView* key_cache = nullptr;   ///< key_cache
  const TensorView* value_cache = nullptr;  ///< value_cache
  std::int64_t num_kv_heads = 0;           ///< num_kv_heads
  double scale = 1.0;                      ///< scale
  const TensorView* block_tables = nullptr;  ///< block_tables
  const TensorView* seq_lens = nullptr;      ///< seq_lens
  std::int64_t block_size = 0;               ///< block_size
  std::int64_t max_seq_len = 0;              ///< max_seq_len
  const TensorView* alibi_slopes = nullptr;  ///< alibi_slopes (a view without data: None)
  const std::string* kv_cache_dtype = nullptr;  ///< kv_cache_dtype
  const TensorView* k_scale = nullptr;          ///< k_scale
  const TensorView* v_scale = nullptr;          ///< v_scale
  std::int64_t blocksparse_local_blocks = 0;    ///< blocksparse_local_blocks
  std::int64_t blocksparse_vert_stride = 0;     ///< blocksparse_vert_stride
  std::int64_t blocksparse_block_size = 64;     ///< blocksparse_block_size
  std::int64_t blocksparse_head_sliding_step = 0;  ///< blocksparse_head_sliding_step
  /// Tokens per partition of the workspaces: 0 for v1, 512 for v2, 256 for rocm.
  std::int64_t partition_size = 0;
  /// paged_attention_rocm: its limits (head sizes 64 / 128, block sizes 16 / 32, f16 / bf16
  /// queries, "auto" or fp8 E4M3 caches, 1 to 16 query heads per kv head, at most 512
  /// partitions), query_start_loc and fp8_out_scale, and the single partition merged.
  bool rocm = false;
  const TensorView* query_start_loc = nullptr;  ///< rocm: query_start_loc (no data: None)
  const TensorView* fp8_out_scale = nullptr;    ///< rocm: fp8_out_scale (no data: None)
};

/// \brief The contract of paged attention, shared by both ops (core/paged_attention.cpp):
/// checks every argument for `impl` and returns the plan; throws InvalidArgument naming the
/// argument, the expected and the actual value before anything is written. Reads seq_lens and
/// the block ids the sequences use (on the GPU: two small copies and a synchronization), or,
/// when the call defers its errors, queues one check kernel that checks the same rules
/// (pagedkv/deferred_checks.h).
/// \param args the arguments.
/// \param impl the implementation that will run.
/// \return the plan.
PagedAttentionPlan validate_paged_attention(const PagedAttentionArguments& args, Impl impl);

/// \brief The pointers of a call, from its views (absent ones null).
/// \param plan the validated plan.
/// \param args the arguments.
/// \return the data.
PagedAttentionData paged_attention_data(const PagedAttentionPlan& plan,
                                        const PagedAttentionArguments& args);

/// \brief The three implementations of paged attention, shared by v1, v2 and rocm.
namespace attention {

/// \brief CPU reference (reference_cpu/paged_attention.cpp): per sequence and kv head, every
/// token's key dequantized once and dotted with each of its query heads in float64; the
/// softmax and the weighted sum of the values in float64, rounded where upstream rounds (the
/// dequantized elements and the probabilities to T; v2's partition outputs to T), with the
/// epsilons of upstream's denominators.
/// \param plan what the contract returned.
/// \param data host pointers.
void cpu(const PagedAttentionPlan& plan, const PagedAttentionData& data);

/// \brief Naive CUDA (kernels/attention/paged_attention/naive.cu): one thread block per
/// (sequence, query head) (v2: and partition), the math of the CPU reference in plain loops,
/// head size and block size at run time.
/// \param plan what the contract returned.
/// \param data device pointers.
/// \param stream the CUDA stream (nothing synchronizes after the launch).
void naive(const PagedAttentionPlan& plan, const PagedAttentionData& data, cudaStream_t stream);

/// \brief Optimized CUDA (kernels/attention/paged_attention/optimized.cu): one thread block
/// per (sequence, kv head, split) reading each key and value once for all the query heads of
/// the kv head, 16-byte loads, partitions of 512 tokens, split across thread blocks where the
/// batch is small (the kernel file lists the tricks).
/// \param plan what the contract returned.
/// \param data device pointers.
/// \param stream the CUDA stream (nothing synchronizes after the launches).
void optimized(const PagedAttentionPlan& plan, const PagedAttentionData& data,
               cudaStream_t stream);

}  // namespace attention

}  // namespace pagedkv
