// quantize_and_insert_k_cache: the CPU reference against an independent formulation (block
// exponents by a search over powers of two in double, codes by a true division, the page
// layout written out again here), the UE8M0 exponent at its ties (amax = 448 × 2^k and one
// bf16 step either side), all-zero blocks and tiny constants, the header's worked example,
// every block size and both cache views, padding and bad input on the CPU; on a GPU, the naive
// and optimized kernels against the CPU reference byte for byte over whole poisoned caches.
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
#include "pagedkv/ops/quantize_and_insert_k_cache.h"
#include "support.h"
#include "ue8m0.h"

namespace {

using namespace pagedkv;
using Catch::Matchers::Contains;
using test::int64s;
using test::poisoned;
using test::same_bytes;

constexpr std::int64_t kDim = 512, kNope = 448, kRecord = 576, kScaleRecord = 8;

// ---------------------------------------------------------------------------------------------
// An independent formulation of the op, for the CPU tests.

// ceil(log2(max(amax, 1e-4) / 448)) by search: the smallest e with 448 × 2^e >= the floored
// amax. Every product is exact in double, so the comparison is exact. An infinite amax gets
// 128: upstream's infinite exponent, clamped to the code 255.
int reference_exponent(float amax) {
  if (std::isinf(amax)) return 128;
  const double floored = std::max(static_cast<double>(amax), static_cast<double>(1e-4f));
  int e = -200;
  while (std::ldexp(448.0, e) < floored) ++e;
  return e;
}

float bf16_value(const std::uint8_t* row, std::int64_t i) {
  std::uint16_t bits;
  std::memcpy(&bits, row + 2 * i, 2);
  return numerics::bf16_bits_to_float(bits);
}

void put_bf16(std::uint8_t* row, std::int64_t i, float value) {
  const std::uint16_t bits = numerics::float_to_bf16_bits(value);
  std::memcpy(row + 2 * i, &bits, 2);
}

// Writes the expected bytes of every token into `cache` (a copy of the poisoned cache).
void expected_cache(std::uint8_t* cache, const std::uint8_t* k, std::int64_t k_pitch_bytes,
                    const std::vector<std::int64_t>& slots, std::int64_t block_size,
                    std::int64_t page_stride) {
  for (std::size_t t = 0; t < slots.size(); ++t) {
    if (slots[t] < 0) continue;
    const std::int64_t page = slots[t] / block_size, position = slots[t] % block_size;
    std::uint8_t* record = cache + page * page_stride + position * kRecord;
    std::uint8_t* scales = cache + page * page_stride + block_size * kRecord + position * 8;
    const std::uint8_t* key = k + static_cast<std::int64_t>(t) * k_pitch_bytes;
    for (int j = 0; j < 7; ++j) {
      double amax = 0;
      for (int i = 0; i < 64; ++i) {
        const float v = bf16_value(key, 64 * j + i);
        if (!std::isnan(v)) amax = std::max(amax, static_cast<double>(std::fabs(v)));
      }
      const int e = reference_exponent(static_cast<float>(amax));
      // The scale upstream divides by: 2^e, or +inf for an infinite amax.
      const float scale = e == 128 ? std::numeric_limits<float>::infinity() : std::ldexp(1.f, e);
      for (int i = 0; i < 64; ++i)
        record[64 * j + i] = numerics::float_to_fp8_e4m3(bf16_value(key, 64 * j + i) / scale);
      scales[j] = static_cast<std::uint8_t>(e + 127);
    }
    scales[7] = 0;
    std::memcpy(record + kNope, key + 2 * kNope, 128);
  }
}

std::vector<std::int64_t> draw_slots(std::int64_t count, std::int64_t num_slots, bool contiguous,
                                     bool padding, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::int64_t> slots(count);
  if (contiguous) {
    std::iota(slots.begin(), slots.end(),
              static_cast<std::int64_t>(rng() % (num_slots - count + 1)));
  } else {
    std::vector<std::int64_t> all(num_slots);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng);
    std::copy(all.begin(), all.begin() + count, slots.begin());
  }
  if (padding) {
    for (std::int64_t t = 2; t < count; t += 5) slots[t] = (t % 2) ? -1 : -7;
  }
  return slots;
}

