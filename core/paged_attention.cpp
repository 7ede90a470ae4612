// The one contract of paged_attention_v1, paged_attention_v2 and paged_attention_rocm (vLLM
// csrc/attention/paged_attention_v1.cu, paged_attention_v2.cu and csrc/rocm/attention.cu),
// shared by the CPU reference, the naive and the optimized CUDA kernels. Every rule throws InvalidArgument naming the
// argument, the expected and the actual value, before any byte is written.
//
// Upstream checks the head size and the block size (its instantiations), the query dtype and
// the kv_cache_dtype string, and nothing else. This contract also rejects what upstream
// silently gets wrong (chapter "Attention over a paged cache", upstream quirks):
//   - num_heads not a multiple of num_kv_heads (upstream maps the heads to kv heads anyway);
//   - a block_size argument other than the cache's block size, a num_kv_heads other than its
//     heads (upstream trusts both: it reads the wrong bytes);
//   - a value cache whose block or head stride differs from the key cache's (upstream reads
//     the value cache with the key cache's strides);
//   - seq_lens of 0 (v2 then merges partitions nobody wrote) or above max_seq_len (v1 overruns
//     its shared memory, v2 its workspaces), sequences past the block table's columns, block
//     ids outside the pool (upstream reads out of bounds);
//   - v2 workspaces with fewer than ceil(max_seq_len / 512) partitions (upstream writes past
//     them), or shapes that do not match;
//   - a non-finite scale, and any blocksparse argument other than its default (blocksparse
//     attention, written for Phi-3-small, has no caller left; pagedkv does not implement it).
// paged_attention_rocm adds its own limits (csrc/rocm/attention.cu: paged_attention and
// paged_attention_custom_launcher dispatch on them and fail with "Unsupported ..."), checked
// here first and named: head sizes 64 / 128, block sizes 16 / 32, f16 / bf16 queries, "auto"
// or fp8 E4M3 caches, GQA ratios 1 to 16, at most 512 partitions; and query_start_loc (i32,
// non-decreasing, within query's rows: upstream trusts it), fp8_out_scale (one f32; out is then
// f8_e4m3), mfma_type "f16" or "fp8", use_interleaved_v_cache False.
#include "pagedkv/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "attention_checks.h"
#include "block_lookup_checks.h"
#include "pagedkv/checks.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/paged_attention_v1.h"
#include "pagedkv/ops/paged_attention_rocm.h"
#include "pagedkv/ops/paged_attention_v2.h"
#include "sequence_checks.h"

