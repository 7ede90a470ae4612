// Tests of the optimized reshape_and_cache_flash's fp8 conversion: a true fp32 division per value
// (as upstream) and two values per conversion instruction (kernels/common/fp8_pair.cuh). The
// bytes must be exactly those of the CPU numerics, `float_to_fp8_*(x / scale)`, for every input.
//
// All tests here are [gpu]:
//   1. every bf16 and fp16 value × 30 scales (typical ones; 2^±32, 2^±60; subnormal, huge, zero,
//      negative, inf and NaN scales; the scales whose reciprocal rounds worst): the device
//      quotient has the bits of the CPU's `x / scale`, and the paired E4M3 / E5M2 bytes are the
//      CPU numerics' bytes of that quotient;
//   2. 10.5 M random fp32 values and scales, the same checks;
//   3. the whole op: all 65,536 bf16 and fp16 bit patterns (and 131,072 random fp32 bit
//      patterns) written by the optimized (and naive) reshape_and_cache_flash into E4M3 and E5M2
//      caches with per-tensor and per-head scales (zero, negative and NaN ones too),
//      byte-identical to the CPU reference.
//
// Comparisons are on bit patterns: 0.0 == -0.0 and NaN != NaN would hide exactly the cases that
// matter. NaN quotients only have to be NaN (both encoders map every NaN to the byte 0x7F).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gpu/fp8_pair_device.h"
#include "numerics.h"
#include "pagedkv/ops/reshape_and_cache_flash.h"
#include "support.h"

namespace {

using namespace pagedkv;

using test::bits_of;
using test::float_of;

bool is_nan(float value) { return value != value; }

// Counts mismatches and remembers the first few, for one readable failure message.
struct Mismatches {
  std::string what;
  std::uint64_t count = 0;
  std::string first;
  void note(std::int64_t index, float value, float scale, std::uint32_t expected,
            std::uint32_t actual) {
    if (count++ < 3) {
      char line[200];
      std::snprintf(line, sizeof line, "  [%lld] %a / %a: expected 0x%08x, got 0x%08x\n",
                    static_cast<long long>(index), value, scale, expected, actual);
      first += line;
    }
  }
};

#define CHECK_NONE(mismatches)                                               \
  do {                                                                       \
    INFO((mismatches).what << ": " << (mismatches).count << " mismatches\n" \
                           << (mismatches).first);                          \
    CHECK((mismatches).count == 0);                                          \
  } while (0)

// Runs the device conversion over `values` (pair j divided by pair_scales[j]) and checks every
// quotient and byte against the CPU.
void check_pairs(const std::vector<float>& values, const std::vector<float>& pair_scales) {
  const auto count = static_cast<std::int64_t>(values.size());
  REQUIRE(pair_scales.size() == (values.size() + 1) / 2);
  std::vector<float> quotients(values.size());
  std::vector<std::uint8_t> e4m3(values.size()), e5m2(values.size());
  numerics::encode_fp8_pairs_on_device(values.data(), pair_scales.data(), count,
                                       quotients.data(), e4m3.data(), e5m2.data());
  Mismatches quotient_bits{"device quotient vs CPU x / scale"};
  Mismatches e4m3_bytes{"device paired E4M3 byte vs numerics::float_to_fp8_e4m3(x / scale)"};
  Mismatches e5m2_bytes{"device paired E5M2 byte vs numerics::float_to_fp8_e5m2(x / scale)"};
  for (std::int64_t i = 0; i < count; ++i) {
    const float x = values[i], s = pair_scales[i / 2];
    const float expected = x / s;  // the host's IEEE fp32 division
    const bool both_nan = is_nan(expected) && is_nan(quotients[i]);
    if (!both_nan && bits_of(expected) != bits_of(quotients[i])) {
      quotient_bits.note(i, x, s, bits_of(expected), bits_of(quotients[i]));
    }
    if (numerics::float_to_fp8_e4m3(expected) != e4m3[i]) {
      e4m3_bytes.note(i, x, s, numerics::float_to_fp8_e4m3(expected), e4m3[i]);
    }
    if (numerics::float_to_fp8_e5m2(expected) != e5m2[i]) {
      e5m2_bytes.note(i, x, s, numerics::float_to_fp8_e5m2(expected), e5m2[i]);
    }
  }
  CHECK_NONE(quotient_bits);
  CHECK_NONE(e4m3_bytes);
  CHECK_NONE(e5m2_bytes);
}

// Scales worth trying: typical ones, powers of two far out, and every kind of bad scale. The
// largest significands (0x1.fffffep0 and neighbours) have the least exact reciprocals.
std::vector<float> interesting_scales() {
  const float inf = std::numeric_limits<float>::infinity();
  return {1.f,           0.0123f,         448.f / 3.3f,    3.7f / 448.f,    0x1.fffffep0f,
          0x1.fffffap0f, 0x1.000002p0f,   1.f / 3.f,       0.1f,            7.f,
          0x1p-32f,      0x1p32f,         0x1.fffffep-33f, 0x1.000002p32f,  0x1p-60f,
          0x1p60f,       1e-40f,          1e30f,           0.f,             -0.f,
          -1.5f,         -0.0123f,        inf,             -inf,
          std::numeric_limits<float>::quiet_NaN(),         std::numeric_limits<float>::min(),
          std::numeric_limits<float>::max(),               0x1.5p-7f,       0x1p-126f,
          0x1.8p-149f};
}

TEST_CASE("fp8 pairs: every bf16 and fp16 value × 30 scales gives the CPU's quotient and bytes",
          "[flash_division][reshape_and_cache_flash][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  for (const DType dtype : {DType::bf16, DType::f16}) {
    INFO("activation " << dtype_name(dtype));
    std::vector<float> values, pair_scales;
    for (const float scale : interesting_scales()) {
      for (std::uint32_t bits = 0; bits < 65536; ++bits) {
        const auto pattern = static_cast<std::uint16_t>(bits);
        values.push_back(dtype == DType::bf16 ? numerics::bf16_bits_to_float(pattern)
                                              : numerics::half_bits_to_float(pattern));
        if (bits % 2 == 0) pair_scales.push_back(scale);
      }
    }
    check_pairs(values, pair_scales);
  }
}

