// Tests of cp_gather_cache (vLLM csrc/cache_kernels.cu @9803b00: cp_gather_cache).
//
// CPU part (runs everywhere):
//   - the worked example of the header, byte by byte;
//   - round trips: entries written by concat_and_cache_mla (CPU reference) at the slots a block
//     table gives, gathered back: dst holds exactly kv_c ‖ k_pe of every token in order ("auto"),
//     or exactly the cache's 656-byte fp8_ds_mla entries;
//   - an independent, token-major formulation (each dst row finds its sequence by a scan, its
//     entry through the view's own strides) over random batches: dtypes of 1, 2, 4 and 8
//     bytes, odd entry widths, padded strides, seq_starts or none, empty sequences; the slack
//     rows of dst keep their poison;
//   - seq_starts honoured: gathering from position s gives the suffix of the gather from 0;
//   - empty sequences and batch_size 0 change nothing;
//   - one test per validation rule: InvalidArgument naming the argument, dst unchanged;
//   - the W3 workload points and byte model.
// GPU part ([gpu]): naive and optimized write the same bytes as the CPU reference, whole
// poisoned dst buffers compared (slack rows included), over the random batches above, skewed
// batches (many short and a few long sequences), entry widths no 16-byte word fits and
// misaligned bases; and the device-side checks of block ids and cu_seq_lens.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "pagedkv/error.h"
#include "pagedkv/ops/concat_and_cache_mla.h"
#include "pagedkv/ops/cp_gather_cache.h"
#include "pagedkv/registry.h"
#include "support.h"

