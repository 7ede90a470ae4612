// cp_gather_indexer_k_quant_cache: the CPU reference against an independent formulation (per
// output row: its sequence by a scan, the block-planar addresses written out again here), the
// header's worked example, the round trip through indexer_k_quant_and_cache, untouched rows
// and bad input on the CPU; on a GPU, the naive and optimized kernels against the CPU
// reference byte for byte over whole poisoned destinations.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "numerics.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/cp_gather_indexer_k_quant_cache.h"
#include "pagedkv/ops/indexer_k_quant_and_cache.h"
#include "support.h"

namespace {

using namespace pagedkv;
using Catch::Matchers::Contains;
using test::int64s;
using test::poisoned;
using test::same_bytes;

Buffer int32s(const std::vector<std::int32_t>& values) {
  Buffer buffer(Memory::host, std::max<std::size_t>(values.size(), 1) * 4);
  if (!values.empty()) std::memcpy(buffer.data(), values.data(), values.size() * 4);
  return buffer;
}

// ---------------------------------------------------------------------------------------------
// One problem: a cache of random bytes, a batch of sequences, poisoned destinations.

struct ProblemSpec {
  std::int64_t head_dim = 128;
  std::int64_t block_size = 64;
  std::vector<std::int64_t> lengths = {70, 0, 2, 130};  // tokens per sequence (0: empty)
  std::int64_t extra_rows = 5;     // dst rows past cu_seq_lens[-1]: must stay untouched
  std::int64_t extra_columns = 3;  // block_table columns past what the longest sequence uses
  bool wide_rows = false;          // dst_k and dst_scale rows with a pitch (not packed)
  bool padded_blocks = false;      // cache block stride 16 bytes more than a block
  bool misaligned = false;         // dst_k 4 bytes past an aligned address
  std::uint64_t seed = 1;