TEST_CASE("fp8 pairs: 10.5 M random fp32 values and scales give the CPU's quotient and bytes",
          "[flash_division][reshape_and_cache_flash][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  std::mt19937_64 rng(20260501);
  const auto any_bits = [&] { return float_of(static_cast<std::uint32_t>(rng())); };
  // A random sign and significand with a uniformly drawn exponent in [low, high].
  const auto with_exponent = [&](int low, int high) {
    const auto r = rng();
    const int exponent = low + static_cast<int>(r % static_cast<std::uint64_t>(high - low + 1));
    return float_of((static_cast<std::uint32_t>(r >> 32) & 0x807FFFFFu) |
                    (static_cast<std::uint32_t>(exponent + 127) << 23));
  };
  constexpr int kCount = 10'500'001;  // odd: the last value is encoded with 0 as its partner
  std::vector<float> values(kCount), pair_scales((kCount + 1) / 2);
  for (int pair = 0; pair < static_cast<int>(pair_scales.size()); ++pair) {
    float x = 0.f, y = 0.f, scale = 1.f;
    switch (pair % 4) {
      case 0:  // activation-like values, fp8-like scales
        x = with_exponent(-12, 8), y = with_exponent(-12, 8);
        scale = std::fabs(with_exponent(-12, 4));
        break;
      case 1:  // wide but finite: quotients from subnormal to overflow
        x = with_exponent(-126, 127), y = with_exponent(-126, 127);
        scale = std::fabs(with_exponent(-126, 127));
        break;
      case 2:  // any bits (subnormals, inf, NaN), ordinary scale
        x = any_bits(), y = any_bits();
        scale = std::fabs(with_exponent(-8, 8));
        break;
      default:  // anything at all
        x = any_bits(), y = any_bits(), scale = any_bits();
        break;
    }
    values[2 * pair] = x;
    if (2 * pair + 1 < kCount) values[2 * pair + 1] = y;
    pair_scales[pair] = scale;
  }
  check_pairs(values, pair_scales);
}