namespace {

using namespace pagedkv;
using Catch::Matchers::Contains;
using test::poisoned;
using test::same_bytes;

Buffer int32s(const std::vector<std::int32_t>& values) {
  Buffer buffer(Memory::host, std::max<std::size_t>(values.size(), 1) * 4);
  if (!values.empty()) std::memcpy(buffer.data(), values.data(), values.size() * 4);
  return buffer;
}

// A view with explicit sizes and strides (in elements).
TensorView make_view(void* data, DType dtype, const std::vector<std::int64_t>& shape,
                     const std::vector<std::int64_t>& strides, Device device = Device::cpu) {
  TensorView view;
  view.data = data;
  view.dtype = dtype;
  view.device = device;
  view.ndim = static_cast<int>(shape.size());
  for (std::size_t d = 0; d < shape.size(); ++d) {
    view.shape[d] = shape[d];
    view.strides[d] = strides[d];
  }
  return view;
}

// ---------------------------------------------------------------------------------------------
// One gather problem: a random cache, a poisoned dst with slack, and a batch of sequences.

struct Problem {
  DType dtype = DType::bf16;
  std::vector<std::int64_t> entry_dims = {576};
  std::int64_t block_size = 16;
  std::int64_t num_blocks = 64;
  std::int64_t slot_pad = 0;    // elements between two entries of a block, beyond the entry
  std::int64_t block_pad = 0;   // elements between two blocks, beyond block_size entries
  std::int64_t cache_shift = 0;  // bytes from the buffer's start to the cache's first element
  std::int64_t dst_shift = 0;    // bytes from the buffer's start to dst's first element
  std::int64_t dst_pad = 0;      // elements between two dst rows, beyond the entry
  std::int64_t extra_rows = 3;   // dst rows past cu_seq_lens[batch_size] (must stay poisoned)
  std::vector<std::int64_t> lengths = {5, 0, 19};
  std::vector<std::int64_t> starts;  // empty: no seq_starts
  std::uint64_t seed = 1;
};

struct Built {
  std::int64_t entry_elements = 0, entry_bytes = 0, num_tokens = 0, width = 0;
  Buffer cache, dst, table, cu, starts;
  CpGatherCache::Args args;
};

Built build(const Problem& p) {
  Built b;
  const std::int64_t element = dtype_size(p.dtype);
  b.entry_elements = 1;
  for (std::int64_t d : p.entry_dims) b.entry_elements *= d;
  b.entry_bytes = b.entry_elements * element;
  // The cache: entries packed, slots and blocks padded as asked.
  const std::int64_t slot_stride = b.entry_elements + p.slot_pad;
  const std::int64_t block_stride = p.block_size * slot_stride + p.block_pad;
  const std::int64_t cache_elements = p.num_blocks * block_stride;
  b.cache = Buffer(Memory::host, static_cast<std::size_t>(cache_elements * element + p.cache_shift + 16));
  test::fill_random(b.cache.data(), DType::u8, static_cast<std::int64_t>(b.cache.size()), p.seed);
  std::vector<std::int64_t> cache_shape = {p.num_blocks, p.block_size};
  std::vector<std::int64_t> cache_strides = {block_stride, slot_stride};
  for (std::size_t d = 0; d < p.entry_dims.size(); ++d) {
    std::int64_t inner = 1;  // the entry dims packed: each steps over the dims after it
    for (std::size_t e = d + 1; e < p.entry_dims.size(); ++e) inner *= p.entry_dims[e];
    cache_shape.push_back(p.entry_dims[d]);
    cache_strides.push_back(inner);
  }
  b.args.src_cache = make_view(b.cache.data() + p.cache_shift, p.dtype, cache_shape, cache_strides);
  // The sequences.
  std::mt19937_64 rng(p.seed * 7 + 3);
  std::vector<std::int32_t> cu = {0};
  std::vector<std::int64_t> columns;
  const std::int64_t batch = static_cast<std::int64_t>(p.lengths.size());
  for (std::int64_t s = 0; s < batch; ++s) {
    const std::int64_t n = p.lengths[s];
    const std::int64_t start = p.starts.empty() ? 0 : p.starts[s];
    cu.push_back(static_cast<std::int32_t>(cu.back() + n));
    columns.push_back(n == 0 ? 0 : (start + n - 1) / p.block_size + 1);
    b.width = std::max(b.width, columns.back());
  }
  b.width += 1;  // one column no sequence uses: garbage there is never read
  b.num_tokens = cu.back();
  const std::int64_t table_pitch = b.width + 2;  // rows of the block table padded too
  std::vector<std::int32_t> table(static_cast<std::size_t>(std::max<std::int64_t>(batch, 1) *
                                                           table_pitch), -7);
  for (std::int64_t s = 0; s < batch; ++s)
    for (std::int64_t c = 0; c < columns[s]; ++c)
      table[s * table_pitch + c] = static_cast<std::int32_t>(rng() % p.num_blocks);
  b.table = int32s(table);
  b.cu = int32s(cu);
  std::vector<std::int32_t> starts(p.starts.begin(), p.starts.end());
  b.starts = int32s(starts);
  b.args.block_table = make_view(b.table.data(), DType::i32, {batch, b.width}, {table_pitch, 1});
  b.args.cu_seq_lens = make_view(b.cu.data(), DType::i32, {batch + 1}, {1});
  b.args.batch_size = batch;
  if (!p.starts.empty()) b.args.seq_starts = make_view(b.starts.data(), DType::i32, {batch}, {1});
  // dst: poisoned, with slack before, between and after the rows.
  const std::int64_t rows = b.num_tokens + p.extra_rows;
  const std::int64_t row_stride = b.entry_elements + p.dst_pad;
  b.dst = poisoned(static_cast<std::size_t>(rows * row_stride * element + p.dst_shift + 16));
  std::vector<std::int64_t> dst_shape = {rows};
  std::vector<std::int64_t> dst_strides = {row_stride};
  for (std::size_t d = 1; d < cache_shape.size() - 1; ++d) {
    dst_shape.push_back(cache_shape[d + 1]);
    dst_strides.push_back(cache_strides[d + 1]);
  }
  b.args.dst = make_view(b.dst.data() + p.dst_shift, p.dtype, dst_shape, dst_strides);
  return b;
}

// The independent formulation: token-major (row k finds its sequence by a scan of cu_seq_lens),
// entries addressed through the views' own strides. Returns the whole expected dst buffer.
Buffer expected_dst(const Built& b) {
  Buffer expected = copy_to(Memory::host, b.dst);
  TensorView dst = test::rebase(b.args.dst, b.dst.data(), expected.data(), Device::cpu);
  const auto* cu = reinterpret_cast<const std::int32_t*>(b.cu.data());
  const auto* starts = reinterpret_cast<const std::int32_t*>(b.starts.data());
  const auto* table = reinterpret_cast<const std::int32_t*>(b.table.data());
  const std::int64_t block_size = b.args.src_cache.size(1);
  for (std::int64_t k = 0; k < b.num_tokens; ++k) {
    std::int64_t s = 0;
    while (!(cu[s] <= k && k < cu[s + 1])) ++s;
    const std::int64_t position = k - cu[s] + (b.args.seq_starts.data ? starts[s] : 0);
    const std::int64_t block = table[s * b.args.block_table.stride(0) + position / block_size];
    std::memcpy(dst.byte_ptr(k), b.args.src_cache.byte_ptr(block, position % block_size),
                static_cast<std::size_t>(b.entry_bytes));
  }
  return expected;
}

// The CPU reference's whole dst buffer after the gather.
Buffer cpu_dst(const Built& b) {
  Buffer out = copy_to(Memory::host, b.dst);
  CpGatherCache::Args args = b.args;
  args.dst = test::rebase(b.args.dst, b.dst.data(), out.data(), Device::cpu);
  run<CpGatherCache>(Impl::cpu, args);
  return out;
}

}  // namespace

// =============================================================================================
// CPU reference.