// ---------------------------------------------------------------------------------------------
// One problem: keys, slots and a poisoned cache, in host memory.

struct ProblemSpec {
  std::int64_t block_size = 64;
  std::int64_t num_tokens = 300;
  bool padding = true;            // every fifth slot is negative (-1 or -7)
  bool contiguous_slots = false;  // one run of slots (prefill) instead of random unique slots
  bool wide_rows = false;         // k a view with row pitch 512 + 64
  bool misaligned = false;        // k and cache 8 bytes past an aligned address
  bool padded_pages = true;       // page stride rounded up to a multiple of 576, as upstream
  bool three_d = false;           // the cache as [num_blocks, B, 584] instead of 2-D
  bool specials = true;           // ties, NaN, inf, zero and tiny blocks in the first tokens
  std::uint64_t seed = 1;

  std::string describe() const {
    return "block_size=" + std::to_string(block_size) + " T=" + std::to_string(num_tokens) +
           (padding ? ", padding" : "") + (contiguous_slots ? ", contiguous" : ", random") +
           (wide_rows ? ", wide rows" : "") + (misaligned ? ", misaligned" : "") +
           (padded_pages ? ", padded pages" : "") + (three_d ? ", 3-D view" : ", 2-D view") +
           (specials ? ", specials" : "");
  }
};

struct HostProblem {
  Buffer keys, cache, slots;
  std::vector<std::int64_t> slot_values;
  std::int64_t k_pitch = 0;      // elements
  std::int64_t page_stride = 0;  // bytes
  QuantizeAndInsertKCache::Args args;
};

// Special blocks, written into token rows that are never padding (padding hits 2, 7, 12, ...).
void put_specials(std::uint8_t* k, std::int64_t row_bytes, std::int64_t num_tokens) {
  if (num_tokens < 2) return;
  // Token 0: the ties, one block each: amax = 448 × 2^k exactly, one bf16 step above, below.
  const float tie = 448.f * 0.25f;  // 112 = 448 × 2^-2
  put_bf16(k, 5, tie);
  put_bf16(k, 64 + 9, -numerics::bf16_bits_to_float(numerics::float_to_bf16_bits(tie) + 1));
  put_bf16(k, 128 + 63, numerics::bf16_bits_to_float(numerics::float_to_bf16_bits(tie) - 1));
  for (std::int64_t i = 192; i < 256; ++i) put_bf16(k, i, 0.f);  // all zero
  for (std::int64_t i = 256; i < 320; ++i) put_bf16(k, i, (i % 2 ? -1.f : 1.f) * 3e-5f);  // tiny
  put_bf16(k, 320, std::numeric_limits<float>::quiet_NaN());  // ignored by the amax
  put_bf16(k, 384 + 1, 272.f);  // with a 448 beside it: the worst-case rounding, 16 × scale
  put_bf16(k, 384 + 2, 448.f);
  // Token 1: an infinite element and bf16's largest finite value.
  put_bf16(k + row_bytes, 7, std::numeric_limits<float>::infinity());
  put_bf16(k + row_bytes, 64, numerics::bf16_bits_to_float(0x7F7F));
}