// ---------------------------------------------------------------------------------------------
// The whole op: every 16-bit pattern (and 131,072 random fp32 bit patterns) through
// reshape_and_cache_flash.

// One problem: for bf16 / fp16 the key rows hold all 65,536 bit patterns in order and the value
// rows the same patterns reversed; for f32 both hold random bit patterns (NaN, inf and
// subnormals included). NHD caches, random unique slots, the given scales.
struct AllPatternsProblem {
  static constexpr std::int64_t kHeads = 8, kHeadSize = 128, kBlockSize = 16;
  static constexpr std::int64_t kTokens = 65536 / (kHeads * kHeadSize);  // 64
  static constexpr std::int64_t kBlocks = 2 * kTokens / kBlockSize;       // room for random slots
  static constexpr std::int64_t kRowElements = kTokens * kHeads * kHeadSize;  // 65,536
  Buffer activations{Memory::host,
                     2 * kRowElements * 4};  // key rows, then value rows (4 bytes fit all)
  Buffer cache{Memory::host, 2 * kBlocks* kBlockSize* kHeads* kHeadSize};  // key cache, value cache
  Buffer slots{Memory::host, kTokens * 8};
  Buffer scales;  // k_scale, then v_scale
  std::int64_t num_scales = 1;

  AllPatternsProblem(DType dtype, const std::vector<float>& k_scale,
                     const std::vector<float>& v_scale)
      : scales(Memory::host, (k_scale.size() + v_scale.size()) * 4),
        num_scales(static_cast<std::int64_t>(k_scale.size())) {
    if (dtype == DType::f32) {
      auto* bits = reinterpret_cast<std::uint32_t*>(activations.data());
      std::mt19937 rng(11);
      for (std::int64_t i = 0; i < 2 * kRowElements; ++i) bits[i] = rng();
    } else {  // 16-bit patterns are the same bytes for bf16 and fp16
      auto* bits = reinterpret_cast<std::uint16_t*>(activations.data());
      for (std::uint32_t i = 0; i < 65536; ++i) {
        bits[i] = static_cast<std::uint16_t>(i);
        bits[kRowElements + i] = static_cast<std::uint16_t>(65535 - i);
      }
    }
    test::poison(cache.data(), cache.size());
    std::vector<std::int64_t> all(kBlocks * kBlockSize);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), std::mt19937_64(7));
    std::memcpy(slots.data(), all.data(), kTokens * 8);
    std::memcpy(scales.data(), k_scale.data(), k_scale.size() * 4);
    std::memcpy(scales.data() + k_scale.size() * 4, v_scale.data(), v_scale.size() * 4);
  }

  // Views onto buffers laid out like the host ones.
  struct Views {
    TensorView key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale;
  };
  Views views(DType dtype, std::uint8_t* activation_base, std::uint8_t* cache_base,
              std::uint8_t* slot_base, std::uint8_t* scale_base, Device device) const {
    const std::int64_t cache_elements = kBlocks * kBlockSize * kHeads * kHeadSize;
    Views v;
    v.key = TensorView::contiguous(activation_base, dtype, {kTokens, kHeads, kHeadSize}, device);
    v.value = TensorView::contiguous(activation_base + kRowElements * dtype_size(dtype), dtype,
                                     {kTokens, kHeads, kHeadSize}, device);
    v.key_cache = TensorView::contiguous(cache_base, DType::u8,
                                         {kBlocks, kBlockSize, kHeads, kHeadSize}, device);
    v.value_cache = TensorView::contiguous(cache_base + cache_elements, DType::u8,
                                           {kBlocks, kBlockSize, kHeads, kHeadSize}, device);
    v.slot_mapping = TensorView::contiguous(slot_base, DType::i64, {kTokens}, device);
    v.k_scale = TensorView::contiguous(scale_base, DType::f32, {num_scales}, device);
    v.v_scale = TensorView::contiguous(scale_base + num_scales * 4, DType::f32, {num_scales},
                                       device);
    return v;
  }
};