TEST_CASE("cp_gather_cache CPU: the worked example of the header", "[cp_gather_cache]") {
  // Block size 4 instead of 64, one byte per entry that names its (block, slot).
  constexpr int kBlocks = 6, kBlockSize = 4;
  Buffer cache(Memory::host, kBlocks * kBlockSize);
  for (int i = 0; i < kBlocks * kBlockSize; ++i) cache.data()[i] = static_cast<std::uint8_t>(i);
  Buffer table = int32s({5, 2, 3, 1});  // [2, 2]: sequence 0 -> blocks 5, 2; sequence 1 -> 3, 1
  Buffer cu = int32s({0, 3, 5});
  Buffer starts = int32s({2, 0});
  Buffer dst = poisoned(6);
  run<CpGatherCache>(Impl::cpu,
                     {TensorView::contiguous(cache.data(), DType::u8, {kBlocks, kBlockSize, 1}),
                      TensorView::contiguous(dst.data(), DType::u8, {6, 1}),
                      TensorView::contiguous(table.data(), DType::i32, {2, 2}),
                      TensorView::contiguous(cu.data(), DType::i32, {3}), 2,
                      TensorView::contiguous(starts.data(), DType::i32, {2})});
  // Sequence 0, positions 2, 3, 4: block 5 slots 2 and 3, block 2 slot 0.
  CHECK(dst.data()[0] == 5 * 4 + 2);
  CHECK(dst.data()[1] == 5 * 4 + 3);
  CHECK(dst.data()[2] == 2 * 4 + 0);
  // Sequence 1, positions 0 and 1: block 3 slots 0 and 1.
  CHECK(dst.data()[3] == 3 * 4 + 0);
  CHECK(dst.data()[4] == 3 * 4 + 1);
  CHECK(dst.data()[5] == poisoned(6).data()[5]);  // row 5 is not gathered: still poison
}

TEST_CASE("cp_gather_cache round trip: concat_and_cache_mla's entries come back exactly",
          "[cp_gather_cache][round_trip]") {
  // Three sequences of 7, 0 and 12 tokens whose positions 0.. live in the blocks of their block
  // table rows; concat_and_cache_mla writes every token at its slot, cp_gather_cache reads them
  // back in order.
  const std::string kind = GENERATE(values<std::string>({"auto", "fp8_ds_mla"}));
  CAPTURE(kind);
  const bool ds_mla = kind == "fp8_ds_mla";
  const std::int64_t rank = ds_mla ? 512 : 40, rope = ds_mla ? 64 : 24;
  constexpr std::int64_t kBlockSize = 4, kBlocks = 12;
  const std::int64_t entry = ds_mla ? kDsMlaEntryBytes : rank + rope;
  const DType cache_dtype = ds_mla ? DType::u8 : DType::bf16;
  const std::vector<std::int64_t> lengths = {7, 0, 12};
  const std::vector<std::int32_t> table_values = {9, 2, -1, 4, 4, 4, 0, 11, 6};  // [3, 3]
  std::vector<std::int32_t> cu = {0};
  std::vector<std::int64_t> slots;
  for (std::size_t s = 0; s < lengths.size(); ++s) {
    cu.push_back(static_cast<std::int32_t>(cu.back() + lengths[s]));
    for (std::int64_t p = 0; p < lengths[s]; ++p)
      slots.push_back(table_values[s * 3 + p / kBlockSize] * kBlockSize + p % kBlockSize);
  }
  const std::int64_t tokens = cu.back();
  Buffer kv_c(Memory::host, tokens * rank * 2), k_pe(Memory::host, tokens * rope * 2);
  test::fill_random(kv_c.data(), DType::bf16, tokens * rank, 21);
  test::fill_random(k_pe.data(), DType::bf16, tokens * rope, 22);
  const std::int64_t entry_bytes = entry * dtype_size(cache_dtype);
  Buffer cache = poisoned(kBlocks * kBlockSize * entry_bytes);
  Buffer slot_buffer = test::int64s(slots);
  const TensorView cache_view =
      TensorView::contiguous(cache.data(), cache_dtype, {kBlocks, kBlockSize, entry});
  run<ConcatAndCacheMla>(Impl::cpu,
                         {TensorView::contiguous(kv_c.data(), DType::bf16, {tokens, rank}),
                          TensorView::contiguous(k_pe.data(), DType::bf16, {tokens, rope}),
                          cache_view, TensorView::contiguous(slot_buffer.data(), DType::i64, {tokens}),
                          kind, TensorView{}});
  Buffer table = int32s(table_values), cu_buffer = int32s(cu);
  Buffer dst = poisoned((tokens + 1) * entry_bytes);
  run<CpGatherCache>(Impl::cpu,
                     {cache_view, TensorView::contiguous(dst.data(), cache_dtype, {tokens + 1, entry}),
                      TensorView::contiguous(table.data(), DType::i32, {3, 3}),
                      TensorView::contiguous(cu_buffer.data(), DType::i32, {4}), 3, TensorView{}});
  for (std::int64_t t = 0; t < tokens; ++t) {
    CAPTURE(t);
    const std::uint8_t* row = dst.data() + t * entry_bytes;
    if (ds_mla) {  // the very bytes concat_and_cache_mla wrote at the token's slot
      CHECK(same_bytes(row, cache.data() + slots[t] * entry_bytes, entry_bytes));
    } else {       // "auto": the token's kv_c then its k_pe, bit for bit
      CHECK(same_bytes(row, kv_c.data() + t * rank * 2, rank * 2));
      CHECK(same_bytes(row + rank * 2, k_pe.data() + t * rope * 2, rope * 2));
    }
  }
  CHECK(same_bytes(dst.data() + tokens * entry_bytes, poisoned(entry_bytes).data(), entry_bytes));
}

