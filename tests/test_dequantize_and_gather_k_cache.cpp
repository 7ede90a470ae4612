// dequantize_and_gather_k_cache: the CPU reference against an independent formulation (codes
// decoded and scaled in double, the page layout written out again here) for every block size,
// both cache views, gather_lens given or not, offsets and block tables of any pitch; every
// code × every exponent code; the round trip insert → gather within the UE8M0 bound (reached,
// never exceeded); the refusals of the bounds-hardened contract; on a GPU, the naive and
// optimized kernels against the CPU reference bit for bit over whole poisoned workspaces.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "numerics.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/dequantize_and_gather_k_cache.h"
#include "pagedkv/ops/quantize_and_insert_k_cache.h"
#include "support.h"

namespace {

using namespace pagedkv;
using Catch::Matchers::Contains;
using test::int64s;
using test::poisoned;
using test::same_bytes;

constexpr std::int64_t kDim = 512, kNope = 448, kRecord = 576;

Buffer int32s(const std::vector<std::int32_t>& values) {
  Buffer buffer(Memory::host, std::max<std::size_t>(4, values.size() * 4));
  if (!values.empty()) std::memcpy(buffer.data(), values.data(), values.size() * 4);
  return buffer;
}

// The bf16 bits of one dequantized element: code × 2^(exponent code - 127), in double (exact),
// then rounded to bf16 by the CPU numerics (through fp32: exact for every product that is not
// below fp32's subnormals, which a 4-bit code times 2^-127 never is). Upstream computes the
// scale in fp32, where code 255's 2^128 is +inf: 0 × inf is NaN there.
std::uint16_t expected_element(std::uint8_t code, std::uint8_t exponent_code) {
  const double value = static_cast<double>(numerics::fp8_e4m3_to_float(code));
  const double scale = exponent_code == 255
                           ? std::numeric_limits<double>::infinity()
                           : std::ldexp(1.0, static_cast<int>(exponent_code) - 127);
  const double scaled = value * scale;
  return numerics::float_to_bf16_bits(static_cast<float>(scaled));
}

// ---------------------------------------------------------------------------------------------
// One problem: a cache of random bytes, requests, block tables and a poisoned workspace.

struct ProblemSpec {
  std::int64_t block_size = 64;
  std::vector<std::int32_t> seq_lens = {300, 1, 129, 0, 64};
  bool with_gather_lens = true;  // else every seq_len is gathered
  std::int64_t offset = 3;
  std::int64_t extra_rows = 5;  // rows of out past the longest gather (left untouched)
  bool three_d = false;         // the cache as [num_blocks, B, 584]
  bool padded_pages = true;     // page stride rounded up to a multiple of 576
  bool wide_table = false;      // block_table a column slice of a wider table
  bool wide_out = false;        // out rows with a pitch of 512 + 64 elements
  bool misaligned = false;      // cache and out 8 bytes past an aligned address
  bool odd_cache = false;       // the u8 cache 3 bytes past an aligned address (a RoPE bf16 of a
                                // record then sits at an odd address; found by the GPU fuzzer)
  std::uint64_t seed = 1;