HostProblem make_problem(const ProblemSpec& spec) {
  HostProblem p;
  const std::int64_t T = spec.num_tokens, B = spec.block_size;
  const std::int64_t rows = T + 2;  // rows past the slots (DP padding) are never read
  const std::int64_t shift = spec.misaligned ? 8 : 0;  // bytes
  p.k_pitch = kDim + (spec.wide_rows ? 64 : 0);
  p.keys = Buffer(Memory::host, static_cast<std::size_t>(rows * p.k_pitch * 2 + shift));
  test::fill_random(p.keys.data() + shift, DType::bf16, rows * p.k_pitch, spec.seed, 30.f);
  std::uint8_t* k = p.keys.data() + shift;
  if (spec.specials) put_specials(k, p.k_pitch * 2, T);
  p.args.k = TensorView::strided(k, DType::bf16, {rows, kDim}, {p.k_pitch, 1});

  const std::int64_t page_bytes = B * (kRecord + kScaleRecord);
  p.page_stride = spec.padded_pages ? (page_bytes + kRecord - 1) / kRecord * kRecord : page_bytes;
  const std::int64_t num_blocks = (T + B - 1) / B + 2;
  p.cache = poisoned(static_cast<std::size_t>(num_blocks * p.page_stride + shift));
  std::uint8_t* cache = p.cache.data() + shift;
  p.args.k_cache =
      spec.three_d
          ? TensorView::strided(cache, DType::u8, {num_blocks, B, 584}, {p.page_stride, 584, 1})
          : TensorView::strided(cache, DType::u8, {num_blocks, p.page_stride}, {p.page_stride, 1});
  p.slot_values =
      draw_slots(T, num_blocks * B, spec.contiguous_slots, spec.padding, spec.seed * 7919 + 17);
  p.slots = int64s(p.slot_values);
  p.args.slot_mapping = TensorView::contiguous(p.slots.data(), DType::i64, {T});
  p.args.block_size = B;
  return p;
}

Buffer expected_of(const ProblemSpec& spec, const HostProblem& p) {
  Buffer expected = copy_to(Memory::host, p.cache);
  const std::int64_t shift = spec.misaligned ? 8 : 0;
  expected_cache(expected.data() + shift, static_cast<const std::uint8_t*>(p.args.k.data),
                 p.k_pitch * 2, p.slot_values, spec.block_size, p.page_stride);
  return expected;
}

Buffer run_cpu(const HostProblem& p) {
  Buffer result = copy_to(Memory::host, p.cache);
  QuantizeAndInsertKCache::Args args = p.args;
  args.k_cache = test::rebase(args.k_cache, p.cache.data(), result.data(), Device::cpu);
  run<QuantizeAndInsertKCache>(Impl::cpu, args);
  return result;
}

// The bytes the CPU op writes for one token whose key is `key` (512 bf16 bits), B = 1.
struct OneToken {
  std::uint8_t record[kRecord];
  std::uint8_t scales[kScaleRecord];
};

OneToken insert_one(const std::vector<float>& key) {
  Buffer k(Memory::host, kDim * 2);
  for (std::int64_t i = 0; i < kDim; ++i) put_bf16(k.data(), i, key[static_cast<std::size_t>(i)]);
  Buffer cache = poisoned(kRecord + kScaleRecord);
  Buffer slot = int64s({0});
  run<QuantizeAndInsertKCache>(
      Impl::cpu, {TensorView::contiguous(k.data(), DType::bf16, {1, kDim}),
                  TensorView::contiguous(cache.data(), DType::u8, {1, 584}),
                  TensorView::contiguous(slot.data(), DType::i64, {1}), 1, true, false});
  OneToken out;
  std::memcpy(out.record, cache.data(), kRecord);
  std::memcpy(out.scales, cache.data() + kRecord, kScaleRecord);
  return out;
}

// ---------------------------------------------------------------------------------------------
// CPU reference.

TEST_CASE("quantize_and_insert_k_cache CPU: equals an independent formulation",
          "[quantize_and_insert_k_cache]") {
  ProblemSpec spec;
  spec.block_size = GENERATE(1, 2, 3, 16, 64, 256);
  spec.three_d = GENERATE(false, true);
  spec.contiguous_slots = GENERATE(false, true);
  INFO(spec.describe());
  const HostProblem p = make_problem(spec);
  CHECK(same_bytes(run_cpu(p), expected_of(spec, p), p.cache.size()));
}

