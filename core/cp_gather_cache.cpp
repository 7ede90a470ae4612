// The one contract of cp_gather_cache (vLLM csrc/cache_kernels.cu @9803b00: cp_gather_cache),
// shared by the CPU reference, the naive and the optimized CUDA kernels. Every rule throws
// InvalidArgument naming the argument, the expected and the actual value, before any byte is
// written.
//
// Upstream checks the i32 dtypes of block_table, cu_seq_lens and seq_starts, the devices, and
// src_cache.dtype == dst.dtype, and dispatches on the element width (1, 2 or 4 bytes). It
// trusts everything else; this contract also rejects:
//   - a dst row with another number of elements than one entry (upstream copies entry_size
//     elements into each row whatever dst's shape: past a short row, into the next);
//   - a dst with fewer rows than cu_seq_lens[batch_size] (upstream writes past its end);
//   - cu_seq_lens not starting at 0, or decreasing (a negative sequence length);
//   - negative seq_starts, and sequences reaching past the block table's last column or using
//     a block id outside the cache (upstream reads out of bounds);
//   - block_table, cu_seq_lens or seq_starts shorter than batch_size needs;
//   - a block table whose columns are not adjacent (upstream honours only stride(0)), and
//     cu_seq_lens or seq_starts that are not contiguous;
//   - dst rows that overlap, and a dst that shares memory with src_cache;
// it copies 8-byte elements too (the op moves bytes: upstream's refusal of i64 is a limit of its
// dispatch), and batch_size 0 is a no-op (upstream launches an empty grid, a launch error).
#include "pagedkv/ops/cp_gather_cache.h"

#include <cstdint>
#include <limits>

#include "pagedkv/checks.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"
#include "sequence_checks.h"

