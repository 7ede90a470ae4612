// Proof that the hand-written CPU numerics (reference_cpu/numerics.cpp) are bit-identical to the
// CUDA Toolkit's own conversions, and that the shared cache-element store does fp8(x / scale).
//
// The toolkit headers are included HERE only: their conversion functions are host-callable (the
// host paths emulate the device instructions in software), so they serve as the independent
// reference on a machine without a GPU. The [gpu] test at the end runs the device conversions
// the kernels really use and compares them with the same CPU numerics.
//
// Every comparison is on bit patterns, never on values: 0.0 == -0.0 and NaN != NaN would hide
// exactly the cases that matter.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "../reference_cpu/cache_element.h"
#include "gpu/numerics_device.h"
#include "numerics.h"
#include "pagedkv/error.h"
#include "support.h"

namespace {

using namespace pagedkv;
using namespace pagedkv::numerics;

using test::bits_of;
using test::float_of;

bool is_nan(float value) { return (bits_of(value) & 0x7FFFFFFFu) > 0x7F800000u; }

// ---------------------------------------------------------------------------------------------
// The reference: the CUDA Toolkit's conversions, on raw bits.
namespace toolkit {

std::uint16_t float_to_half(float x) { return static_cast<__half_raw>(__float2half_rn(x)).x; }
std::uint16_t float_to_bf16(float x) {
  return static_cast<__nv_bfloat16_raw>(__float2bfloat16_rn(x)).x;
}
std::uint8_t float_to_e4m3(float x) { return __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3); }
std::uint8_t float_to_e5m2(float x) { return __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E5M2); }

float half_to_float(std::uint16_t bits) {
  __half_raw raw;
  raw.x = bits;
  return __half2float(__half(raw));
}
float bf16_to_float(std::uint16_t bits) {
  __nv_bfloat16_raw raw;
  raw.x = bits;
  return __bfloat162float(__nv_bfloat16(raw));
}
std::uint16_t fp8_to_half(std::uint8_t bits, __nv_fp8_interpretation_t kind) {
  return __nv_cvt_fp8_to_halfraw(bits, kind).x;
}
// fp8 -> fp32 the way the dequantizing kernels do it: exact fp8 -> fp16, then fp16 -> fp32.
float e4m3_to_float(std::uint8_t bits) { return half_to_float(fp8_to_half(bits, __NV_E4M3)); }
float e5m2_to_float(std::uint8_t bits) { return half_to_float(fp8_to_half(bits, __NV_E5M2)); }

}  // namespace toolkit

// ---------------------------------------------------------------------------------------------
// Collects mismatches without one Catch2 assertion per element (millions would be slow), and
// keeps the first few as readable lines for the failure message.
class Mismatches {
 public:
  explicit Mismatches(std::string what) : what_(std::move(what)) {}
  void add(std::uint64_t input, std::uint64_t expected, std::uint64_t actual) {
    if (count_ < 8) {
      char line[128];
      std::snprintf(line, sizeof line, "\n  input 0x%llx: toolkit 0x%llx, ours 0x%llx",
                    static_cast<unsigned long long>(input),
                    static_cast<unsigned long long>(expected),
                    static_cast<unsigned long long>(actual));
      examples_ += line;
    }
    ++count_;
  }
  template <typename T>
  void compare(std::uint64_t input, T expected, T actual) {
    if (expected != actual) add(input, expected, actual);
  }
  std::uint64_t count() const { return count_; }
  std::string report() const {
    return what_ + ": " + std::to_string(count_) + " mismatches" + examples_;
  }

 private:
  std::string what_;
  std::uint64_t count_ = 0;
  std::string examples_;
};

#define CHECK_NO_MISMATCHES(m) \
  do {                         \
    INFO((m).report());        \
    CHECK((m).count() == 0u);  \
  } while (0)

