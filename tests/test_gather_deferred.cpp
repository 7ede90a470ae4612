// The gathers' sequence rules checked on the device (deferred errors, CUDA-graph capture): the
// four of chapter "Reading the cache back" and DeepSeek V4's dequantize_and_gather_k_cache.
//
// One small batch serves all five ops (two sequences of 3 and 5 tokens in blocks of 4, a block
// table of 3 columns), and each rule is broken alone, by one index value:
// - on the CPU, the deferred check's own code (checks::find_sequence_fault, what the check
//   kernel runs) finds the broken rule, and its message (describe_fault) words it as the
//   synchronous check of the CPU reference does;
// - on a GPU ([gpu][deferred]), a call captured into a CUDA graph with valid values, then
//   broken in device memory before the replay, writes nothing, and check_errors() reports the
//   synchronous message, naming the op; the same holds for an eager deferred call.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "pagedkv/cuda_runtime.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/cp_gather_and_upconvert_fp8_kv_cache.h"
#include "pagedkv/ops/cp_gather_cache.h"
#include "pagedkv/ops/cp_gather_indexer_k_quant_cache.h"
#include "pagedkv/ops/dequantize_and_gather_k_cache.h"
#include "pagedkv/ops/gather_and_maybe_dequant_cache.h"
#include "support.h"