TEST_CASE("cp_gather_cache CPU: equals the token-major formulation over random batches",
          "[cp_gather_cache]") {
  struct Shape {
    DType dtype;
    std::vector<std::int64_t> dims;
  };
  const Shape shape = GENERATE(Shape{DType::bf16, {576}}, Shape{DType::u8, {656}},
                               Shape{DType::bf16, {1, 128}}, Shape{DType::f32, {3}},
                               Shape{DType::u8, {1}}, Shape{DType::f8_e4m3, {7}},
                               Shape{DType::i64, {2, 3}}, Shape{DType::f16, {5}},
                               Shape{DType::i32, {0}});
  const std::int64_t block_size = GENERATE(1, 16, 64);
  const bool with_starts = GENERATE(false, true);
  const bool padded = GENERATE(false, true);
  Problem p;
  p.dtype = shape.dtype;
  p.entry_dims = shape.dims;
  p.block_size = block_size;
  p.num_blocks = 50;
  p.lengths = {0, 1, 17, 0, 130, 3, 64};
  if (with_starts) p.starts = {5, 0, 63, 200, 1, 64, 17};
  if (padded) {
    p.slot_pad = 3;
    p.block_pad = 5;
    p.dst_pad = 2;
    p.cache_shift = 8;
    p.dst_shift = 4;
  }
  p.seed = static_cast<std::uint64_t>(block_size * 10 + with_starts + 2 * padded);
  CAPTURE(dtype_name(shape.dtype), block_size, with_starts, padded);
  const Built b = build(p);
  const Buffer expected = expected_dst(b);
  CHECK(same_bytes(cpu_dst(b), expected, b.dst.size()));
}

TEST_CASE("cp_gather_cache CPU: seq_starts s gives the suffix of the gather from 0",
          "[cp_gather_cache]") {
  Problem p;
  p.lengths = {70, 9};
  p.block_size = 16;
  const Built whole = build(p);
  const Buffer from_zero = cpu_dst(whole);
  const std::int64_t s = GENERATE(1, 15, 16, 33, 69);
  CAPTURE(s);
  // The same sequences from position s (the same block table, the same cache).
  Built part = build(p);
  Buffer starts = int32s({static_cast<std::int32_t>(s), 0});
  Buffer cu = int32s({0, static_cast<std::int32_t>(70 - s), static_cast<std::int32_t>(79 - s)});
  part.args.seq_starts = TensorView::contiguous(starts.data(), DType::i32, {2});
  part.args.cu_seq_lens = TensorView::contiguous(cu.data(), DType::i32, {3});
  const Buffer suffix = cpu_dst(part);
  const std::int64_t row = whole.entry_bytes;  // dst rows are packed here
  CHECK(same_bytes(suffix.data(), from_zero.data() + s * row, (70 - s) * row));
  CHECK(same_bytes(suffix.data() + (70 - s) * row, from_zero.data() + 70 * row, 9 * row));
}

TEST_CASE("cp_gather_cache: empty sequences and batch_size 0 change nothing",
          "[cp_gather_cache]") {
  SECTION("every sequence empty") {
    Problem p;
    p.lengths = {0, 0, 0};
    const Built b = build(p);
    CHECK(same_bytes(cpu_dst(b), b.dst, b.dst.size()));
  }
  SECTION("batch_size 0, with cu_seq_lens = [0] and an empty block table") {
    Buffer dst = poisoned(64);
    Buffer cache(Memory::host, 64);
    Buffer cu = int32s({0});
    CHECK_NOTHROW(run<CpGatherCache>(
        Impl::cpu, {TensorView::contiguous(cache.data(), DType::u8, {4, 4, 4}),
                    TensorView::contiguous(dst.data(), DType::u8, {16, 4}),
                    TensorView::contiguous(nullptr, DType::i32, {0, 0}),
                    TensorView::contiguous(cu.data(), DType::i32, {1}), 0, TensorView{}}));
    CHECK(same_bytes(dst, poisoned(64), 64));
  }
  SECTION("batch_size smaller than the tensors: later sequences are not read") {
    Problem p;
    p.lengths = {4, 6};
    Built b = build(p);
    b.args.batch_size = 1;  // cu_seq_lens has 3 values and block_table 2 rows: extra is fine
    const Buffer out = cpu_dst(b);
    const Buffer expected = expected_dst(b);  // 10 rows; only the first 4 are gathered now
    CHECK(same_bytes(out.data(), expected.data(), 4 * b.entry_bytes));
    CHECK(same_bytes(out.data() + 4 * b.entry_bytes, b.dst.data() + 4 * b.entry_bytes,
                     b.dst.size() - 4 * b.entry_bytes));
  }
}

// =============================================================================================
// Validation: one test per rule. A valid call (bf16 entries of 8, block 4, two sequences of 5
// and 3 tokens, seq_starts [2, 1]), broken in exactly one way; it must throw InvalidArgument
// naming the argument and leave dst unchanged.