// ---------------------------------------------------------------------------------------------
// The fp32 inputs of the encode tests (more than 10 million, deterministic):
//   * +-0, +-inf, NaNs with many payloads and both signs;
//   * every rounding tie of every format: the exact midpoint between each pair of neighbouring
//     finite values (so every exponent, subnormals included), the midpoint between the largest
//     finite value and the next step up (the overflow boundary), and the fp32 values just
//     below and above each midpoint; all with both signs;
//   * the largest finite value of each format, its fp32 neighbours, and values far beyond;
//   * fp32 subnormals, and each narrow format's subnormal range and underflow boundary;
//   * random bit patterns: fully random, and random with the exponent where the narrow formats
//     live.
struct NarrowFormat {
  const char* name;
  int mantissa_bits;
  std::uint32_t max_finite_code;  // positive encodings 0..max_finite_code are the finite values
  float (*decode)(std::uint32_t code);
};

const NarrowFormat kFormats[] = {
    {"fp16", 10, 0x7BFF, [](std::uint32_t c) { return toolkit::half_to_float(std::uint16_t(c)); }},
    {"bf16", 7, 0x7F7F, [](std::uint32_t c) { return toolkit::bf16_to_float(std::uint16_t(c)); }},
    {"e4m3", 3, 0x7E, [](std::uint32_t c) { return toolkit::e4m3_to_float(std::uint8_t(c)); }},
    {"e5m2", 2, 0x7B, [](std::uint32_t c) { return toolkit::e5m2_to_float(std::uint8_t(c)); }},
};

// Adds `value`, its fp32 neighbours, and the negatives of all three.
void add_with_neighbours(std::vector<std::uint32_t>& inputs, float value) {
  const float infinity = std::numeric_limits<float>::infinity();
  for (const float v : {value, std::nextafter(value, 0.f), std::nextafter(value, infinity)}) {
    inputs.push_back(bits_of(v));
    inputs.push_back(bits_of(v) ^ 0x80000000u);
  }
}

const std::vector<std::uint32_t>& fp32_test_inputs() {
  static const std::vector<std::uint32_t> inputs = [] {
    std::vector<std::uint32_t> in;
    in.reserve(10'500'000);

    // Zeros, infinities, NaNs (quiet and signalling, various payloads, both signs).
    for (const std::uint32_t special :
         {0x00000000u, 0x7F800000u, 0x7FC00000u, 0x7F800001u, 0x7FFFFFFFu, 0x7FBFFFFFu,
          0x7FC00001u, 0x7FA5A5A5u, 0x7F800100u, 0x7FE00000u}) {
      in.push_back(special);
      in.push_back(special | 0x80000000u);
    }
    std::mt19937_64 rng(0x6E756D6572696373ull);  // "numerics"
    for (int i = 0; i < 100'000; ++i) {  // random NaN payloads (mantissa never 0)
      const auto r = static_cast<std::uint32_t>(rng());
      in.push_back((r & 0x80000000u) | 0x7F800000u | ((r & 0x7FFFFFu) | 1u << (i % 23)));
    }

    for (const NarrowFormat& format : kFormats) {
      // Every tie: midpoints of neighbouring finite values. Both neighbours have at most 11
      // significant bits, so the midpoint (computed in double) is an exact fp32.
      for (std::uint32_t code = 0; code < format.max_finite_code; ++code) {
        const double midpoint =
            (double(format.decode(code)) + double(format.decode(code + 1))) / 2.0;
        add_with_neighbours(in, static_cast<float>(midpoint));
      }
      // The overflow boundary: largest finite + half a step, where a step is the gap to the
      // value below (the top binade has one spacing).
      const float max_finite = format.decode(format.max_finite_code);
      const float below_max = format.decode(format.max_finite_code - 1);
      add_with_neighbours(in, max_finite);
      add_with_neighbours(in, static_cast<float>(double(max_finite) +
                                                 (double(max_finite) - double(below_max)) / 2.0));
      for (const float factor : {1.5f, 2.f, 1e3f, 1e6f}) add_with_neighbours(in, max_finite * factor);

      // The subnormal range and the underflow boundary: random values with exponents from a
      // quarter of the smallest subnormal up to twice the smallest normal (the subnormals span
      // mantissa_bits binades).
      const float min_subnormal = format.decode(1);
      const int low_exponent = static_cast<int>((bits_of(min_subnormal) >> 23) & 0xFF) - 2;
      const int exponent_span = format.mantissa_bits + 4;
      for (int i = 0; i < 200'000; ++i) {
        const auto r = static_cast<std::uint32_t>(rng());
        const int exponent = std::max(0, low_exponent + static_cast<int>(r % exponent_span));
        in.push_back((r & 0x80000000u) | std::uint32_t(exponent) << 23 | (r >> 9 & 0x7FFFFFu));
      }
    }
    for (const float huge : {std::numeric_limits<float>::max(), 1e30f, 1e38f, 3e5f, 7e4f, 500.f}) {
      add_with_neighbours(in, huge);
    }

    // fp32 subnormals (all narrow formats but bf16 flush them to zero by rounding).
    for (const std::uint32_t edge : {0x00000001u, 0x00000002u, 0x007FFFFFu, 0x00800000u}) {
      in.push_back(edge);
      in.push_back(edge | 0x80000000u);
    }
    for (int i = 0; i < 200'000; ++i) {
      const auto r = static_cast<std::uint32_t>(rng());
      in.push_back((r & 0x807FFFFFu));
    }

    // Random bit patterns up to 10.2 million in total: half of what is left fully random,
    // half with the exponent in [2^-30, 2^20] where most fp16 / fp8 values live.
    const std::size_t remaining = 10'200'000 - in.size();
    for (std::size_t i = 0; i < remaining; ++i) {
      const auto r = static_cast<std::uint32_t>(rng());
      if (i % 2 == 0) {
        in.push_back(r);
      } else {
        const std::uint32_t exponent = 127 - 30 + (r >> 23) % 51;
        in.push_back((r & 0x807FFFFFu) | exponent << 23);
      }
    }
    return in;
  }();
  return inputs;
}