namespace {

using namespace pagedkv;
using Catch::Matchers::Contains;

// ---------------------------------------------------------------------------------------------
// The batch: sequence 0 gathers positions 1..3 (column 0), sequence 1 positions 2..6 (columns
// 0 and 1); without seq_starts, positions 0..2 and 0..4. Six cache blocks of 4 slots.
// dequantize_and_gather_k_cache gathers the last gather_lens of seq_lens positions: 1..2
// (column 0) and 1..4 (columns 0 and 1).

constexpr std::int64_t kBlockSize = 4;
constexpr std::int64_t kNumBlocks = 6;
constexpr std::int64_t kWidth = 3;  // block_table columns
constexpr std::int64_t kBatch = 2;

// The index tensors of the four ops (each op reads some of them).
struct Indices {
  std::vector<std::int32_t> cu_seq_lens = {0, 3, 8};
  std::vector<std::int32_t> seq_starts = {1, 2};
  std::vector<std::int32_t> block_table = {5, 0, 0,  //
                                           2, 3, 0};
  std::vector<std::int32_t> token_to_seq = {0, 0, 0, 1, 1, 1, 1, 1};
  std::vector<std::int32_t> seq_lens = {3, 5};
  std::vector<std::int32_t> workspace_starts = {0, 3};
  std::vector<std::int32_t> gather_lens = {2, 4};
};

using IndexVector = std::vector<std::int32_t> Indices::*;
constexpr IndexVector kAllIndices[] = {&Indices::cu_seq_lens,  &Indices::seq_starts,
                                       &Indices::block_table,  &Indices::token_to_seq,
                                       &Indices::seq_lens,     &Indices::workspace_starts,
                                       &Indices::gather_lens};

// One rule broken by one value.
struct Mutation {
  const char* what;
  IndexVector vector;
  std::size_t index;
  std::int32_t value;
  FaultRule rule;
  const char* argument;  // the argument the message names
};

// Where the index tensors live for one call (host vectors, or device copies of them).
struct IndexViews {
  TensorView cu_seq_lens, seq_starts, block_table, token_to_seq, seq_lens, workspace_starts;
  TensorView gather_lens;
};

IndexViews views_of(const Indices& indices, const std::vector<void*>& data, Device device) {
  const auto vector = [&](std::size_t k) {
    const auto size = static_cast<std::int64_t>((indices.*kAllIndices[k]).size());
    return TensorView::contiguous(data[k], DType::i32, {size}, device);
  };
  IndexViews views;
  views.cu_seq_lens = vector(0);
  views.seq_starts = vector(1);
  views.block_table =
      TensorView::contiguous(data[2], DType::i32, {kBatch, kWidth}, device);
  views.token_to_seq = vector(3);
  views.seq_lens = vector(4);
  views.workspace_starts = vector(5);
  views.gather_lens = vector(6);
  return views;
}

std::vector<void*> host_data(Indices& indices) {
  std::vector<void*> data;
  for (IndexVector vector : kAllIndices) data.push_back((indices.*vector).data());
  return data;
}

// A check's fields as each contract fills them (core/<op>.cpp), over host memory.
checks::SequenceCheck check_base(SequenceWording wording, const Indices& indices) {
  checks::SequenceCheck check;
  check.wording = wording;
  check.block_table = indices.block_table.data();
  check.table_stride = kWidth;
  check.table_width = kWidth;
  check.batch = kBatch;
  check.block_size = kBlockSize;
  check.num_blocks = kNumBlocks;
  const auto name = [&](FaultRule rule, const char* argument) {
    check.argument[static_cast<std::uint32_t>(rule)] = reinterpret_cast<std::uint64_t>(argument);
  };
  name(FaultRule::sequence_start, "cu_seq_lens");
  name(FaultRule::sequence_order, "cu_seq_lens");
  name(FaultRule::negative_start, "seq_starts");
  name(FaultRule::negative_length, "seq_lens");
  name(FaultRule::gather_length, "gather_lens");
  name(FaultRule::request_order, "workspace_starts");
  name(FaultRule::token_owner, "token_to_seq");
  name(FaultRule::column_range, "block_table");
  name(FaultRule::block_range, "block_table");
  return check;
}

std::uint64_t name_of(const char* argument) { return reinterpret_cast<std::uint64_t>(argument); }

// ---------------------------------------------------------------------------------------------
// The four ops on this batch: their data tensors, arguments and mutations.

struct CpGatherCacheCase {
  using Op = CpGatherCache;
  static constexpr std::int64_t kEntry = 8;  // bytes per entry
  static constexpr std::int64_t kDstRows = 8;
  std::size_t cache_bytes() const { return kNumBlocks * kBlockSize * kEntry; }
  std::size_t dst_bytes() const { return kDstRows * kEntry; }
  Op::Args args(const IndexViews& ix, void* cache, void* dst, Device device) const {
    Op::Args args;
    args.src_cache = TensorView::contiguous(cache, DType::u8, {kNumBlocks, kBlockSize, kEntry},
                                            device);
    args.dst = TensorView::contiguous(dst, DType::u8, {kDstRows, kEntry}, device);
    args.block_table = ix.block_table;
    args.cu_seq_lens = ix.cu_seq_lens;
    args.batch_size = kBatch;
    args.seq_starts = ix.seq_starts;
    return args;
  }
  checks::SequenceCheck check(const Indices& indices) const {
    checks::SequenceCheck check = check_base(SequenceWording::gathered_sequences, indices);
    check.cu_seq_lens = indices.cu_seq_lens.data();
    check.seq_starts = indices.seq_starts.data();
    check.row_limit[0] = kDstRows;
    check.row_argument[0] = name_of("dst");
    check.argument[static_cast<std::uint32_t>(FaultRule::column_range)] = name_of("seq_starts");
    return check;
  }
  static std::vector<Mutation> mutations() {
    return {
        {"cu_seq_lens[0] = 1", &Indices::cu_seq_lens, 0, 1, FaultRule::sequence_start,
         "cu_seq_lens"},
        {"cu_seq_lens decreasing", &Indices::cu_seq_lens, 1, 9, FaultRule::sequence_order,
         "cu_seq_lens"},
        {"a negative seq_starts", &Indices::seq_starts, 1, -1, FaultRule::negative_start,
         "seq_starts"},
        {"a sequence past the block table", &Indices::seq_starts, 1, 9, FaultRule::column_range,
         "seq_starts"},
        {"a block id past the cache", &Indices::block_table, 4, 6, FaultRule::block_range,
         "block_table"},
        {"a negative block id", &Indices::block_table, 3, -1, FaultRule::block_range,
         "block_table"},
        {"more rows than dst has", &Indices::cu_seq_lens, 2, 9, FaultRule::rows_exceeded, "dst"},
    };
  }
};

struct GatherDequantCase {
  using Op = GatherAndMaybeDequantCache;
  static constexpr std::int64_t kDstRows = 8;
  std::size_t cache_bytes() const { return kNumBlocks * kBlockSize * kMlaGatherRow * 2; }
  std::size_t dst_bytes() const { return kDstRows * kMlaGatherRow * 2; }
  Op::Args args(const IndexViews& ix, void* cache, void* dst, Device device) const {
    Op::Args args;
    args.src_cache = TensorView::contiguous(cache, DType::bf16,
                                            {kNumBlocks, kBlockSize, kMlaGatherRow}, device);
    args.dst = TensorView::contiguous(dst, DType::bf16, {kDstRows, kMlaGatherRow}, device);
    args.block_table = ix.block_table;
    args.cu_seq_lens = ix.cu_seq_lens;
    args.token_to_seq = ix.token_to_seq;
    args.num_tokens = kDstRows;
    args.kv_cache_dtype = "auto";
    args.seq_starts = ix.seq_starts;
    return args;
  }
  checks::SequenceCheck check(const Indices& indices) const {
    checks::SequenceCheck check = check_base(SequenceWording::block_lookup, indices);
    check.cu_seq_lens = indices.cu_seq_lens.data();
    check.seq_starts = indices.seq_starts.data();
    check.token_to_seq = indices.token_to_seq.data();
    check.token_limit = kDstRows;
    return check;
  }
  static std::vector<Mutation> mutations() {
    return {
        {"cu_seq_lens[0] = 1", &Indices::cu_seq_lens, 0, 1, FaultRule::sequence_start,
         "cu_seq_lens"},
        {"cu_seq_lens decreasing", &Indices::cu_seq_lens, 1, 9, FaultRule::sequence_order,
         "cu_seq_lens"},
        {"a token of another sequence", &Indices::token_to_seq, 4, 0, FaultRule::token_owner,
         "token_to_seq"},
        {"a negative seq_starts", &Indices::seq_starts, 0, -2, FaultRule::negative_start,
         "seq_starts"},
        {"a sequence past the block table", &Indices::seq_starts, 1, 9, FaultRule::column_range,
         "block_table"},
        {"a block id past the cache", &Indices::block_table, 0, 6, FaultRule::block_range,
         "block_table"},
    };
  }
};

struct UpconvertCase {
  using Op = CpGatherAndUpconvertFp8KvCache;
  static constexpr std::int64_t kEntry = 656;  // the fp8_ds_mla entry
  static constexpr std::int64_t kDstRows = 16;
  std::size_t cache_bytes() const { return kNumBlocks * kBlockSize * kEntry; }
  std::size_t dst_bytes() const { return kDstRows * kMlaGatherRow * 2; }
  Op::Args args(const IndexViews& ix, void* cache, void* dst, Device device) const {
    Op::Args args;
    args.src_cache = TensorView::contiguous(cache, DType::u8, {kNumBlocks, kBlockSize, kEntry},
                                            device);
    args.dst = TensorView::contiguous(dst, DType::bf16, {kDstRows, kMlaGatherRow}, device);
    args.block_table = ix.block_table;
    args.seq_lens = ix.seq_lens;
    args.workspace_starts = ix.workspace_starts;
    args.batch_size = kBatch;
    return args;
  }
  checks::SequenceCheck check(const Indices& indices) const {
    checks::SequenceCheck check = check_base(SequenceWording::block_lookup, indices);
    check.seq_lens = indices.seq_lens.data();
    check.workspace_starts = indices.workspace_starts.data();
    check.row_limit[0] = kDstRows;
    check.row_argument[0] = name_of("workspace_starts");
    return check;
  }
  static std::vector<Mutation> mutations() {
    return {
        {"a negative length", &Indices::seq_lens, 0, -1, FaultRule::negative_length, "seq_lens"},
        {"requests overlapping", &Indices::workspace_starts, 1, 2, FaultRule::request_order,
         "workspace_starts"},
        {"a request past dst", &Indices::workspace_starts, 1, 12, FaultRule::rows_exceeded,
         "workspace_starts"},
        {"a request past the block table", &Indices::seq_lens, 1, 13, FaultRule::column_range,
         "block_table"},
        {"a block id past the cache", &Indices::block_table, 4, 6, FaultRule::block_range,
         "block_table"},
    };
  }
};

struct IndexerGatherCase {
  using Op = CpGatherIndexerKQuantCache;
  static constexpr std::int64_t kHeadDim = 128;
  static constexpr std::int64_t kSlotBytes = kHeadDim + 4;  // codes, one fp32 scale
  static constexpr std::int64_t kDstKRows = 20;
  static constexpr std::int64_t kDstScaleRows = 17;
  std::size_t cache_bytes() const { return kNumBlocks * kBlockSize * kSlotBytes; }
  // dst_k and dst_scale share one buffer: dst_k first, then the scales.
  std::size_t dst_bytes() const { return kDstKRows * kHeadDim + kDstScaleRows * 4; }
  Op::Args args(const IndexViews& ix, void* cache, void* dst, Device device) const {
    Op::Args args;
    args.kv_cache = TensorView::contiguous(cache, DType::u8,
                                           {kNumBlocks, kBlockSize, kSlotBytes}, device);
    args.dst_k = TensorView::contiguous(dst, DType::u8, {kDstKRows, kHeadDim}, device);
    args.dst_scale = TensorView::contiguous(static_cast<std::uint8_t*>(dst) + kDstKRows * kHeadDim,
                                            DType::u8, {kDstScaleRows, 4}, device);
    args.block_table = ix.block_table;
    args.cu_seq_lens = ix.cu_seq_lens;
    return args;
  }
  checks::SequenceCheck check(const Indices& indices) const {
    checks::SequenceCheck check = check_base(SequenceWording::indexer_gather, indices);
    check.cu_seq_lens = indices.cu_seq_lens.data();
    check.row_limit[0] = kDstKRows;
    check.row_limit[1] = kDstScaleRows;
    check.row_argument[0] = name_of("dst_k");
    check.row_argument[1] = name_of("dst_scale");
    return check;
  }
  static std::vector<Mutation> mutations() {
    return {
        {"cu_seq_lens[0] = 1", &Indices::cu_seq_lens, 0, 1, FaultRule::sequence_start,
         "cu_seq_lens"},
        {"cu_seq_lens decreasing", &Indices::cu_seq_lens, 1, 9, FaultRule::sequence_order,
         "cu_seq_lens"},
        {"more rows than dst_k has", &Indices::cu_seq_lens, 2, 21, FaultRule::rows_exceeded,
         "dst_k"},
        {"more rows than dst_scale has", &Indices::cu_seq_lens, 2, 18, FaultRule::rows_exceeded,
         "dst_scale"},
        {"a sequence past the block table", &Indices::cu_seq_lens, 2, 16, FaultRule::column_range,
         "block_table"},
        {"a negative block id", &Indices::block_table, 4, -3, FaultRule::block_range,
         "block_table"},
    };
  }
};

struct Dsv4GatherCase {
  using Op = DequantizeAndGatherKCache;
  static constexpr std::int64_t kOutRows = 5;  // per request: offset 1, then up to 4 rows
  static constexpr std::int64_t kOffset = 1;
  static constexpr std::int64_t kPageBytes = kBlockSize * kDsv4TokenBytes;
  bool gather_lens_given = true;  // false: gather_lens is None (every seq_len is gathered)
  std::size_t cache_bytes() const { return kNumBlocks * kPageBytes; }
  std::size_t dst_bytes() const { return kBatch * kOutRows * kDsv4HeadDim * 2; }
  Op::Args args(const IndexViews& ix, void* cache, void* dst, Device device) const {
    Op::Args args;
    args.out = TensorView::contiguous(dst, DType::bf16, {kBatch, kOutRows, kDsv4HeadDim}, device);
    args.k_cache = TensorView::contiguous(cache, DType::u8, {kNumBlocks, kPageBytes}, device);
    args.seq_lens = ix.seq_lens;
    if (gather_lens_given) args.gather_lens = ix.gather_lens;
    args.block_table = ix.block_table;
    args.block_size = kBlockSize;
    args.offset = kOffset;
    return args;
  }
  checks::SequenceCheck check(const Indices& indices) const {
    checks::SequenceCheck check = check_base(SequenceWording::dsv4_gather, indices);
    check.seq_lens = indices.seq_lens.data();
    check.gather_lens = gather_lens_given ? indices.gather_lens.data() : nullptr;
    check.row_limit[0] = kOutRows;
    check.row_offset = kOffset;
    check.row_argument[0] = name_of("out");
    return check;
  }
  static std::vector<Mutation> mutations() {
    return {
        {"a negative seq_len", &Indices::seq_lens, 0, -1, FaultRule::negative_length,
         "seq_lens"},
        {"a gather longer than its request", &Indices::gather_lens, 1, 6,
         FaultRule::gather_length, "gather_lens"},
        {"a negative gather_len", &Indices::gather_lens, 0, -1, FaultRule::gather_length,
         "gather_lens"},
        {"more rows than out has", &Indices::gather_lens, 1, 5, FaultRule::rows_exceeded, "out"},
        {"a request past the block table", &Indices::seq_lens, 1, 13, FaultRule::column_range,
         "block_table"},
        {"a block id past the cache", &Indices::block_table, 4, 6, FaultRule::block_range,
         "block_table"},
        {"a negative block id", &Indices::block_table, 3, -1, FaultRule::block_range,
         "block_table"},
    };
  }
};

// The message of the synchronous check of the CPU reference for `indices`, or "" when the call
// passes.
template <class Case>
std::string synchronous_message(const Case& c, Indices& indices) {
  std::vector<std::uint8_t> cache(c.cache_bytes()), dst(c.dst_bytes());
  const typename Case::Op::Args args =
      c.args(views_of(indices, host_data(indices), Device::cpu), cache.data(), dst.data(),
             Device::cpu);
  try {
    run<typename Case::Op>(Impl::cpu, args);
  } catch (const InvalidArgument& e) {
    return e.what();
  }
  return "";
}

// The deferred message without its " [deferred: ...]" note.
std::string without_note(const std::string& message) {
  return message.substr(0, message.find(" [deferred: "));
}

template <class Case>
void check_wording_on_cpu() {
  const Case c;
  const char* op = Case::Op::name;
  {
    Indices valid;
    CHECK(synchronous_message(c, valid).empty());
    CHECK(checks::find_sequence_fault(c.check(valid), op).rule == 0);
  }
  for (const Mutation& m : Case::mutations()) {
    INFO(op << ": " << m.what);
    Indices indices;
    (indices.*m.vector)[m.index] = m.value;
    const std::string synchronous = synchronous_message(c, indices);
    REQUIRE_FALSE(synchronous.empty());
    const DeviceFault fault = checks::find_sequence_fault(c.check(indices), op);
    CHECK(fault.rule == static_cast<std::uint32_t>(m.rule));
    const std::string deferred = describe_fault(fault);
    CHECK_THAT(deferred, Contains(op) && Contains("deferred") && Contains(m.argument));
    if (m.rule == FaultRule::rows_exceeded && std::string(op) == CpGatherCache::name) {
      // The synchronous message ends with dst's layout, which the device does not know.
      CHECK_THAT(synchronous, Catch::Matchers::StartsWith(without_note(deferred) + " ("));
    } else {
      CHECK(without_note(deferred) == synchronous);
    }
  }
}

}  // namespace