namespace {

struct ValidCall {
  static constexpr std::int64_t kBlocks = 6, kBlockSize = 4, kEntry = 8, kRows = 10;
  Buffer cache_data{Memory::host, kBlocks * kBlockSize * kEntry * 8};
  Buffer dst_data = poisoned(kRows * kEntry * 8 * 2);
  Buffer table_data = int32s({1, 4, 0, 0, 5, 3, 2, 0});  // [2, 4]: columns 0-1 and 0 used
  Buffer table64_data = test::int64s({1, 4, 0, 0, 5, 3, 2, 0});
  Buffer cu_data = int32s({0, 5, 8, 8});
  Buffer cu64_data = test::int64s({0, 5, 8});
  Buffer starts_data = int32s({2, 1, 0});
  Buffer starts64_data = test::int64s({2, 1});
  TensorView src_cache =
      TensorView::contiguous(cache_data.data(), DType::bf16, {kBlocks, kBlockSize, kEntry});
  TensorView dst = TensorView::contiguous(dst_data.data(), DType::bf16, {kRows, kEntry});
  TensorView block_table = TensorView::contiguous(table_data.data(), DType::i32, {2, 4});
  TensorView cu_seq_lens = TensorView::contiguous(cu_data.data(), DType::i32, {3});
  std::int64_t batch_size = 2;
  TensorView seq_starts = TensorView::contiguous(starts_data.data(), DType::i32, {2});
  Impl impl = Impl::cpu;

  ValidCall() { test::fill_random(cache_data.data(), DType::bf16, kBlocks * kBlockSize * kEntry, 4); }

  std::int32_t* table() const { return reinterpret_cast<std::int32_t*>(table_data.data()); }
  std::int32_t* cu() const { return reinterpret_cast<std::int32_t*>(cu_data.data()); }
  std::int32_t* starts() const { return reinterpret_cast<std::int32_t*>(starts_data.data()); }

  void call() const {
    pagedkv::run<CpGatherCache>(impl, {src_cache, dst, block_table, cu_seq_lens, batch_size,
                                       seq_starts});
  }
  bool nothing_written() const {
    return same_bytes(dst_data, poisoned(dst_data.size()), dst_data.size());
  }
};

}  // namespace

TEST_CASE("cp_gather_cache: the valid call used by the rule tests passes", "[cp_gather_cache]") {
  ValidCall call;
  CHECK_NOTHROW(call.call());
  CHECK_FALSE(call.nothing_written());
  ValidCall without_starts;
  without_starts.seq_starts = TensorView{};
  CHECK_NOTHROW(without_starts.call());
}

TEST_CASE("cp_gather_cache rejects a block id outside the cache", "[cp_gather_cache]") {
  ValidCall call;
  SECTION("too large") {
    call.table()[1] = ValidCall::kBlocks;  // sequence 0, column 1: used
    CHECK_REJECTED(call, "block_table");
    CHECK_THROWS_WITH(call.call(), Contains("block_table[0, 1] = 6"));
  }
  SECTION("negative") {
    call.table()[4] = -1;  // sequence 1, column 0
    CHECK_REJECTED(call, "block_table");
    CHECK_THROWS_WITH(call.call(), Contains("block_table[1, 0] = -1"));
  }
}

TEST_CASE("cp_gather_cache ignores block table columns no sequence uses", "[cp_gather_cache]") {
  ValidCall call;
  call.table()[2] = -5;    // sequence 0 uses columns 0 and 1 only
  call.table()[3] = 1000;
  call.table()[5] = 1 << 30;  // sequence 1 (positions 1..3) uses column 0 only
  CHECK_NOTHROW(call.call());
}

TEST_CASE("cp_gather_cache rejects cu_seq_lens that do not start at 0 or decrease",
          "[cp_gather_cache]") {
  ValidCall call;
  SECTION("not starting at 0") {
    call.cu()[0] = 1;
    CHECK_REJECTED(call, "cu_seq_lens");
    CHECK_THROWS_WITH(call.call(), Contains("cu_seq_lens[0] must be 0"));
  }
  SECTION("decreasing") {
    call.cu()[2] = 4;
    CHECK_REJECTED(call, "cu_seq_lens");
    CHECK_THROWS_WITH(call.call(), Contains("cu_seq_lens[2] = 4 after cu_seq_lens[1] = 5"));
  }
}

TEST_CASE("cp_gather_cache rejects a dst with too few rows", "[cp_gather_cache]") {
  ValidCall call;
  call.dst.shape[0] = 7;  // 8 rows are gathered
  CHECK_REJECTED(call, "dst");
  CHECK_THROWS_WITH(call.call(), Contains("cu_seq_lens[batch_size] = 8"));
}

TEST_CASE("cp_gather_cache rejects positions outside the block table", "[cp_gather_cache]") {
  ValidCall call;
  SECTION("a negative seq_starts") {
    call.starts()[1] = -1;
    CHECK_REJECTED(call, "seq_starts");
  }
  SECTION("seq_starts past the table's last column") {
    call.starts()[1] = 14;  // positions 14..16: column 4 of 4
    CHECK_REJECTED(call, "seq_starts");
    CHECK_THROWS_WITH(call.call(), Contains("up to column 4"));
  }
  SECTION("a sequence longer than its table row, no seq_starts") {
    call.seq_starts = TensorView{};
    call.cu()[1] = 17;  // 17 tokens from position 0: column 4
    call.cu()[2] = 18;
    call.dst.shape[0] = 20;
    CHECK_REJECTED(call, "cu_seq_lens");
  }
}