namespace pagedkv {

namespace checks {

std::string attention_length_message(std::int64_t sequence, std::int64_t length,
                                     std::int64_t max_seq_len) {
  return detail::concat("seq_lens[", sequence, "] = ", length,
                        ": expected 1 <= seq_len <= max_seq_len = ", max_seq_len);
}

std::string attention_columns_message(std::int64_t sequence, std::int64_t length,
                                      std::int64_t block_size, std::int64_t width) {
  return detail::concat("block_tables: sequence ", sequence, " has ", length, " tokens, ",
                        (length + block_size - 1) / block_size, " blocks of ", block_size,
                        ", but block_tables has ", width, " columns");
}

std::string attention_block_message(std::int64_t sequence, std::int64_t column,
                                    std::int64_t block, std::int64_t num_blocks) {
  return detail::concat("block_tables[", sequence, ", ", column, "] = ", block,
                        ": expected a block of the cache, 0 <= block < num_blocks = ", num_blocks,
                        " (key_cache.size(0))");
}

}  // namespace checks

namespace {

// Whether an optional tensor (`Tensor?`) was given.
bool given(const TensorView* tensor) { return tensor != nullptr && checks::is_given(*tensor); }

// A 3-D [num_seqs, num_heads, head_size] activation with its last dimension packed.
void activation_rows(const TensorView& tensor, const char* name) {
  checks::ndim_is(tensor, name, 3);
  checks::non_negative_layout(tensor, name);
  checks::packed_from(tensor, name, 2);
}

// An output whose elements each have an address of their own (two would race otherwise).
void distinct(const TensorView& tensor, const char* name) {
  PAGEDKV_CHECK(tensor.numel() == 0 || checks::elements_are_distinct(tensor), name,
                ": expected an output whose elements do not overlap, got ", tensor.describe());
}

// The v2 workspaces: exp_sum and max_logits [S, H, P'] f32, tmp_out [S, H, P', D] of dtype T.
std::int64_t check_workspaces(const PagedAttentionArguments& args, std::int64_t num_seqs,
                              const char* seqs_label, std::int64_t num_heads,
                              std::int64_t head_size, DType dtype, std::int64_t partitions) {
  const TensorView& exp_sums = *args.exp_sums;
  const TensorView& max_logits = *args.max_logits;
  const TensorView& tmp_out = *args.tmp_out;
  checks::ndim_is(exp_sums, "exp_sum", 3);
  checks::dtype_is(exp_sums, "exp_sum", DType::f32);
  checks::non_negative_layout(exp_sums, "exp_sum");
  checks::size_is(exp_sums, "exp_sum", 0, num_seqs, seqs_label);
  checks::size_is(exp_sums, "exp_sum", 1, num_heads, "num_heads = query.size(1)");
  const std::int64_t slots = exp_sums.size(2);
  PAGEDKV_CHECK(slots >= partitions, "exp_sum.size(2): expected at least ceil(max_seq_len / ",
                args.partition_size, ") = ", partitions, " partitions for max_seq_len = ",
                args.max_seq_len, ", got ", slots, " (shape ", exp_sums.shape_string(), ")");
  distinct(exp_sums, "exp_sum");
  checks::ndim_is(max_logits, "max_logits", 3);
  checks::dtype_is(max_logits, "max_logits", DType::f32);
  checks::non_negative_layout(max_logits, "max_logits");
  checks::size_is(max_logits, "max_logits", 0, num_seqs, seqs_label);
  checks::size_is(max_logits, "max_logits", 1, num_heads, "num_heads = query.size(1)");
  checks::size_is(max_logits, "max_logits", 2, slots, "exp_sum.size(2)");
  distinct(max_logits, "max_logits");
  checks::ndim_is(tmp_out, "tmp_out", 4);
  checks::dtype_is(tmp_out, "tmp_out", dtype);
  checks::non_negative_layout(tmp_out, "tmp_out");
  checks::size_is(tmp_out, "tmp_out", 0, num_seqs, seqs_label);
  checks::size_is(tmp_out, "tmp_out", 1, num_heads, "num_heads = query.size(1)");
  checks::size_is(tmp_out, "tmp_out", 2, slots, "exp_sum.size(2)");
  checks::size_is(tmp_out, "tmp_out", 3, head_size, "head_size = query.size(2)");
  checks::packed_from(tmp_out, "tmp_out", 3);
  distinct(tmp_out, "tmp_out");
  return slots;
}

// The values of seq_lens and block_tables, read back to the host: each sequence 1 to
// max_seq_len tokens long, its blocks inside block_tables' columns and inside the pool. The
// same rules, in the same order and words, as the deferred check (deferred_checks.cu, wording
// paged_attention).
void check_sequences_on_host(const TensorView& seq_lens, const TensorView& block_tables,
                             std::int64_t num_seqs, std::int64_t max_seq_len,
                             std::int64_t block_size, std::int64_t num_blocks) {
  const std::vector<std::int64_t> lengths = checks::read_i32(seq_lens, num_seqs);
  for (std::int64_t b = 0; b < num_seqs; ++b) {
    const std::int64_t length = lengths[static_cast<std::size_t>(b)];
    PAGEDKV_CHECK(length >= 1 && length <= max_seq_len,
                  checks::attention_length_message(b, length, max_seq_len));
  }
  const std::int64_t width = block_tables.size(1);
  std::int64_t columns_needed = 0;
  for (std::int64_t b = 0; b < num_seqs; ++b) {
    const std::int64_t length = lengths[static_cast<std::size_t>(b)];
    const std::int64_t columns = (length + block_size - 1) / block_size;
    PAGEDKV_CHECK(columns <= width, checks::attention_columns_message(b, length, block_size, width));
    columns_needed = std::max(columns_needed, columns);
  }
  if (num_seqs == 0 || columns_needed == 0) return;
  const std::int64_t pitch = block_tables.stride(0);
  const std::vector<std::int32_t> table = checks::copy_i32(
      block_tables.data, block_tables.device, (num_seqs - 1) * pitch + columns_needed);
  for (std::int64_t b = 0; b < num_seqs; ++b) {
    const std::int64_t columns = (lengths[static_cast<std::size_t>(b)] + block_size - 1) / block_size;
    for (std::int64_t column = 0; column < columns; ++column) {
      const std::int64_t block = table[static_cast<std::size_t>(b * pitch + column)];
      PAGEDKV_CHECK(block >= 0 && block < num_blocks,
                    checks::attention_block_message(b, column, block, num_blocks));
    }
  }
}

// paged_attention_rocm's query_start_loc, read back to the host: num_seqs + 1 entries from
// >= 0, never decreasing, the last within query's rows (upstream reads rows past the query
// otherwise).
void check_query_start_loc(const TensorView& query_start_loc, std::int64_t num_seqs,
                           std::int64_t query_rows) {
  const std::vector<std::int64_t> starts = checks::read_i32(query_start_loc, num_seqs + 1);
  PAGEDKV_CHECK(starts[0] >= 0, "query_start_loc[0] = ", starts[0],
                ": expected a query row, >= 0");
  for (std::int64_t s = 0; s < num_seqs; ++s) {
    const std::int64_t begin = starts[static_cast<std::size_t>(s)];
    const std::int64_t end = starts[static_cast<std::size_t>(s + 1)];
    PAGEDKV_CHECK(end >= begin, "query_start_loc[", s + 1, "] = ", end,
                  ": expected query_start_loc to never decrease, query_start_loc[", s, "] = ",
                  begin);
    PAGEDKV_CHECK(end <= query_rows, "query_start_loc[", s + 1, "] = ", end,
                  ": expected at most query.size(0) = ", query_rows, " (the query rows)");
  }
}

// paged_attention_rocm's limits (vLLM csrc/rocm/attention.cu, paged_attention: the dispatch on
// the query dtype, kv_cache_dtype, head size and block size, the launcher's GQA ratio and
// npar_loops switches), each named with the supported set.
void check_rocm_kv_cache_dtype(const std::string& kv_cache_dtype) {
  PAGEDKV_CHECK(kv_cache_dtype == "auto" || kv_cache_dtype == "fp8" ||
                    kv_cache_dtype == "fp8_e4m3",
                "kv_cache_dtype: expected \"auto\", \"fp8\" or \"fp8_e4m3\" (vLLM's ROCm kernel "
                "fails with \"Unsupported KV cache dtype\" otherwise), got \"",
                kv_cache_dtype, "\"");
}

}  // namespace

const char* paged_attention_default(std::string_view argument) {
  if (argument == "tp_rank" || argument == "blocksparse_local_blocks" ||
      argument == "blocksparse_vert_stride" || argument == "blocksparse_head_sliding_step") {
    return "0";
  }
  if (argument == "blocksparse_block_size") return "64";
  return nullptr;
}

PagedAttentionPlan validate_paged_attention(const PagedAttentionArguments& args, Impl impl) {
  const TensorView& out = *args.out;
  const TensorView& query = *args.query;
  const TensorView& key_cache = *args.key_cache;
  const TensorView& value_cache = *args.value_cache;
  const TensorView& block_tables = *args.block_tables;
  const TensorView& seq_lens = *args.seq_lens;
  const bool v2 = args.partition_size > 0;
  const bool alibi = given(args.alibi_slopes);

  // 1. Blocksparse attention is not implemented: every blocksparse argument at its default.
  PAGEDKV_CHECK(args.blocksparse_vert_stride == 0, "blocksparse_vert_stride: expected 0, got ",
                args.blocksparse_vert_stride,
                " (blocksparse attention is not implemented: no production caller remains)");
  PAGEDKV_CHECK(args.blocksparse_local_blocks == 0, "blocksparse_local_blocks: expected 0, got ",
                args.blocksparse_local_blocks, " (blocksparse attention is not implemented)");
  PAGEDKV_CHECK(args.blocksparse_block_size == 64, "blocksparse_block_size: expected 64, got ",
                args.blocksparse_block_size, " (blocksparse attention is not implemented)");
  PAGEDKV_CHECK(args.blocksparse_head_sliding_step == 0,
                "blocksparse_head_sliding_step: expected 0, got ",
                args.blocksparse_head_sliding_step,
                " (blocksparse attention is not implemented)");

  // 2. Devices: every tensor the implementation touches lives where it computes.
  const Device device = impl_device(impl);
  checks::device_is(out, "out", device);
  checks::device_is(query, "query", device);
  checks::device_is(key_cache, "key_cache", device);
  checks::device_is(value_cache, "value_cache", device);
  checks::device_is(block_tables, "block_tables", device);
  checks::device_is(seq_lens, "seq_lens", device);
  if (alibi) checks::device_is(*args.alibi_slopes, "alibi_slopes", device);
  if (v2) {
    checks::device_is(*args.exp_sums, "exp_sum", device);
    checks::device_is(*args.max_logits, "max_logits", device);
    checks::device_is(*args.tmp_out, "tmp_out", device);
  }

  // 3. query and out: [num_seqs, num_heads, head_size] of one activation dtype (rocm: one row
  //    per query token, query_start_loc saying whose; out f8_e4m3 with fp8_out_scale).
  const bool by_start = args.rocm && given(args.query_start_loc);
  const bool fp8_output = args.rocm && given(args.fp8_out_scale);
  if (by_start) checks::device_is(*args.query_start_loc, "query_start_loc", device);
  if (fp8_output) checks::device_is(*args.fp8_out_scale, "fp8_out_scale", device);
  activation_rows(query, "query");
  if (args.rocm) {
    checks::dtype_in(query, "query", {DType::f16, DType::bf16});
  } else {
    checks::dtype_in(query, "query", {DType::f32, DType::f16, DType::bf16});
  }
  const std::int64_t query_rows = query.size(0);
  if (by_start) {
    const TensorView& starts = *args.query_start_loc;
    PAGEDKV_CHECK(starts.ndim == 1 && starts.size(0) >= 1,
                  "query_start_loc: expected [num_seqs + 1] (one start per sequence and the end), "
                  "got ", starts.describe());
  }
  const std::int64_t num_seqs = by_start ? args.query_start_loc->size(0) - 1 : query_rows;
  const char* seqs_label =
      by_start ? "num_seqs = query_start_loc.size(0) - 1" : "num_seqs = query.size(0)";
  const std::int64_t num_heads = query.size(1);
  const std::int64_t head_size = query.size(2);
  if (args.rocm) {
    PAGEDKV_CHECK(head_size == 64 || head_size == 128,
                  "query.size(2) (head_size): expected 64 or 128 (the head sizes of vLLM's ROCm "
                  "kernel, which fails with \"Unsupported head size\" otherwise), got ",
                  head_size);
  }
  PAGEDKV_CHECK(paged_attention_head_size_supported(head_size),
                "query.size(2) (head_size): expected one of 32, 64, 80, 96, 112, 120, 128, 192, "
                "256 (the sizes vLLM instantiates), got ",
                head_size);
  activation_rows(out, "out");
  if (fp8_output) {
    PAGEDKV_CHECK(out.dtype == DType::f8_e4m3, "out: expected dtype f8_e4m3 (fp8 E4M3) because "
                  "fp8_out_scale is given, got ", dtype_name(out.dtype));
  } else {
    checks::dtype_is(out, "out", query.dtype);
  }
  checks::size_is(out, "out", 0, query_rows,
                  by_start ? "query.size(0) (one row per query token)" : "num_seqs = query.size(0)");
  checks::size_is(out, "out", 1, num_heads, "num_heads = query.size(1)");
  checks::size_is(out, "out", 2, head_size, "head_size = query.size(2)");
  distinct(out, "out");

  // 4. The caches: the legacy layout of reshape_and_cache.
  if (args.rocm) check_rocm_kv_cache_dtype(*args.kv_cache_dtype);
  const KvCacheDtype cache_kind = parse_kv_cache_dtype(*args.kv_cache_dtype, query.dtype);
  const bool fp8 = is_fp8(cache_kind);
  checks::ndim_is(key_cache, "key_cache", 5);
  checks::ndim_is(value_cache, "value_cache", 4);
  if (fp8) {
    PAGEDKV_CHECK(is_byte_dtype(key_cache.dtype), "key_cache: kv_cache_dtype \"",
                  *args.kv_cache_dtype,
                  "\" stores one byte per element, expected dtype u8, f8_e4m3 or f8_e5m2, got ",
                  dtype_name(key_cache.dtype));
  } else {
    PAGEDKV_CHECK(key_cache.dtype == query.dtype, "key_cache: kv_cache_dtype \"",
                  *args.kv_cache_dtype, "\" stores query's dtype, expected ",
                  dtype_name(query.dtype), ", got ", dtype_name(key_cache.dtype));
  }
  checks::dtype_is(value_cache, "value_cache", key_cache.dtype);
  checks::non_negative_layout(key_cache, "key_cache");
  checks::non_negative_layout(value_cache, "value_cache");
  const std::int64_t x = 16 / key_cache.element_size();
  PAGEDKV_CHECK(key_cache.size(4) == x, "key_cache.size(4) (x): expected ", x, " (16 bytes / ",
                key_cache.element_size(), "-byte ", dtype_name(key_cache.dtype),
                " elements), got ", key_cache.size(4), " (shape ", key_cache.shape_string(), ")");
  PAGEDKV_CHECK(head_size % x == 0, "query.size(2) (head_size): expected a multiple of x = ", x,
                " (16 bytes of cache elements: an fp8 cache needs a multiple of 16), got ",
                head_size);
  PAGEDKV_CHECK(args.num_kv_heads >= 1, "num_kv_heads: expected at least 1, got ",
                args.num_kv_heads);
  checks::size_is(key_cache, "key_cache", 1, args.num_kv_heads, "num_kv_heads");
  PAGEDKV_CHECK(num_heads % args.num_kv_heads == 0, "num_kv_heads: expected a divisor of "
                "num_heads = query.size(1) = ", num_heads, " (each kv head serves the same number "
                "of query heads), got ", args.num_kv_heads);
  if (args.rocm) {
    const std::int64_t ratio = num_heads / args.num_kv_heads;
    PAGEDKV_CHECK(ratio >= 1 && ratio <= 16, "num_kv_heads: expected num_heads / num_kv_heads "
                  "between 1 and 16 (the GQA ratios of vLLM's ROCm kernel, which fails with "
                  "\"Unsupported gqa ratio\" otherwise), got num_heads = ", num_heads,
                  ", num_kv_heads = ", args.num_kv_heads, " (ratio ", ratio, ")");
  }
  checks::size_is(key_cache, "key_cache", 2, head_size / x, "head_size / x");
  if (args.rocm) {
    PAGEDKV_CHECK(args.block_size == 16 || args.block_size == 32,
                  "block_size: expected 16 or 32 (the block sizes of vLLM's ROCm kernel, which "
                  "fails with \"Unsupported block size\" otherwise), got ", args.block_size);
  }
  PAGEDKV_CHECK(paged_attention_block_size_supported(args.block_size),
                "block_size: expected 8, 16 or 32 (the sizes vLLM instantiates), got ",
                args.block_size);
  checks::size_is(key_cache, "key_cache", 3, args.block_size, "block_size");
  checks::packed_from(key_cache, "key_cache", 2);
  const std::int64_t num_blocks = key_cache.size(0);
  checks::size_is(value_cache, "value_cache", 0, num_blocks, "num_blocks = key_cache.size(0)");
  checks::size_is(value_cache, "value_cache", 1, args.num_kv_heads, "num_kv_heads");
  checks::size_is(value_cache, "value_cache", 2, head_size, "head_size = query.size(2)");
  checks::size_is(value_cache, "value_cache", 3, args.block_size, "block_size");
  checks::packed_from(value_cache, "value_cache", 2);
  PAGEDKV_CHECK(num_blocks <= 1 || value_cache.stride(0) == key_cache.stride(0),
                "value_cache.stride(0): expected key_cache.stride(0) = ", key_cache.stride(0),
                " (the kernels address both caches with the key cache's block stride, as "
                "upstream does), got ", value_cache.stride(0));
  PAGEDKV_CHECK(args.num_kv_heads <= 1 || value_cache.stride(1) == key_cache.stride(1),
                "value_cache.stride(1): expected key_cache.stride(1) = ", key_cache.stride(1),
                " (the kernels address both caches with the key cache's head stride, as "
                "upstream does), got ", value_cache.stride(1));

  // 5. The scalars.
  PAGEDKV_CHECK(std::isfinite(args.scale) &&
                    std::fabs(args.scale) <= std::numeric_limits<float>::max(),
                "scale: expected a finite float, got ", args.scale);
  PAGEDKV_CHECK(args.max_seq_len >= (num_seqs > 0 ? 1 : 0) &&
                    args.max_seq_len <= std::numeric_limits<std::int32_t>::max(),
                "max_seq_len: expected ", num_seqs > 0 ? 1 : 0, " <= max_seq_len <= 2^31 - 1 ",
                "(seq_lens are i32), got ", args.max_seq_len);
  if (args.rocm) {
    constexpr std::int64_t kLongest =
        kPagedAttentionRocmMaxPartitions * kPagedAttentionRocmPartitionSize;
    PAGEDKV_CHECK(args.max_seq_len <= kLongest, "max_seq_len: expected at most ", kLongest,
                  " (512 partitions of 256 tokens: vLLM's ROCm merge takes NPAR_LOOPS <= 8 "
                  "passes of 64 partitions and fails with \"Unsupported npar_loops\" beyond), got ",
                  args.max_seq_len);
  }

  // 6. block_tables and seq_lens: i32, one row / element per sequence at least.
  checks::ndim_is(block_tables, "block_tables", 2);
  checks::dtype_is(block_tables, "block_tables", DType::i32);
  checks::non_negative_layout(block_tables, "block_tables");
  PAGEDKV_CHECK(block_tables.size(1) <= 1 || block_tables.stride(1) == 1,
                "block_tables: expected packed columns (stride(1) = 1), got ",
                block_tables.describe());
  PAGEDKV_CHECK(block_tables.size(0) >= num_seqs, "block_tables: expected at least ", num_seqs,
                " rows (", seqs_label, "), got ", block_tables.describe());
  checks::i32_vector(seq_lens, "seq_lens", num_seqs, seqs_label);
  if (by_start) {
    checks::i32_vector(*args.query_start_loc, "query_start_loc", num_seqs + 1,
                       "num_seqs + 1");
  }

  // 7. ALiBi slopes, the fp8 scales.
  if (alibi) {
    const TensorView& slopes = *args.alibi_slopes;
    checks::ndim_is(slopes, "alibi_slopes", 1);
    checks::dtype_is(slopes, "alibi_slopes", DType::f32);
    checks::non_negative_layout(slopes, "alibi_slopes");
    checks::size_is(slopes, "alibi_slopes", 0, num_heads, "num_heads = query.size(1)");
    checks::not_null(slopes, "alibi_slopes");
  }
  if (fp8) {
    for (const auto& [scale, name] : {std::pair{args.k_scale, "k_scale"},
                                      std::pair{args.v_scale, "v_scale"}}) {
      checks::device_is(*scale, name, device);
      checks::dtype_is(*scale, name, DType::f32);
      PAGEDKV_CHECK(scale->numel() == 1, name, ": expected 1 element (a per-tensor scale), got ",
                    scale->numel(), " (shape ", scale->shape_string(), ")");
      checks::not_null(*scale, name);
    }
  }

  if (fp8_output) {  // one f32, read on the device (the query's dtype is checked above)
    const TensorView& scale = *args.fp8_out_scale;
    checks::dtype_is(scale, "fp8_out_scale", DType::f32);
    PAGEDKV_CHECK(scale.numel() == 1, "fp8_out_scale: expected 1 element (a per-tensor scale), "
                  "got ", scale.numel(), " (shape ", scale.shape_string(), ")");
    checks::not_null(scale, "fp8_out_scale");
  }

  // 8. v2's and rocm's workspaces: enough partitions for max_seq_len.
  const std::int64_t partitions =
      v2 ? (args.max_seq_len + args.partition_size - 1) / args.partition_size : 0;
  if (v2) {
    check_workspaces(args, num_seqs, seqs_label, num_heads, head_size, query.dtype, partitions);
  }

  // 9. Null pointers of tensors that have elements.
  checks::not_null(out, "out");
  checks::not_null(query, "query");
  checks::not_null(key_cache, "key_cache");
  checks::not_null(value_cache, "value_cache");
  if (num_seqs > 0) checks::not_null(block_tables, "block_tables");
  if (v2) {
    checks::not_null(*args.exp_sums, "exp_sum");
    checks::not_null(*args.max_logits, "max_logits");
    checks::not_null(*args.tmp_out, "tmp_out");
  }

  // 10. The values: every sequence 1 to max_seq_len tokens, inside block_tables' columns, its
  //     blocks inside the pool. Deferred (a capture, vllm_ops): one check kernel on the call's
  //     stream, whose fault makes the kernels write nothing (pagedkv/deferred_checks.h).
  //     rocm's query_start_loc is read back on the host, deferred or not.
  if (by_start && num_seqs > 0) {
    checks::not_null(*args.query_start_loc, "query_start_loc");
    check_query_start_loc(*args.query_start_loc, num_seqs, query_rows);
  }
  if (num_seqs > 0) {
    const CheckScope* scope = CheckScope::current();
    if (scope != nullptr && scope->deferred && device == Device::cuda) {
      checks::SequenceCheck check;
      check.wording = SequenceWording::paged_attention;
      check.seq_lens = static_cast<const std::int32_t*>(seq_lens.data);
      check.block_table = static_cast<const std::int32_t*>(block_tables.data);
      check.table_stride = block_tables.stride(0);
      check.table_width = block_tables.size(1);
      check.batch = num_seqs;
      check.block_size = args.block_size;
      check.num_blocks = num_blocks;
      check.max_length = args.max_seq_len;
      checks::name_sequence_arguments(check, "block_tables");
      check.argument[static_cast<std::uint32_t>(FaultRule::length_range)] =
          checks::argument_name("seq_lens");
      check.argument[static_cast<std::uint32_t>(FaultRule::block_range)] =
          checks::argument_name("block_tables");
      checks::enqueue_sequence_check(*scope, check);
    } else {
      check_sequences_on_host(seq_lens, block_tables, num_seqs, args.max_seq_len,
                              args.block_size, num_blocks);
    }
  }

  PagedAttentionPlan plan;
  plan.num_seqs = num_seqs;
  plan.num_heads = num_heads;
  plan.num_kv_heads = args.num_kv_heads;
  plan.head_size = head_size;
  plan.block_size = args.block_size;
  plan.num_blocks = num_blocks;
  plan.x = x;
  plan.max_seq_len = args.max_seq_len;
  plan.partition_size = args.partition_size;
  plan.max_partitions = partitions;
  plan.query_stride[0] = query.stride(0);
  plan.query_stride[1] = query.stride(1);
  plan.out_stride[0] = out.stride(0);
  plan.out_stride[1] = out.stride(1);
  plan.block_stride = key_cache.stride(0);
  plan.head_stride = key_cache.stride(1);
  plan.table_stride = block_tables.stride(0);
  plan.table_width = block_tables.size(1);
  plan.alibi_stride = alibi ? args.alibi_slopes->stride(0) : 0;
  if (v2) {
    for (int d = 0; d < 3; ++d) {
      plan.exp_sums_stride[d] = args.exp_sums->stride(d);
      plan.max_logits_stride[d] = args.max_logits->stride(d);
      plan.tmp_out_stride[d] = args.tmp_out->stride(d);
    }
  }
  plan.dtype = query.dtype;
  plan.cache_kind = cache_kind;
  plan.scale = static_cast<float>(args.scale);
  plan.has_alibi = alibi;
  plan.merge_single_partition = args.rocm;
  plan.fp8_output = fp8_output;
  return plan;
}

PagedAttentionData paged_attention_data(const PagedAttentionPlan& plan,
                                        const PagedAttentionArguments& args) {
  PagedAttentionData data;
  data.out = args.out->data;
  data.query = args.query->data;
  data.key_cache = args.key_cache->data;
  data.value_cache = args.value_cache->data;
  data.block_tables = static_cast<const std::int32_t*>(args.block_tables->data);
  data.seq_lens = static_cast<const std::int32_t*>(args.seq_lens->data);
  if (plan.has_alibi) data.alibi_slopes = static_cast<const float*>(args.alibi_slopes->data);
  if (is_fp8(plan.cache_kind)) {
    data.k_scale = static_cast<const float*>(args.k_scale->data);
    data.v_scale = static_cast<const float*>(args.v_scale->data);
  }
  if (plan.partition_size > 0) {
    data.exp_sums = static_cast<float*>(args.exp_sums->data);
    data.max_logits = static_cast<float*>(args.max_logits->data);
    data.tmp_out = args.tmp_out->data;
  }
  if (given(args.query_start_loc)) {
    data.query_start_loc = static_cast<const std::int32_t*>(args.query_start_loc->data);
  }
  if (plan.fp8_output) data.fp8_out_scale = static_cast<const float*>(args.fp8_out_scale->data);
  return data;
}

namespace {

// The arguments v1, v2 and rocm share (under the same names), and the partition size that
// tells them apart; rocm has no blocksparse arguments (they stay at their defaults).
template <class Args>
PagedAttentionArguments shared_arguments(const Args& a, std::int64_t partition_size) {
  PagedAttentionArguments args;
  args.out = &a.out;
  args.query = &a.query;
  args.key_cache = &a.key_cache;
  args.value_cache = &a.value_cache;
  args.num_kv_heads = a.num_kv_heads;
  args.scale = a.scale;
  args.block_tables = &a.block_tables;
  args.seq_lens = &a.seq_lens;
  args.block_size = a.block_size;
  args.max_seq_len = a.max_seq_len;
  args.alibi_slopes = &a.alibi_slopes;
  args.kv_cache_dtype = &a.kv_cache_dtype;
  args.k_scale = &a.k_scale;
  args.v_scale = &a.v_scale;
  if constexpr (!std::is_same_v<Args, PagedAttentionRocm::Args>) {
    args.blocksparse_local_blocks = a.blocksparse_local_blocks;
    args.blocksparse_vert_stride = a.blocksparse_vert_stride;
    args.blocksparse_block_size = a.blocksparse_block_size;
    args.blocksparse_head_sliding_step = a.blocksparse_head_sliding_step;
  }
  args.partition_size = partition_size;
  return args;
}

PagedAttentionArguments v1_arguments(const PagedAttentionV1::Args& a) {
  return shared_arguments(a, 0);
}

// The workspaces of v2 and rocm.
template <class Args>
PagedAttentionArguments split_arguments(const Args& a, std::int64_t partition_size) {
  PagedAttentionArguments args = shared_arguments(a, partition_size);
  args.exp_sums = &a.exp_sum;
  args.max_logits = &a.max_logits;
  args.tmp_out = &a.tmp_out;
  return args;
}

PagedAttentionArguments v2_arguments(const PagedAttentionV2::Args& a) {
  return split_arguments(a, kPagedAttentionPartitionSize);
}

PagedAttentionArguments rocm_arguments(const PagedAttentionRocm::Args& a) {
  PagedAttentionArguments args = split_arguments(a, kPagedAttentionRocmPartitionSize);
  args.rocm = true;
  args.query_start_loc = &a.query_start_loc;
  args.fp8_out_scale = &a.fp8_out_scale;
  return args;
}

}  // namespace

PagedAttentionData paged_attention_data(const PagedAttentionPlan& plan,
                                        const PagedAttentionV1::Args& args) {
  return paged_attention_data(plan, v1_arguments(args));
}
PagedAttentionData paged_attention_data(const PagedAttentionPlan& plan,
                                        const PagedAttentionV2::Args& args) {
  return paged_attention_data(plan, v2_arguments(args));
}
PagedAttentionData paged_attention_data(const PagedAttentionPlan& plan,
                                        const PagedAttentionRocm::Args& args) {
  return paged_attention_data(plan, rocm_arguments(args));
}

PagedAttentionV1::Plan PagedAttentionV1::validate(const Args& args, Impl impl) {
  return validate_paged_attention(v1_arguments(args), impl);
}

PagedAttentionV2::Plan PagedAttentionV2::validate(const Args& args, Impl impl) {
  return validate_paged_attention(v2_arguments(args), impl);
}

PagedAttentionRocm::Plan PagedAttentionRocm::validate(const Args& args, Impl impl) {
  // What only rocm has: the MFMA flavour (no MFMA on NVIDIA: both run the same math here) and
  // the interleaved value layout of newer upstream versions (not implemented).
  PAGEDKV_CHECK(args.mfma_type == "f16" || args.mfma_type == "fp8",
                "mfma_type: expected \"f16\" or \"fp8\" (vLLM's choice of AMD matrix "
                "instructions; pagedkv computes the same either way), got \"", args.mfma_type,
                "\"");
  PAGEDKV_CHECK(!args.use_interleaved_v_cache,
                "use_interleaved_v_cache: expected False (the interleaved value cache layout is "
                "not implemented), got True");
  return validate_paged_attention(rocm_arguments(args), impl);
}

}  // namespace pagedkv