TEST_CASE("deferred sequence checks find the rule the synchronous check breaks, in its words",
          "[deferred][sequences]") {
  check_wording_on_cpu<CpGatherCacheCase>();
  check_wording_on_cpu<GatherDequantCase>();
  check_wording_on_cpu<UpconvertCase>();
  check_wording_on_cpu<IndexerGatherCase>();
  check_wording_on_cpu<Dsv4GatherCase>();
}

TEST_CASE("deferred sequence checks: dequantize_and_gather_k_cache without gather_lens",
          "[deferred][sequences]") {
  // gather_lens None: every request gathers its whole seq_len, positions 0 .. seq_len - 1.
  Dsv4GatherCase c;
  c.gather_lens_given = false;
  const char* op = DequantizeAndGatherKCache::name;
  const auto with_lengths = [](std::vector<std::int32_t> lengths) {
    Indices indices;
    indices.seq_lens = std::move(lengths);
    return indices;
  };
  Indices valid = with_lengths({3, 4});  // rows 1..3 and 1..4 of out
  CHECK(synchronous_message(c, valid).empty());
  CHECK(checks::find_sequence_fault(c.check(valid), op).rule == 0);
  const struct {
    std::vector<std::int32_t> lengths;
    FaultRule rule;
  } broken[] = {
      {{-1, 4}, FaultRule::negative_length},  // not a gather_lens fault: seq_lens names it
      {{3, 5}, FaultRule::rows_exceeded},     // rows 1..5 of 5
      {{0, 0}, FaultRule::none},              // nothing gathered
  };
  for (const auto& b : broken) {
    Indices indices = with_lengths(b.lengths);
    INFO("seq_lens = {" << b.lengths[0] << ", " << b.lengths[1] << "}");
    const std::string synchronous = synchronous_message(c, indices);
    const DeviceFault fault = checks::find_sequence_fault(c.check(indices), op);
    CHECK(fault.rule == static_cast<std::uint32_t>(b.rule));
    if (b.rule == FaultRule::none) {
      CHECK(synchronous.empty());
    } else {
      CHECK(without_note(describe_fault(fault)) == synchronous);
    }
  }
  // A gather longer than out's rows, whose block ids are also past the cache: the rows rule
  // comes first in the synchronous order, and so it does on the device.
  Indices both = with_lengths({3, 9});
  both.block_table = {5, 0, 0, 2, 77, 77};
  const DeviceFault fault = checks::find_sequence_fault(c.check(both), op);
  CHECK(fault.rule == static_cast<std::uint32_t>(FaultRule::rows_exceeded));
  CHECK(without_note(describe_fault(fault)) == synchronous_message(c, both));
}