namespace pagedkv {

namespace {

// Elements of one entry: the product of the dims from `first_dim` on.
std::int64_t elements_from(const TensorView& tensor, int first_dim) {
  std::int64_t count = 1;
  for (int d = first_dim; d < tensor.ndim; ++d) count *= tensor.size(d);
  return count;
}

// Whether the byte ranges spanned by two views overlap.
bool spans_overlap(const TensorView& a, const TensorView& b) {
  const auto* a_begin = static_cast<const std::uint8_t*>(a.data);
  const auto* b_begin = static_cast<const std::uint8_t*>(b.data);
  const std::int64_t a_bytes = a.span_bytes();
  const std::int64_t b_bytes = b.span_bytes();
  if (a_bytes == 0 || b_bytes == 0) return false;
  return a_begin < b_begin + b_bytes && b_begin < a_begin + a_bytes;
}

}  // namespace

CpGatherCache::Plan CpGatherCache::validate(const Args& args, Impl impl) {
  const TensorView& src_cache = args.src_cache;
  const TensorView& dst = args.dst;
  const TensorView& block_table = args.block_table;
  const TensorView& cu_seq_lens = args.cu_seq_lens;
  const TensorView& seq_starts = args.seq_starts;
  const std::int64_t batch_size = args.batch_size;
  // seq_starts is optional: a view without data (Python's None) means every start is 0.
  const bool has_seq_starts = seq_starts.data != nullptr || seq_starts.ndim > 0;

  // 1. Every tensor the op touches lives where the implementation computes.
  const Device device = impl_device(impl);
  checks::device_is(src_cache, "src_cache", device);
  checks::device_is(dst, "dst", device);
  checks::device_is(block_table, "block_table", device);
  checks::device_is(cu_seq_lens, "cu_seq_lens", device);
  if (has_seq_starts) checks::device_is(seq_starts, "seq_starts", device);

  // 2. batch_size: the sequences' count, which cu_seq_lens (one more value) holds as i32.
  PAGEDKV_CHECK(batch_size >= 0 && batch_size < std::numeric_limits<std::int32_t>::max(),
                "batch_size: expected 0 <= batch_size < 2^31 - 1, got ", batch_size);

  // 3. src_cache: [num_blocks, block_size, *entry_dims], the entry packed; blocks and slots may
  //    be anywhere (only read).
  PAGEDKV_CHECK(src_cache.ndim >= 3, "src_cache: expected [num_blocks, block_size, *entry_dims] ",
                "(3 dimensions or more), got ", src_cache.describe());
  checks::non_negative_layout(src_cache, "src_cache");
  checks::packed_from(src_cache, "src_cache", 2);
  PAGEDKV_CHECK(src_cache.size(1) >= 1, "src_cache: block_size, size(1), must be >= 1, got ",
                src_cache.describe());
  const std::int64_t entry_elements = elements_from(src_cache, 2);

  // 4. dst: [rows, *entry_dims] of the cache's dtype; rows of any pitch, never overlapping.
  PAGEDKV_CHECK(dst.ndim >= 2, "dst: expected [rows, *entry_dims] (2 dimensions or more), got ",
                dst.describe());
  checks::dtype_is(dst, "dst", src_cache.dtype);
  checks::non_negative_layout(dst, "dst");
  PAGEDKV_CHECK(elements_from(dst, 1) == entry_elements, "dst: each row must hold one entry of ",
                entry_elements, " elements (src_cache ", src_cache.shape_string(), "), got ",
                elements_from(dst, 1), " (", dst.describe(), ")");
  checks::packed_from(dst, "dst", 1);
  PAGEDKV_CHECK(dst.size(0) <= 1 || entry_elements == 0 || dst.stride(0) >= entry_elements,
                "dst: rows overlap, stride(0) must step over a whole entry of ", entry_elements,
                " elements, got ", dst.describe());
  PAGEDKV_CHECK(!spans_overlap(dst, src_cache), "dst: shares memory with src_cache (",
                dst.describe(), " and ", src_cache.describe(), ")");

  // 5. The index tensors: i32 as upstream requires; the block table's columns adjacent,
  //    cu_seq_lens and seq_starts contiguous; long enough for batch_size.
  checks::ndim_is(block_table, "block_table", 2);
  checks::dtype_is(block_table, "block_table", DType::i32);
  checks::non_negative_layout(block_table, "block_table");
  checks::packed_from(block_table, "block_table", 1);
  PAGEDKV_CHECK(block_table.size(0) >= batch_size, "block_table: expected at least batch_size = ",
                batch_size, " rows, got ", block_table.describe());
  checks::ndim_is(cu_seq_lens, "cu_seq_lens", 1);
  checks::dtype_is(cu_seq_lens, "cu_seq_lens", DType::i32);
  PAGEDKV_CHECK(cu_seq_lens.is_contiguous(), "cu_seq_lens: expected a contiguous tensor, got ",
                cu_seq_lens.describe());
  PAGEDKV_CHECK(cu_seq_lens.size(0) >= batch_size + 1, "cu_seq_lens: expected at least ",
                "batch_size + 1 = ", batch_size + 1, " values, got ", cu_seq_lens.describe());
  if (has_seq_starts) {
    checks::ndim_is(seq_starts, "seq_starts", 1);
    checks::dtype_is(seq_starts, "seq_starts", DType::i32);
    PAGEDKV_CHECK(seq_starts.is_contiguous(), "seq_starts: expected a contiguous tensor, got ",
                  seq_starts.describe());
    PAGEDKV_CHECK(seq_starts.size(0) >= batch_size, "seq_starts: expected at least batch_size = ",
                  batch_size, " values, got ", seq_starts.describe());
  }

  // 6. Memory behind every tensor that has elements.
  checks::not_null(src_cache, "src_cache");
  checks::not_null(dst, "dst");
  checks::not_null(block_table, "block_table");
  checks::not_null(cu_seq_lens, "cu_seq_lens");
  if (has_seq_starts) checks::not_null(seq_starts, "seq_starts");

  // 7. The sequences: counts from 0 and never decreasing, starts >= 0, every position inside
  //    the block table and every block id used inside the cache, cu_seq_lens[batch_size] rows
  //    inside dst. Synchronous: reads cu_seq_lens, seq_starts and the used block ids (on the
  //    GPU: small copies, one kernel, a synchronization). Deferred (a capture, vllm_ops): one
  //    check kernel on the call's stream, and the plan knows only dst's rows; the kernels read
  //    the true count, cu_seq_lens[batch_size], on the device (pagedkv/deferred_checks.h).
  const CheckScope* scope = CheckScope::current();
  const bool deferred = scope != nullptr && scope->deferred && device == Device::cuda;
  std::int64_t num_tokens = 0;
  if (deferred) {
    checks::SequenceCheck check;
    check.wording = SequenceWording::gathered_sequences;
    check.cu_seq_lens = static_cast<const std::int32_t*>(cu_seq_lens.data);
    check.seq_starts = has_seq_starts ? static_cast<const std::int32_t*>(seq_starts.data) : nullptr;
    check.block_table = static_cast<const std::int32_t*>(block_table.data);
    check.table_stride = block_table.stride(0);
    check.table_width = block_table.size(1);
    check.batch = batch_size;
    check.block_size = src_cache.size(1);
    check.num_blocks = src_cache.size(0);
    check.row_limit[0] = dst.size(0);
    check.row_argument[0] = checks::argument_name("dst");
    checks::name_sequence_arguments(check, has_seq_starts ? "seq_starts" : "cu_seq_lens");
    checks::enqueue_sequence_check(*scope, check);
    num_tokens = batch_size == 0 ? 0 : dst.size(0);  // a bound: cu_seq_lens[0] must be 0
  } else {
    const checks::GatheredSequences sequences = checks::gathered_sequences(
        block_table, cu_seq_lens, seq_starts, batch_size, src_cache.size(1), src_cache.size(0));
    PAGEDKV_CHECK(sequences.num_tokens <= dst.size(0), "dst: cu_seq_lens[batch_size] = ",
                  sequences.num_tokens, " rows are gathered, but dst has ", dst.size(0), " (",
                  dst.describe(), ")");
    num_tokens = sequences.num_tokens;
  }

  const std::int64_t element = src_cache.element_size();
  CpGatherCachePlan plan;
  plan.batch_size = batch_size;
  plan.num_tokens = num_tokens;
  plan.num_tokens_on_device = deferred;
  plan.block_size = src_cache.size(1);
  plan.num_blocks = src_cache.size(0);
  plan.entry_bytes = entry_elements * element;
  plan.cache_block_stride = src_cache.stride(0) * element;
  plan.cache_entry_stride = src_cache.stride(1) * element;
  plan.dst_row_stride = dst.stride(0) * element;
  plan.block_table_stride = block_table.stride(0);
  plan.has_seq_starts = has_seq_starts;
  return plan;
}

}  // namespace pagedkv
