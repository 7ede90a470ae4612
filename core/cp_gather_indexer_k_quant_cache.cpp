// The one contract of cp_gather_indexer_k_quant_cache (vLLM csrc/cache_kernels.cu @9803b00:
// cp_gather_indexer_k_quant_cache), shared by the CPU reference, the naive and the optimized
// CUDA kernels. Every rule throws InvalidArgument naming the argument, the expected and the
// actual value, before any byte is written.
//
// Upstream checks only that the five tensors share a device and that head_dim is divisible by
// the quant_block_size it infers as head_dim × 4 / dst_scale.size(1). This contract also
// rejects what upstream silently gets wrong:
//   - dtypes: block_table and cu_seq_lens must be i32 (upstream reads them as int32 without
//     looking), the cache and the destinations bytes;
//   - dst_scale.size(1) other than 4 × head_dim / 128, head_dim not a multiple of 128 (the
//     cache holds one fp32 scale per 128-element tile);
//   - a cache that is not [num_blocks, block_size, head_dim + 4 × head_dim / 128] bytes with
//     packed slots;
//   - cu_seq_lens not starting at 0, decreasing, or asking for more rows than dst_k or
//     dst_scale have (upstream writes past them);
//   - a sequence needing more blocks than block_table has columns, or using a block id outside
//     the cache (upstream reads out of bounds);
//   - destination rows that overlap (the writes would race);
// and rows of dst_k past cu_seq_lens[-1] are left untouched (upstream copies from a block found
// through uninitialized shared memory).
#include "pagedkv/ops/cp_gather_indexer_k_quant_cache.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "block_lookup_checks.h"
#include "indexer_checks.h"
#include "sequence_checks.h"
#include "pagedkv/checks.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"