TEST_CASE("fp8 pairs: all bf16 / fp16 patterns and random fp32 through reshape_and_cache_flash "
          "equal the CPU reference",
          "[flash_division][reshape_and_cache_flash][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct ScaleCase {
    const char* name;
    std::vector<float> k_scale, v_scale;
  };
  const ScaleCase scale_cases[] = {
      {"per-tensor, in range", {0.0123f}, {3.7f}},
      {"per-tensor, worst reciprocal / exact power of two", {0x1.fffffep0f}, {0.5f}},
      {"per-tensor, tiny and huge powers of two", {0x1p-40f}, {0x1p40f}},
      {"per-head, mixed", {1e-3f, 3.7f, 0x1p-32f, 0x1p32f, 0x1p-40f, 0.f, -2.f, nan},
       {0.25f, 1.f / 3.f, 0x1.000002p0f, 1e30f, 1e-40f, 448.f, -0.f, 0x1.5p-7f}},
  };
  for (const DType dtype : {DType::bf16, DType::f16, DType::f32}) {
    for (const char* kind : {"fp8_e4m3", "fp8_e5m2"}) {
      for (const ScaleCase& scales : scale_cases) {
        INFO(dtype_name(dtype) << " → " << kind << ", " << scales.name);
        const AllPatternsProblem p(dtype, scales.k_scale, scales.v_scale);
        Buffer expected = copy_to(Memory::host, p.cache);
        {
          auto host = p.views(dtype, const_cast<std::uint8_t*>(p.activations.data()),
                              expected.data(), const_cast<std::uint8_t*>(p.slots.data()),
                              const_cast<std::uint8_t*>(p.scales.data()), Device::cpu);
          pagedkv::run<ReshapeAndCacheFlash>(
              Impl::cpu, {host.key, host.value, host.key_cache, host.value_cache, host.slot_mapping,
                          kind, host.k_scale, host.v_scale});
        }
        // The reference must have written something (a test of nothing proves nothing).
        REQUIRE(test::first_difference(expected.data(), p.cache.data(), p.cache.size()) >= 0);
        for (const Impl impl : {Impl::naive, Impl::optimized}) {
          INFO("implementation " << impl_name(impl));
          const Buffer activations = copy_to(Memory::device, p.activations);
          const Buffer cache = copy_to(Memory::device, p.cache);
          const Buffer slots = copy_to(Memory::device, p.slots);
          const Buffer scale_buffer = copy_to(Memory::device, p.scales);
          auto d = p.views(dtype, activations.data(), cache.data(), slots.data(),
                           scale_buffer.data(), Device::cuda);
          if (impl == Impl::naive) {
            pagedkv::run<ReshapeAndCacheFlash>(
                Impl::naive, {d.key, d.value, d.key_cache, d.value_cache, d.slot_mapping, kind,
                              d.k_scale, d.v_scale});
          } else {
            pagedkv::run<ReshapeAndCacheFlash>(
                Impl::optimized, {d.key, d.value, d.key_cache, d.value_cache, d.slot_mapping, kind,
                                  d.k_scale, d.v_scale});
          }
          PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
          Buffer actual(Memory::host, p.cache.size());
          cache.download(actual.data(), actual.size());
          const std::int64_t at =
              test::first_difference(actual.data(), expected.data(), expected.size());
          INFO("first differing byte " << at);
          CHECK(at < 0);
        }
      }
    }
  }
}

}  // namespace