// Compares our four encoders with the toolkit's on one fp32 input.
struct EncodeChecks {
  Mismatches half{"fp32 -> fp16"}, bf16{"fp32 -> bf16"}, e4m3{"fp32 -> fp8 e4m3"},
      e5m2{"fp32 -> fp8 e5m2"};
  void run(float x) {
    const std::uint32_t input = bits_of(x);
    half.compare(input, toolkit::float_to_half(x), float_to_half_bits(x));
    bf16.compare(input, toolkit::float_to_bf16(x), float_to_bf16_bits(x));
    e4m3.compare(input, toolkit::float_to_e4m3(x), float_to_fp8_e4m3(x));
    e5m2.compare(input, toolkit::float_to_e5m2(x), float_to_fp8_e5m2(x));
  }
  void check() const {
    CHECK_NO_MISMATCHES(half);
    CHECK_NO_MISMATCHES(bf16);
    CHECK_NO_MISMATCHES(e4m3);
    CHECK_NO_MISMATCHES(e5m2);
  }
};

}  // namespace

// =============================================================================================
// Worked examples: a few values a learner can check by hand.
TEST_CASE("numerics: worked examples of rounding, saturation and NaN", "[numerics]") {
  // fp16: 1 | 5 | 10, bias 15.
  CHECK(float_to_half_bits(1.0f) == 0x3C00);
  CHECK(float_to_half_bits(65504.f) == 0x7BFF);      // largest finite
  CHECK(float_to_half_bits(65519.f) == 0x7BFF);      // below the overflow tie: rounds down
  CHECK(float_to_half_bits(65520.f) == 0x7C00);      // the tie: to even = up = inf
  CHECK(float_to_half_bits(std::ldexp(1.f, -24)) == 0x0001);   // smallest subnormal
  CHECK(float_to_half_bits(std::ldexp(1.f, -25)) == 0x0000);   // tie with 0: to even = 0
  CHECK(float_to_half_bits(std::ldexp(3.f, -26)) == 0x0001);   // 0.75 of a step: up
  CHECK(float_to_half_bits(-0.0f) == 0x8000);
  CHECK(float_to_half_bits(float_of(0xFFC00000u)) == 0x7FFF);  // NaN loses its sign

  // bf16: the top half of an fp32. 1 + 2^-8 is halfway between 0x3F80 and 0x3F81.
  CHECK(float_to_bf16_bits(1.0f + std::ldexp(1.f, -8)) == 0x3F80);      // tie, even is below
  CHECK(float_to_bf16_bits(1.0f + 3 * std::ldexp(1.f, -8)) == 0x3F82);  // tie, even is above
  CHECK(float_to_bf16_bits(std::numeric_limits<float>::max()) == 0x7F80);  // rounds to inf

  // fp8 E4M3 fn: 1 | 4 | 3, bias 7, max 448, no inf, NaN 0x7F.
  CHECK(float_to_fp8_e4m3(448.f) == 0x7E);
  CHECK(float_to_fp8_e4m3(464.f) == 0x7E);  // halfway to the non-existent 480: saturates
  CHECK(float_to_fp8_e4m3(1e9f) == 0x7E);
  CHECK(float_to_fp8_e4m3(-std::numeric_limits<float>::infinity()) == 0xFE);
  CHECK(float_to_fp8_e4m3(std::ldexp(1.f, -9)) == 0x01);    // smallest subnormal
  CHECK(float_to_fp8_e4m3(std::ldexp(1.f, -10)) == 0x00);   // tie with 0: to even
  CHECK(float_to_fp8_e4m3(std::ldexp(3.f, -10)) == 0x02);   // tie between 1 and 2: to even
  CHECK(float_to_fp8_e4m3(float_of(0xFFC00000u)) == 0x7F);  // NaN, sign dropped
  CHECK(fp8_e4m3_to_float(0x7E) == 448.f);
  CHECK(fp8_e4m3_to_float(0x08) == std::ldexp(1.f, -6));    // smallest normal
  CHECK(fp8_e4m3_to_float(0x01) == std::ldexp(1.f, -9));
  CHECK(bits_of(fp8_e4m3_to_float(0xFF)) == 0x7FFFFFFFu);

  // fp8 E5M2: 1 | 5 | 2, bias 15, max 57344, inf 0x7C (never produced when saturating).
  CHECK(float_to_fp8_e5m2(57344.f) == 0x7B);
  CHECK(float_to_fp8_e5m2(61440.f) == 0x7B);  // the overflow tie
  CHECK(float_to_fp8_e5m2(std::numeric_limits<float>::infinity()) == 0x7B);
  CHECK(float_to_fp8_e5m2(std::ldexp(1.f, -16)) == 0x01);
  CHECK(float_to_fp8_e5m2(-0.0f) == 0x80);
  CHECK(fp8_e5m2_to_float(0x7C) == std::numeric_limits<float>::infinity());
  CHECK(fp8_e5m2_to_float(0xFB) == -57344.f);
}

