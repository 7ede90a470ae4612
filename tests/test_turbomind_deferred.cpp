// TurboMind's batch rules checked on the device (deferred errors, CUDA-graph capture):
// process_kv and flatten_kv (checks::turbomind_batch and the "dynamic" RoPE bases).
//
// One small batch serves both ops: two sequences of 4 and 7 tokens (3 and 5 of them new for
// process_kv, at rows 1..3 and 4..8 of k) in blocks of 4 tokens, 1 and 2 blocks, listed in a
// blocks tensor of 4 offsets (the last one unused) into a pool of 6 blocks. Each rule is broken
// alone, by index values only (what a captured graph can meet at replay):
// - on the CPU, the deferred check's own code (checks::find_turbomind_fault, what the check
//   kernel runs) finds the broken rule, and its message (describe_fault) is the synchronous
//   message of the CPU reference, word for word, plus the deferred note;
// - on a GPU ([gpu][deferred]), a call captured into a CUDA graph with valid values, then
//   broken in device memory before the replay, writes nothing, and check_errors() reports the
//   synchronous message, naming the op; the same holds for an eager deferred call. An unbroken
//   captured call writes what an eager synchronous call writes.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "pagedkv/buffers.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/flatten_kv.h"
#include "pagedkv/ops/process_kv.h"
#include "pagedkv/turbomind_kv.h"
#include "support.h"

