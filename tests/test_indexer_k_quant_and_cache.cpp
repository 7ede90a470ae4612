// indexer_k_quant_and_cache: the CPU reference against an independent formulation (per-tile
// amax, scale, E4M3 bytes, the block-planar layout written out again here), the worked example
// of the header, the decode bound, padding and bad input on the CPU; on a GPU, the naive and
// optimized kernels against the CPU reference byte for byte over whole poisoned caches.
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
#include "pagedkv/ops/indexer_k_quant_and_cache.h"
#include "support.h"

namespace {

using namespace pagedkv;
using Catch::Matchers::Contains;
using test::int64s;
using test::poisoned;
using test::same_bytes;

// ---------------------------------------------------------------------------------------------
// An independent formulation of the op, for the CPU tests.

float key_value(const std::uint8_t* key, std::int64_t i, DType dtype) {
  std::uint16_t bits;
  std::memcpy(&bits, key + 2 * i, 2);
  return dtype == DType::bf16 ? numerics::bf16_bits_to_float(bits)
                              : numerics::half_bits_to_float(bits);
}

// The smallest power of two >= s, through frexp: s = m · 2^e with m in [0.5, 1); s is a power
// of two exactly when m == 0.5.
float power_of_two_at_least(float s) {
  if (!std::isfinite(s)) return s;
  int exponent = 0;
  const float mantissa = std::frexp(s, &exponent);
  return mantissa == 0.5f ? s : std::ldexp(1.f, exponent);
}

// Where a slot's codes and scales are: the block's code plane, then its scale plane.
struct SlotAddress {
  std::int64_t codes;   // byte offset of the slot's first code in the cache
  std::int64_t scales;  // byte offset of the slot's first scale
};

SlotAddress slot_address(std::int64_t slot, std::int64_t block_size, std::int64_t head_dim,
                         std::int64_t block_stride) {
  const std::int64_t tiles = head_dim / 128;
  const std::int64_t block = slot / block_size, o = slot % block_size;
  const std::int64_t base = block * block_stride;
  return {base + o * head_dim, base + block_size * head_dim + o * tiles * 4};
}

// Writes the expected bytes of every token into `cache` (a copy of the poisoned cache).
void expected_cache(std::uint8_t* cache, const std::uint8_t* k, std::int64_t k_pitch_bytes,
                    DType dtype, const std::vector<std::int64_t>& slots, std::int64_t num_tokens,
                    std::int64_t head_dim, std::int64_t block_size, std::int64_t block_stride,
                    bool ue8m0) {
  for (std::int64_t t = 0; t < num_tokens; ++t) {
    if (slots[t] < 0) continue;
    const SlotAddress at = slot_address(slots[t], block_size, head_dim, block_stride);
    for (std::int64_t g = 0; g < head_dim / 128; ++g) {
      const std::uint8_t* key = k + t * k_pitch_bytes + g * 128 * 2;
      double amax = 0;  // in double: the max of exact values is exact anyway
      for (int i = 0; i < 128; ++i) {
        const float v = key_value(key, i, dtype);
        if (!std::isnan(v)) amax = std::max(amax, static_cast<double>(std::fabs(v)));
      }
      float scale = std::max(static_cast<float>(amax), 1e-4f) / 448.f;
      if (ue8m0) scale = power_of_two_at_least(scale);
      for (int i = 0; i < 128; ++i) {
        cache[at.codes + g * 128 + i] =
            numerics::float_to_fp8_e4m3(key_value(key, i, dtype) / scale);
      }
      std::memcpy(cache + at.scales + 4 * g, &scale, 4);
    }
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
    for (std::int64_t t = 2; t < count; t += 5) slots[t] = -1;
  }
  return slots;
}

void put_key(std::uint8_t* key, std::int64_t i, float value, DType dtype) {
  const std::uint16_t bits = dtype == DType::bf16 ? numerics::float_to_bf16_bits(value)
                                                  : numerics::float_to_half_bits(value);
  std::memcpy(key + 2 * i, &bits, 2);
}

// ---------------------------------------------------------------------------------------------
// One problem: keys, slots and a poisoned cache, in host memory.

struct ProblemSpec {
  DType dtype = DType::bf16;
  bool ue8m0 = false;
  std::int64_t head_dim = 128;
  std::int64_t block_size = 64;
  std::int64_t num_tokens = 300;
  bool padding = true;            // every fifth slot is -1
  bool contiguous_slots = false;  // one run of slots (prefill) instead of random unique slots
  bool wide_rows = false;         // k a view with row pitch head_dim + 64 (rows not packed)
  bool misaligned = false;        // k and cache 4 bytes past an aligned address
  bool padded_blocks = false;     // block stride 16 bytes more than a block
  bool specials = true;           // inf, NaN, a zero tile and tiny values in the first tokens
  std::uint64_t seed = 1;

