// The one contract of dequantize_and_gather_k_cache (vLLM
// vllm/models/deepseek_v4/common/ops/cache_utils.py @03dc564 and its bounds-hardened revision
// @4fec5ad: dequantize_and_gather_k_cache), shared by the CPU reference, the naive and the
// optimized CUDA kernels. Every rule throws InvalidArgument naming the argument, the expected
// and the actual value, before any byte is written.
//
// Upstream checks nothing beyond the dispatch to its kernel. The hardened revision masks the
// reads and writes of a token whose block column lies past the table, whose block id is
// negative or whose row lies past out.size(1): such a token is silently skipped. Here the same
// conditions refuse the whole call, and so do:
//   - block ids at or past the cache's num_blocks (no revision checks them: the read is out of
//     bounds);
//   - gather_lens above seq_lens or negative, negative seq_lens, a negative offset;
//   - dtypes and shapes: out [>= R, max_tokens, 512] bf16 with packed elements and rows that do
//     not share memory, i32 seq_lens, gather_lens and block_table, u8 pages of at least
//     block_size × 584 bytes;
//   - use_fnuz = True (pagedkv implements the OCP E4M3 pages only);
// and the block table's rows are read at their stride(0) (upstream steps rows by size(1), so a
// column slice of a wider table is misread).
//
// A call that defers its errors (a CUDA-graph capture, pagedkv.vllm_ops, PAGEDKV_ERRORS=deferred)
// reads none of seq_lens, gather_lens and block_table on the host: rules 7 and 8 are one check
// kernel on its stream (checks::enqueue_sequence_check, worded as the messages below), and the
// plan bounds each request's rows by out.size(1) - offset; the kernels read the true lengths on
// the device, as they always do, and write nothing when the check rejected the call.
#include "pagedkv/ops/dequantize_and_gather_k_cache.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "block_lookup_checks.h"
#include "deepseek_v4_checks.h"
#include "pagedkv/checks.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"
#include "sequence_checks.h"