// =============================================================================================
TEST_CASE("numerics: all 65,536 fp16 values decode and re-encode like the toolkit", "[numerics]") {
  Mismatches decode("fp16 -> fp32");
  EncodeChecks encode;
  for (std::uint32_t h = 0; h <= 0xFFFF; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    const float expected = toolkit::half_to_float(bits);
    decode.compare(h, bits_of(expected), bits_of(half_bits_to_float(bits)));
    encode.run(expected);  // back to fp16 (exact round trip), and down to bf16 / e4m3 / e5m2
  }
  CHECK_NO_MISMATCHES(decode);
  encode.check();
}

TEST_CASE("numerics: all 65,536 bf16 values decode and re-encode like the toolkit", "[numerics]") {
  Mismatches decode("bf16 -> fp32");
  EncodeChecks encode;
  for (std::uint32_t b = 0; b <= 0xFFFF; ++b) {
    const auto bits = static_cast<std::uint16_t>(b);
    const float expected = toolkit::bf16_to_float(bits);
    decode.compare(b, bits_of(expected), bits_of(bf16_bits_to_float(bits)));
    encode.run(expected);
  }
  CHECK_NO_MISMATCHES(decode);
  encode.check();
}

TEST_CASE("numerics: all 256 values of each fp8 format decode like the toolkit", "[numerics]") {
  Mismatches e4m3("fp8 e4m3 -> fp32"), e5m2("fp8 e5m2 -> fp32");
  EncodeChecks encode;
  for (std::uint32_t byte = 0; byte <= 0xFF; ++byte) {
    const auto bits = static_cast<std::uint8_t>(byte);
    e4m3.compare(byte, bits_of(toolkit::e4m3_to_float(bits)), bits_of(fp8_e4m3_to_float(bits)));
    e5m2.compare(byte, bits_of(toolkit::e5m2_to_float(bits)), bits_of(fp8_e5m2_to_float(bits)));
    encode.run(toolkit::e4m3_to_float(bits));
    encode.run(toolkit::e5m2_to_float(bits));
  }
  CHECK_NO_MISMATCHES(e4m3);
  CHECK_NO_MISMATCHES(e5m2);
  encode.check();
  // Each non-NaN byte must survive decode -> encode unchanged.
  for (std::uint32_t byte = 0; byte <= 0xFF; ++byte) {
    const auto bits = static_cast<std::uint8_t>(byte);
    if ((byte & 0x7F) != 0x7F) CHECK(float_to_fp8_e4m3(fp8_e4m3_to_float(bits)) == bits);
    if ((byte & 0x7F) < 0x7C) CHECK(float_to_fp8_e5m2(fp8_e5m2_to_float(bits)) == bits);
  }
}