  std::string describe() const {
    return "block_size=" + std::to_string(block_size) + " R=" + std::to_string(seq_lens.size()) +
           (with_gather_lens ? ", gather_lens" : ", no gather_lens") +
           " offset=" + std::to_string(offset) + (three_d ? ", 3-D" : ", 2-D") +
           (padded_pages ? ", padded pages" : "") + (wide_table ? ", wide table" : "") +
           (wide_out ? ", wide out" : "") + (misaligned ? ", misaligned" : "") +
           (odd_cache ? ", odd cache" : "");
  }
};

struct HostProblem {
  Buffer cache, out, table, seq_lens, gather_lens;
  std::vector<std::int32_t> lens, gathers, table_values;
  std::int64_t page_stride = 0, table_pitch = 0, out_rows = 0, out_pitch = 0, num_blocks = 0;
  DequantizeAndGatherKCache::Args args;
};

HostProblem make_problem(const ProblemSpec& spec) {
  HostProblem p;
  std::mt19937_64 rng(spec.seed);
  const std::int64_t B = spec.block_size;
  const auto R = static_cast<std::int64_t>(spec.seq_lens.size());
  p.lens = spec.seq_lens;
  std::int64_t columns = 1, max_gather = 0;
  for (std::int64_t r = 0; r < R; ++r) {
    const std::int32_t len = p.lens[static_cast<std::size_t>(r)];
    const std::int32_t g =
        spec.with_gather_lens ? static_cast<std::int32_t>(rng() % (len + 1)) : len;
    p.gathers.push_back(g);
    columns = std::max<std::int64_t>(columns, (len + B - 1) / B);
    max_gather = std::max<std::int64_t>(max_gather, g);
  }
  // Pages: each request's own, distinct and shuffled; unused columns hold -1 or garbage.
  p.num_blocks = R * columns + 3;
  std::vector<std::int32_t> ids(static_cast<std::size_t>(p.num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  p.table_pitch = columns + (spec.wide_table ? 3 : 0);
  p.table_values.assign(static_cast<std::size_t>(R * p.table_pitch), -1);
  for (std::int64_t r = 0; r < R; ++r) {
    const std::int32_t len = p.lens[static_cast<std::size_t>(r)];
    const std::int32_t g = p.gathers[static_cast<std::size_t>(r)];
    const std::int64_t first_used = (len - g) / B;
    for (std::int64_t c = 0; c < p.table_pitch; ++c) {
      auto& entry = p.table_values[static_cast<std::size_t>(r * p.table_pitch + c)];
      // Columns before the gathered tail may be stale (upstream reads only the tail).
      if (c < first_used)
        entry = (c % 2) ? -1 : 1 << 30;
      else if (c < columns)
        entry = ids[static_cast<std::size_t>(r * columns + c)];
      else
        entry = -5;  // the columns of the wider table past the slice
    }
  }
  p.table = int32s(p.table_values);
  p.args.block_table =
      TensorView::strided(p.table.data(), DType::i32, {R, columns}, {p.table_pitch, 1});
  p.seq_lens = int32s(p.lens);
  p.args.seq_lens = TensorView::contiguous(p.seq_lens.data(), DType::i32, {R});
  p.gather_lens = int32s(p.gathers);
  p.args.gather_lens = spec.with_gather_lens
                           ? TensorView::contiguous(p.gather_lens.data(), DType::i32, {R})
                           : TensorView{};

  const std::int64_t shift = spec.misaligned ? 8 : 0;
  const std::int64_t cache_shift = spec.odd_cache ? 3 : shift;
  const std::int64_t page_bytes = B * 584;
  p.page_stride = spec.padded_pages ? (page_bytes + kRecord - 1) / kRecord * kRecord : page_bytes;
  p.cache =
      Buffer(Memory::host, static_cast<std::size_t>(p.num_blocks * p.page_stride + cache_shift));
  test::fill_random(p.cache.data(), DType::u8, p.num_blocks * p.page_stride + cache_shift,
                    spec.seed);
  // Exponent codes a writer produces (105 .. 160), so that most values are finite.
  for (std::int64_t page = 0; page < p.num_blocks; ++page)
    for (std::int64_t t = 0; t < B; ++t)
      for (int j = 0; j < 8; ++j)
        p.cache.data()[cache_shift + page * p.page_stride + B * kRecord + t * 8 + j] =
            static_cast<std::uint8_t>(j == 7 ? 0 : 105 + rng() % 56);
  std::uint8_t* cache = p.cache.data() + cache_shift;
  p.args.k_cache =
      spec.three_d
          ? TensorView::strided(cache, DType::u8, {p.num_blocks, B, 584}, {p.page_stride, 584, 1})
          : TensorView::strided(cache, DType::u8, {p.num_blocks, p.page_stride},
                                {p.page_stride, 1});

  p.out_rows = spec.offset + max_gather + spec.extra_rows;
  p.out_pitch = kDim + (spec.wide_out ? 64 : 0);
  p.out = poisoned(static_cast<std::size_t>(R * p.out_rows * p.out_pitch * 2 + shift));
  p.args.out = TensorView::strided(p.out.data() + shift, DType::bf16, {R, p.out_rows, kDim},
                                   {p.out_rows * p.out_pitch, p.out_pitch, 1});
  p.args.block_size = B;
  p.args.offset = spec.offset;
  return p;
}

// The expected workspace, from the independent formulation.
Buffer expected_of(const ProblemSpec& spec, const HostProblem& p) {
  Buffer expected = copy_to(Memory::host, p.out);
  const std::int64_t shift = spec.misaligned ? 8 : 0;
  const std::uint8_t* cache = p.cache.data() + (spec.odd_cache ? 3 : shift);
  std::uint8_t* out = expected.data() + shift;
  const std::int64_t B = spec.block_size;
  for (std::size_t r = 0; r < p.lens.size(); ++r) {
    const std::int64_t start = p.lens[r] - p.gathers[r];
    for (std::int64_t i = 0; i < p.gathers[r]; ++i) {
      const std::int64_t pos = start + i;
      const std::int64_t page = p.table_values[r * static_cast<std::size_t>(p.table_pitch) +
                                               static_cast<std::size_t>(pos / B)];
      const std::uint8_t* record = cache + page * p.page_stride + (pos % B) * kRecord;
      const std::uint8_t* scales = cache + page * p.page_stride + B * kRecord + (pos % B) * 8;
      std::uint8_t* row =
          out + ((static_cast<std::int64_t>(r) * p.out_rows + spec.offset + i) * p.out_pitch) * 2;
      for (std::int64_t d = 0; d < kNope; ++d) {
        const std::uint16_t bits = expected_element(record[d], scales[d / 64]);
        std::memcpy(row + 2 * d, &bits, 2);
      }
      std::memcpy(row + 2 * kNope, record + kNope, 128);
    }
  }
  return expected;
}

Buffer run_cpu(const HostProblem& p) {
  Buffer result = copy_to(Memory::host, p.out);
  DequantizeAndGatherKCache::Args args = p.args;
  args.out = test::rebase(args.out, p.out.data(), result.data(), Device::cpu);
  run<DequantizeAndGatherKCache>(Impl::cpu, args);
  return result;
}

// ---------------------------------------------------------------------------------------------
// CPU reference.

TEST_CASE("dequantize_and_gather_k_cache CPU: equals an independent formulation",
          "[dequantize_and_gather_k_cache]") {
  ProblemSpec spec;
  spec.block_size = GENERATE(1, 2, 16, 64, 256);
  spec.with_gather_lens = GENERATE(false, true);
  spec.three_d = GENERATE(false, true);
  INFO(spec.describe());
  const HostProblem p = make_problem(spec);
  CHECK(same_bytes(run_cpu(p), expected_of(spec, p), p.out.size()));
}

TEST_CASE("dequantize_and_gather_k_cache CPU: offsets, table and out pitches, unpadded pages",
          "[dequantize_and_gather_k_cache]") {
  ProblemSpec spec;
  spec.offset = GENERATE(0, 7);
  spec.wide_table = GENERATE(false, true);
  spec.wide_out = GENERATE(false, true);
  spec.padded_pages = GENERATE(false, true);
  spec.misaligned = GENERATE(false, true);
  spec.odd_cache = GENERATE(false, true);
  INFO(spec.describe());
  const HostProblem p = make_problem(spec);
  CHECK(same_bytes(run_cpu(p), expected_of(spec, p), p.out.size()));
}

TEST_CASE("dequantize_and_gather_k_cache CPU: every code × every exponent code",
          "[dequantize_and_gather_k_cache]") {
  // 256 tokens in one page of B = 256: token c has exponent code c in all 7 blocks and the
  // codes 0..255 (then 0..191) in its 448 bytes, so all 256 × 256 pairs are decoded.
  constexpr std::int64_t B = 256;
  Buffer cache(Memory::host, B * 584);
  for (std::int64_t t = 0; t < B; ++t) {
    for (std::int64_t d = 0; d < kRecord; ++d)
      cache.data()[t * kRecord + d] = static_cast<std::uint8_t>(d + t);
    for (int j = 0; j < 8; ++j)
      cache.data()[B * kRecord + t * 8 + j] = static_cast<std::uint8_t>(t);
  }
  Buffer table = int32s({0});
  Buffer lens = int32s({static_cast<std::int32_t>(B)});
  Buffer out = poisoned(B * kDim * 2);
  run<DequantizeAndGatherKCache>(
      Impl::cpu, {TensorView::contiguous(out.data(), DType::bf16, {1, B, kDim}),
                  TensorView::contiguous(cache.data(), DType::u8, {1, B * 584}),
                  TensorView::contiguous(lens.data(), DType::i32, {1}), TensorView{},
                  TensorView::contiguous(table.data(), DType::i32, {1, 1}), B, 0, false});
  for (std::int64_t t = 0; t < B; ++t) {
    for (std::int64_t d = 0; d < kNope; ++d) {
      std::uint16_t got;
      std::memcpy(&got, out.data() + (t * kDim + d) * 2, 2);
      const auto code = static_cast<std::uint8_t>(d + t);
      INFO("code 0x" << std::hex << int(code) << ", exponent code 0x" << t);
      REQUIRE(got == expected_element(code, static_cast<std::uint8_t>(t)));
    }
  }
  // Spot values: 0x70 = 128 with code 120 (2^-7) is 1.0; 0x7E = 448 with code 127 is 448.
  CHECK(expected_element(0x70, 120) == numerics::float_to_bf16_bits(1.f));
  CHECK(expected_element(0x7E, 127) == numerics::float_to_bf16_bits(448.f));
}

TEST_CASE("dequantize_and_gather_k_cache CPU: the header's worked example",
          "[dequantize_and_gather_k_cache]") {
  ProblemSpec spec;
  spec.seq_lens = {100};
  spec.offset = 4;
  spec.extra_rows = 60;  // room for 40 rows whatever gather length the problem drew
  HostProblem p = make_problem(spec);
  std::int32_t forty = 40;
  std::memcpy(p.gather_lens.data(), &forty, 4);
  p.gathers = {40};
  // Re-deal the table: the tail 60..99 uses columns 0 and 1.
  p.table_values[0] = 2;
  p.table_values[1] = 0;
  std::memcpy(p.table.data(), p.table_values.data(), 8);
  const Buffer result = run_cpu(p);
  // Row 4 + 10 is position 70: token 6 of page block_table[0, 1] = 0; its RoPE bytes.
  CHECK(std::memcmp(result.data() + (14 * kDim + kNope) * 2, p.cache.data() + 6 * kRecord + kNope,
                    128) == 0);
  // Rows 0..3 and 44.. are untouched.
  const Buffer fresh = poisoned(p.out.size());
  CHECK(std::memcmp(result.data(), fresh.data(), 4 * kDim * 2) == 0);
  CHECK(std::memcmp(result.data() + 44 * kDim * 2, fresh.data() + 44 * kDim * 2,
                    (p.out_rows - 44) * kDim * 2) == 0);
}

TEST_CASE("dequantize_and_gather_k_cache round trip: insert then gather is within 16 × scale",
          "[dequantize_and_gather_k_cache][quantize_and_insert_k_cache]") {
  // Random keys over many magnitudes, inserted into pages of 64 and gathered back. Each value
  // comes back within 16 × 2^e of its block (half an E4M3 step in the top binade [256, 448]),
  // and the worst case is reached: 272 beside a 448 (scale 1) rounds to 256.
  constexpr std::int64_t T = 2000, B = 64, pages = (T + B - 1) / B, stride = 37440;
  Buffer k(Memory::host, T * kDim * 2);
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  std::uniform_int_distribution<int> magnitude(-40, 40);
  for (std::int64_t t = 0; t < T; ++t) {
    const int m = magnitude(rng);
    for (std::int64_t i = 0; i < kDim; ++i) {
      const float v = static_cast<float>(std::ldexp(uniform(rng), m + (i % 7 == 0 ? 3 : 0)));
      const std::uint16_t bits = numerics::float_to_bf16_bits(v);
      std::memcpy(k.data() + (t * kDim + i) * 2, &bits, 2);
    }
  }
  const std::uint16_t b448 = numerics::float_to_bf16_bits(448.f);
  const std::uint16_t b272 = numerics::float_to_bf16_bits(272.f);
  std::memcpy(k.data() + (5 * kDim + 64 * 3) * 2, &b448, 2);
  std::memcpy(k.data() + (5 * kDim + 64 * 3 + 1) * 2, &b272, 2);
  for (std::int64_t i = 2; i < 64; ++i) std::memset(k.data() + (5 * kDim + 64 * 3 + i) * 2, 0, 2);

  Buffer cache = poisoned(pages * stride);
  std::vector<std::int64_t> slot_values(T);
  std::iota(slot_values.begin(), slot_values.end(), 0);
  Buffer slots = int64s(slot_values);
  run<QuantizeAndInsertKCache>(
      Impl::cpu, {TensorView::contiguous(k.data(), DType::bf16, {T, kDim}),
                  TensorView::contiguous(cache.data(), DType::u8, {pages, stride}),
                  TensorView::contiguous(slots.data(), DType::i64, {T}), B, true, false});
  std::vector<std::int32_t> table_values(pages);
  std::iota(table_values.begin(), table_values.end(), 0);
  Buffer table = int32s(table_values);
  Buffer lens = int32s({static_cast<std::int32_t>(T)});
  Buffer out = poisoned(T * kDim * 2);
  run<DequantizeAndGatherKCache>(
      Impl::cpu, {TensorView::contiguous(out.data(), DType::bf16, {1, T, kDim}),
                  TensorView::contiguous(cache.data(), DType::u8, {pages, stride}),
                  TensorView::contiguous(lens.data(), DType::i32, {1}), TensorView{},
                  TensorView::contiguous(table.data(), DType::i32, {1, pages}), B, 0, false});

  double worst = 0;  // the largest error in units of the block's scale
  for (std::int64_t t = 0; t < T; ++t) {
    const std::uint8_t* scales = cache.data() + (t / B) * stride + B * kRecord + (t % B) * 8;
    for (std::int64_t i = 0; i < kDim; ++i) {
      std::uint16_t in_bits, out_bits;
      std::memcpy(&in_bits, k.data() + (t * kDim + i) * 2, 2);
      std::memcpy(&out_bits, out.data() + (t * kDim + i) * 2, 2);
      if (i >= kNope) {  // RoPE: bit for bit
        REQUIRE(in_bits == out_bits);
        continue;
      }
      const double x = numerics::bf16_bits_to_float(in_bits);
      const double back = numerics::bf16_bits_to_float(out_bits);
      const double scale = std::ldexp(1.0, static_cast<int>(scales[i / 64]) - 127);
      const double error = std::fabs(x - back) / scale;
      INFO("token " << t << ", dim " << i << ": " << x << " came back as " << back);
      REQUIRE(error <= 16.0);
      worst = std::max(worst, error);
    }
  }
  CHECK(worst == 16.0);
  std::uint16_t at_272;
  std::memcpy(&at_272, out.data() + (5 * kDim + 64 * 3 + 1) * 2, 2);
  CHECK(numerics::bf16_bits_to_float(at_272) == 256.f);
}

// ---------------------------------------------------------------------------------------------
// Bad input: each rule, with nothing written.

struct ValidCall {
  static constexpr std::int64_t kBlocks = 4, kBlockSize = 4, kRequests = 2, kRows = 8;
  static constexpr std::int64_t kPage = kBlockSize * 584;
  static constexpr std::int64_t kOutBytes = kRequests * kRows * kDim * 2;

  Buffer cache_data{Memory::host, kBlocks* kPage};
  Buffer out_data = poisoned(kOutBytes);
  Buffer seq_data = int32s({6, 3});
  Buffer gather_data = int32s({5, 3});
  Buffer table_data = int32s({2, 0, 3, -1});
  Buffer wide_data{Memory::host, 64};

  TensorView out = TensorView::contiguous(out_data.data(), DType::bf16, {kRequests, kRows, kDim});
  TensorView k_cache = TensorView::contiguous(cache_data.data(), DType::u8, {kBlocks, kPage});
  TensorView seq_lens = TensorView::contiguous(seq_data.data(), DType::i32, {kRequests});
  TensorView gather_lens = TensorView::contiguous(gather_data.data(), DType::i32, {kRequests});
  TensorView block_table = TensorView::contiguous(table_data.data(), DType::i32, {kRequests, 2});
  std::int64_t block_size = kBlockSize;
  std::int64_t offset = 1;
  bool use_fnuz = false;
  Impl impl = Impl::cpu;

  ValidCall() { test::fill_random(cache_data.data(), DType::u8, kBlocks * kPage, 3); }

  void call() const {
    run<DequantizeAndGatherKCache>(
        impl, {out, k_cache, seq_lens, gather_lens, block_table, block_size, offset, use_fnuz});
  }

  bool nothing_written() const {
    const Buffer fresh = poisoned(kOutBytes);
    return same_bytes(out_data, fresh, kOutBytes);
  }

  void set(Buffer& buffer, std::size_t index, std::int32_t value) {
    reinterpret_cast<std::int32_t*>(buffer.data())[index] = value;
  }
};

TEST_CASE("dequantize_and_gather_k_cache: the valid call used by the rule tests passes",
          "[dequantize_and_gather_k_cache]") {
  ValidCall call;
  CHECK_NOTHROW(call.call());
  CHECK_FALSE(call.nothing_written());
}

TEST_CASE("dequantize_and_gather_k_cache accepts stale block ids before the gathered tail",
          "[dequantize_and_gather_k_cache]") {
  ValidCall call;
  call.set(call.table_data, 0, -1);  // request 0 gathers positions 1..5: columns 0 and 1
  call.set(call.gather_data, 0, 2);  // now positions 4..5: column 1 only
  call.set(call.table_data, 0, 1 << 30);
  CHECK_NOTHROW(call.call());
}

TEST_CASE("dequantize_and_gather_k_cache refuses the reads the hardened kernel masks",
          "[dequantize_and_gather_k_cache]") {
  ValidCall call;
  SECTION("a negative block id in a gathered column") {
    call.set(call.table_data, 1, -1);
    CHECK_REJECTED(call, "block_table[0, 1]");
  }
  SECTION("a gathered column past the table") {
    call.set(call.seq_data, 1, 9);  // positions 4..8 need columns 1 and 2
    call.set(call.gather_data, 1, 5);
    CHECK_REJECTED(call, "block_table");
  }
  SECTION("rows past out.size(1)") {
    call.offset = 4;  // 4 + 5 > 8
    CHECK_REJECTED(call, "out");
  }
}

TEST_CASE("dequantize_and_gather_k_cache rejects block ids past the cache and bad lengths",
          "[dequantize_and_gather_k_cache]") {
  ValidCall call;
  SECTION("block id = num_blocks") {
    call.set(call.table_data, 2, 4);
    CHECK_REJECTED(call, "block_table[1, 0]");
  }
  SECTION("gather_len > seq_len") {
    call.set(call.gather_data, 1, 4);
    CHECK_REJECTED(call, "gather_lens[1]");
  }
  SECTION("negative gather_len") {
    call.set(call.gather_data, 0, -1);
    CHECK_REJECTED(call, "gather_lens[0]");
  }
  SECTION("negative seq_len") {
    call.set(call.seq_data, 1, -2);
    call.set(call.gather_data, 1, 0);
    CHECK_REJECTED(call, "seq_lens[1]");
  }
  SECTION("negative offset") {
    call.offset = -1;
    CHECK_REJECTED(call, "offset");
  }
}

TEST_CASE("dequantize_and_gather_k_cache rejects wrong dtypes and shapes",
          "[dequantize_and_gather_k_cache]") {
  ValidCall call;
  SECTION("out f32") {
    call.out.dtype = DType::f32;
    CHECK_REJECTED(call, "out");
  }
  SECTION("out f16") {
    call.out.dtype = DType::f16;
    CHECK_REJECTED(call, "out");
  }
  SECTION("out width 576") {
    call.out = TensorView::contiguous(call.out_data.data(), DType::bf16, {2, 7, 576});
    CHECK_REJECTED(call, "out");
  }
  SECTION("out 2-D") {
    call.out = TensorView::contiguous(call.out_data.data(), DType::bf16, {16, 512});
    CHECK_REJECTED(call, "out");
  }
  SECTION("out elements not packed") {
    call.out = TensorView::strided(call.out_data.data(), DType::bf16, {2, 2, 512}, {2048, 1024, 2});
    CHECK_REJECTED(call, "out");
  }
  SECTION("out rows overlap") {
    call.out = TensorView::strided(call.out_data.data(), DType::bf16, {2, 8, 512}, {4096, 256, 1});
    CHECK_REJECTED(call, "out");
  }
  SECTION("out with fewer slabs than requests") {
    call.out = TensorView::contiguous(call.out_data.data(), DType::bf16, {1, 8, 512});
    CHECK_REJECTED(call, "out");
  }
  SECTION("seq_lens i64") {
    call.seq_lens.dtype = DType::i64;
    CHECK_REJECTED(call, "seq_lens");
  }
  SECTION("gather_lens i64") {
    call.gather_lens.dtype = DType::i64;
    call.gather_lens.shape[0] = 1;
    CHECK_REJECTED(call, "gather_lens");
  }
  SECTION("gather_lens of another length") {
    call.gather_lens.shape[0] = 1;
    CHECK_REJECTED(call, "gather_lens");
  }
  SECTION("block_table i64") {
    call.block_table = TensorView::contiguous(call.wide_data.data(), DType::i64, {2, 2});
    CHECK_REJECTED(call, "block_table");
  }
  SECTION("block_table columns not packed") {
    call.block_table = TensorView::strided(call.table_data.data(), DType::i32, {2, 2}, {1, 2});
    CHECK_REJECTED(call, "block_table");
  }
  SECTION("cache not u8") {
    call.k_cache.dtype = DType::f8_e4m3;
    CHECK_REJECTED(call, "k_cache");
  }
  SECTION("pages too small for block_size") {
    call.block_size = 5;
    CHECK_REJECTED(call, "k_cache");
  }
  SECTION("block_size 0") {
    call.block_size = 0;
    CHECK_REJECTED(call, "block_size");
  }
  SECTION("use_fnuz") {
    call.use_fnuz = true;
    CHECK_REJECTED(call, "use_fnuz");
  }
}

TEST_CASE("dequantize_and_gather_k_cache rejects a tensor on the wrong device",
          "[dequantize_and_gather_k_cache]") {
  ValidCall call;
  SECTION("out") {
    call.out.device = Device::cuda;
    CHECK_REJECTED(call, "out");
  }
  SECTION("k_cache") {
    call.k_cache.device = Device::cuda;
    CHECK_REJECTED(call, "k_cache");
  }
  SECTION("seq_lens") {
    call.seq_lens.device = Device::cuda;
    CHECK_REJECTED(call, "seq_lens");
  }
  SECTION("gather_lens") {
    call.gather_lens.device = Device::cuda;
    CHECK_REJECTED(call, "gather_lens");
  }
  SECTION("block_table") {
    call.block_table.device = Device::cuda;
    CHECK_REJECTED(call, "block_table");
  }
}

TEST_CASE("dequantize_and_gather_k_cache that gathers nothing is a no-op",
          "[dequantize_and_gather_k_cache]") {
  ValidCall call;
  SECTION("all gather_lens 0") {
    call.set(call.gather_data, 0, 0);
    call.set(call.gather_data, 1, 0);
  }
  SECTION("no request") {
    call.seq_lens = TensorView::contiguous(nullptr, DType::i32, {0});
    call.gather_lens = TensorView::contiguous(nullptr, DType::i32, {0});
    call.block_table = TensorView::contiguous(nullptr, DType::i32, {0, 2});
  }
  CHECK_NOTHROW(call.call());
  CHECK(call.nothing_written());
}

// ---------------------------------------------------------------------------------------------
// GPU: CPU reference vs naive vs optimized, bit for bit over whole poisoned workspaces.

Buffer run_on_device(Impl impl, const HostProblem& p) {
  const Buffer cache = copy_to(Memory::device, p.cache);
  const Buffer out = copy_to(Memory::device, p.out);
  const Buffer table = copy_to(Memory::device, p.table);
  const Buffer seq_lens = copy_to(Memory::device, p.seq_lens);
  const Buffer gather_lens = copy_to(Memory::device, p.gather_lens);
  DequantizeAndGatherKCache::Args args = p.args;
  args.out = test::rebase(p.args.out, p.out.data(), out.data(), Device::cuda);
  args.k_cache = test::rebase(p.args.k_cache, p.cache.data(), cache.data(), Device::cuda);
  args.block_table = test::rebase(p.args.block_table, p.table.data(), table.data(), Device::cuda);
  args.seq_lens = test::rebase(p.args.seq_lens, p.seq_lens.data(), seq_lens.data(), Device::cuda);
  if (p.args.gather_lens.data != nullptr)
    args.gather_lens =
        test::rebase(p.args.gather_lens, p.gather_lens.data(), gather_lens.data(), Device::cuda);
  run<DequantizeAndGatherKCache>(impl, args);
  PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  Buffer result(Memory::host, p.out.size());
  out.download(result.data(), p.out.size());
  return result;
}

void check_three_way(const ProblemSpec& spec) {
  INFO(spec.describe());
  const HostProblem problem = make_problem(spec);
  const Buffer expected = run_cpu(problem);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    CHECK(same_bytes(run_on_device(impl, problem), expected, problem.out.size()));
  }
}

TEST_CASE("dequantize_and_gather_k_cache GPU: block sizes × gather_lens × cache views",
          "[dequantize_and_gather_k_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.block_size = GENERATE(1, 2, 16, 64, 256);
  spec.with_gather_lens = GENERATE(false, true);
  spec.three_d = GENERATE(false, true);
  check_three_way(spec);
}

TEST_CASE("dequantize_and_gather_k_cache GPU: layouts (pitches, unpadded pages, misaligned)",
          "[dequantize_and_gather_k_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.offset = GENERATE(0, 7);
  spec.wide_table = GENERATE(false, true);
  spec.wide_out = GENERATE(false, true);
  spec.padded_pages = GENERATE(false, true);
  spec.misaligned = GENERATE(false, true);  // the optimized version falls back to the naive one
  spec.odd_cache = GENERATE(false, true);   // ... which then reads the RoPE bf16 byte by byte
  check_three_way(spec);
}

TEST_CASE("dequantize_and_gather_k_cache GPU: batch shapes, long requests and many requests",
          "[dequantize_and_gather_k_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.seq_lens =
      GENERATE(std::vector<std::int32_t>{1}, std::vector<std::int32_t>{70000},
               std::vector<std::int32_t>{9000, 1, 0, 20000}, std::vector<std::int32_t>(300, 37));
  spec.with_gather_lens = GENERATE(false, true);
  spec.extra_rows = 1;
  check_three_way(spec);
}

TEST_CASE("dequantize_and_gather_k_cache GPU: every code × every exponent code",
          "[dequantize_and_gather_k_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  // The CPU test's page (codes 0 and 255 included: a subnormal and an infinite scale), through
  // all three implementations.
  ProblemSpec spec;
  spec.block_size = 256;
  spec.seq_lens = {256};
  spec.with_gather_lens = false;
  spec.offset = 0;
  HostProblem p = make_problem(spec);
  for (std::int64_t page = 0; page < p.num_blocks; ++page) {
    std::uint8_t* base = p.cache.data() + page * p.page_stride;
    for (std::int64_t t = 0; t < 256; ++t) {
      for (std::int64_t d = 0; d < kNope; ++d)
        base[t * kRecord + d] = static_cast<std::uint8_t>(d + t);
      for (int j = 0; j < 8; ++j) base[256 * kRecord + t * 8 + j] = static_cast<std::uint8_t>(t);
    }
  }
  const Buffer expected = run_cpu(p);
  CHECK(same_bytes(expected, expected_of(spec, p), p.out.size()));
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    CHECK(same_bytes(run_on_device(impl, p), expected, p.out.size()));
  }
}

TEST_CASE(
    "dequantize_and_gather_k_cache GPU: a block id past the cache is refused, nothing "
    "written",
    "[dequantize_and_gather_k_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.with_gather_lens = false;
  HostProblem p = make_problem(spec);
  reinterpret_cast<std::int32_t*>(p.table.data())[1] = static_cast<std::int32_t>(p.num_blocks);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    CHECK_THROWS_WITH(run_on_device(impl, p), Contains("block_table[0, 1]"));
  }
}

}  // namespace