namespace {

using namespace pagedkv;
using Catch::Matchers::Contains;

constexpr std::int64_t kHeads = 1;
constexpr std::int64_t kDim = 64;
constexpr std::int64_t kBlockSeqLen = 4;
constexpr std::int64_t kPoolBlocks = 6;
constexpr std::int64_t kBatch = 2;
constexpr std::int64_t kRows = 10;     // rows of k / v (process_kv)
constexpr std::int64_t kOutRows = 11;  // rows of k_out / v_out (flatten_kv)
constexpr std::int64_t kMaxQLen = 5;
constexpr std::int64_t kMaxSeqLen = 8;

std::int64_t block_bytes() { return get_cache_block_size(0, 1, kHeads, kDim, kBlockSeqLen); }

// The index tensors of a call (process_kv reads all of them, flatten_kv cu_k_len, cu_block_num
// and blocks).
struct Indices {
  std::vector<std::int32_t> cu_q_len = {1, 4, 9};
  std::vector<std::int32_t> cu_k_len = {0, 4, 11};
  std::vector<std::int32_t> cu_block_num = {0, 1, 3};
  std::vector<std::int32_t> readonly_block_num = {0, 1};
  std::vector<std::int64_t> blocks;  // byte offsets: blocks 5, 0, 2, and an unused 3
  std::vector<float> rope_bases = {10000.f, 20000.f};
  Indices() {
    for (std::int64_t id : {5, 0, 2, 3}) blocks.push_back(id * block_bytes());
  }
};

// Where the index tensors of one call live (host vectors, or device copies of them).
struct IndexData {
  void* cu_q_len;
  void* cu_k_len;
  void* cu_block_num;
  void* readonly_block_num;
  void* blocks;
  void* rope_bases;
};

IndexData host_data(Indices& ix) {
  return {ix.cu_q_len.data(), ix.cu_k_len.data(),  ix.cu_block_num.data(),
          ix.readonly_block_num.data(), ix.blocks.data(), ix.rope_bases.data()};
}

// One rule broken by index values.
struct Mutation {
  const char* what;
  std::function<void(Indices&)> apply;
  FaultRule rule;
  const char* argument;  // the argument the message names
};

std::uint64_t name_of(const char* name) { return reinterpret_cast<std::uint64_t>(name); }

// The check's fields as the contracts fill them (checks::turbomind_batch), over host memory.
checks::TurbomindCheck check_base(const Indices& ix) {
  checks::TurbomindCheck check;
  check.cu_k_len = ix.cu_k_len.data();
  check.cu_block_num = ix.cu_block_num.data();
  check.blocks = ix.blocks.data();
  check.batch = kBatch;
  check.block_count = static_cast<std::int64_t>(ix.blocks.size());
  check.block_seq_len = kBlockSeqLen;
  check.cp_rank = 0;
  check.cp_size = 1;
  check.pool_blocks = kPoolBlocks;
  check.pool_stride = block_bytes();
  return check;
}

// ---------------------------------------------------------------------------------------------
// The two ops on this batch.

struct ProcessKvCase {
  using Op = ProcessKv;
  static constexpr const char* kRope = "dynamic";  // the bases are checked too
  std::size_t pool_bytes() const { return static_cast<std::size_t>(kPoolBlocks * block_bytes()); }
  std::size_t act_bytes() const { return static_cast<std::size_t>(2 * kRows * kHeads * kDim * 2); }
  Op::Args args(const IndexData& ix, void* pool, void* act, Device device) const {
    Op::Args a;
    a.kv_cache = TensorView::contiguous(pool, DType::u8, {kPoolBlocks, block_bytes()}, device);
    auto* bits = static_cast<std::uint16_t*>(act);
    a.k = TensorView::contiguous(bits, DType::bf16, {kRows, kHeads, kDim}, device);
    a.v = TensorView::contiguous(bits + kRows * kHeads * kDim, DType::bf16, {kRows, kHeads, kDim},
                                 device);
    a.cu_q_len = TensorView::contiguous(ix.cu_q_len, DType::i32, {kBatch + 1}, device);
    a.cu_k_len = TensorView::contiguous(ix.cu_k_len, DType::i32, {kBatch + 1}, device);
    a.cu_block_num = TensorView::contiguous(ix.cu_block_num, DType::i32, {kBatch + 1}, device);
    a.readonly_block_num = TensorView::contiguous(ix.readonly_block_num, DType::i32, {kBatch},
                                                  device);
    a.blocks = TensorView::contiguous(ix.blocks, DType::i64, {4}, device);
    a.rope_bases = TensorView::contiguous(ix.rope_bases, DType::f32, {kBatch}, device);
    a.rope_type = kRope;
    a.rope_dim = kDim;
    a.rope_base = 10000.0;
    a.block_seq_len = kBlockSeqLen;
    a.layer_id = 0;
    a.max_q_len = kMaxQLen;
    a.quant_policy = 0;
    return a;
  }
  checks::TurbomindCheck check(const Indices& ix) const {
    checks::TurbomindCheck check = check_base(ix);
    check.cu_q_len = ix.cu_q_len.data();
    check.readonly_block_num = ix.readonly_block_num.data();
    check.rope_bases = ix.rope_bases.data();
    check.rows = kRows;
    check.max_len = kMaxQLen;
    check.rows_name = name_of("k");
    check.max_len_name = name_of("max_q_len");
    return check;
  }
  static std::vector<Mutation> mutations() {
    return {
        {"cu_q_len[0] < 0", [](Indices& ix) { ix.cu_q_len[0] = -1; }, FaultRule::tm_first_row,
         "cu_q_len[0] = -1"},
        {"cu_block_num[0] < 0", [](Indices& ix) { ix.cu_block_num[0] = -1; },
         FaultRule::tm_first_block, "cu_block_num[0] = -1"},
        {"cu_k_len decreasing", [](Indices& ix) { ix.cu_k_len[1] = -1; },
         FaultRule::tm_length_order, "cu_k_len[1] = -1"},
        {"a sequence of more than 2^31 - 1 tokens",
         [](Indices& ix) { ix.cu_k_len[0] = std::numeric_limits<std::int32_t>::min(); },
         FaultRule::tm_long_sequence, "cu_k_len: sequence 0"},
        {"cu_q_len decreasing", [](Indices& ix) { ix.cu_q_len[1] = 0; },
         FaultRule::tm_length_order, "cu_q_len[1] = 0"},
        {"more new tokens than tokens", [](Indices& ix) { ix.cu_k_len[1] = 2; },
         FaultRule::tm_new_tokens, "cu_q_len: sequence 0"},
        {"more new tokens than max_q_len", [](Indices& ix) { ix.cu_q_len[2] = 10; },
         FaultRule::tm_max_length, "max_q_len"},
        {"cu_block_num decreasing", [](Indices& ix) { ix.cu_block_num[1] = 4; },
         FaultRule::tm_block_order, "cu_block_num[2] = 3"},
        {"too few blocks", [](Indices& ix) { ix.cu_block_num[1] = 0; }, FaultRule::tm_few_blocks,
         "cu_block_num: sequence 0"},
        {"a negative readonly_block_num", [](Indices& ix) { ix.readonly_block_num[1] = -1; },
         FaultRule::tm_readonly, "readonly_block_num[1] = -1"},
        {"rows past k",
         [](Indices& ix) {
           for (std::int32_t& q : ix.cu_q_len) q += 2;
         },
         FaultRule::tm_rows, "cu_q_len[batch] = 11"},
        {"more blocks listed than blocks has", [](Indices& ix) { ix.cu_block_num[2] = 5; },
         FaultRule::tm_listed, "cu_block_num[batch] = 5"},
        {"a block offset past the pool",
         [](Indices& ix) { ix.blocks[1] = std::int64_t{1} << 40; }, FaultRule::tm_block_offset,
         "blocks[1]"},
        {"a block offset inside a block", [](Indices& ix) { ix.blocks[2] += 16; },
         FaultRule::tm_block_offset, "blocks[2]"},
        {"a negative block offset", [](Indices& ix) { ix.blocks[0] = -1; },
         FaultRule::tm_block_offset, "blocks[0] = -1"},
        {"a RoPE base of 1", [](Indices& ix) { ix.rope_bases[1] = 1.f; }, FaultRule::tm_rope_base,
         "rope_bases[1] = 1"},
        {"a RoPE base that is not a number",
         [](Indices& ix) { ix.rope_bases[0] = std::numeric_limits<float>::quiet_NaN(); },
         FaultRule::tm_rope_base, "rope_bases[0]"},
    };
  }
};

struct FlattenKvCase {
  using Op = FlattenKv;
  std::size_t pool_bytes() const { return static_cast<std::size_t>(kPoolBlocks * block_bytes()); }
  std::size_t act_bytes() const {
    return static_cast<std::size_t>(2 * kOutRows * kHeads * kDim * 2);
  }
  Op::Args args(const IndexData& ix, void* pool, void* act, Device device) const {
    Op::Args a;
    a.kv_cache = TensorView::contiguous(pool, DType::u8, {kPoolBlocks, block_bytes()}, device);
    auto* bits = static_cast<std::uint16_t*>(act);
    a.k_out = TensorView::contiguous(bits, DType::bf16, {kOutRows, kHeads, kDim}, device);
    a.v_out = TensorView::contiguous(bits + kOutRows * kHeads * kDim, DType::bf16,
                                     {kOutRows, kHeads, kDim}, device);
    a.cu_k_len = TensorView::contiguous(ix.cu_k_len, DType::i32, {kBatch + 1}, device);
    a.cu_block_num = TensorView::contiguous(ix.cu_block_num, DType::i32, {kBatch + 1}, device);
    a.blocks = TensorView::contiguous(ix.blocks, DType::i64, {4}, device);
    a.rope_type = "none";
    a.block_seq_len = kBlockSeqLen;
    a.layer_id = 0;
    a.max_seq_len = kMaxSeqLen;
    a.quant_policy = 0;
    return a;
  }
  checks::TurbomindCheck check(const Indices& ix) const {
    checks::TurbomindCheck check = check_base(ix);
    check.rows = kOutRows;
    check.max_len = kMaxSeqLen;
    check.rows_name = name_of("k_out");
    check.max_len_name = name_of("max_seq_len");
    return check;
  }
  static std::vector<Mutation> mutations() {
    return {
        {"cu_block_num[0] < 0", [](Indices& ix) { ix.cu_block_num[0] = -1; },
         FaultRule::tm_first_block, "cu_block_num[0] = -1"},
        {"cu_k_len decreasing", [](Indices& ix) { ix.cu_k_len[1] = -1; },
         FaultRule::tm_length_order, "cu_k_len[1] = -1"},
        {"a sequence of more than 2^31 - 1 tokens",
         [](Indices& ix) { ix.cu_k_len[0] = std::numeric_limits<std::int32_t>::min(); },
         FaultRule::tm_long_sequence, "cu_k_len: sequence 0"},
        {"more tokens than max_seq_len", [](Indices& ix) { ix.cu_k_len[2] = 13; },
         FaultRule::tm_max_length, "max_seq_len"},
        {"cu_block_num decreasing", [](Indices& ix) { ix.cu_block_num[1] = 4; },
         FaultRule::tm_block_order, "cu_block_num[2] = 3"},
        {"too few blocks", [](Indices& ix) { ix.cu_block_num[2] = 2; }, FaultRule::tm_few_blocks,
         "cu_block_num: sequence 1"},
        {"rows past k_out", [](Indices& ix) { ix.cu_k_len[2] = 12; }, FaultRule::tm_rows,
         "cu_k_len[batch] - cu_k_len[0] = 12"},
        {"more blocks listed than blocks has", [](Indices& ix) { ix.cu_block_num[2] = 5; },
         FaultRule::tm_listed, "cu_block_num[batch] = 5"},
        {"a block offset past the pool",
         [](Indices& ix) { ix.blocks[1] = std::int64_t{1} << 40; }, FaultRule::tm_block_offset,
         "blocks[1]"},
        {"a negative block offset", [](Indices& ix) { ix.blocks[0] = -1; },
         FaultRule::tm_block_offset, "blocks[0] = -1"},
    };
  }
};

// The message of the synchronous check of the CPU reference for `ix`, or "" when the call
// passes.
template <class Case>
std::string synchronous_message(const Case& c, Indices& ix) {
  std::vector<std::uint8_t> pool(c.pool_bytes()), act(c.act_bytes());
  const typename Case::Op::Args args = c.args(host_data(ix), pool.data(), act.data(), Device::cpu);
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
    CHECK(checks::find_turbomind_fault(c.check(valid), op).rule == 0);
    // The unused last offset may hold anything.
    valid.blocks[3] = -12345;
    CHECK(synchronous_message(c, valid).empty());
    CHECK(checks::find_turbomind_fault(c.check(valid), op).rule == 0);
  }
  for (const Mutation& m : Case::mutations()) {
    INFO(op << ": " << m.what);
    Indices ix;
    m.apply(ix);
    const std::string synchronous = synchronous_message(c, ix);
    REQUIRE_FALSE(synchronous.empty());
    CHECK_THAT(synchronous, Contains(m.argument));
    const DeviceFault fault = checks::find_turbomind_fault(c.check(ix), op);
    CHECK(fault.rule == static_cast<std::uint32_t>(m.rule));
    const std::string deferred = describe_fault(fault);
    CHECK_THAT(deferred, Contains(op) && Contains("deferred"));
    CHECK(without_note(deferred) == synchronous);
  }
}

}  // namespace