TEST_CASE("quantize_and_insert_k_cache CPU: strided rows, unpadded pages, misaligned data",
          "[quantize_and_insert_k_cache]") {
  ProblemSpec spec;
  spec.wide_rows = GENERATE(false, true);
  spec.padded_pages = GENERATE(false, true);
  spec.misaligned = GENERATE(false, true);
  INFO(spec.describe());
  const HostProblem p = make_problem(spec);
  CHECK(same_bytes(run_cpu(p), expected_of(spec, p), p.cache.size()));
}

TEST_CASE("quantize_and_insert_k_cache CPU: the exponent is exact for every positive bf16",
          "[quantize_and_insert_k_cache]") {
  // Every positive finite bf16 and +inf, against the search in double.
  for (std::uint32_t bits = 0x0001; bits <= 0x7F80; ++bits) {
    const float amax = numerics::bf16_bits_to_float(static_cast<std::uint16_t>(bits));
    const int expected = reference_exponent(amax);
    INFO("amax bits 0x" << std::hex << bits);
    REQUIRE(ue8m0::exponent_for(std::max(amax, 1e-4f)) == expected);
  }
  // The range of codes: an all-zero block gives -22 (code 105, as upstream on an H200), bf16's
  // largest value 120 (code 247).
  CHECK(ue8m0::exponent_for(1e-4f) == -22);
  CHECK(ue8m0::code_of(ue8m0::exponent_for(1e-4f)) == 105);
  CHECK(ue8m0::exponent_for(numerics::bf16_bits_to_float(0x7F7F)) == 120);
  CHECK(ue8m0::code_of(120) == 247);
  // An infinite amax: code 255, and elements multiplied by 0 (x / inf, as upstream).
  CHECK(ue8m0::code_of(ue8m0::exponent_for(std::numeric_limits<float>::infinity())) == 255);
  CHECK(ue8m0::inverse_scale(128) == 0.f);
}

TEST_CASE("quantize_and_insert_k_cache CPU: ties amax = 448 × 2^k and one bf16 step either side",
          "[quantize_and_insert_k_cache]") {
  for (int k = -30; k < 30; ++k) {
    const float tie = std::ldexp(448.f, k);  // 1.75 × 2^(k+8): exact in bf16
    const std::uint16_t tie_bits = numerics::float_to_bf16_bits(tie);
    REQUIRE(numerics::bf16_bits_to_float(tie_bits) == tie);
    const float above = numerics::bf16_bits_to_float(static_cast<std::uint16_t>(tie_bits + 1));
    const float below = numerics::bf16_bits_to_float(static_cast<std::uint16_t>(tie_bits - 1));
    // The 1e-4 floor holds the exponent at -22 for the smallest amax.
    const int at = std::max(k, -22), up = std::max(k + 1, -22), down = std::max(k, -22);
    INFO("k = " << k);
    std::vector<float> key(kDim, 0.f);
    key[3] = tie;           // block 0
    key[64 + 10] = -above;  // block 1 (the sign does not matter)
    key[128 + 0] = below;   // block 2
    const OneToken token = insert_one(key);
    CHECK(static_cast<int>(token.scales[0]) - 127 == at);
    CHECK(static_cast<int>(token.scales[1]) - 127 == up);
    CHECK(static_cast<int>(token.scales[2]) - 127 == down);
    // The tie's element lands on E4M3's largest code when the floor does not bind.
    if (k >= -22) CHECK(token.record[3] == 0x7E);
    CHECK(token.scales[7] == 0);
  }
}