TEST_CASE("deferred sequence checks: the first broken rule in the synchronous order wins",
          "[deferred][sequences]") {
  // A cu_seq_lens that decreases after its too large value 1 also makes sequence 0 too long for
  // the block table; the decrease is what the synchronous check reports, and so does the
  // deferred one.
  const CpGatherCacheCase c;
  Indices indices;
  indices.cu_seq_lens = {0, 30, 20};  // sequence 0: 30 tokens, far past 3 columns
  DeviceFault fault = checks::find_sequence_fault(c.check(indices), CpGatherCache::name);
  CHECK(fault.rule == static_cast<std::uint32_t>(FaultRule::sequence_order));
  CHECK(fault.position == 2);
  // Two bad block ids: the one of the earlier (sequence, column) is reported.
  Indices ids;
  ids.block_table = {5, 0, 0, -1, 9, 0};
  fault = checks::find_sequence_fault(c.check(ids), CpGatherCache::name);
  CHECK(fault.rule == static_cast<std::uint32_t>(FaultRule::block_range));
  CHECK(fault.position == 1);
  CHECK(fault.context[0] == 0);
  CHECK(fault.value == -1);
}

TEST_CASE("deferred sequence checks: a cache without slots, and columns no sequence uses",
          "[deferred][sequences]") {
  const IndexerGatherCase c;
  Indices indices;
  checks::SequenceCheck check = c.check(indices);
  check.block_size = 0;
  const DeviceFault fault = checks::find_sequence_fault(check, CpGatherIndexerKQuantCache::name);
  CHECK(fault.rule == static_cast<std::uint32_t>(FaultRule::column_range));
  CHECK_THAT(describe_fault(fault), Contains("kv_cache: block_size = size(1) is 0, but sequence "
                                             "0 has 3 tokens to gather"));
  // Columns past what a sequence uses may hold anything (padding).
  Indices padded;
  padded.block_table = {5, -7, 99, 2, 3, 1000};
  CHECK(checks::find_sequence_fault(c.check(padded), CpGatherIndexerKQuantCache::name).rule == 0);
}