TEST_CASE("deferred TurboMind batch checks find the rule the synchronous check breaks, in its "
          "words",
          "[deferred][process_kv][flatten_kv]") {
  check_wording_on_cpu<ProcessKvCase>();
  check_wording_on_cpu<FlattenKvCase>();
}

TEST_CASE("deferred TurboMind batch checks: the first broken rule in the synchronous order wins",
          "[deferred][process_kv]") {
  const ProcessKvCase c;
  const char* op = ProcessKv::name;
  {  // cu_k_len[1] too large: sequence 0 lacks blocks, sequence 1's length decreases; the
     // synchronous check visits sequence 0 first, and so does the device.
    Indices ix;
    ix.cu_k_len = {0, 30, 11};
    const DeviceFault fault = checks::find_turbomind_fault(c.check(ix), op);
    CHECK(fault.rule == static_cast<std::uint32_t>(FaultRule::tm_few_blocks));
    CHECK(fault.position == 0);  // sequence 0 fails its blocks before sequence 1 its order
    CHECK(without_note(describe_fault(fault)) == synchronous_message(c, ix));
  }
  {  // Two bad offsets: the earlier one is reported; a bad base comes after every offset.
    Indices ix;
    ix.blocks[2] = -8;
    ix.blocks[1] = 7;
    ix.rope_bases[0] = 0.5f;
    const DeviceFault fault = checks::find_turbomind_fault(c.check(ix), op);
    CHECK(fault.rule == static_cast<std::uint32_t>(FaultRule::tm_block_offset));
    CHECK(fault.position == 1);
    CHECK(without_note(describe_fault(fault)) == synchronous_message(c, ix));
  }
  {  // Rows past k and blocks past blocks: the rows come first.
    Indices ix;
    for (std::int32_t& q : ix.cu_q_len) q += 2;
    ix.cu_block_num[2] = 5;
    const DeviceFault fault = checks::find_turbomind_fault(c.check(ix), op);
    CHECK(fault.rule == static_cast<std::uint32_t>(FaultRule::tm_rows));
    CHECK(without_note(describe_fault(fault)) == synchronous_message(c, ix));
  }
  {  // Context parallelism: the blocks a rank needs, worded "on this rank".
    Indices ix;
    checks::TurbomindCheck check = c.check(ix);
    check.cp_size = 2;
    check.cp_rank = 1;
    ix.cu_block_num = {0, 1, 1};  // sequence 1: positions 1, 3, 5 on rank 1, one block needed
    check.cu_block_num = ix.cu_block_num.data();
    const DeviceFault fault = checks::find_turbomind_fault(check, op);
    CHECK(fault.rule == static_cast<std::uint32_t>(FaultRule::tm_few_blocks));
    CHECK_THAT(describe_fault(fault),
               Contains("cu_block_num: sequence 1 has 0 blocks, but its 7 tokens need 1 blocks of "
                        "4 tokens on this rank"));
  }
}

