// The one contract of cp_gather_and_upconvert_fp8_kv_cache (vLLM csrc/cache_kernels.cu
// @9803b00: cp_gather_and_upconvert_fp8_kv_cache), shared by the CPU reference, the naive and
// the optimized CUDA kernels. Every rule throws InvalidArgument naming the argument, the
// expected and the actual value, before any byte is written.
//
// Beyond what upstream checks (int32 block_table, seq_lens and workspace_starts, a u8 / f8
// cache, a bf16 workspace of 576 columns, one device), this contract also rejects what
// upstream silently gets wrong, reading the index tensors back to the host
// (block_lookup_checks.h):
//   - an entry that is not 656 bytes (upstream reads whatever is there as the 656-byte entry);
//   - negative seq_lens or workspace_starts, requests whose rows overlap, come out of request
//     order or run past dst (upstream writes out of bounds or races);
//   - block ids past block_table's columns or outside the cache (upstream reads out of bounds);
//   - overlapping workspace rows;
// and it makes zero requests a no-op (upstream launches an empty grid). It decodes an f8_e5m2
// cache as E5M2 (upstream decodes E4M3 whatever the dtype, quirk).
#include "pagedkv/ops/cp_gather_and_upconvert_fp8_kv_cache.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "block_lookup_checks.h"
#include "sequence_checks.h"
#include "pagedkv/checks.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/concat_and_cache_mla.h"
#include "pagedkv/ops/gather_and_maybe_dequant_cache.h"

namespace pagedkv {

CpGatherAndUpconvertFp8KvCache::Plan CpGatherAndUpconvertFp8KvCache::validate(const Args& args,
                                                                              Impl impl) {
  const TensorView& src_cache = args.src_cache;
  const TensorView& dst = args.dst;

  // 1. Every tensor the op touches lives where the implementation computes.
  const Device device = impl_device(impl);
  checks::device_is(src_cache, "src_cache", device);
  checks::device_is(dst, "dst", device);
  checks::device_is(args.block_table, "block_table", device);
  checks::device_is(args.seq_lens, "seq_lens", device);
  checks::device_is(args.workspace_starts, "workspace_starts", device);

  // 2. The cache of 656-byte entries, and the bf16 workspace.
  checks::ndim_is(src_cache, "src_cache", 3);
  checks::non_negative_layout(src_cache, "src_cache");
  PAGEDKV_CHECK(is_byte_dtype(src_cache.dtype), "src_cache: expected dtype u8, f8_e4m3 or ",
                "f8_e5m2 (the fp8_ds_mla entry's bytes), got ", dtype_name(src_cache.dtype));
  PAGEDKV_CHECK(src_cache.size(2) == kDsMlaEntryBytes, "src_cache: entry size, size(2), must be ",
                kDsMlaEntryBytes, " bytes (the fp8_ds_mla entry), got ", src_cache.size(2),
                " (shape ", src_cache.shape_string(), ")");
  checks::packed_from(src_cache, "src_cache", 2);
  checks::dtype_is(dst, "dst", DType::bf16);
  checks::workspace_rows(dst, "dst", kMlaGatherRow);

  // 3. batch_size and the index tensors' shapes.
  const std::int64_t batch = args.batch_size;
  PAGEDKV_CHECK(batch >= 0, "batch_size: expected >= 0, got ", batch);
  checks::i32_vector(args.seq_lens, "seq_lens", batch, "batch_size");
  checks::i32_vector(args.workspace_starts, "workspace_starts", batch, "batch_size");
  checks::not_null(src_cache, "src_cache");
  checks::not_null(dst, "dst");

  // 4-5. The values. Deferred (a capture, vllm_ops): one check kernel on the call's stream
  //    finds the first broken rule of those below, in their order, and the plan knows only
  //    dst's rows; the kernels read the last request's end on the device
  //    (pagedkv/deferred_checks.h). The table's shape is still checked here.
  const std::int64_t block_size = src_cache.size(1);
  const CheckScope* scope = CheckScope::current();
  const bool deferred = scope != nullptr && scope->deferred && device == Device::cuda;
  std::int64_t tokens = 0, previous_end = 0;
  if (deferred) {
    checks::block_table_shape(args.block_table, batch);
    if (batch > 0) checks::not_null(args.block_table, "block_table");
    checks::SequenceCheck check;
    check.wording = SequenceWording::block_lookup;
    check.seq_lens = static_cast<const std::int32_t*>(args.seq_lens.data);
    check.workspace_starts = static_cast<const std::int32_t*>(args.workspace_starts.data);
    check.block_table = static_cast<const std::int32_t*>(args.block_table.data);
    check.table_stride = args.block_table.stride(0);
    check.table_width = args.block_table.size(1);
    check.batch = batch;
    check.block_size = block_size;
    check.num_blocks = src_cache.size(0);
    check.row_limit[0] = dst.size(0);
    check.row_argument[0] = checks::argument_name("workspace_starts");
    checks::name_sequence_arguments(check, "block_table");
    if (batch > 0) checks::enqueue_sequence_check(*scope, check);
    tokens = previous_end = batch == 0 ? 0 : dst.size(0);  // bounds
  } else {
    // 4. The values: lengths >= 0, each request's rows after the previous one's, inside dst.
    const std::vector<std::int64_t> lengths = checks::read_i32(args.seq_lens, batch);
    const std::vector<std::int64_t> starts = checks::read_i32(args.workspace_starts, batch);
    for (std::int64_t r = 0; r < batch; ++r) {
      const std::int64_t length = lengths[static_cast<std::size_t>(r)];
      const std::int64_t start = starts[static_cast<std::size_t>(r)];
      PAGEDKV_CHECK(length >= 0, "seq_lens[", r, "] = ", length, ": expected a length >= 0");
      PAGEDKV_CHECK(start >= previous_end, "workspace_starts[", r, "] = ", start,
                    ": expected at least ", previous_end, " (requests in order, their rows not ",
                    "overlapping: the previous request ends there)");
      PAGEDKV_CHECK(start + length <= dst.size(0), "workspace_starts[", r, "] + seq_lens[", r,
                    "] = ", start + length, ": expected at most dst.size(0) = ", dst.size(0));
      previous_end = start + length;
      tokens += length;
    }

    // 5. Every block a gathered token needs: a column of block_table, a block of the cache.
    PAGEDKV_CHECK(tokens == 0 || block_size >= 1, "src_cache: expected block_size = size(1) >= 1, ",
                  "got shape ", src_cache.shape_string());
    checks::blocks_in_cache(args.block_table, lengths, {}, std::max<std::int64_t>(block_size, 1),
                            src_cache.size(0));
  }

  CpGatherAndUpconvertFp8KvCachePlan plan;
  plan.batch = batch;
  plan.tokens = tokens;
  plan.row_end = previous_end;
  plan.row_end_on_device = deferred;
  plan.block_size = block_size;
  plan.num_blocks = src_cache.size(0);
  plan.block_stride = src_cache.stride(0);
  plan.entry_stride = src_cache.stride(1);
  plan.dst_stride = dst.stride(0);
  plan.block_table_stride = args.block_table.stride(0);
  plan.latent_format =
      src_cache.dtype == DType::f8_e5m2 ? KvCacheDtype::kFp8E5m2 : KvCacheDtype::kFp8E4m3;
  return plan;
}

}  // namespace pagedkv