TEST_CASE("numerics: over 10 million fp32 inputs encode like the toolkit", "[numerics]") {
  const std::vector<std::uint32_t>& inputs = fp32_test_inputs();
  REQUIRE(inputs.size() >= 10'000'000u);
  EncodeChecks encode;
  for (const std::uint32_t input : inputs) encode.run(float_of(input));
  encode.check();
}

// =============================================================================================
// store_cache_element: auto copies the activation's bytes; fp8 stores fp8(float(x) / scale)
// with the per-call scale. The expected byte is computed with the toolkit.
namespace {

struct ActivationSet {
  DType dtype;
  std::vector<std::uint8_t> bytes;  // [count * dtype_size(dtype)]
  std::int64_t count;
};

// f16 / bf16: every bit pattern; f32: the special values and ties of fp32_test_inputs() plus a
// random sample of the rest (NaN, inf, subnormals included).
ActivationSet activations_of(DType dtype) {
  ActivationSet set{dtype, {}, 0};
  if (dtype == DType::f32) {
    const auto& all = fp32_test_inputs();
    std::vector<std::uint32_t> picked(all.begin(), all.begin() + 1'000'000);
    set.count = static_cast<std::int64_t>(picked.size());
    set.bytes.resize(picked.size() * 4);
    std::memcpy(set.bytes.data(), picked.data(), set.bytes.size());
  } else {
    set.count = 65536;
    set.bytes.resize(65536 * 2);
    for (std::uint32_t i = 0; i < 65536; ++i) {
      const auto bits = static_cast<std::uint16_t>(i);
      std::memcpy(set.bytes.data() + 2 * i, &bits, 2);
    }
  }
  return set;
}

// One scale per element: fixed interesting scales (tiny ones push values past max-finite,
// 0 and inf give inf / 0 / NaN quotients, a subnormal and a negative one), then random ones.
std::vector<float> scales_for(std::int64_t count) {
  const float fixed[] = {1.f,     0.5f,    2.f,   1.f / 448.f, 1e-3f,
                         1e-6f,   3.7f,    1e5f,  0.0123f,     float_of(0x00000100u),
                         0.f,     -1.5f,   std::numeric_limits<float>::infinity()};
  std::vector<float> scales(static_cast<std::size_t>(count));
  std::mt19937_64 rng(1234);
  std::uniform_real_distribution<float> exponent(-12.f, 6.f);
  for (std::size_t i = 0; i < scales.size(); ++i) {
    scales[i] = (i % 2 == 0) ? fixed[(i / 2) % (sizeof fixed / sizeof fixed[0])]
                             : std::exp2(exponent(rng));
  }
  return scales;
}

float toolkit_activation(const std::uint8_t* element, DType dtype) {
  if (dtype == DType::f32) {
    float value;
    std::memcpy(&value, element, 4);
    return value;
  }
  std::uint16_t bits;
  std::memcpy(&bits, element, 2);
  return dtype == DType::f16 ? toolkit::half_to_float(bits) : toolkit::bf16_to_float(bits);
}

const char* kind_name(KvCacheDtype kind) {
  return kind == KvCacheDtype::kAuto ? "auto" : kind == KvCacheDtype::kFp8E4m3 ? "fp8_e4m3" : "fp8_e5m2";
}

}  // namespace