// ---------------------------------------------------------------------------------------------
// On a GPU: capture with valid indices, break one in device memory, replay.

namespace {

using test::Stream;
using test::ModeGuard;

// One op's call in device memory: the data tensors, and the index tensors as uploaded.
template <class Case>
struct DeviceCall {
  Case c;
  Indices valid;
  std::vector<Buffer> indices;
  Buffer cache, dst;

  DeviceCall() : cache(Memory::device, c.cache_bytes()), dst(Memory::device, c.dst_bytes()) {
    std::vector<std::uint8_t> bytes(c.cache_bytes());
    for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(i * 37);
    if (std::string(Case::Op::name) == GatherAndMaybeDequantCache::name) {
      test::fill_random(bytes.data(), DType::bf16, static_cast<std::int64_t>(bytes.size() / 2), 7);
    }
    cache.upload(bytes.data(), bytes.size());
    for (IndexVector vector : kAllIndices) {
      const std::vector<std::int32_t>& values = valid.*vector;
      indices.emplace_back(Memory::device, values.size() * 4);
      indices.back().upload(values.data(), values.size() * 4);
    }
    dst.fill(0xA5);
  }
  typename Case::Op::Args args() {
    std::vector<void*> data;
    for (Buffer& buffer : indices) data.push_back(buffer.data());
    return c.args(views_of(valid, data, Device::cuda), cache.data(), dst.data(), Device::cuda);
  }
  // Sets index values in device memory (synchronously, on the legacy stream, between calls).
  void set(const Indices& values) {
    for (std::size_t k = 0; k < indices.size(); ++k) {
      const std::vector<std::int32_t>& v = values.*kAllIndices[k];
      indices[k].upload(v.data(), v.size() * 4);
    }
  }
  std::vector<std::uint8_t> dst_bytes() const {
    std::vector<std::uint8_t> bytes(c.dst_bytes());
    dst.download(bytes.data(), bytes.size());
    return bytes;
  }
};

template <class Case>
void check_capture_and_replay(Impl impl) {
  const char* op = Case::Op::name;
  Stream stream;
  DeviceCall<Case> call;

  // The bytes of an eager synchronous call.
  std::vector<std::uint8_t> want;
  {
    ModeGuard synchronous(ErrorMode::synchronous);
    run<typename Case::Op>(impl, call.args(), stream.handle);
    PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream.handle));
    want = call.dst_bytes();
    call.dst.fill(0xA5);
  }

  // Captured with valid indices: the replay writes the same bytes.
  cudaGraph_t graph = nullptr;
  PAGEDKV_CUDA_CHECK(cudaStreamBeginCapture(stream.handle, cudaStreamCaptureModeGlobal));
  std::string error;
  try {
    run<typename Case::Op>(impl, call.args(), stream.handle);
  } catch (const std::exception& e) {
    error = e.what();
  }
  const cudaError_t ended = cudaStreamEndCapture(stream.handle, &graph);
  REQUIRE(error.empty());
  REQUIRE(ended == cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  REQUIRE(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
  const std::vector<std::uint8_t> untouched = call.dst_bytes();
  PAGEDKV_CUDA_CHECK(cudaGraphLaunch(exec, stream.handle));
  PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream.handle));
  CHECK(call.dst_bytes() == want);
  CHECK_NOTHROW(check_errors());

  // Each rule broken after the capture: the replay checks the values it finds, writes nothing,
  // and check_errors() reports the synchronous message, naming the op.
  for (const Mutation& m : Case::mutations()) {
    INFO(op << " (" << impl_name(impl) << "): " << m.what);
    Indices broken;
    (broken.*m.vector)[m.index] = m.value;
    const std::string synchronous = without_note(synchronous_message(call.c, broken));
    call.dst.fill(0xA5);
    call.set(broken);
    PAGEDKV_CUDA_CHECK(cudaGraphLaunch(exec, stream.handle));
    PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream.handle));
    CHECK(call.dst_bytes() == untouched);
    CHECK_THROWS_WITH(check_errors(), Contains(op) && Contains(m.argument) &&
                                          Contains("deferred") &&
                                          Contains(synchronous.substr(0, 40)));
    CHECK_NOTHROW(check_errors());  // reported once, then cleared
    call.set(call.valid);
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);

  // An eager deferred call (what pagedkv.vllm_ops makes): no host read, nothing written, the
  // error reported later.
  ModeGuard deferred(ErrorMode::deferred);
  for (const Mutation& m : Case::mutations()) {
    INFO(op << " (" << impl_name(impl) << ", eager, deferred): " << m.what);
    Indices broken;
    (broken.*m.vector)[m.index] = m.value;
    call.dst.fill(0xA5);
    call.set(broken);
    REQUIRE_NOTHROW(run<typename Case::Op>(impl, call.args(), stream.handle));
    PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream.handle));
    CHECK(call.dst_bytes() == untouched);
    CHECK_THROWS_WITH(check_errors(), Contains(op) && Contains(m.argument));
    call.set(call.valid);
  }
  // And a valid eager deferred call writes the synchronous call's bytes.
  call.dst.fill(0xA5);
  run<typename Case::Op>(impl, call.args(), stream.handle);
  PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream.handle));
  CHECK(call.dst_bytes() == want);
  CHECK_NOTHROW(check_errors());
}

}  // namespace

