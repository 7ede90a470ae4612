// The one contract of gather_and_maybe_dequant_cache (vLLM csrc/cache_kernels.cu @9803b00:
// gather_and_maybe_dequant_cache), shared by the CPU reference, the naive and the optimized
// CUDA kernels. Every rule throws InvalidArgument naming the argument, the expected and the
// actual value, before any byte is written.
//
// Beyond what upstream checks (int32 block_table, cu_seq_lens and seq_starts, a 576-wide
// workspace, one device), this contract also rejects what upstream silently gets wrong:
//   - a token_to_seq that is not int32 (upstream reads it through an int32 pointer, unchecked);
//   - cu_seq_lens that does not start at 0 or decreases, a token whose token_to_seq is not the
//     sequence cu_seq_lens gives it, a negative seq_starts, and a block a gathered token needs
//     that is past block_table's columns or outside the cache (upstream reads out of bounds);
//     these read the index tensors back to the host (block_lookup_checks.h);
//   - num_tokens past dst's rows or token_to_seq's length (upstream writes out of bounds);
//   - an "auto" cache of another dtype than dst (upstream reinterprets the bits);
//   - an fp8 scale that is not exactly one f32 (upstream reads element 0 of anything);
//   - workspace rows that overlap (two tokens would race for one row);
//   - "fp8_ds_mla" with a workspace other than bf16: pagedkv decodes the 656-byte entry truly
//     (upstream decodes it as 576 plain E4M3 bytes, quirk), and its RoPE part is bf16 bits;
// and it makes zero sequences or zero tokens a no-op (upstream launches an empty grid).
#include "pagedkv/ops/gather_and_maybe_dequant_cache.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "block_lookup_checks.h"
#include "mla_checks.h"
#include "sequence_checks.h"
#include "pagedkv/checks.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/concat_and_cache_mla.h"