namespace pagedkv {

DequantizeAndGatherKCache::Plan DequantizeAndGatherKCache::validate(const Args& args, Impl impl) {
  const TensorView& out = args.out;
  const TensorView& k_cache = args.k_cache;
  const TensorView& seq_lens = args.seq_lens;
  const TensorView& gather_lens = args.gather_lens;
  const TensorView& block_table = args.block_table;
  const bool has_gather_lens = checks::is_given(gather_lens);

  // 1. Every tensor the op touches lives where the implementation computes.
  const Device device = impl_device(impl);
  checks::device_is(out, "out", device);
  checks::device_is(k_cache, "k_cache", device);
  checks::device_is(seq_lens, "seq_lens", device);
  if (has_gather_lens) checks::device_is(gather_lens, "gather_lens", device);
  checks::device_is(block_table, "block_table", device);

  // 2. The pages hold OCP E4M3 codes.
  checks::dsv4_not_fnuz(args.use_fnuz);

  // 3. out: [>= R, max_tokens, 512] bf16, elements packed, every element its own memory.
  checks::ndim_is(out, "out", 3);
  checks::non_negative_layout(out, "out");
  checks::dtype_is(out, "out", DType::bf16);
  checks::size_is(out, "out", 2, kDsv4HeadDim, "448 NoPE + 64 RoPE dims");
  checks::packed_from(out, "out", 2);
  PAGEDKV_CHECK(checks::elements_are_distinct(out), "out: strides must give every element its ",
                "own memory (rows are written in parallel), but ", out.describe(),
                " maps several elements to one address");

  // 4. The pages.
  checks::dsv4_block_size(args.block_size);
  const checks::Dsv4Pages pages = checks::dsv4_pages(k_cache, "k_cache", args.block_size);

  // 5. seq_lens [R] and gather_lens [R] (or None): contiguous i32; out has a slab per request.
  checks::i32_vector(seq_lens, "seq_lens", 0, "one length per request");
  const std::int64_t num_requests = seq_lens.size(0);
  if (has_gather_lens) {
    checks::i32_vector(gather_lens, "gather_lens", num_requests, "seq_lens.size(0)");
    PAGEDKV_CHECK(gather_lens.size(0) == num_requests, "gather_lens: expected ", num_requests,
                  " elements (seq_lens.size(0), one per request), got ", gather_lens.size(0));
  }
  PAGEDKV_CHECK(out.size(0) >= num_requests, "out.size(0): expected at least ", num_requests,
                " (seq_lens.size(0), one slab of rows per request), got ", out.describe());
  PAGEDKV_CHECK(args.offset >= 0, "offset: expected the first row to write, >= 0, got ",
                args.offset);

  // 6. Memory behind every tensor that has elements.
  checks::not_null(out, "out");
  checks::not_null(k_cache, "k_cache");
  checks::not_null(seq_lens, "seq_lens");
  if (has_gather_lens) checks::not_null(gather_lens, "gather_lens");
  checks::not_null(block_table, "block_table");

  // 7. The lengths: 0 <= gather_len <= seq_len, and offset + gather_len rows fit out.
  // 8. Every block id the gathered positions use: a column of the table, a page of the cache.
  //    Synchronous: reads seq_lens, gather_lens and those block_table entries (on the GPU one
  //    copy each and a synchronization). Deferred (a capture, vllm_ops): one check kernel on
  //    the call's stream finds the first broken rule of these, in their order, and the plan
  //    knows only a bound of each request's rows, out.size(1) - offset; the kernels read the
  //    lengths on the device (pagedkv/deferred_checks.h). The table's shape is still checked
  //    here.
  const CheckScope* scope = CheckScope::current();
  const bool deferred = scope != nullptr && scope->deferred && device == Device::cuda;
  Plan plan;
  if (deferred) {
    checks::block_table_shape(block_table, num_requests);
    checks::SequenceCheck check;
    check.wording = SequenceWording::dsv4_gather;
    check.seq_lens = static_cast<const std::int32_t*>(seq_lens.data);
    check.gather_lens =
        has_gather_lens ? static_cast<const std::int32_t*>(gather_lens.data) : nullptr;
    check.block_table = static_cast<const std::int32_t*>(block_table.data);
    check.table_stride = block_table.stride(0);
    check.table_width = block_table.size(1);
    check.batch = num_requests;
    check.block_size = args.block_size;
    check.num_blocks = pages.num_blocks;
    check.row_limit[0] = out.size(1);
    check.row_offset = args.offset;
    check.row_argument[0] = checks::argument_name("out");
    checks::name_sequence_arguments(check, "block_table");
    if (num_requests > 0) checks::enqueue_sequence_check(*scope, check);
    // Bounds: a request that gathers a token writes rows offset .. out.size(1) - 1 at most.
    plan.max_gather = num_requests == 0 ? 0 : std::max<std::int64_t>(0, out.size(1) - args.offset);
    plan.total_gathered = num_requests * plan.max_gather;
    plan.gathered_on_device = true;
  } else {
    const std::vector<std::int64_t> lengths = checks::read_i32(seq_lens, num_requests);
    const std::vector<std::int64_t> gathers =
        has_gather_lens ? checks::read_i32(gather_lens, num_requests) : lengths;
    std::vector<std::int64_t> starts(static_cast<std::size_t>(num_requests));
    for (std::int64_t r = 0; r < num_requests; ++r) {
      const auto i = static_cast<std::size_t>(r);
      PAGEDKV_CHECK(lengths[i] >= 0, "seq_lens[", r, "] = ", lengths[i],
                    ": expected a sequence length >= 0");
      PAGEDKV_CHECK(gathers[i] >= 0 && gathers[i] <= lengths[i], "gather_lens[", r,
                    "] = ", gathers[i], ": expected 0 <= gather_len <= seq_lens[", r,
                    "] = ", lengths[i], " (the last tokens of the request)");
      PAGEDKV_CHECK(gathers[i] == 0 || args.offset + gathers[i] <= out.size(1), "out: request ", r,
                    " writes rows offset = ", args.offset, " to ", args.offset + gathers[i] - 1,
                    ", but out.size(1) = ", out.size(1));
      starts[i] = lengths[i] - gathers[i];
      plan.max_gather = std::max(plan.max_gather, gathers[i]);
      plan.total_gathered += gathers[i];
    }
    checks::blocks_in_cache(block_table, gathers, starts, args.block_size, pages.num_blocks);
  }

  plan.num_requests = num_requests;
  plan.block_size = args.block_size;
  plan.num_blocks = pages.num_blocks;
  plan.block_stride = pages.block_stride;
  plan.max_blocks = block_table.size(1);
  plan.block_table_stride = block_table.stride(0);
  plan.out_tokens = out.size(1);
  plan.out_request_stride = out.stride(0);
  plan.out_token_stride = out.stride(1);
  plan.offset = args.offset;
  plan.has_gather_lens = has_gather_lens;
  return plan;
}

}  // namespace pagedkv