TEST_CASE("quantize_and_insert_k_cache CPU: all-zero blocks and tiny constants",
          "[quantize_and_insert_k_cache]") {
  std::vector<float> key(kDim, 0.f);
  for (int i = 64; i < 128; ++i) key[i] = 3e-5f;                        // under the floor: e = -22
  for (int i = 128; i < 192; ++i) key[i] = (i % 2) ? -1e-30f : 1e-30f;  // flushes to ±0
  for (int i = 448; i < 512; ++i) key[i] = 1.f + i;                     // RoPE: copied as bf16
  const OneToken token = insert_one(key);
  for (int j = 0; j < 7; ++j) CHECK(token.scales[j] == 105);  // the floor: e = -22
  for (int i = 0; i < 64; ++i) CHECK(token.record[i] == 0x00);
  // 3e-5 in bf16, times 2^22, in E4M3 (nearest even).
  const float tiny = numerics::bf16_bits_to_float(numerics::float_to_bf16_bits(3e-5f));
  for (int i = 64; i < 128; ++i)
    CHECK(token.record[i] == numerics::float_to_fp8_e4m3(tiny * std::ldexp(1.f, 22)));
  for (int i = 128; i < 192; ++i) CHECK(token.record[i] == ((i % 2) ? 0x80 : 0x00));
  for (int i = 448; i < 512; ++i) {
    std::uint16_t stored;
    std::memcpy(&stored, token.record + kNope + 2 * (i - kNope), 2);
    CHECK(stored == numerics::float_to_bf16_bits(1.f + i));
  }
  CHECK(token.scales[7] == 0);
}

TEST_CASE("quantize_and_insert_k_cache CPU: the header's worked example, byte by byte",
          "[quantize_and_insert_k_cache]") {
  // B = 64, slot 200: page 3, position 8; amax 3.5 gives e = -7 (code 120); 1.0 is 0x70.
  constexpr std::int64_t B = 64, stride = 37440, pages = 4;
  Buffer k(Memory::host, kDim * 2);
  for (std::int64_t i = 0; i < kDim; ++i) put_bf16(k.data(), i, 0.25f);
  put_bf16(k.data(), 0, 3.5f);
  put_bf16(k.data(), 1, 1.f);
  Buffer cache = poisoned(pages * stride);
  Buffer slot = int64s({200});
  run<QuantizeAndInsertKCache>(
      Impl::cpu, {TensorView::contiguous(k.data(), DType::bf16, {1, kDim}),
                  TensorView::contiguous(cache.data(), DType::u8, {pages, stride}),
                  TensorView::contiguous(slot.data(), DType::i64, {1}), B, true, false});
  const std::uint8_t* page3 = cache.data() + 3 * stride;
  CHECK(page3[4608] == numerics::float_to_fp8_e4m3(3.5f * 128.f));
  CHECK(page3[4609] == 0x70);
  CHECK(page3[36928] == 120);
  CHECK(page3[36928 + 7] == 0);
  // Nothing outside the record [4608, 5184) and the scale record [36928, 36936) changed.
  const Buffer fresh = poisoned(pages * stride);
  for (std::int64_t byte = 0; byte < pages * stride; ++byte) {
    const std::int64_t in_page = byte - 3 * stride;
    const bool written =
        (in_page >= 4608 && in_page < 5184) || (in_page >= 36928 && in_page < 36936);
    if (!written && cache.data()[byte] != fresh.data()[byte]) {
      FAIL("byte " << byte << " changed");
    }
  }
}

TEST_CASE("quantize_and_insert_k_cache CPU: negative slots (-1 and others) change nothing",
          "[quantize_and_insert_k_cache]") {
  ProblemSpec spec;
  spec.num_tokens = 20;
  HostProblem p = make_problem(spec);
  for (auto& slot : p.slot_values) slot = slot < 0 ? slot : -3;
  std::memcpy(p.slots.data(), p.slot_values.data(), p.slot_values.size() * 8);
  CHECK(same_bytes(run_cpu(p), p.cache, p.cache.size()));
}

// ---------------------------------------------------------------------------------------------
// Bad input: each rule, with nothing written.

struct ValidCall {
  static constexpr std::int64_t kBlocks = 3, kBlockSize = 4, kTokens = 4;
  static constexpr std::int64_t kPage = kBlockSize * 584;
  static constexpr std::int64_t kCacheBytes = kBlocks * kPage + 4096;