  std::string describe() const {
    return std::string(dtype_name(dtype)) + (ue8m0 ? " ue8m0" : " fp32 scale") +
           " head_dim=" + std::to_string(head_dim) + " block_size=" + std::to_string(block_size) +
           " T=" + std::to_string(num_tokens) + (padding ? ", padding" : "") +
           (contiguous_slots ? ", contiguous" : ", random") + (wide_rows ? ", wide rows" : "") +
           (misaligned ? ", misaligned" : "") + (padded_blocks ? ", padded blocks" : "") +
           (specials ? ", specials" : "");
  }
};

struct HostProblem {
  Buffer keys, cache, slots;
  std::vector<std::int64_t> slot_values;
  std::int64_t k_pitch = 0;       // elements
  std::int64_t block_stride = 0;  // bytes
  IndexerKQuantAndCache::Args args;
};

HostProblem make_problem(const ProblemSpec& spec) {
  HostProblem p;
  const std::int64_t T = spec.num_tokens, D = spec.head_dim, B = spec.block_size;
  const std::int64_t rows = T + 2;  // CUDA-graph padding rows past the slots are never read
  const std::int64_t shift = spec.misaligned ? 4 : 0;  // bytes
  p.k_pitch = D + (spec.wide_rows ? 64 : 0);
  p.keys = Buffer(Memory::host, static_cast<std::size_t>(rows * p.k_pitch * 2 + shift));
  test::fill_random(p.keys.data() + shift, spec.dtype, rows * p.k_pitch, spec.seed, 30.f);
  std::uint8_t* k = p.keys.data() + shift;
  // Special keys, on tokens that are never padding (padding hits tokens 2, 7, 12, ...): a NaN
  // (ignored by the amax, stored as NaN), an inf (scale inf, codes 0 and NaN), an all-zero
  // tile and one whose amax is under the 1e-4 floor.
  if (spec.specials && T >= 5) {
    const std::int64_t row = p.k_pitch * 2;  // bytes
    put_key(k, 3, std::numeric_limits<float>::quiet_NaN(), spec.dtype);
    put_key(k + row, 5, std::numeric_limits<float>::infinity(), spec.dtype);
    for (std::int64_t i = 0; i < D; ++i) put_key(k + 3 * row, i, 0.f, spec.dtype);
    for (std::int64_t i = 0; i < D; ++i)
      put_key(k + 4 * row, i, (i % 2 ? -1.f : 1.f) * 3e-5f, spec.dtype);
  }
  p.args.k = TensorView::strided(k, spec.dtype, {rows, D}, {p.k_pitch, 1});
  p.args.k.shape[0] = T;  // k has exactly T rows: T = k.size(0)

  const std::int64_t slot_bytes = D + 4 * (D / 128);
  p.block_stride = B * slot_bytes + (spec.padded_blocks ? 16 : 0);
  const std::int64_t num_blocks = (T + B - 1) / B + 2;
  p.cache = poisoned(static_cast<std::size_t>(num_blocks * p.block_stride + shift));
  p.args.kv_cache =
      TensorView::strided(p.cache.data() + shift, DType::u8, {num_blocks, B, slot_bytes},
                          {p.block_stride, slot_bytes, 1});
  p.slot_values =
      draw_slots(T, num_blocks * B, spec.contiguous_slots, spec.padding, spec.seed * 7919 + 17);
  p.slots = int64s(p.slot_values);
  p.args.slot_mapping = TensorView::contiguous(p.slots.data(), DType::i64, {T});
  p.args.quant_block_size = 128;
  p.args.kv_cache_dtype = spec.ue8m0 ? "ue8m0" : "";
  return p;
}

// The expected cache of a problem, from the independent formulation.
Buffer expected_of(const ProblemSpec& spec, const HostProblem& p) {
  Buffer expected = copy_to(Memory::host, p.cache);
  const std::int64_t shift = spec.misaligned ? 4 : 0;
  expected_cache(expected.data() + shift, static_cast<const std::uint8_t*>(p.args.k.data),
                 p.k_pitch * 2, spec.dtype, p.slot_values, spec.num_tokens, spec.head_dim,
                 spec.block_size, p.block_stride, spec.ue8m0);
  return expected;
}

Buffer run_cpu(const HostProblem& p) {
  Buffer result = copy_to(Memory::host, p.cache);
  IndexerKQuantAndCache::Args args = p.args;
  args.kv_cache = test::rebase(args.kv_cache, p.cache.data(), result.data(), Device::cpu);
  run<IndexerKQuantAndCache>(Impl::cpu, args);
  return result;
}

// ---------------------------------------------------------------------------------------------
// CPU reference.

TEST_CASE("indexer_k_quant_and_cache CPU: equals an independent formulation",
          "[indexer_k_quant_and_cache]") {
  ProblemSpec spec;
  spec.dtype = GENERATE(DType::bf16, DType::f16);
  spec.ue8m0 = GENERATE(false, true);
  spec.head_dim = GENERATE(128, 256);
  spec.block_size = GENERATE(1, 16, 64);
  spec.contiguous_slots = GENERATE(false, true);
  spec.num_tokens = 97;
  INFO(spec.describe());
  const HostProblem p = make_problem(spec);
  const Buffer expected = expected_of(spec, p);
  CHECK(same_bytes(run_cpu(p), expected, p.cache.size()));
}

TEST_CASE("indexer_k_quant_and_cache CPU: strided rows and padded blocks",
          "[indexer_k_quant_and_cache]") {
  ProblemSpec spec;
  spec.wide_rows = GENERATE(false, true);
  spec.padded_blocks = GENERATE(false, true);
  spec.misaligned = GENERATE(false, true);
  INFO(spec.describe());
  const HostProblem p = make_problem(spec);
  CHECK(same_bytes(run_cpu(p), expected_of(spec, p), p.cache.size()));
}

TEST_CASE("indexer_k_quant_and_cache CPU: the header's worked example, byte by byte",
          "[indexer_k_quant_and_cache]") {
  // head_dim 128, block_size 64, slot 200 = block 3, offset 8; amax 3.5 gives the scale 2^-7.
  std::vector<float> key(128, 0.5f);
  key[0] = 1.f;
  key[1] = -3.5f;
  Buffer k_data(Memory::host, 256);
  for (int i = 0; i < 128; ++i) put_key(k_data.data(), i, key[i], DType::bf16);
  const std::int64_t cache_bytes = 4 * 64 * 132;
  Buffer cache = poisoned(cache_bytes);
  Buffer fresh = poisoned(cache_bytes);
  Buffer slot = int64s({200});
  for (const char* format : {"", "ue8m0"}) {
    run<IndexerKQuantAndCache>(Impl::cpu,
                               {TensorView::contiguous(k_data.data(), DType::bf16, {1, 128}),
                                TensorView::contiguous(cache.data(), DType::u8, {4, 64, 132}),
                                TensorView::contiguous(slot.data(), DType::i64, {1}), 128, format});
    const std::uint8_t* block3 = cache.data() + 3 * 64 * 132;
    CHECK(block3[1024] == 0x70);  // E4M3(1.0 / 2^-7) = E4M3(128)
    CHECK(block3[1025] == 0xFE);  // E4M3(-448): the amax maps to -448 exactly
    CHECK(block3[1026] == 0x68);  // E4M3(64)
    float scale;
    std::memcpy(&scale, block3 + 64 * 128 + 8 * 4, 4);
    CHECK(scale == 0.0078125f);
    // Every other byte is untouched: the 128 codes and the 4 scale bytes are all it writes.
    for (std::int64_t i = 0; i < cache_bytes; ++i) {
      const std::int64_t in_block3 = i - 3 * 64 * 132;
      const bool written = (in_block3 >= 1024 && in_block3 < 1152) ||
                           (in_block3 >= 8192 + 32 && in_block3 < 8192 + 36);
      if (!written && cache.data()[i] != fresh.data()[i]) FAIL("byte " << i << " was written");
    }
  }
}

TEST_CASE("indexer_k_quant_and_cache CPU: ue8m0 scales are the powers of two just above",
          "[indexer_k_quant_and_cache]") {
  ProblemSpec spec;
  spec.ue8m0 = true;
  spec.padding = false;
  spec.specials = false;
  spec.num_tokens = 200;
  const HostProblem p = make_problem(spec);
  const Buffer cache = run_cpu(p);
  for (std::int64_t t = 0; t < spec.num_tokens; ++t) {
    const SlotAddress at = slot_address(p.slot_values[t], 64, 128, p.block_stride);
    float scale;
    std::memcpy(&scale, cache.data() + at.scales, 4);
    double amax = 0;
    for (int i = 0; i < 128; ++i)
      amax = std::max(
          amax, std::fabs(static_cast<double>(key_value(
                    static_cast<const std::uint8_t*>(p.args.k.data) + t * 256, i, DType::bf16))));
    const double plain = std::max(amax, 1e-4) / 448.0;
    int exponent = 0;
    CHECK(std::frexp(scale, &exponent) == 0.5f);  // a power of two
    CHECK(scale >= plain * (1 - 1e-7));           // never below the fp32 scale ...
    CHECK(scale < 2 * plain);                     // ... and less than one octave above
  }
}

TEST_CASE(
    "indexer_k_quant_and_cache: for every 16-bit amax, the exact ue8m0 rounding equals "
    "upstream's exp2f(ceilf(log2f(scale)))",
    "[indexer_k_quant_and_cache]") {
  // Upstream's float formula can only go wrong for a scale less than 2^-18 (relative) above a
  // power of two (log2f then rounds to the integer). A scale is max(amax, 1e-4) / 448 with amax
  // a bf16 or f16 value: 16-bit values near 1.75 · 2^m are more than 2^-11 apart (relative),
  // so no scale comes that close, and the exact rounding (the test's frexp formulation) gives
  // the same power of two for all.
  std::int64_t checked = 0;
  for (std::uint32_t bits = 0; bits < 0x10000; ++bits) {
    for (DType dtype : {DType::bf16, DType::f16}) {
      const auto b = static_cast<std::uint16_t>(bits);
      const float amax =
          dtype == DType::bf16 ? numerics::bf16_bits_to_float(b) : numerics::half_bits_to_float(b);
      if (!(amax >= 0.f) || !std::isfinite(amax)) continue;  // amax is |x|: finite, not NaN
      const float scale = std::max(amax, 1e-4f) / 448.f;
      const float upstream = std::exp2f(std::ceil(std::log2f(scale)));
      if (power_of_two_at_least(scale) != upstream)
        FAIL(dtype_name(dtype) << " amax " << amax << ": " << power_of_two_at_least(scale) << " vs "
                               << upstream);
      ++checked;
    }
  }
  CHECK(checked > 60000);
}

TEST_CASE("indexer_k_quant_and_cache round trip: codes × scale give back k within E4M3's bound",
          "[indexer_k_quant_and_cache]") {
  ProblemSpec spec;
  spec.dtype = GENERATE(DType::bf16, DType::f16);
  spec.ue8m0 = GENERATE(false, true);
  spec.head_dim = 256;
  spec.padding = false;
  spec.specials = false;
  spec.num_tokens = 150;
  INFO(spec.describe());
  const HostProblem p = make_problem(spec);
  const Buffer cache = run_cpu(p);
  const auto* k = static_cast<const std::uint8_t*>(p.args.k.data);
  for (std::int64_t t = 0; t < spec.num_tokens; ++t) {
    const SlotAddress at = slot_address(p.slot_values[t], 64, 256, p.block_stride);
    for (int g = 0; g < 2; ++g) {
      float scale;
      std::memcpy(&scale, cache.data() + at.scales + 4 * g, 4);
      for (int i = 0; i < 128; ++i) {
        const double x = key_value(k + t * p.k_pitch * 2 + g * 256, i, spec.dtype);
        const double decoded =
            numerics::fp8_e4m3_to_float(cache.data()[at.codes + 128 * g + i]) * scale;
        // E4M3 keeps 3 mantissa bits: half an ulp is 2^-4 of the value for normals, and half
        // the smallest subnormal (2^-10) times the scale below them. |x| / scale <= 448: no
        // value saturates, ue8m0 or not.
        const double bound =
            std::max(std::fabs(x) / 16.0, std::ldexp(static_cast<double>(scale), -10));
        if (std::fabs(decoded - x) > bound)
          FAIL("token " << t << " element " << 128 * g + i << ": " << x << " decoded as "
                        << decoded);
      }
    }
  }
}

TEST_CASE("indexer_k_quant_and_cache: tokens whose slot is negative change nothing",
          "[indexer_k_quant_and_cache]") {
  ProblemSpec spec;
  spec.num_tokens = 40;
  HostProblem p = make_problem(spec);
  SECTION("every slot padding: the cache is untouched") {
    std::fill(p.slot_values.begin(), p.slot_values.end(), -1);
    p.slots = int64s(p.slot_values);
    p.args.slot_mapping = TensorView::contiguous(p.slots.data(), DType::i64, {spec.num_tokens});
    CHECK(same_bytes(run_cpu(p), p.cache, p.cache.size()));
  }
  SECTION("padding tokens leave their would-be slots alone") {
    const Buffer with = run_cpu(p);
    CHECK(p.slot_values[2] == -1);
    CHECK(same_bytes(with, expected_of(spec, p), p.cache.size()));
    std::int64_t written = 0;
    for (std::size_t i = 0; i < p.cache.size(); ++i) written += with.data()[i] != p.cache.data()[i];
    // 32 of 40 tokens are real (every fifth from token 2 is padding): at most 32 slots of 132
    // bytes change (fewer where a code happens to equal the poison byte there).
    CHECK(written <= 32 * 132);
    CHECK(written > 32 * 100);
  }
}

TEST_CASE("indexer_k_quant_and_cache: slot_mapping entries past k.size(0) are not read",
          "[indexer_k_quant_and_cache]") {
  ProblemSpec spec;
  spec.num_tokens = 20;
  HostProblem p = make_problem(spec);
  const Buffer expected = expected_of(spec, p);
  std::vector<std::int64_t> longer = p.slot_values;
  longer.push_back(1 << 30);  // far past the cache: would be rejected if it were read
  longer.push_back(0);
  Buffer slots = int64s(longer);
  p.args.slot_mapping = TensorView::contiguous(slots.data(), DType::i64, {22});
  CHECK(same_bytes(run_cpu(p), expected, p.cache.size()));
}

// ---------------------------------------------------------------------------------------------
// Bad input: each rule, with nothing written.

struct ValidCall {
  static constexpr std::int64_t kBlocks = 3, kBlockSize = 4, kTokens = 4;
  static constexpr std::int64_t kCacheBytes = kBlocks * kBlockSize * 264 + 64;  // room for 256