TEST_CASE("numerics: store_cache_element for every activation dtype and cache kind",
          "[numerics]") {
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  const KvCacheDtype kind =
      GENERATE(KvCacheDtype::kAuto, KvCacheDtype::kFp8E4m3, KvCacheDtype::kFp8E5m2);
  INFO("activation " << dtype_name(dtype) << ", cache " << kind_name(kind));

  const ActivationSet activations = activations_of(dtype);
  const std::vector<float> scales = scales_for(activations.count);
  const auto element_size = static_cast<std::size_t>(dtype_size(dtype));
  const std::size_t stored_size = kind == KvCacheDtype::kAuto ? element_size : 1;
  const std::uint8_t max_finite = kind == KvCacheDtype::kFp8E4m3 ? 0x7E : 0x7B;

  Mismatches stored("stored bytes");
  std::uint64_t overwritten_neighbours = 0, saturated = 0;
  for (std::int64_t i = 0; i < activations.count; ++i) {
    const std::uint8_t* activation = activations.bytes.data() + i * element_size;
    // A poisoned 8-byte slot: only the first stored_size bytes may change.
    std::uint8_t slot[8];
    test::poison(slot, sizeof slot);
    cpu::store_cache_element(slot, activation, dtype, kind, scales[i]);
    std::uint8_t untouched[8];
    test::poison(untouched, sizeof untouched);
    if (std::memcmp(slot + stored_size, untouched + stored_size, 8 - stored_size) != 0) {
      ++overwritten_neighbours;
    }

    if (kind == KvCacheDtype::kAuto) {
      std::uint32_t expected = 0, actual = 0;
      std::memcpy(&expected, activation, element_size);
      std::memcpy(&actual, slot, element_size);
      stored.compare(static_cast<std::uint64_t>(i), expected, actual);
    } else {
      const float quotient = toolkit_activation(activation, dtype) / scales[i];
      const std::uint8_t expected =
          kind == KvCacheDtype::kFp8E4m3 ? toolkit::float_to_e4m3(quotient) : toolkit::float_to_e5m2(quotient);
      stored.compare(static_cast<std::uint64_t>(i), expected, slot[0]);
      if ((slot[0] & 0x7F) == max_finite && !is_nan(quotient) && std::fabs(quotient) > 1e6f) {
        ++saturated;
      }
    }
  }
  CHECK_NO_MISMATCHES(stored);
  CHECK(overwritten_neighbours == 0u);
  if (kind != KvCacheDtype::kAuto) CHECK(saturated > 1000u);  // the scales did push past max
}

TEST_CASE("numerics: load_activation and store_cache_element reject non-activation dtypes",
          "[numerics]") {
  const std::uint8_t byte = 0x3C;
  std::uint8_t out[4] = {};
  CHECK_THROWS_AS(cpu::load_activation(&byte, DType::u8), InvalidArgument);
  CHECK_THROWS_WITH(cpu::load_activation(&byte, DType::i32), Catch::Contains("i32"));
  CHECK_THROWS_AS(cpu::store_cache_element(out, &byte, DType::f8_e4m3, KvCacheDtype::kAuto, 1.f),
                  InvalidArgument);
  CHECK_THROWS_AS(cpu::store_cache_element(out, &byte, DType::u8, KvCacheDtype::kFp8E4m3, 1.f),
                  InvalidArgument);
}