  Buffer k_data{Memory::host, kTokens* kDim * 4 + 4096};
  Buffer cache_data = poisoned(kCacheBytes);
  Buffer slot_data = int64s({0, 5, -1, 11});
  Buffer slot32_data{Memory::host, 16};

  TensorView k = TensorView::contiguous(k_data.data(), DType::bf16, {kTokens, kDim});
  TensorView k_cache = TensorView::contiguous(cache_data.data(), DType::u8, {kBlocks, kPage});
  TensorView slot_mapping = TensorView::contiguous(slot_data.data(), DType::i64, {kTokens});
  std::int64_t block_size = kBlockSize;
  bool is_ue8m0 = true;
  bool use_fnuz = false;
  Impl impl = Impl::cpu;

  ValidCall() { test::fill_random(k_data.data(), DType::bf16, kTokens * kDim, 1); }

  void call() const {
    run<QuantizeAndInsertKCache>(impl, {k, k_cache, slot_mapping, block_size, is_ue8m0, use_fnuz});
  }

  bool nothing_written() const {
    const Buffer fresh = poisoned(kCacheBytes);
    return same_bytes(cache_data, fresh, kCacheBytes);
  }
};

TEST_CASE("quantize_and_insert_k_cache: the valid call used by the rule tests passes",
          "[quantize_and_insert_k_cache]") {
  ValidCall call;
  CHECK_NOTHROW(call.call());
  CHECK_FALSE(call.nothing_written());
}

TEST_CASE("quantize_and_insert_k_cache rejects is_ue8m0 = False and use_fnuz = True",
          "[quantize_and_insert_k_cache]") {
  ValidCall call;
  SECTION("is_ue8m0") {
    call.is_ue8m0 = false;
    CHECK_REJECTED(call, "is_ue8m0");
  }
  SECTION("use_fnuz") {
    call.use_fnuz = true;
    CHECK_REJECTED(call, "use_fnuz");
  }
}

TEST_CASE("quantize_and_insert_k_cache rejects k that is not [>= T, 512] bf16 with packed rows",
          "[quantize_and_insert_k_cache]") {
  ValidCall call;
  SECTION("f16") { call.k.dtype = DType::f16; }
  SECTION("f32") { call.k.dtype = DType::f32; }
  SECTION("width 448") {
    call.k = TensorView::contiguous(call.k_data.data(), DType::bf16, {4, 448});
  }
  SECTION("width 576") {
    call.k = TensorView::contiguous(call.k_data.data(), DType::bf16, {4, 576});
  }
  SECTION("3-D") { call.k = TensorView::contiguous(call.k_data.data(), DType::bf16, {4, 1, 512}); }
  SECTION("elements not packed") {
    call.k = TensorView::strided(call.k_data.data(), DType::bf16, {4, 512}, {1024, 2});
  }
  SECTION("fewer rows than slots") {
    call.k = TensorView::contiguous(call.k_data.data(), DType::bf16, {3, 512});
  }
  CHECK_REJECTED(call, "k");
}

TEST_CASE("quantize_and_insert_k_cache rejects a cache that does not hold the pages",
          "[quantize_and_insert_k_cache]") {
  ValidCall call;
  std::uint8_t* data = call.cache_data.data();
  SECTION("not u8") { call.k_cache.dtype = DType::f8_e4m3; }
  SECTION("pages too small") {
    call.k_cache = TensorView::contiguous(data, DType::u8, {3, ValidCall::kPage - 1});
  }
  SECTION("pages overlap") {
    call.k_cache =
        TensorView::strided(data, DType::u8, {3, ValidCall::kPage}, {ValidCall::kPage - 8, 1});
  }
  SECTION("3-D view with another block size") {
    call.k_cache = TensorView::contiguous(data, DType::u8, {3, 8, 584});
  }
  SECTION("3-D view with 576 bytes per token") {
    call.k_cache = TensorView::contiguous(data, DType::u8, {3, 4, 576});
  }
  SECTION("bytes not packed") {
    call.k_cache = TensorView::strided(data, DType::u8, {3, 100}, {ValidCall::kPage, 2});
  }
  SECTION("1-D") { call.k_cache = TensorView::contiguous(data, DType::u8, {3 * ValidCall::kPage}); }
  CHECK_REJECTED(call, "k_cache");
}