  Buffer k_data{Memory::host, kTokens * 256 * 4};
  Buffer cache_data = poisoned(kCacheBytes);
  Buffer slot_data = int64s({0, 5, -1, 11});
  Buffer slot32_data{Memory::host, 16};

  TensorView k = TensorView::contiguous(k_data.data(), DType::bf16, {kTokens, 128});
  TensorView kv_cache =
      TensorView::contiguous(cache_data.data(), DType::u8, {kBlocks, kBlockSize, 132});
  TensorView slot_mapping = TensorView::contiguous(slot_data.data(), DType::i64, {kTokens});
  std::int64_t quant_block_size = 128;
  std::string kv_cache_dtype = "ue8m0";
  Impl impl = Impl::cpu;

  ValidCall() { test::fill_random(k_data.data(), DType::bf16, kTokens * 256 * 2, 1); }

  void call() const {
    run<IndexerKQuantAndCache>(impl, {k, kv_cache, slot_mapping, quant_block_size, kv_cache_dtype});
  }

  bool nothing_written() const {
    const Buffer fresh = poisoned(kCacheBytes);
    return same_bytes(cache_data, fresh, kCacheBytes);
  }
};

TEST_CASE("indexer_k_quant_and_cache: the valid call used by the rule tests passes",
          "[indexer_k_quant_and_cache]") {
  ValidCall call;
  CHECK_NOTHROW(call.call());
  CHECK_FALSE(call.nothing_written());
}

TEST_CASE("indexer_k_quant_and_cache accepts any scale format string",
          "[indexer_k_quant_and_cache]") {
  ValidCall call;
  call.kv_cache_dtype = GENERATE("", "ue8m0", "fp8_e4m3", "float32");
  CHECK_NOTHROW(call.call());
}

TEST_CASE("indexer_k_quant_and_cache rejects a quant_block_size other than 128",
          "[indexer_k_quant_and_cache]") {
  ValidCall call;
  call.quant_block_size = GENERATE(64, 256, 0, -128, 129);
  CHECK_REJECTED(call, "quant_block_size");
}

TEST_CASE("indexer_k_quant_and_cache rejects a head_dim that is not a multiple of 128",
          "[indexer_k_quant_and_cache]") {
  ValidCall call;
  const std::int64_t head_dim = GENERATE(64, 192, 0, 130);
  call.k = TensorView::contiguous(call.k_data.data(), DType::bf16, {4, head_dim});
  CHECK_REJECTED(call, "k: head_dim");
}

TEST_CASE("indexer_k_quant_and_cache rejects f32 keys and keys that are not 2-D or packed",
          "[indexer_k_quant_and_cache]") {
  ValidCall call;
  SECTION("f32") {
    call.k.dtype = DType::f32;
    CHECK_REJECTED(call, "k: expected dtype bf16 or f16");
  }
  SECTION("u8") {
    call.k.dtype = DType::u8;
    CHECK_REJECTED(call, "k");
  }
  SECTION("3-D") {
    call.k = TensorView::contiguous(call.k_data.data(), DType::bf16, {4, 1, 128});
    CHECK_REJECTED(call, "k");
  }
  SECTION("elements not packed") {
    call.k = TensorView::strided(call.k_data.data(), DType::bf16, {4, 128}, {256, 2});
    CHECK_REJECTED(call, "k");
  }
}

TEST_CASE("indexer_k_quant_and_cache rejects a cache that is not the block-planar layout",
          "[indexer_k_quant_and_cache]") {
  ValidCall call;
  auto* data = call.cache_data.data();
  SECTION("131 bytes per slot") {
    call.kv_cache = TensorView::contiguous(data, DType::u8, {3, 4, 131});
    CHECK_REJECTED(call, "kv_cache: size(2) must be");
  }
  SECTION("133 bytes per slot") {
    call.kv_cache = TensorView::contiguous(data, DType::u8, {3, 4, 133});
    CHECK_REJECTED(call, "kv_cache: size(2) must be");
  }
  SECTION("a 256-element key in a 132-byte cache") {
    call.k = TensorView::contiguous(call.k_data.data(), DType::bf16, {4, 256});
    CHECK_REJECTED(call, "264");
  }
  SECTION("2-D") {
    call.kv_cache = TensorView::contiguous(data, DType::u8, {3, 528});
    CHECK_REJECTED(call, "kv_cache");
  }
  SECTION("bf16 cache") {
    call.kv_cache = TensorView::contiguous(data, DType::bf16, {3, 4, 132});
    CHECK_REJECTED(call, "kv_cache");
  }
  SECTION("slots not packed (a record per slot with a pitch)") {
    call.kv_cache = TensorView::strided(data, DType::u8, {3, 4, 132}, {4 * 136, 136, 1});
    CHECK_REJECTED(call, "kv_cache");
  }
  SECTION("blocks overlap") {
    call.kv_cache = TensorView::strided(data, DType::u8, {3, 4, 132}, {4 * 132 - 4, 132, 1});
    CHECK_REJECTED(call, "kv_cache: blocks overlap");
  }
  SECTION("block stride not a multiple of 4 bytes") {
    call.kv_cache = TensorView::strided(data, DType::u8, {3, 4, 132}, {4 * 132 + 2, 132, 1});
    CHECK_REJECTED(call, "kv_cache");
  }
  SECTION("base not 4-byte aligned") {
    call.kv_cache = TensorView::contiguous(data + 1, DType::u8, {3, 4, 132});
    CHECK_REJECTED(call, "kv_cache");
  }
}

TEST_CASE("indexer_k_quant_and_cache accepts a padded block stride and an f8_e4m3 cache",
          "[indexer_k_quant_and_cache]") {
  ValidCall call;
  SECTION("padded blocks") {
    call.kv_cache =
        TensorView::strided(call.cache_data.data(), DType::u8, {3, 4, 132}, {4 * 132 + 32, 132, 1});
  }
  SECTION("f8_e4m3") { call.kv_cache.dtype = DType::f8_e4m3; }
  CHECK_NOTHROW(call.call());
}

TEST_CASE("indexer_k_quant_and_cache rejects a slot beyond the cache",
          "[indexer_k_quant_and_cache]") {
  ValidCall call;
  reinterpret_cast<std::int64_t*>(call.slot_data.data())[1] = 12;  // 3 blocks × 4 slots
  CHECK_REJECTED(call, "slot_mapping[1] = 12");
}

TEST_CASE("indexer_k_quant_and_cache rejects an int32, short or strided slot_mapping",
          "[indexer_k_quant_and_cache]") {
  ValidCall call;
  SECTION("int32") {
    call.slot_mapping = TensorView::contiguous(call.slot32_data.data(), DType::i32, {4});
    CHECK_REJECTED(call, "slot_mapping");
    CHECK_THROWS_WITH(call.call(), Contains("i64"));
  }
  SECTION("fewer slots than keys") {
    call.slot_mapping.shape[0] = 3;
    CHECK_REJECTED(call, "slot_mapping.size(0): expected at least 4");
  }
  SECTION("strided") {
    call.slot_mapping = TensorView::strided(call.slot_data.data(), DType::i64, {4}, {2});
    CHECK_REJECTED(call, "slot_mapping");
  }
  SECTION("2-D") {
    call.slot_mapping = TensorView::contiguous(call.slot_data.data(), DType::i64, {4, 1});
    CHECK_REJECTED(call, "slot_mapping");
  }
}

TEST_CASE("indexer_k_quant_and_cache rejects a tensor on the wrong device",
          "[indexer_k_quant_and_cache]") {
  ValidCall call;
  SECTION("CPU reference given a CUDA k") {
    call.k.device = Device::cuda;
    CHECK_REJECTED(call, "k");
  }
  SECTION("naive given host tensors") {
    call.impl = Impl::naive;
    CHECK_REJECTED(call, "k");
  }
  SECTION("optimized given a host cache") {
    call.impl = Impl::optimized;
    call.k.device = Device::cuda;
    CHECK_REJECTED(call, "kv_cache");
  }
}

TEST_CASE("indexer_k_quant_and_cache rejects null data pointers", "[indexer_k_quant_and_cache]") {
  ValidCall call;
  SECTION("k") {
    call.k.data = nullptr;
    CHECK_REJECTED(call, "k");
  }
  SECTION("kv_cache") {
    call.kv_cache.data = nullptr;
    CHECK_REJECTED(call, "kv_cache");
  }
  SECTION("slot_mapping") {
    call.slot_mapping.data = nullptr;
    CHECK_REJECTED(call, "slot_mapping");
  }
}

TEST_CASE("indexer_k_quant_and_cache with zero tokens is a no-op", "[indexer_k_quant_and_cache]") {
  ValidCall call;
  call.k = TensorView::contiguous(nullptr, DType::bf16, {0, 128});
  SECTION("an empty slot_mapping") {
    call.slot_mapping = TensorView::contiguous(nullptr, DType::i64, {0});
  }
  SECTION("a slot_mapping with entries") {}
  CHECK_NOTHROW(call.call());
  CHECK(call.nothing_written());
}

// ---------------------------------------------------------------------------------------------
// GPU: CPU reference vs naive vs optimized, byte for byte over whole poisoned caches.

Buffer run_on_device(Impl impl, const HostProblem& p) {
  const Buffer keys = copy_to(Memory::device, p.keys);
  const Buffer cache = copy_to(Memory::device, p.cache);
  const Buffer slots = copy_to(Memory::device, p.slots);
  IndexerKQuantAndCache::Args args = p.args;
  args.k = test::rebase(p.args.k, p.keys.data(), keys.data(), Device::cuda);
  args.kv_cache = test::rebase(p.args.kv_cache, p.cache.data(), cache.data(), Device::cuda);
  args.slot_mapping = test::rebase(p.args.slot_mapping, p.slots.data(), slots.data(), Device::cuda);
  run<IndexerKQuantAndCache>(impl, args);
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

TEST_CASE("indexer_k_quant_and_cache GPU: dtypes × scale formats × head_dim × block_size",
          "[indexer_k_quant_and_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.dtype = GENERATE(DType::bf16, DType::f16);
  spec.ue8m0 = GENERATE(false, true);
  spec.head_dim = GENERATE(128, 256, 512);
  spec.block_size = GENERATE(1, 16, 64);
  check_three_way(spec);
}

TEST_CASE("indexer_k_quant_and_cache GPU: layouts (wide rows, padded blocks, misaligned)",
          "[indexer_k_quant_and_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.wide_rows = GENERATE(false, true);
  spec.padded_blocks = GENERATE(false, true);
  spec.misaligned = GENERATE(false, true);  // the optimized version falls back to the naive one
  spec.ue8m0 = GENERATE(false, true);
  check_three_way(spec);
}

TEST_CASE("indexer_k_quant_and_cache GPU: token counts × slot patterns × padding",
          "[indexer_k_quant_and_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.num_tokens = GENERATE(1, 3, 5, 7, 300, 2000, 20000);
  spec.contiguous_slots = GENERATE(false, true);
  spec.padding = GENERATE(false, true);
  spec.block_size = GENERATE(16, 64);
  spec.seed = static_cast<std::uint64_t>(spec.num_tokens);
  check_three_way(spec);
}

TEST_CASE("indexer_k_quant_and_cache GPU: a slot beyond the cache is rejected, nothing written",
          "[indexer_k_quant_and_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.num_tokens = 40;
  HostProblem p = make_problem(spec);
  const std::int64_t num_slots = p.args.kv_cache.size(0) * p.args.kv_cache.size(1);
  reinterpret_cast<std::int64_t*>(p.slots.data())[17] = num_slots;
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    CHECK_THROWS_WITH(run_on_device(impl, p), Contains("slot_mapping[17]"));
  }
}

}  // namespace