// =============================================================================================
// The device side: the conversions the kernels run on the GPU, compared bit for bit with the
// CPU numerics over the same inputs.
//
// Decoded NaNs are compared by NaN-ness and any payload difference is reported with WARN: a
// decoded activation only ever reaches the cache through an fp8 encode (every NaN -> 0x7F) or a
// bit copy ("auto", no decode at all), so no cache byte depends on a NaN payload. Everything
// that IS a stored byte (every encode, every to_cache) must match exactly.
TEST_CASE("numerics: the GPU conversions of the kernels match the CPU numerics bit for bit",
          "[numerics][gpu]") {
  PAGEDKV_REQUIRE_GPU();

  // --- Encode: the fp32 inputs, plus every fp16 / bf16 / fp8 value decoded. ---
  std::vector<float> values;
  for (const std::uint32_t input : fp32_test_inputs()) values.push_back(float_of(input));
  for (std::uint32_t i = 0; i <= 0xFFFF; ++i) {
    values.push_back(half_bits_to_float(static_cast<std::uint16_t>(i)));
    values.push_back(bf16_bits_to_float(static_cast<std::uint16_t>(i)));
  }
  for (std::uint32_t i = 0; i <= 0xFF; ++i) {
    values.push_back(fp8_e4m3_to_float(static_cast<std::uint8_t>(i)));
    values.push_back(fp8_e5m2_to_float(static_cast<std::uint8_t>(i)));
  }
  const auto count = static_cast<std::int64_t>(values.size());
  std::vector<std::uint16_t> half(values.size()), bf16(values.size());
  std::vector<std::uint8_t> e4m3(values.size()), e5m2(values.size());
  encode_on_device(values.data(), count, half.data(), bf16.data(), e4m3.data(), e5m2.data());
  {
    Mismatches h("device fp32 -> fp16"), b("device fp32 -> bf16"), f4("device fp32 -> e4m3"),
        f5("device fp32 -> e5m2");
    for (std::size_t i = 0; i < values.size(); ++i) {
      const std::uint32_t input = bits_of(values[i]);
      h.compare(input, float_to_half_bits(values[i]), half[i]);
      b.compare(input, float_to_bf16_bits(values[i]), bf16[i]);
      f4.compare(input, float_to_fp8_e4m3(values[i]), e4m3[i]);
      f5.compare(input, float_to_fp8_e5m2(values[i]), e5m2[i]);
    }
    CHECK_NO_MISMATCHES(h);
    CHECK_NO_MISMATCHES(b);
    CHECK_NO_MISMATCHES(f4);
    CHECK_NO_MISMATCHES(f5);
  }

  // --- Decode: every fp16 / bf16 / fp8 bit pattern. ---
  struct DecodeCase {
    DType dtype;
    std::uint32_t patterns;
    float (*cpu)(std::uint32_t);
  };
  const DecodeCase decode_cases[] = {
      {DType::f16, 65536, [](std::uint32_t b) { return half_bits_to_float(std::uint16_t(b)); }},
      {DType::bf16, 65536, [](std::uint32_t b) { return bf16_bits_to_float(std::uint16_t(b)); }},
      {DType::f8_e4m3, 256, [](std::uint32_t b) { return fp8_e4m3_to_float(std::uint8_t(b)); }},
      {DType::f8_e5m2, 256, [](std::uint32_t b) { return fp8_e5m2_to_float(std::uint8_t(b)); }},
  };
  for (const DecodeCase& c : decode_cases) {
    const auto size = static_cast<std::size_t>(dtype_size(c.dtype));
    std::vector<std::uint8_t> encoded(c.patterns * size);
    for (std::uint32_t i = 0; i < c.patterns; ++i) std::memcpy(&encoded[i * size], &i, size);
    std::vector<float> decoded(c.patterns);
    decode_on_device(encoded.data(), c.dtype, c.patterns, decoded.data());
    Mismatches exact(std::string("device ") + std::string(dtype_name(c.dtype)) + " -> fp32");
    std::uint64_t nan_payload_differences = 0;
    for (std::uint32_t i = 0; i < c.patterns; ++i) {
      const float expected = c.cpu(i);
      if (is_nan(expected) && is_nan(decoded[i])) {
        if (bits_of(expected) != bits_of(decoded[i])) ++nan_payload_differences;
      } else {
        exact.compare(i, bits_of(expected), bits_of(decoded[i]));
      }
    }
    CHECK_NO_MISMATCHES(exact);
    if (nan_payload_differences > 0) {
      WARN("device " << dtype_name(c.dtype) << " -> fp32 keeps a different NaN bit pattern than "
                     << "the CPU numerics for " << nan_payload_differences << " NaN inputs");
    }
  }

  // --- fp8 -> fp16 bits (__nv_cvt_fp8_to_halfraw) against the toolkit's host version. ---
  for (const DType fp8 : {DType::f8_e4m3, DType::f8_e5m2}) {
    std::vector<std::uint8_t> bytes(256);
    for (std::uint32_t i = 0; i < 256; ++i) bytes[i] = static_cast<std::uint8_t>(i);
    std::vector<std::uint16_t> device_half(256);
    fp8_to_half_on_device(bytes.data(), fp8, 256, device_half.data());
    Mismatches exact(std::string("device ") + std::string(dtype_name(fp8)) + " -> fp16");
    std::uint64_t nan_payload_differences = 0;
    for (std::uint32_t i = 0; i < 256; ++i) {
      const std::uint16_t expected = toolkit::fp8_to_half(
          static_cast<std::uint8_t>(i), fp8 == DType::f8_e4m3 ? __NV_E4M3 : __NV_E5M2);
      const bool both_nan = (expected & 0x7FFF) > 0x7C00 && (device_half[i] & 0x7FFF) > 0x7C00;
      if (both_nan) {
        if (expected != device_half[i]) ++nan_payload_differences;
      } else {
        exact.compare(i, expected, device_half[i]);
      }
    }
    CHECK_NO_MISMATCHES(exact);
    if (nan_payload_differences > 0) {
      WARN("device " << dtype_name(fp8) << " -> fp16 gives a different NaN bit pattern than the "
                     << "toolkit's host path for " << nan_payload_differences << " NaN inputs");
    }
  }

  // --- to_cache<kind>(x, scale), per-element scales, every dtype x kind. ---
  for (const DType dtype : {DType::f32, DType::f16, DType::bf16}) {
    for (const KvCacheDtype kind :
         {KvCacheDtype::kAuto, KvCacheDtype::kFp8E4m3, KvCacheDtype::kFp8E5m2}) {
      INFO("activation " << dtype_name(dtype) << ", cache " << kind_name(kind));
      const ActivationSet activations = activations_of(dtype);
      const std::vector<float> scales = scales_for(activations.count);
      const auto element_size = static_cast<std::size_t>(dtype_size(dtype));
      const std::size_t stored_size = kind == KvCacheDtype::kAuto ? element_size : 1;
      std::vector<std::uint8_t> device_cache(activations.count * stored_size);
      store_cache_elements_on_device(device_cache.data(), activations.bytes.data(), dtype, kind,
                                     scales.data(), activations.count);
      Mismatches stored("device to_cache vs cpu::store_cache_element");
      for (std::int64_t i = 0; i < activations.count; ++i) {
        std::uint8_t expected[4] = {};
        cpu::store_cache_element(expected, activations.bytes.data() + i * element_size, dtype, kind,
                                 scales[i]);
        std::uint32_t expected_bits = 0, actual_bits = 0;
        std::memcpy(&expected_bits, expected, stored_size);
        std::memcpy(&actual_bits, device_cache.data() + i * stored_size, stored_size);
        stored.compare(static_cast<std::uint64_t>(i), expected_bits, actual_bits);
      }
      CHECK_NO_MISMATCHES(stored);
    }
  }
}