namespace pagedkv {

namespace {

// Destination rows of `row_bytes` bytes that never overlap (the writes would race).
void destination_rows(const TensorView& dst, const char* name, std::int64_t row_bytes) {
  PAGEDKV_CHECK(dst.size(0) <= 1 || dst.stride(0) >= row_bytes, name,
                ": rows overlap: stride(0) = ", dst.stride(0), " bytes, a row is ", row_bytes,
                " bytes (", dst.describe(), ")");
}

}  // namespace

CpGatherIndexerKQuantCache::Plan CpGatherIndexerKQuantCache::validate(const Args& args, Impl impl) {
  const TensorView& kv_cache = args.kv_cache;
  const TensorView& dst_k = args.dst_k;
  const TensorView& dst_scale = args.dst_scale;
  const TensorView& block_table = args.block_table;
  const TensorView& cu_seq_lens = args.cu_seq_lens;

  // 1. Every tensor the op touches lives where the implementation computes.
  const Device device = impl_device(impl);
  checks::device_is(kv_cache, "kv_cache", device);
  checks::device_is(dst_k, "dst_k", device);
  checks::device_is(dst_scale, "dst_scale", device);
  checks::device_is(block_table, "block_table", device);
  checks::device_is(cu_seq_lens, "cu_seq_lens", device);

  // 2. dst_k: [N, head_dim] bytes, head_dim a whole number of 128-element tiles.
  checks::ndim_is(dst_k, "dst_k", 2);
  checks::non_negative_layout(dst_k, "dst_k");
  PAGEDKV_CHECK(dst_k.dtype == DType::u8 || dst_k.dtype == DType::f8_e4m3,
                "dst_k: expected dtype u8 or f8_e4m3 (the fp8 codes), got ",
                dtype_name(dst_k.dtype));
  checks::packed_from(dst_k, "dst_k", 1);
  const std::int64_t head_dim = dst_k.size(1);
  checks::indexer_head_dim(head_dim, "dst_k: head_dim = size(1)");
  destination_rows(dst_k, "dst_k", head_dim);
  const std::int64_t tiles = head_dim / kIndexerQuantBlock;

  // 3. The cache the codes and scales come from.
  checks::indexer_cache(kv_cache, "kv_cache", head_dim, "dst_k.size(1)");

  // 4. dst_scale: [>= rows, 4 G] bytes, one fp32 word per tile (upstream infers the tile size
  //    from size(1); pagedkv requires the 128-element tiles the cache has).
  checks::ndim_is(dst_scale, "dst_scale", 2);
  checks::non_negative_layout(dst_scale, "dst_scale");
  checks::dtype_is(dst_scale, "dst_scale", DType::u8);
  PAGEDKV_CHECK(dst_scale.size(1) == kIndexerScaleBytes * tiles, "dst_scale: size(1) must be 4 × ",
                "head_dim / ", kIndexerQuantBlock, " = ", kIndexerScaleBytes * tiles,
                " bytes (one fp32 scale per 128-element tile; head_dim = dst_k.size(1) = ",
                head_dim, "), got ", dst_scale.size(1));
  checks::packed_from(dst_scale, "dst_scale", 1);
  destination_rows(dst_scale, "dst_scale", kIndexerScaleBytes * tiles);
  PAGEDKV_CHECK(dst_scale.stride(0) % kIndexerScaleBytes == 0 &&
                    reinterpret_cast<std::uintptr_t>(dst_scale.data) % kIndexerScaleBytes == 0,
                "dst_scale: the fp32 scales are stored as 4-byte words: the data pointer and ",
                "stride(0) must be multiples of 4 bytes (", dst_scale.describe(), ")");

  // 5. block_table [batch, max_blocks] i32 (elements packed), cu_seq_lens [batch + 1] i32.
  checks::ndim_is(block_table, "block_table", 2);
  checks::dtype_is(block_table, "block_table", DType::i32);
  checks::non_negative_layout(block_table, "block_table");
  checks::packed_from(block_table, "block_table", 1);
  const std::int64_t batch_size = block_table.size(0);
  checks::ndim_is(cu_seq_lens, "cu_seq_lens", 1);
  checks::dtype_is(cu_seq_lens, "cu_seq_lens", DType::i32);
  checks::non_negative_layout(cu_seq_lens, "cu_seq_lens");
  PAGEDKV_CHECK(cu_seq_lens.size(0) == batch_size + 1,
                "cu_seq_lens: expected batch + 1 = ", batch_size + 1,
                " elements (batch = block_table.size(0)), got ", cu_seq_lens.size(0));
  PAGEDKV_CHECK(cu_seq_lens.is_contiguous(), "cu_seq_lens: expected a contiguous tensor, got ",
                cu_seq_lens.describe());

  // 6. Memory behind every tensor that has elements.
  checks::not_null(kv_cache, "kv_cache");
  checks::not_null(dst_k, "dst_k");
  checks::not_null(dst_scale, "dst_scale");
  checks::not_null(block_table, "block_table");
  checks::not_null(cu_seq_lens, "cu_seq_lens");

  // 7. The sequences: cu_seq_lens from 0, never decreasing, within dst_k and dst_scale; every
  //    block id a sequence uses inside the table and the cache. Synchronous: reads cu_seq_lens
  //    and the block table (on the GPU one copy each and a synchronization). Deferred (a
  //    capture, vllm_ops): one check kernel on the call's stream finds the first broken rule,
  //    in this order, and the plan knows only the destinations' rows; the kernels read
  //    cu_seq_lens[batch] on the device (pagedkv/deferred_checks.h).
  const std::int64_t block_size = kv_cache.size(1);
  const std::int64_t num_blocks = kv_cache.size(0);
  const std::int64_t max_blocks = block_table.size(1);
  const CheckScope* scope = CheckScope::current();
  const bool deferred = scope != nullptr && scope->deferred && device == Device::cuda;
  std::int64_t gathered = 0;
  if (deferred) {
    checks::SequenceCheck check;
    check.wording = SequenceWording::indexer_gather;
    check.cu_seq_lens = static_cast<const std::int32_t*>(cu_seq_lens.data);
    check.block_table = static_cast<const std::int32_t*>(block_table.data);
    check.table_stride = block_table.stride(0);
    check.table_width = max_blocks;
    check.batch = batch_size;
    check.block_size = block_size;
    check.num_blocks = num_blocks;
    check.row_limit[0] = dst_k.size(0);
    check.row_limit[1] = dst_scale.size(0);
    check.row_argument[0] = checks::argument_name("dst_k");
    check.row_argument[1] = checks::argument_name("dst_scale");
    checks::name_sequence_arguments(check, "block_table");
    checks::enqueue_sequence_check(*scope, check);
    gathered = batch_size == 0 ? 0 : std::min(dst_k.size(0), dst_scale.size(0));  // a bound
  } else {
    const std::vector<std::int32_t> cu = checks::copy_i32(cu_seq_lens.data, device, batch_size + 1);
    PAGEDKV_CHECK(cu[0] == 0, "cu_seq_lens[0]: expected 0, got ", cu[0]);
    for (std::int64_t b = 0; b < batch_size; ++b) {
      PAGEDKV_CHECK(cu[b + 1] >= cu[b], "cu_seq_lens: expected non-decreasing values, got ",
                    "cu_seq_lens[", b, "] = ", cu[b], " > cu_seq_lens[", b + 1, "] = ", cu[b + 1]);
    }
    gathered = cu[batch_size];
    PAGEDKV_CHECK(gathered <= dst_k.size(0), "dst_k: cu_seq_lens[-1] = ", gathered,
                  " tokens to gather, but dst_k has ", dst_k.size(0), " rows");
    PAGEDKV_CHECK(gathered <= dst_scale.size(0), "dst_scale: cu_seq_lens[-1] = ", gathered,
                  " tokens to gather, but dst_scale has ", dst_scale.size(0), " rows");
    const std::int64_t table_span = batch_size == 0 || max_blocks == 0
                                        ? 0
                                        : (batch_size - 1) * block_table.stride(0) + max_blocks;
    const std::vector<std::int32_t> table = checks::copy_i32(block_table.data, device, table_span);
    for (std::int64_t b = 0; b < batch_size; ++b) {
      const std::int64_t length = cu[b + 1] - cu[b];
      PAGEDKV_CHECK(length == 0 || block_size > 0, "kv_cache: block_size = size(1) is 0, but ",
                    "sequence ", b, " has ", length, " tokens to gather");
      const std::int64_t used = length == 0 ? 0 : (length + block_size - 1) / block_size;
      PAGEDKV_CHECK(used <= max_blocks, "block_table: sequence ", b, " has ", length, " tokens, ",
                    used, " blocks of ", block_size, ", but block_table has ", max_blocks,
                    " columns");
      for (std::int64_t j = 0; j < used; ++j) {
        const std::int32_t id = table[static_cast<std::size_t>(b * block_table.stride(0) + j)];
        PAGEDKV_CHECK(id >= 0 && id < num_blocks, "block_table[", b, ", ", j, "] = ", id,
                      ": expected a block id in [0, ", num_blocks, ") (kv_cache.size(0))");
      }
    }
  }

  CpGatherIndexerKQuantCachePlan plan;
  plan.num_tokens = dst_k.size(0);
  plan.gathered_tokens = gathered;
  plan.gathered_on_device = deferred;
  plan.batch_size = batch_size;
  plan.head_dim = head_dim;
  plan.tiles_per_token = tiles;
  plan.block_size = block_size;
  plan.num_blocks = num_blocks;
  plan.block_stride = kv_cache.stride(0);
  plan.dst_k_stride = dst_k.stride(0);
  plan.dst_scale_stride = dst_scale.stride(0);
  plan.block_table_stride = block_table.stride(0);
  return plan;
}

}  // namespace pagedkv