TEST_CASE("quantize_and_insert_k_cache accepts the 3-D view and a padded page stride",
          "[quantize_and_insert_k_cache]") {
  ValidCall call;
  SECTION("3-D") {
    call.k_cache = TensorView::contiguous(call.cache_data.data(), DType::u8, {3, 4, 584});
  }
  SECTION("padded stride") {
    call.k_cache = TensorView::strided(call.cache_data.data(), DType::u8, {3, 4, 584},
                                       {ValidCall::kPage + 576, 584, 1});
  }
  CHECK_NOTHROW(call.call());
}

TEST_CASE("quantize_and_insert_k_cache rejects a block_size out of range",
          "[quantize_and_insert_k_cache]") {
  ValidCall call;
  call.block_size = GENERATE(0, -64, (1 << 20) + 1);
  CHECK_REJECTED(call, "block_size");
}

TEST_CASE("quantize_and_insert_k_cache rejects a slot beyond the cache",
          "[quantize_and_insert_k_cache]") {
  ValidCall call;
  reinterpret_cast<std::int64_t*>(call.slot_data.data())[3] = 12;  // 3 pages × 4 = 12 slots
  CHECK_REJECTED(call, "slot_mapping[3]");
}

TEST_CASE("quantize_and_insert_k_cache rejects an int32 or strided slot_mapping",
          "[quantize_and_insert_k_cache]") {
  ValidCall call;
  SECTION("int32") {
    call.slot_mapping = TensorView::contiguous(call.slot32_data.data(), DType::i32, {4});
  }
  SECTION("strided") {
    call.slot_mapping = TensorView::strided(call.slot_data.data(), DType::i64, {2}, {2});
    call.k = TensorView::contiguous(call.k_data.data(), DType::bf16, {2, 512});
  }
  SECTION("2-D") {
    call.slot_mapping = TensorView::contiguous(call.slot_data.data(), DType::i64, {2, 2});
  }
  CHECK_REJECTED(call, "slot_mapping");
}

TEST_CASE("quantize_and_insert_k_cache rejects a tensor on the wrong device",
          "[quantize_and_insert_k_cache]") {
  ValidCall call;
  SECTION("k") {
    call.k.device = Device::cuda;
    CHECK_REJECTED(call, "k");
  }
  SECTION("k_cache") {
    call.k_cache.device = Device::cuda;
    CHECK_REJECTED(call, "k_cache");
  }
  SECTION("slot_mapping") {
    call.slot_mapping.device = Device::cuda;
    CHECK_REJECTED(call, "slot_mapping");
  }
}

TEST_CASE("quantize_and_insert_k_cache rejects k sharing memory with the cache",
          "[quantize_and_insert_k_cache]") {
  ValidCall call;
  call.k = TensorView::contiguous(call.cache_data.data(), DType::bf16, {4, 512});
  CHECK_THROWS_AS(call.call(), InvalidArgument);
}

TEST_CASE("quantize_and_insert_k_cache with zero tokens is a no-op",
          "[quantize_and_insert_k_cache]") {
  ValidCall call;
  call.slot_mapping = TensorView::contiguous(nullptr, DType::i64, {0});
  SECTION("k with rows") {}
  SECTION("k empty") { call.k = TensorView::contiguous(nullptr, DType::bf16, {0, 512}); }
  CHECK_NOTHROW(call.call());
  CHECK(call.nothing_written());
}

// ---------------------------------------------------------------------------------------------
// GPU: CPU reference vs naive vs optimized, byte for byte over whole poisoned caches.