TEST_CASE("cp_gather_cache GPU: captured, a broken sequence rule found at replay writes nothing",
          "[gpu][deferred][graph][cp_gather_cache]") {
  PAGEDKV_REQUIRE_GPU();
  check_capture_and_replay<CpGatherCacheCase>(Impl::naive);
  check_capture_and_replay<CpGatherCacheCase>(Impl::optimized);
}

TEST_CASE("gather_and_maybe_dequant_cache GPU: captured, a broken sequence rule found at replay "
          "writes nothing",
          "[gpu][deferred][graph][gather_and_maybe_dequant_cache]") {
  PAGEDKV_REQUIRE_GPU();
  check_capture_and_replay<GatherDequantCase>(Impl::naive);
  check_capture_and_replay<GatherDequantCase>(Impl::optimized);
}

TEST_CASE("cp_gather_and_upconvert_fp8_kv_cache GPU: captured, a broken request rule found at "
          "replay writes nothing",
          "[gpu][deferred][graph][cp_gather_and_upconvert_fp8_kv_cache]") {
  PAGEDKV_REQUIRE_GPU();
  check_capture_and_replay<UpconvertCase>(Impl::naive);
  check_capture_and_replay<UpconvertCase>(Impl::optimized);
}

TEST_CASE("cp_gather_indexer_k_quant_cache GPU: captured, a broken sequence rule found at "
          "replay writes nothing",
          "[gpu][deferred][graph][cp_gather_indexer_k_quant_cache]") {
  PAGEDKV_REQUIRE_GPU();
  check_capture_and_replay<IndexerGatherCase>(Impl::naive);
  check_capture_and_replay<IndexerGatherCase>(Impl::optimized);
}

TEST_CASE("dequantize_and_gather_k_cache GPU: captured, a broken length or block rule found at "
          "replay writes nothing",
          "[gpu][deferred][graph][dequantize_and_gather_k_cache]") {
  PAGEDKV_REQUIRE_GPU();
  check_capture_and_replay<Dsv4GatherCase>(Impl::naive);
  check_capture_and_replay<Dsv4GatherCase>(Impl::optimized);
}