namespace pagedkv {

GatherAndMaybeDequantCache::Plan GatherAndMaybeDequantCache::validate(const Args& args, Impl impl) {
  const TensorView& src_cache = args.src_cache;
  const TensorView& dst = args.dst;
  const std::string_view kv_cache_dtype = args.kv_cache_dtype;
  const bool has_seq_starts = checks::is_given(args.seq_starts);

  // 1. Every tensor the op touches lives where the implementation computes.
  const Device device = impl_device(impl);
  checks::device_is(src_cache, "src_cache", device);
  checks::device_is(dst, "dst", device);
  checks::device_is(args.block_table, "block_table", device);
  checks::device_is(args.cu_seq_lens, "cu_seq_lens", device);
  checks::device_is(args.token_to_seq, "token_to_seq", device);
  if (has_seq_starts) checks::device_is(args.seq_starts, "seq_starts", device);

  // 2. The workspace: [rows, 576] of a float dtype, rows apart.
  checks::dtype_in(dst, "dst", {DType::f32, DType::f16, DType::bf16});
  checks::workspace_rows(dst, "dst", kMlaGatherRow);

  // 3. The cache kind, and the cache: [num_blocks, block_size, entry], entry packed.
  const bool ds_mla = kv_cache_dtype == "fp8_ds_mla";
  checks::ndim_is(src_cache, "src_cache", 3);
  checks::non_negative_layout(src_cache, "src_cache");
  KvCacheDtype cache_kind = KvCacheDtype::kFp8E4m3;  // the ds_mla latent is E4M3
  if (ds_mla) {
    PAGEDKV_CHECK(dst.dtype == DType::bf16, "dst: kv_cache_dtype \"fp8_ds_mla\" needs a bf16 ",
                  "workspace (the entry's RoPE part is bf16 bits), got ", dtype_name(dst.dtype));
    PAGEDKV_CHECK(src_cache.dtype == DType::u8 || src_cache.dtype == DType::f8_e4m3,
                  "src_cache: kv_cache_dtype \"fp8_ds_mla\" holds bytes, expected dtype u8 or "
                  "f8_e4m3, got ",
                  dtype_name(src_cache.dtype));
    PAGEDKV_CHECK(src_cache.size(2) == kDsMlaEntryBytes, "src_cache: entry size, size(2), must ",
                  "be ", kDsMlaEntryBytes, " bytes for kv_cache_dtype \"fp8_ds_mla\", got ",
                  src_cache.size(2), " (shape ", src_cache.shape_string(), ")");
  } else {
    cache_kind = parse_kv_cache_dtype(kv_cache_dtype, dst.dtype);
    if (is_fp8(cache_kind)) {
      PAGEDKV_CHECK(is_byte_dtype(src_cache.dtype), "src_cache: kv_cache_dtype \"",
                    std::string(kv_cache_dtype), "\" holds one byte per element, expected dtype ",
                    "u8, f8_e4m3 or f8_e5m2, got ", dtype_name(src_cache.dtype));
    } else {
      PAGEDKV_CHECK(src_cache.dtype == dst.dtype, "src_cache: kv_cache_dtype \"",
                    std::string(kv_cache_dtype), "\" copies elements unchanged, expected dtype ",
                    dtype_name(dst.dtype), " (the dtype of dst), got ",
                    dtype_name(src_cache.dtype));
    }
    PAGEDKV_CHECK(src_cache.size(2) == kMlaGatherRow, "src_cache: entry size, size(2), must be ",
                  kMlaGatherRow, " (kv_lora_rank 512 + rope_dim 64), got ", src_cache.size(2),
                  " (shape ", src_cache.shape_string(), ")");
  }
  checks::packed_from(src_cache, "src_cache", 2);

  // 4. num_tokens and the index tensors' shapes.
  const std::int64_t num_tokens = args.num_tokens;
  PAGEDKV_CHECK(num_tokens >= 0 && num_tokens <= dst.size(0),
                "num_tokens: expected 0 <= ", "num_tokens <= dst.size(0) = ", dst.size(0),
                " (workspace rows), got ", num_tokens);
  checks::i32_vector(args.cu_seq_lens, "cu_seq_lens", 1, "batch + 1");
  const std::int64_t batch = args.cu_seq_lens.size(0) - 1;
  checks::i32_vector(args.token_to_seq, "token_to_seq", num_tokens, "num_tokens");
  if (has_seq_starts) checks::i32_vector(args.seq_starts, "seq_starts", batch, "batch");

  // 5. The scale: read only by the per-tensor fp8 kinds.
  if (is_fp8(cache_kind) && !ds_mla) checks::one_f32_scale(args.scale, "scale", device);

  // 6. Memory behind the data tensors.
  checks::not_null(src_cache, "src_cache");
  checks::not_null(dst, "dst");

  // 7-8. The index values. Deferred (a capture, vllm_ops): one check kernel on the call's
  //    stream finds the first broken rule of those below, in their order, and the plan knows
  //    only num_tokens; the kernels read cu_seq_lens[batch] on the device
  //    (pagedkv/deferred_checks.h). The table's shape is still checked here.
  const std::int64_t block_size = src_cache.size(1);
  const CheckScope* scope = CheckScope::current();
  const bool deferred = scope != nullptr && scope->deferred && device == Device::cuda;
  std::int64_t rows = 0;
  if (deferred) {
    checks::block_table_shape(args.block_table, batch);
    if (batch > 0) checks::not_null(args.block_table, "block_table");
    checks::SequenceCheck check;
    check.wording = SequenceWording::block_lookup;
    check.cu_seq_lens = static_cast<const std::int32_t*>(args.cu_seq_lens.data);
    check.seq_starts =
        has_seq_starts ? static_cast<const std::int32_t*>(args.seq_starts.data) : nullptr;
    check.token_to_seq = static_cast<const std::int32_t*>(args.token_to_seq.data);
    check.block_table = static_cast<const std::int32_t*>(args.block_table.data);
    check.table_stride = args.block_table.stride(0);
    check.table_width = args.block_table.size(1);
    check.batch = batch;
    check.block_size = block_size;
    check.num_blocks = src_cache.size(0);
    check.token_limit = num_tokens;
    checks::name_sequence_arguments(check, "block_table");
    checks::enqueue_sequence_check(*scope, check);
    rows = batch == 0 ? 0 : num_tokens;  // a bound: cu_seq_lens[0] must be 0
  } else {
    // 7. The index values (read back to the host): cu_seq_lens a running sum from 0, each
    //    gathered token owned by the sequence token_to_seq names, seq_starts >= 0.
    const std::vector<std::int64_t> cu = checks::read_i32(args.cu_seq_lens, batch + 1);
    checks::cumulative_lengths(cu, "cu_seq_lens");
    rows = std::min(num_tokens, cu[static_cast<std::size_t>(batch)]);
    const std::vector<std::int64_t> token_seq = checks::read_i32(args.token_to_seq, rows);
    std::int64_t owner = 0;  // the sequence that holds row k: advances with k
    for (std::int64_t k = 0; k < rows; ++k) {
      while (cu[static_cast<std::size_t>(owner + 1)] <= k) ++owner;
      PAGEDKV_CHECK(token_seq[static_cast<std::size_t>(k)] == owner, "token_to_seq[", k,
                    "] = ", token_seq[static_cast<std::size_t>(k)], ": expected ", owner,
                    ", the sequence cu_seq_lens gives token ", k, " (cu_seq_lens[", owner,
                    "] = ", cu[static_cast<std::size_t>(owner)], " <= ", k, " < cu_seq_lens[",
                    owner + 1, "] = ", cu[static_cast<std::size_t>(owner + 1)], ")");
    }
    std::vector<std::int64_t> starts;
    if (has_seq_starts) {
      starts = checks::read_i32(args.seq_starts, batch);
      for (std::int64_t b = 0; b < batch; ++b) {
        PAGEDKV_CHECK(starts[static_cast<std::size_t>(b)] >= 0, "seq_starts[", b,
                      "] = ", starts[static_cast<std::size_t>(b)], ": expected a position >= 0");
      }
    }

    // 8. Every block a gathered token needs: a column of block_table, a block of the cache.
    PAGEDKV_CHECK(rows == 0 || block_size >= 1, "src_cache: expected block_size = size(1) >= 1, ",
                  "got shape ", src_cache.shape_string());
    std::vector<std::int64_t> lengths(static_cast<std::size_t>(batch));
    for (std::int64_t b = 0; b < batch; ++b) {  // only the part of each sequence below `rows`
      const std::int64_t end = std::min(cu[static_cast<std::size_t>(b + 1)], rows);
      lengths[static_cast<std::size_t>(b)] = std::max<std::int64_t>(0, end - cu[b]);
    }
    checks::blocks_in_cache(args.block_table, lengths, starts,
                            std::max<std::int64_t>(block_size, 1), src_cache.size(0));
  }

  GatherAndMaybeDequantCachePlan plan;
  plan.rows = rows;
  plan.rows_on_device = deferred;
  plan.batch = batch;
  plan.block_size = block_size;
  plan.num_blocks = src_cache.size(0);
  plan.block_stride = src_cache.stride(0);
  plan.entry_stride = src_cache.stride(1);
  plan.dst_stride = dst.stride(0);
  plan.block_table_stride = args.block_table.stride(0);
  plan.dst_dtype = dst.dtype;
  plan.cache_kind = cache_kind;
  plan.ds_mla = ds_mla;
  plan.has_seq_starts = has_seq_starts;
  return plan;
}

}  // namespace pagedkv