Buffer run_on_device(Impl impl, const HostProblem& p) {
  const Buffer keys = copy_to(Memory::device, p.keys);
  const Buffer cache = copy_to(Memory::device, p.cache);
  const Buffer slots = copy_to(Memory::device, p.slots);
  QuantizeAndInsertKCache::Args args = p.args;
  args.k = test::rebase(p.args.k, p.keys.data(), keys.data(), Device::cuda);
  args.k_cache = test::rebase(p.args.k_cache, p.cache.data(), cache.data(), Device::cuda);
  args.slot_mapping = test::rebase(p.args.slot_mapping, p.slots.data(), slots.data(), Device::cuda);
  run<QuantizeAndInsertKCache>(impl, args);
  PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  Buffer result(Memory::host, p.cache.size());
  cache.download(result.data(), p.cache.size());
  return result;
}

void check_three_way(const ProblemSpec& spec) {
  INFO(spec.describe());
  const HostProblem problem = make_problem(spec);
  const Buffer expected = run_cpu(problem);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    const Buffer actual = run_on_device(impl, problem);
    CHECK(same_bytes(actual, expected, problem.cache.size()));
  }
}

TEST_CASE("quantize_and_insert_k_cache GPU: block sizes × cache views × slot patterns",
          "[quantize_and_insert_k_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.block_size = GENERATE(1, 2, 3, 16, 64, 256);
  spec.three_d = GENERATE(false, true);
  spec.contiguous_slots = GENERATE(false, true);
  check_three_way(spec);
}

TEST_CASE("quantize_and_insert_k_cache GPU: layouts (wide rows, unpadded pages, misaligned)",
          "[quantize_and_insert_k_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.wide_rows = GENERATE(false, true);
  spec.padded_pages = GENERATE(false, true);
  spec.misaligned = GENERATE(false, true);  // the optimized version falls back to the naive one
  check_three_way(spec);
}

TEST_CASE("quantize_and_insert_k_cache GPU: token counts × padding",
          "[quantize_and_insert_k_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.num_tokens = GENERATE(1, 2, 7, 9, 300, 5000, 70000);
  spec.padding = GENERATE(false, true);
  spec.seed = static_cast<std::uint64_t>(spec.num_tokens);
  check_three_way(spec);
}

TEST_CASE("quantize_and_insert_k_cache GPU: every exponent tie, byte for byte",
          "[quantize_and_insert_k_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  // One token per k in [-30, 30): blocks 0..2 hold the tie, one step above and one below.
  ProblemSpec spec;
  spec.num_tokens = 60;
  spec.padding = false;
  spec.specials = false;
  HostProblem p = make_problem(spec);
  auto* k = const_cast<std::uint8_t*>(static_cast<const std::uint8_t*>(p.args.k.data));
  for (int t = 0; t < 60; ++t) {
    std::uint8_t* row = k + t * p.k_pitch * 2;
    const float tie = std::ldexp(448.f, t - 30);
    const std::uint16_t bits = numerics::float_to_bf16_bits(tie);
    for (int i = 0; i < 448; ++i) put_bf16(row, i, tie * 0.001f);
    put_bf16(row, 3, tie);
    put_bf16(row, 64 + 3, numerics::bf16_bits_to_float(static_cast<std::uint16_t>(bits + 1)));
    put_bf16(row, 128 + 3, numerics::bf16_bits_to_float(static_cast<std::uint16_t>(bits - 1)));
  }
  const Buffer expected = run_cpu(p);
  CHECK(same_bytes(expected, expected_of(spec, p), p.cache.size()));
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    CHECK(same_bytes(run_on_device(impl, p), expected, p.cache.size()));
  }
}

TEST_CASE("quantize_and_insert_k_cache GPU: a slot beyond the cache is rejected, nothing written",
          "[quantize_and_insert_k_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.num_tokens = 40;
  HostProblem p = make_problem(spec);
  const std::int64_t num_slots = p.args.k_cache.size(0) * spec.block_size;
  reinterpret_cast<std::int64_t*>(p.slots.data())[17] = num_slots;
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    CHECK_THROWS_WITH(run_on_device(impl, p), Contains("slot_mapping[17]"));
  }
}

}  // namespace