TEST_CASE("cp_gather_cache rejects dtypes and entry sizes that differ", "[cp_gather_cache]") {
  ValidCall call;
  SECTION("dst of another dtype") {
    call.dst.dtype = DType::f16;
    CHECK_REJECTED(call, "dst");
  }
  SECTION("dst rows of another number of elements") {
    call.dst = TensorView::contiguous(call.dst_data.data(), DType::bf16, {10, 7});
    CHECK_REJECTED(call, "dst");
    call.dst = TensorView::contiguous(call.dst_data.data(), DType::bf16, {10, 2, 8});
    CHECK_REJECTED(call, "dst");
  }
}

TEST_CASE("cp_gather_cache accepts dst rows shaped otherwise with one entry's elements",
          "[cp_gather_cache]") {
  ValidCall call;
  call.dst = TensorView::contiguous(call.dst_data.data(), DType::bf16, {10, 2, 4});
  CHECK_NOTHROW(call.call());
}

TEST_CASE("cp_gather_cache rejects index tensors that are not i32", "[cp_gather_cache]") {
  ValidCall call;
  SECTION("block_table i64") {
    call.block_table = TensorView::contiguous(call.table64_data.data(), DType::i64, {2, 4});
    CHECK_REJECTED(call, "block_table");
  }
  SECTION("cu_seq_lens i64") {
    call.cu_seq_lens = TensorView::contiguous(call.cu64_data.data(), DType::i64, {3});
    CHECK_REJECTED(call, "cu_seq_lens");
  }
  SECTION("seq_starts i64") {
    call.seq_starts = TensorView::contiguous(call.starts64_data.data(), DType::i64, {2});
    CHECK_REJECTED(call, "seq_starts");
  }
}

TEST_CASE("cp_gather_cache rejects layouts the kernels cannot address", "[cp_gather_cache]") {
  ValidCall call;
  SECTION("block table columns not adjacent") {
    call.block_table = TensorView::strided(call.table_data.data(), DType::i32, {2, 2}, {4, 2});
    CHECK_REJECTED(call, "block_table");
  }
  SECTION("cu_seq_lens strided") {
    call.cu_seq_lens = TensorView::strided(call.cu_data.data(), DType::i32, {2}, {2});
    call.batch_size = 1;
    CHECK_REJECTED(call, "cu_seq_lens");
  }
  SECTION("seq_starts strided") {
    call.seq_starts = TensorView::strided(call.starts_data.data(), DType::i32, {2}, {2});
    CHECK_REJECTED(call, "seq_starts");
  }
  SECTION("cache entry not packed") {
    call.src_cache = TensorView::strided(call.cache_data.data(), DType::bf16, {6, 4, 4},
                                         {32, 8, 2});
    call.dst = TensorView::contiguous(call.dst_data.data(), DType::bf16, {10, 4});
    CHECK_REJECTED(call, "src_cache");
  }
  SECTION("dst row not packed") {
    call.dst = TensorView::strided(call.dst_data.data(), DType::bf16, {10, 8}, {16, 2});
    CHECK_REJECTED(call, "dst");
  }
  SECTION("dst rows overlapping") {
    call.dst = TensorView::strided(call.dst_data.data(), DType::bf16, {10, 8}, {4, 1});
    CHECK_REJECTED(call, "dst");
  }
  SECTION("negative strides") {
    call.src_cache.strides[0] = -32;
    CHECK_REJECTED(call, "src_cache");
  }
  SECTION("a cache of fewer than 3 dimensions") {
    call.src_cache = TensorView::contiguous(call.cache_data.data(), DType::bf16, {24, 8});
    CHECK_REJECTED(call, "src_cache");
  }
  SECTION("a cache of block_size 0") {
    call.src_cache.shape[1] = 0;
    CHECK_REJECTED(call, "src_cache");
  }
}

TEST_CASE("cp_gather_cache rejects a dst that shares memory with src_cache", "[cp_gather_cache]") {
  ValidCall call;
  call.dst.data = call.cache_data.data() + 16;
  CHECK_THROWS_AS(call.call(), InvalidArgument);
  CHECK_THROWS_WITH(call.call(), Contains("shares memory with src_cache"));
}

TEST_CASE("cp_gather_cache rejects tensors too short for batch_size", "[cp_gather_cache]") {
  ValidCall call;
  SECTION("batch_size negative") {
    call.batch_size = -1;
    CHECK_REJECTED(call, "batch_size");
  }
  SECTION("block_table") {
    call.batch_size = 3;
    call.cu_seq_lens = TensorView::contiguous(call.cu_data.data(), DType::i32, {4});
    call.seq_starts = TensorView::contiguous(call.starts_data.data(), DType::i32, {3});
    CHECK_REJECTED(call, "block_table");
  }
  SECTION("cu_seq_lens") {
    call.cu_seq_lens = TensorView::contiguous(call.cu_data.data(), DType::i32, {2});
    CHECK_REJECTED(call, "cu_seq_lens");
  }
  SECTION("seq_starts") {
    call.seq_starts = TensorView::contiguous(call.starts_data.data(), DType::i32, {1});
    CHECK_REJECTED(call, "seq_starts");
  }
}