  std::string describe() const {
    std::string text = "head_dim=" + std::to_string(head_dim) +
                       " block_size=" + std::to_string(block_size) + " lengths=";
    for (std::int64_t length : lengths) text += std::to_string(length) + ",";
    return text + " extra_rows=" + std::to_string(extra_rows) + (wide_rows ? ", wide rows" : "") +
           (padded_blocks ? ", padded blocks" : "") + (misaligned ? ", misaligned" : "");
  }
};

struct HostProblem {
  Buffer cache, dst_k, dst_scale, table, starts;
  std::vector<std::int32_t> table_values, cu;
  std::int64_t block_stride = 0, max_blocks = 0, rows = 0, k_pitch = 0, scale_pitch = 0;
  CpGatherIndexerKQuantCache::Args args;
};

HostProblem make_problem(const ProblemSpec& spec) {
  HostProblem p;
  const std::int64_t D = spec.head_dim, B = spec.block_size, G = D / 128;
  const std::int64_t batch = static_cast<std::int64_t>(spec.lengths.size());
  p.cu.assign(1, 0);
  std::int64_t used_blocks = 0;
  p.max_blocks = spec.extra_columns;
  for (std::int64_t length : spec.lengths) {
    p.cu.push_back(p.cu.back() + static_cast<std::int32_t>(length));
    used_blocks += (length + B - 1) / B;
    p.max_blocks = std::max(p.max_blocks, (length + B - 1) / B + spec.extra_columns);
  }
  const std::int64_t num_blocks = used_blocks + 3;  // some blocks no sequence uses
  const std::int64_t slot_bytes = D + 4 * G;
  p.block_stride = B * slot_bytes + (spec.padded_blocks ? 16 : 0);
  p.cache = Buffer(Memory::host, static_cast<std::size_t>(num_blocks * p.block_stride));
  test::fill_random(p.cache.data(), DType::u8, num_blocks * p.block_stride, spec.seed);
  p.args.kv_cache = TensorView::strided(p.cache.data(), DType::u8, {num_blocks, B, slot_bytes},
                                        {p.block_stride, slot_bytes, 1});

  // Distinct random blocks for every sequence; unused columns hold ids far outside the cache
  // (a real block table's padding), which must never be read.
  std::mt19937_64 rng(spec.seed * 31 + 7);
  std::vector<std::int32_t> ids(static_cast<std::size_t>(num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  p.table_values.assign(static_cast<std::size_t>(batch * p.max_blocks), 1 << 30);
  std::size_t next = 0;
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t j = 0; j < (spec.lengths[b] + B - 1) / B; ++j)
      p.table_values[static_cast<std::size_t>(b * p.max_blocks + j)] = ids[next++];
  p.table = int32s(p.table_values);
  p.starts = int32s(p.cu);
  p.args.block_table = TensorView::contiguous(p.table.data(), DType::i32, {batch, p.max_blocks});
  p.args.cu_seq_lens = TensorView::contiguous(p.starts.data(), DType::i32, {batch + 1});

  p.rows = p.cu.back() + spec.extra_rows;
  p.k_pitch = D + (spec.wide_rows ? 48 : 0);
  p.scale_pitch = 4 * G + (spec.wide_rows ? 8 : 0);
  const std::int64_t shift = spec.misaligned ? 4 : 0;
  p.dst_k = poisoned(static_cast<std::size_t>(p.rows * p.k_pitch + shift));
  p.dst_scale = poisoned(static_cast<std::size_t>(p.rows * p.scale_pitch));
  p.args.dst_k =
      TensorView::strided(p.dst_k.data() + shift, DType::u8, {p.rows, D}, {p.k_pitch, 1});
  p.args.dst_scale =
      TensorView::strided(p.dst_scale.data(), DType::u8, {p.rows, 4 * G}, {p.scale_pitch, 1});
  return p;
}

// The expected destinations, from an independent formulation: for each output row, its
// sequence by a scan, then the slot's two planes.
void expected_of(const ProblemSpec& spec, const HostProblem& p, Buffer& dst_k, Buffer& dst_scale) {
  const std::int64_t D = spec.head_dim, B = spec.block_size, G = D / 128;
  const std::int64_t shift = spec.misaligned ? 4 : 0;
  for (std::int64_t row = 0; row < p.cu.back(); ++row) {
    std::size_t b = 0;
    while (!(p.cu[b] <= row && row < p.cu[b + 1])) ++b;
    const std::int64_t position = row - p.cu[b];
    const std::int64_t block = p.table_values[b * p.max_blocks + position / B];
    const std::uint8_t* base = p.cache.data() + block * p.block_stride;
    const std::int64_t o = position % B;
    std::memcpy(dst_k.data() + shift + row * p.k_pitch, base + o * D, D);
    std::memcpy(dst_scale.data() + row * p.scale_pitch, base + B * D + o * 4 * G, 4 * G);
  }
}

struct Result {
  Buffer dst_k, dst_scale;
};

Result run_cpu(const HostProblem& p) {
  Result r{copy_to(Memory::host, p.dst_k), copy_to(Memory::host, p.dst_scale)};
  CpGatherIndexerKQuantCache::Args args = p.args;
  args.dst_k = test::rebase(args.dst_k, p.dst_k.data(), r.dst_k.data(), Device::cpu);
  args.dst_scale =
      test::rebase(args.dst_scale, p.dst_scale.data(), r.dst_scale.data(), Device::cpu);
  run<CpGatherIndexerKQuantCache>(Impl::cpu, args);
  return r;
}

void check_against_formulation(const ProblemSpec& spec) {
  INFO(spec.describe());
  const HostProblem p = make_problem(spec);
  Buffer dst_k = copy_to(Memory::host, p.dst_k), dst_scale = copy_to(Memory::host, p.dst_scale);
  expected_of(spec, p, dst_k, dst_scale);
  const Result r = run_cpu(p);
  CHECK(same_bytes(r.dst_k, dst_k, p.dst_k.size()));
  CHECK(same_bytes(r.dst_scale, dst_scale, p.dst_scale.size()));
}

// ---------------------------------------------------------------------------------------------
// CPU reference.

TEST_CASE("cp_gather_indexer_k_quant_cache CPU: equals an independent formulation",
          "[cp_gather_indexer_k_quant_cache]") {
  ProblemSpec spec;
  spec.head_dim = GENERATE(128, 256);
  spec.block_size = GENERATE(1, 16, 64);
  spec.lengths = GENERATE(std::vector<std::int64_t>{1}, std::vector<std::int64_t>{200},
                          std::vector<std::int64_t>{70, 0, 2, 130},
                          std::vector<std::int64_t>{0, 0, 17, 0, 64, 65, 0});
  spec.extra_rows = GENERATE(0, 5);
  check_against_formulation(spec);
}

TEST_CASE("cp_gather_indexer_k_quant_cache CPU: row pitches, padded blocks, misaligned rows",
          "[cp_gather_indexer_k_quant_cache]") {
  ProblemSpec spec;
  spec.wide_rows = GENERATE(false, true);
  spec.padded_blocks = GENERATE(false, true);
  spec.misaligned = GENERATE(false, true);
  check_against_formulation(spec);
}

TEST_CASE("cp_gather_indexer_k_quant_cache CPU: rows past cu_seq_lens[-1] keep their bytes",
          "[cp_gather_indexer_k_quant_cache]") {
  ProblemSpec spec;
  spec.extra_rows = 9;
  const HostProblem p = make_problem(spec);
  const Result r = run_cpu(p);
  const std::int64_t gathered = p.cu.back();
  CHECK(same_bytes(r.dst_k.data() + gathered * p.k_pitch, p.dst_k.data() + gathered * p.k_pitch,
                   static_cast<std::size_t>(9 * p.k_pitch)));
  CHECK(same_bytes(r.dst_scale.data() + gathered * 4, p.dst_scale.data() + gathered * 4, 9 * 4));
  // And every row below it was written (no row of random cache bytes equals the poison).
  for (std::int64_t row = 0; row < gathered; ++row) {
    CHECK_FALSE(same_bytes(r.dst_k.data() + row * 128, p.dst_k.data() + row * 128, 128));
  }
}

TEST_CASE("cp_gather_indexer_k_quant_cache CPU: the header's worked example",
          "[cp_gather_indexer_k_quant_cache]") {
  // Sequences of 70 and 2 tokens, block_size 64: row 65 is slot 1 of block_table[0, 1], row
  // 71 slot 1 of block_table[1, 0].
  ProblemSpec spec;
  spec.lengths = {70, 2};
  const HostProblem p = make_problem(spec);
  const Result r = run_cpu(p);
  const std::uint8_t* block01 = p.cache.data() + p.table_values[1] * p.block_stride;
  const std::uint8_t* block10 = p.cache.data() + p.table_values[p.max_blocks] * p.block_stride;
  CHECK(same_bytes(r.dst_k.data() + 65 * 128, block01 + 1 * 128, 128));
  CHECK(same_bytes(r.dst_scale.data() + 65 * 4, block01 + 64 * 128 + 1 * 4, 4));
  CHECK(same_bytes(r.dst_k.data() + 71 * 128, block10 + 1 * 128, 128));
  CHECK(same_bytes(r.dst_scale.data() + 71 * 4, block10 + 64 * 128 + 1 * 4, 4));
}

TEST_CASE(
    "cp_gather_indexer_k_quant_cache round trip: gathers exactly what "
    "indexer_k_quant_and_cache stored",
    "[cp_gather_indexer_k_quant_cache]") {
  const bool ue8m0 = GENERATE(false, true);
  const std::int64_t head_dim = GENERATE(128, 256);
  const std::int64_t block_size = GENERATE(16, 64);
  CAPTURE(ue8m0, head_dim, block_size);
  const std::int64_t G = head_dim / 128, slot_bytes = head_dim + 4 * G;
  const std::vector<std::int64_t> lengths = {33, 0, 100, 5};
  const std::int64_t total = 138, num_blocks = 16;
  // Blocks 15, 14, ... dealt out to the sequences; token p of sequence b goes to slot
  // block_table[b, p / block_size] × block_size + p % block_size.
  const std::int64_t max_blocks = (100 + block_size - 1) / block_size;
  std::vector<std::int32_t> table(4 * max_blocks, 0), cu = {0};
  std::vector<std::int64_t> slots;
  std::int32_t next = static_cast<std::int32_t>(num_blocks - 1);
  for (std::size_t b = 0; b < lengths.size(); ++b) {
    cu.push_back(cu.back() + static_cast<std::int32_t>(lengths[b]));
    for (std::int64_t j = 0; j < (lengths[b] + block_size - 1) / block_size; ++j)
      table[b * max_blocks + j] = next--;
    for (std::int64_t p = 0; p < lengths[b]; ++p)
      slots.push_back(table[b * max_blocks + p / block_size] * block_size + p % block_size);
  }
  Buffer keys(Memory::host, static_cast<std::size_t>(total * head_dim * 2));
  test::fill_random(keys.data(), DType::bf16, total * head_dim, 5, 20.f);
  Buffer cache = poisoned(static_cast<std::size_t>(num_blocks * block_size * slot_bytes));
  Buffer slot_data = int64s(slots);
  const TensorView cache_view =
      TensorView::contiguous(cache.data(), DType::u8, {num_blocks, block_size, slot_bytes});
  run<IndexerKQuantAndCache>(
      Impl::cpu, {TensorView::contiguous(keys.data(), DType::bf16, {total, head_dim}), cache_view,
                  TensorView::contiguous(slot_data.data(), DType::i64, {total}), 128,
                  ue8m0 ? "ue8m0" : "fp32"});
  Buffer dst_k = poisoned(static_cast<std::size_t>(total * head_dim));
  Buffer dst_scale = poisoned(static_cast<std::size_t>(total * 4 * G));
  Buffer table_data = int32s(table), cu_data = int32s(cu);
  run<CpGatherIndexerKQuantCache>(
      Impl::cpu, {cache_view, TensorView::contiguous(dst_k.data(), DType::u8, {total, head_dim}),
                  TensorView::contiguous(dst_scale.data(), DType::u8, {total, 4 * G}),
                  TensorView::contiguous(table_data.data(), DType::i32, {4, max_blocks}),
                  TensorView::contiguous(cu_data.data(), DType::i32, {5})});
  // Token t of the batch is key t: its gathered row holds its own quantization, computed here
  // independently, and decodes back to the key within E4M3's bound.
  for (std::int64_t t = 0; t < total; ++t) {
    for (std::int64_t g = 0; g < G; ++g) {
      double amax = 0;
      std::vector<float> x(128);
      for (int i = 0; i < 128; ++i) {
        std::uint16_t bits;
        std::memcpy(&bits, keys.data() + (t * head_dim + g * 128 + i) * 2, 2);
        x[i] = numerics::bf16_bits_to_float(bits);
        amax = std::max(amax, std::fabs(static_cast<double>(x[i])));
      }
      float scale = std::max(static_cast<float>(amax), 1e-4f) / 448.f;
      if (ue8m0) scale = std::exp2(std::ceil(std::log2(static_cast<double>(scale))));
      float stored;
      std::memcpy(&stored, dst_scale.data() + t * 4 * G + 4 * g, 4);
      REQUIRE(stored == scale);
      for (int i = 0; i < 128; ++i) {
        const std::uint8_t code = dst_k.data()[t * head_dim + g * 128 + i];
        REQUIRE(code == numerics::float_to_fp8_e4m3(x[i] / scale));
        const double decoded = numerics::fp8_e4m3_to_float(code) * static_cast<double>(scale);
        REQUIRE(std::fabs(decoded - x[i]) <=
                std::max(std::fabs(x[i]) / 16.0, std::ldexp(static_cast<double>(scale), -10)));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Bad input: each rule, with nothing written.

struct ValidCall {
  // Two sequences of 5 and 4 tokens in a cache of 4 blocks of 4 slots; 10 output rows.
  Buffer cache_data{Memory::host, 4 * 4 * 264 + 64};
  Buffer dst_k_data = poisoned(10 * 256 + 64);
  Buffer dst_scale_data = poisoned(10 * 8 + 64);
  Buffer table_data = int32s({3, 1, 7, 0, 77, 77});  // row 1's column 1 and 2 unused
  Buffer cu_data = int32s({0, 5, 9});
  Buffer wide_data{Memory::host, 64};

  TensorView kv_cache = TensorView::contiguous(cache_data.data(), DType::u8, {4, 4, 132});
  TensorView dst_k = TensorView::contiguous(dst_k_data.data(), DType::u8, {10, 128});
  TensorView dst_scale = TensorView::contiguous(dst_scale_data.data(), DType::u8, {10, 4});
  TensorView block_table = TensorView::contiguous(table_data.data(), DType::i32, {2, 3});
  TensorView cu_seq_lens = TensorView::contiguous(cu_data.data(), DType::i32, {3});
  Impl impl = Impl::cpu;

  ValidCall() { test::fill_random(cache_data.data(), DType::u8, 4 * 4 * 264, 3); }

  void set_cu(const std::vector<std::int32_t>& values) {
    cu_data = int32s(values);
    cu_seq_lens = TensorView::contiguous(cu_data.data(), DType::i32,
                                         {static_cast<std::int64_t>(values.size())});
  }

  void call() const {
    run<CpGatherIndexerKQuantCache>(impl, {kv_cache, dst_k, dst_scale, block_table, cu_seq_lens});
  }

  bool nothing_written() const {
    return same_bytes(dst_k_data, poisoned(10 * 256 + 64), 10 * 256 + 64) &&
           same_bytes(dst_scale_data, poisoned(10 * 8 + 64), 10 * 8 + 64);
  }
};

TEST_CASE("cp_gather_indexer_k_quant_cache: the valid call used by the rule tests passes",
          "[cp_gather_indexer_k_quant_cache]") {
  ValidCall call;
  CHECK_NOTHROW(call.call());
  CHECK_FALSE(call.nothing_written());
  // Rows 9 and 10 are past cu_seq_lens[-1] = 9: untouched.
  CHECK(same_bytes(call.dst_k_data.data() + 9 * 128, poisoned(128).data(), 128));
}

TEST_CASE(
    "cp_gather_indexer_k_quant_cache rejects head_dim and scale widths other than the "
    "128-element tiles",
    "[cp_gather_indexer_k_quant_cache]") {
  ValidCall call;
  SECTION("head_dim 64") {
    call.dst_k = TensorView::contiguous(call.dst_k_data.data(), DType::u8, {10, 64});
    CHECK_REJECTED(call, "dst_k: head_dim");
  }
  SECTION("head_dim 192") {
    call.dst_k = TensorView::contiguous(call.dst_k_data.data(), DType::u8, {10, 192});
    CHECK_REJECTED(call, "dst_k: head_dim");
  }
  SECTION("dst_scale 8 bytes per row (a 64-element tile upstream would infer)") {
    call.dst_scale = TensorView::contiguous(call.dst_scale_data.data(), DType::u8, {10, 8});
    CHECK_REJECTED(call, "dst_scale: size(1) must be");
  }
  SECTION("dst_scale 1 byte per row") {
    call.dst_scale = TensorView::contiguous(call.dst_scale_data.data(), DType::u8, {10, 1});
    CHECK_REJECTED(call, "dst_scale: size(1) must be");
  }
  SECTION("a cache of another head_dim") {
    call.kv_cache = TensorView::contiguous(call.cache_data.data(), DType::u8, {4, 4, 264});
    CHECK_REJECTED(call, "kv_cache: size(2) must be");
  }
}

TEST_CASE("cp_gather_indexer_k_quant_cache rejects wrong dtypes",
          "[cp_gather_indexer_k_quant_cache]") {
  ValidCall call;
  SECTION("dst_k bf16") {
    call.dst_k.dtype = DType::bf16;
    CHECK_REJECTED(call, "dst_k");
  }
  SECTION("dst_scale f32") {
    call.dst_scale = TensorView::contiguous(call.dst_scale_data.data(), DType::f32, {10, 1});
    CHECK_REJECTED(call, "dst_scale");
  }
  SECTION("kv_cache i32") {
    call.kv_cache.dtype = DType::i32;
    CHECK_REJECTED(call, "kv_cache");
  }
  SECTION("block_table i64") {
    call.block_table.dtype = DType::i64;
    CHECK_REJECTED(call, "block_table");
  }
  SECTION("cu_seq_lens i64") {
    call.cu_seq_lens.dtype = DType::i64;
    CHECK_REJECTED(call, "cu_seq_lens");
  }
}

TEST_CASE("cp_gather_indexer_k_quant_cache accepts f8_e4m3 codes and a padded block stride",
          "[cp_gather_indexer_k_quant_cache]") {
  ValidCall call;
  SECTION("f8_e4m3") {
    call.dst_k.dtype = DType::f8_e4m3;
    call.kv_cache.dtype = DType::f8_e4m3;
  }
  SECTION("padded blocks") {
    call.kv_cache =
        TensorView::strided(call.cache_data.data(), DType::u8, {4, 4, 132}, {4 * 132 + 16, 132, 1});
  }
  CHECK_NOTHROW(call.call());
}

TEST_CASE("cp_gather_indexer_k_quant_cache rejects a cache that is not the block-planar layout",
          "[cp_gather_indexer_k_quant_cache]") {
  ValidCall call;
  auto* data = call.cache_data.data();
  SECTION("slots with a pitch") {
    call.kv_cache = TensorView::strided(data, DType::u8, {4, 4, 132}, {4 * 136, 136, 1});
    CHECK_REJECTED(call, "kv_cache");
  }
  SECTION("blocks overlap") {
    call.kv_cache = TensorView::strided(data, DType::u8, {4, 4, 132}, {4 * 132 - 16, 132, 1});
    CHECK_REJECTED(call, "kv_cache: blocks overlap");
  }
  SECTION("2-D") {
    call.kv_cache = TensorView::contiguous(data, DType::u8, {4, 528});
    CHECK_REJECTED(call, "kv_cache");
  }
}

TEST_CASE("cp_gather_indexer_k_quant_cache rejects bad cu_seq_lens",
          "[cp_gather_indexer_k_quant_cache]") {
  ValidCall call;
  SECTION("not batch + 1 elements") {
    call.set_cu({0, 5});
    CHECK_REJECTED(call, "cu_seq_lens: expected batch + 1 = 3");
  }
  SECTION("not starting at 0") {
    call.set_cu({1, 5, 9});
    CHECK_REJECTED(call, "cu_seq_lens[0]: expected 0, got 1");
  }
  SECTION("decreasing") {
    call.set_cu({0, 5, 4});
    CHECK_REJECTED(call, "non-decreasing");
  }
  SECTION("strided") {
    Buffer spread = int32s({0, -1, 5, -1, 9, -1});
    call.cu_data = std::move(spread);
    call.cu_seq_lens = TensorView::strided(call.cu_data.data(), DType::i32, {3}, {2});
    CHECK_REJECTED(call, "cu_seq_lens");
  }
}

TEST_CASE("cp_gather_indexer_k_quant_cache rejects destinations too small for the batch",
          "[cp_gather_indexer_k_quant_cache]") {
  ValidCall call;
  SECTION("dst_k") {
    call.dst_k.shape[0] = 8;
    CHECK_REJECTED(call, "dst_k: cu_seq_lens[-1] = 9");
  }
  SECTION("dst_scale") {
    call.dst_scale.shape[0] = 8;
    CHECK_REJECTED(call, "dst_scale: cu_seq_lens[-1] = 9");
  }
}

TEST_CASE("cp_gather_indexer_k_quant_cache rejects block ids outside the cache or the table",
          "[cp_gather_indexer_k_quant_cache]") {
  ValidCall call;
  auto* table = reinterpret_cast<std::int32_t*>(call.table_data.data());
  SECTION("an id past the cache") {
    table[1] = 4;
    CHECK_REJECTED(call, "block_table[0, 1] = 4");
  }
  SECTION("a negative id") {
    table[3] = -1;
    CHECK_REJECTED(call, "block_table[1, 0] = -1");
  }
  SECTION("a sequence longer than its row") {
    // Two columns of the table's three rows: 9 tokens need 3 blocks of 4.
    call.block_table = TensorView::strided(call.table_data.data(), DType::i32, {2, 2}, {3, 1});
    call.set_cu({0, 9, 9});
    CHECK_REJECTED(call, "block_table: sequence 0 has 9 tokens");
  }
  SECTION("a cache without slots") {
    call.kv_cache = TensorView::contiguous(call.cache_data.data(), DType::u8, {4, 0, 132});
    CHECK_REJECTED(call, "kv_cache: block_size = size(1) is 0");
  }
  SECTION("unused entries are not read") {
    table[2] = -5;  // sequence 0 uses columns 0 and 1 only
    CHECK_NOTHROW(call.call());
  }
}

TEST_CASE("cp_gather_indexer_k_quant_cache rejects layouts it cannot address",
          "[cp_gather_indexer_k_quant_cache]") {
  ValidCall call;
  SECTION("dst_k rows overlap") {
    call.dst_k = TensorView::strided(call.dst_k_data.data(), DType::u8, {10, 128}, {64, 1});
    CHECK_REJECTED(call, "dst_k: rows overlap");
  }
  SECTION("dst_k bytes not packed") {
    call.dst_k = TensorView::strided(call.dst_k_data.data(), DType::u8, {10, 128}, {256, 2});
    CHECK_REJECTED(call, "dst_k");
  }
  SECTION("dst_scale rows not 4-byte words") {
    call.dst_scale = TensorView::strided(call.dst_scale_data.data(), DType::u8, {10, 4}, {6, 1});
    CHECK_REJECTED(call, "dst_scale");
  }
  SECTION("dst_scale misaligned") {
    call.dst_scale = TensorView::contiguous(call.dst_scale_data.data() + 2, DType::u8, {10, 4});
    CHECK_REJECTED(call, "dst_scale");
  }
  SECTION("block_table elements not packed") {
    call.block_table = TensorView::strided(call.table_data.data(), DType::i32, {2, 2}, {3, 2});
    CHECK_REJECTED(call, "block_table");
  }
}

TEST_CASE("cp_gather_indexer_k_quant_cache rejects a tensor on the wrong device",
          "[cp_gather_indexer_k_quant_cache]") {
  ValidCall call;
  SECTION("CPU reference given a CUDA dst_scale") {
    call.dst_scale.device = Device::cuda;
    CHECK_REJECTED(call, "dst_scale");
  }
  SECTION("naive given host tensors") {
    call.impl = Impl::naive;
    CHECK_REJECTED(call, "kv_cache");
  }
  SECTION("optimized given a host cu_seq_lens") {
    call.impl = Impl::optimized;
    call.kv_cache.device = call.dst_k.device = call.dst_scale.device = Device::cuda;
    call.block_table.device = Device::cuda;
    CHECK_REJECTED(call, "cu_seq_lens");
  }
}

TEST_CASE("cp_gather_indexer_k_quant_cache rejects null data pointers",
          "[cp_gather_indexer_k_quant_cache]") {
  ValidCall call;
  SECTION("kv_cache") {
    call.kv_cache.data = nullptr;
    CHECK_REJECTED(call, "kv_cache");
  }
  SECTION("dst_k") {
    call.dst_k.data = nullptr;
    CHECK_REJECTED(call, "dst_k");
  }
  SECTION("cu_seq_lens") {
    call.cu_seq_lens.data = nullptr;
    CHECK_REJECTED(call, "cu_seq_lens");
  }
}

TEST_CASE("cp_gather_indexer_k_quant_cache with nothing to gather is a no-op",
          "[cp_gather_indexer_k_quant_cache]") {
  ValidCall call;
  SECTION("empty sequences") { call.set_cu({0, 0, 0}); }
  SECTION("empty sequences and an empty dst") {
    call.set_cu({0, 0, 0});
    call.dst_k = TensorView::contiguous(nullptr, DType::u8, {0, 128});
    call.dst_scale = TensorView::contiguous(nullptr, DType::u8, {0, 4});
  }
  SECTION("a batch of none") {
    call.block_table = TensorView::contiguous(nullptr, DType::i32, {0, 3});
    call.set_cu({0});
  }
  CHECK_NOTHROW(call.call());
  CHECK(call.nothing_written());
}

// ---------------------------------------------------------------------------------------------
// GPU: CPU reference vs naive vs optimized, byte for byte over whole poisoned destinations.

Result run_on_device(Impl impl, const HostProblem& p) {
  const Buffer cache = copy_to(Memory::device, p.cache);
  const Buffer dst_k = copy_to(Memory::device, p.dst_k);
  const Buffer dst_scale = copy_to(Memory::device, p.dst_scale);
  const Buffer table = copy_to(Memory::device, p.table);
  const Buffer starts = copy_to(Memory::device, p.starts);
  CpGatherIndexerKQuantCache::Args args = p.args;
  args.kv_cache = test::rebase(p.args.kv_cache, p.cache.data(), cache.data(), Device::cuda);
  args.dst_k = test::rebase(p.args.dst_k, p.dst_k.data(), dst_k.data(), Device::cuda);
  args.dst_scale =
      test::rebase(p.args.dst_scale, p.dst_scale.data(), dst_scale.data(), Device::cuda);
  args.block_table = test::rebase(p.args.block_table, p.table.data(), table.data(), Device::cuda);
  args.cu_seq_lens = test::rebase(p.args.cu_seq_lens, p.starts.data(), starts.data(), Device::cuda);
  run<CpGatherIndexerKQuantCache>(impl, args);
  PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  Result r{Buffer(Memory::host, p.dst_k.size()), Buffer(Memory::host, p.dst_scale.size())};
  dst_k.download(r.dst_k.data(), p.dst_k.size());
  dst_scale.download(r.dst_scale.data(), p.dst_scale.size());
  return r;
}

void check_three_way(const ProblemSpec& spec) {
  INFO(spec.describe());
  const HostProblem problem = make_problem(spec);
  const Result expected = run_cpu(problem);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    const Result actual = run_on_device(impl, problem);
    CHECK(same_bytes(actual.dst_k, expected.dst_k, problem.dst_k.size()));
    CHECK(same_bytes(actual.dst_scale, expected.dst_scale, problem.dst_scale.size()));
  }
}

TEST_CASE("cp_gather_indexer_k_quant_cache GPU: head_dim × block_size × batches",
          "[cp_gather_indexer_k_quant_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.head_dim = GENERATE(128, 256, 512);
  spec.block_size = GENERATE(1, 16, 64);
  spec.lengths = GENERATE(std::vector<std::int64_t>{1}, std::vector<std::int64_t>{3000},
                          std::vector<std::int64_t>{70, 0, 2, 130},
                          std::vector<std::int64_t>{0, 0, 17, 0, 64, 65, 0});
  check_three_way(spec);
}

TEST_CASE("cp_gather_indexer_k_quant_cache GPU: layouts (row pitches, padded blocks, misaligned)",
          "[cp_gather_indexer_k_quant_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.wide_rows = GENERATE(false, true);
  spec.padded_blocks = GENERATE(false, true);
  spec.misaligned = GENERATE(false, true);  // the optimized version falls back to the naive one
  check_three_way(spec);
}

TEST_CASE("cp_gather_indexer_k_quant_cache GPU: large and skewed batches",
          "[cp_gather_indexer_k_quant_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  const int batch = GENERATE(2, 33, 300);
  std::mt19937_64 rng(static_cast<std::uint64_t>(batch));
  spec.lengths.clear();
  for (int b = 0; b < batch; ++b)  // skewed: many short sequences, a few long ones, some empty
    spec.lengths.push_back(b % 7 == 0 ? static_cast<std::int64_t>(rng() % 2000)
                                      : static_cast<std::int64_t>(rng() % 40));
  spec.extra_rows = GENERATE(0, 33);
  spec.seed = static_cast<std::uint64_t>(batch);
  check_three_way(spec);
}

TEST_CASE(
    "cp_gather_indexer_k_quant_cache GPU: a block id past the cache is rejected, nothing "
    "written",
    "[cp_gather_indexer_k_quant_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  HostProblem p = make_problem(spec);
  reinterpret_cast<std::int32_t*>(p.table.data())[1] =
      static_cast<std::int32_t>(p.args.kv_cache.size(0));
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    CHECK_THROWS_WITH(run_on_device(impl, p), Contains("block_table[0, 1]"));
  }
}

}  // namespace