// ---------------------------------------------------------------------------------------------
// On a GPU: capture with valid indices, break one in device memory, replay.

namespace {

using test::Stream;
using test::ModeGuard;

// One op's call in device memory: the pool, the activations, the index tensors as uploaded.
template <class Case>
struct DeviceCall {
  Case c;
  Indices valid;
  Buffer cu_q_len, cu_k_len, cu_block_num, readonly_block_num, blocks, rope_bases;
  Buffer pool, act;

  DeviceCall()
      : cu_q_len(Memory::device, 12),
        cu_k_len(Memory::device, 12),
        cu_block_num(Memory::device, 12),
        readonly_block_num(Memory::device, 8),
        blocks(Memory::device, 32),
        rope_bases(Memory::device, 8),
        pool(Memory::device, c.pool_bytes()),
        act(Memory::device, c.act_bytes()) {
    std::vector<std::uint8_t> bytes(c.pool_bytes());
    test::fill_random(bytes.data(), DType::bf16, static_cast<std::int64_t>(bytes.size() / 2), 3);
    pool.upload(bytes.data(), bytes.size());
    std::vector<std::uint8_t> input(c.act_bytes());
    test::fill_random(input.data(), DType::bf16, static_cast<std::int64_t>(input.size() / 2), 5);
    act.upload(input.data(), input.size());
    set(valid);
  }
  typename Case::Op::Args args() {
    const IndexData data{cu_q_len.data(), cu_k_len.data(), cu_block_num.data(),
                         readonly_block_num.data(), blocks.data(), rope_bases.data()};
    return c.args(data, pool.data(), act.data(), Device::cuda);
  }
  // Sets index values in device memory (synchronously, between calls).
  void set(const Indices& ix) {
    cu_q_len.upload(ix.cu_q_len.data(), 12);
    cu_k_len.upload(ix.cu_k_len.data(), 12);
    cu_block_num.upload(ix.cu_block_num.data(), 12);
    readonly_block_num.upload(ix.readonly_block_num.data(), 8);
    blocks.upload(ix.blocks.data(), 32);
    rope_bases.upload(ix.rope_bases.data(), 8);
  }
  // What the op writes: process_kv the pool, flatten_kv k_out / v_out.
  Buffer& written() { return std::is_same_v<typename Case::Op, ProcessKv> ? pool : act; }
  std::vector<std::uint8_t> written_bytes() {
    std::vector<std::uint8_t> bytes(written().size());
    written().download(bytes.data(), bytes.size());
    return bytes;
  }
  void restore(const std::vector<std::uint8_t>& bytes) {
    written().upload(bytes.data(), bytes.size());
  }
};

template <class Case>
void check_capture_and_replay(Impl impl) {
  const char* op = Case::Op::name;
  Stream stream;
  DeviceCall<Case> call;
  const std::vector<std::uint8_t> initial = call.written_bytes();

  // The bytes of an eager synchronous call.
  std::vector<std::uint8_t> want;
  {
    ModeGuard synchronous(ErrorMode::synchronous);
    run<typename Case::Op>(impl, call.args(), stream.handle);
    PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream.handle));
    want = call.written_bytes();
    REQUIRE(want != initial);
    call.restore(initial);
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
  CHECK(call.written_bytes() == initial);  // capturing ran nothing
  cudaGraphExec_t exec = nullptr;
  REQUIRE(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
  PAGEDKV_CUDA_CHECK(cudaGraphLaunch(exec, stream.handle));
  PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream.handle));
  CHECK(call.written_bytes() == want);
  CHECK_NOTHROW(check_errors());

  // Each rule broken after the capture: the replay checks the values it finds, writes nothing,
  // and check_errors() reports the synchronous message, naming the op.
  for (const Mutation& m : Case::mutations()) {
    INFO(op << " (" << impl_name(impl) << "): " << m.what);
    Indices broken;
    m.apply(broken);
    const std::string synchronous = synchronous_message(call.c, broken);
    call.restore(initial);
    call.set(broken);
    PAGEDKV_CUDA_CHECK(cudaGraphLaunch(exec, stream.handle));
    PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream.handle));
    CHECK(call.written_bytes() == initial);
    std::string reported;
    try {
      check_errors();
    } catch (const InvalidArgument& e) {
      reported = e.what();
    }
    CHECK_THAT(reported, Contains(op) && Contains("deferred"));
    CHECK(without_note(reported) == synchronous);
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
    m.apply(broken);
    call.restore(initial);
    call.set(broken);
    REQUIRE_NOTHROW(run<typename Case::Op>(impl, call.args(), stream.handle));
    PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream.handle));
    CHECK(call.written_bytes() == initial);
    CHECK_THROWS_WITH(check_errors(), Contains(op) && Contains(m.argument));
    call.set(call.valid);
  }
  // And a valid eager deferred call writes the synchronous call's bytes.
  call.restore(initial);
  run<typename Case::Op>(impl, call.args(), stream.handle);
  PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream.handle));
  CHECK(call.written_bytes() == want);
  CHECK_NOTHROW(check_errors());
}

}  // namespace

TEST_CASE("process_kv GPU: captured, a broken batch rule found at replay writes nothing",
          "[gpu][deferred][graph][process_kv]") {
  PAGEDKV_REQUIRE_GPU();
  check_capture_and_replay<ProcessKvCase>(Impl::naive);
  check_capture_and_replay<ProcessKvCase>(Impl::optimized);
}

TEST_CASE("flatten_kv GPU: captured, a broken batch rule found at replay writes nothing",
          "[gpu][deferred][graph][flatten_kv]") {
  PAGEDKV_REQUIRE_GPU();
  check_capture_and_replay<FlattenKvCase>(Impl::naive);
  check_capture_and_replay<FlattenKvCase>(Impl::optimized);
}