TEST_CASE("cp_gather_cache rejects tensors on the wrong device and null data",
          "[cp_gather_cache]") {
  ValidCall call;
  SECTION("CPU reference, dst on cuda") {
    call.dst.device = Device::cuda;
    CHECK_REJECTED(call, "dst");
  }
  SECTION("CPU reference, seq_starts on cuda") {
    call.seq_starts.device = Device::cuda;
    CHECK_REJECTED(call, "seq_starts");
  }
  SECTION("naive and optimized, host tensors") {
    call.impl = GENERATE(Impl::naive, Impl::optimized);
    CHECK_REJECTED(call, "src_cache");
  }
  SECTION("null block_table") {
    call.block_table.data = nullptr;
    CHECK_REJECTED(call, "block_table");
  }
}

// =============================================================================================
// W3.

TEST_CASE("cp_gather_cache: W3 points and byte model", "[cp_gather_cache]") {
  const OpEntry& op = find_op("cp_gather_cache");
  CHECK(op.workloads == std::vector<std::string>{"W3"});
  std::set<std::string> variants, shapes;
  std::set<std::int64_t> sizes;
  for (const WorkloadPoint& p : op.points("W3", false)) {
    variants.insert(p.variant);
    shapes.insert(p.slots);
    sizes.insert(p.size);
    CHECK(p.size_unit == "tokens");
  }
  // The convention of every W3 gather: the variant names the entry, slots the batch shape.
  CHECK(variants == std::set<std::string>{"bf16", "fp8_ds_mla"});
  CHECK(shapes == std::set<std::string>{"one", "skewed"});
  CHECK(sizes == std::set<std::int64_t>{61440, 65536, 307200});
  for (const WorkloadPoint& p : op.points("W3", true)) {
    CAPTURE(p.variant, p.size);
    const auto c = op.make_case(p, 5);
    const std::int64_t entry = p.variant == "bf16" ? 1152 : 656;
    // Each entry read and written once, plus at least one cu_seq_lens value per token run.
    CHECK(c->bytes_moved() > 2 * p.size * entry);
    CHECK(c->bytes_moved() < 2 * p.size * entry + 4 * p.size);
    CHECK(c->copy_kind() == CopyKind::device_to_device);
    CHECK_NOTHROW(c->run_cpu());
  }
}

// =============================================================================================
// GPU: naive and optimized against the CPU reference, byte for byte.

namespace {

// The problem on the device with `impl`: the whole dst buffer, downloaded.
Buffer device_dst(const Built& b, Impl impl) {
  const Buffer cache = copy_to(Memory::device, b.cache);
  const Buffer dst = copy_to(Memory::device, b.dst);
  const Buffer table = copy_to(Memory::device, b.table);
  const Buffer cu = copy_to(Memory::device, b.cu);
  const Buffer starts = copy_to(Memory::device, b.starts);
  CpGatherCache::Args args = b.args;
  args.src_cache = test::rebase(b.args.src_cache, b.cache.data(), cache.data(), Device::cuda);
  args.dst = test::rebase(b.args.dst, b.dst.data(), dst.data(), Device::cuda);
  args.block_table = test::rebase(b.args.block_table, b.table.data(), table.data(), Device::cuda);
  args.cu_seq_lens = test::rebase(b.args.cu_seq_lens, b.cu.data(), cu.data(), Device::cuda);
  if (b.args.seq_starts.data != nullptr) {
    args.seq_starts = test::rebase(b.args.seq_starts, b.starts.data(), starts.data(), Device::cuda);
  }
  run<CpGatherCache>(impl, args);
  PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  Buffer out(Memory::host, b.dst.size());
  dst.download(out.data(), out.size());
  return out;
}

void check_three_way(const Problem& p) {
  const Built b = build(p);
  const Buffer expected = cpu_dst(b);
  REQUIRE(same_bytes(expected, expected_dst(b), expected.size()));
  for (const Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    CHECK(same_bytes(device_dst(b, impl), expected, expected.size()));
  }
}

}  // namespace

TEST_CASE("cp_gather_cache GPU: random batches, dtypes, entry widths, strides",
          "[cp_gather_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  struct Shape {
    DType dtype;
    std::vector<std::int64_t> dims;
  };
  const Shape shape = GENERATE(Shape{DType::bf16, {576}}, Shape{DType::u8, {656}},
                               Shape{DType::bf16, {1, 128}}, Shape{DType::f32, {3}},
                               Shape{DType::u8, {1}}, Shape{DType::f8_e4m3, {7}},
                               Shape{DType::i64, {2, 3}}, Shape{DType::f16, {5}},
                               Shape{DType::u8, {18}}, Shape{DType::u8, {2000}},
                               Shape{DType::f32, {100}}, Shape{DType::f32, {2}},
                               Shape{DType::i32, {0}});
  // Words the optimized kernel picks with packed layouts: 16 bytes (1152, 656, 256, 48, 2000,
  // 400), 8 (f32 × 2), 4 (f32 × 3), 2 (10, 18), 1 (1, 7); padded or shifted layouts lower them.
  const std::int64_t block_size = GENERATE(1, 16, 64);
  const bool with_starts = GENERATE(false, true);
  const int layout = GENERATE(0, 1, 2);  // packed; padded strides; misaligned bases only
  Problem p;
  p.dtype = shape.dtype;
  p.entry_dims = shape.dims;
  p.block_size = block_size;
  p.num_blocks = 50;
  p.lengths = {0, 1, 17, 0, 130, 3, 64, 33};
  if (with_starts) p.starts = {5, 0, 63, 200, 1, 64, 17, 2};
  if (layout == 1) {
    p.slot_pad = 3;
    p.block_pad = 5;
    p.dst_pad = 2;
  }
  if (layout >= 1) {
    p.cache_shift = layout == 1 ? 8 : 1;
    p.dst_shift = layout == 1 ? 4 : 3;
  }
  p.seed = static_cast<std::uint64_t>(block_size * 10 + with_starts + 2 * layout);
  CAPTURE(dtype_name(shape.dtype), shape.dims.back(), block_size, with_starts, layout);
  check_three_way(p);
}

TEST_CASE("cp_gather_cache GPU: skewed batches (many short, a few long sequences)",
          "[cp_gather_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const std::int64_t entry_bytes = GENERATE(1152, 656, 6);
  const int long_count = GENERATE(1, 3);
  Problem p;
  p.dtype = DType::u8;
  p.entry_dims = {entry_bytes};
  p.block_size = 64;
  p.num_blocks = 400;
  p.lengths.assign(300, 0);
  std::mt19937 rng(static_cast<std::uint32_t>(entry_bytes + long_count));
  for (auto& n : p.lengths) n = rng() % 40;  // short ones, some empty
  for (int i = 0; i < long_count; ++i) p.lengths[i * 97 + 5] = 20000 + 13 * i;
  p.starts.resize(p.lengths.size());
  for (auto& s : p.starts) s = rng() % 128;
  CAPTURE(entry_bytes, long_count);
  check_three_way(p);
}

TEST_CASE("cp_gather_cache GPU: one long sequence, 1152-byte entries",
          "[cp_gather_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  Problem p;
  p.dtype = DType::bf16;
  p.entry_dims = {576};
  p.block_size = 64;
  p.num_blocks = 1200;
  p.lengths = {60000};
  p.starts = {37};
  check_three_way(p);
}

TEST_CASE("cp_gather_cache GPU: bad block ids and cu_seq_lens are found on the device",
          "[cp_gather_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const Impl impl = GENERATE(Impl::naive, Impl::optimized);
  const int fault = GENERATE(0, 1, 2);
  CAPTURE(impl_name(impl), fault);
  ValidCall host;
  if (fault == 0) host.table()[1] = ValidCall::kBlocks;  // used column, outside the cache
  if (fault == 1) host.cu()[2] = 4;                     // decreasing
  if (fault == 2) host.starts()[1] = 14;                // past the table
  const Buffer cache = copy_to(Memory::device, host.cache_data);
  const Buffer dst = copy_to(Memory::device, host.dst_data);
  const Buffer table = copy_to(Memory::device, host.table_data);
  const Buffer cu = copy_to(Memory::device, host.cu_data);
  const Buffer starts = copy_to(Memory::device, host.starts_data);
  const CpGatherCache::Args args{
      test::rebase(host.src_cache, host.cache_data.data(), cache.data(), Device::cuda),
      test::rebase(host.dst, host.dst_data.data(), dst.data(), Device::cuda),
      test::rebase(host.block_table, host.table_data.data(), table.data(), Device::cuda),
      test::rebase(host.cu_seq_lens, host.cu_data.data(), cu.data(), Device::cuda),
      host.batch_size,
      test::rebase(host.seq_starts, host.starts_data.data(), starts.data(), Device::cuda)};
  const char* argument = fault == 0 ? "block_table" : fault == 1 ? "cu_seq_lens" : "seq_starts";
  CHECK_THROWS_WITH(run<CpGatherCache>(impl, args), Contains(argument));
  if (fault == 0) CHECK_THROWS_WITH(run<CpGatherCache>(impl, args), Contains("block_table[0, 1] = 6"));
  Buffer out(Memory::host, dst.size());
  dst.download(out.data(), out.size());
  CHECK(same_bytes(out, poisoned(out.size()), out.size()));
}

TEST_CASE("cp_gather_cache GPU: zero sequences and empty sequences write nothing",
          "[cp_gather_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  Problem p;
  p.lengths = GENERATE(std::vector<std::int64_t>{}, std::vector<std::int64_t>{0, 0, 0});
  check_three_way(p);
}
