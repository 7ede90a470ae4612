// Tests of convert_fp8 (vLLM csrc/cache_kernels.cu @9803b00: convert_fp8).
//
// CPU part (runs everywhere):
//   - worked examples a learner can check by hand;
//   - exhaustive numerics through the op: all 256 codes of each fp8 format dequantized into f32,
//     f16 and bf16, every f16 and bf16 bit pattern (and 200,000 fp32 ones) quantized into both
//     formats, at scales 1, a power of two and non-powers of two; the expected bytes come from
//     the CUDA Toolkit's own conversions (host paths of cuda_fp16.h, cuda_bf16.h, cuda_fp8.h),
//     independent of the hand-written numerics the CPU reference uses;
//   - the round trip fp8 → wide → fp8 gives back every finite code (E5M2's ±inf saturate to
//     ±57344, NaN stays NaN);
//   - strided views land where their strides say, and the plan merges what can be merged;
//   - one test per validation rule: InvalidArgument naming the argument, output unchanged;
//   - the W7 workload points and byte model.
// GPU part ([gpu]): naive and optimized write the same bytes as the CPU reference, whole
// poisoned buffers compared (untouched slack included), over sizes around the vector width,
// misaligned starts, strided and broadcast views, both formats, both directions, every wide
// dtype and scales 1, 2^-4 and 0.0123; and over the exhaustive inputs above.
//
// Comparisons are on bit patterns, never on values: 0.0 == -0.0 and NaN != NaN would hide
// exactly the cases that matter.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "numerics.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/convert_fp8.h"
#include "pagedkv/registry.h"
#include "support.h"

namespace {

using namespace pagedkv;
using Catch::Matchers::Contains;
using test::poisoned;
using test::same_bytes;
using test::bits_of;
using test::float_of;

// ---------------------------------------------------------------------------------------------
// The independent reference: the CUDA Toolkit's conversions (host paths), on raw bits.
namespace toolkit {

float wide_to_float(const std::uint8_t* element, DType dtype) {
  if (dtype == DType::f32) {
    float value;
    std::memcpy(&value, element, 4);
    return value;
  }
  std::uint16_t bits;
  std::memcpy(&bits, element, 2);
  if (dtype == DType::f16) {
    __half_raw raw;
    raw.x = bits;
    return __half2float(__half(raw));
  }
  __nv_bfloat16_raw raw;
  raw.x = bits;
  return __bfloat162float(__nv_bfloat16(raw));
}

__nv_fp8_interpretation_t kind_of(const std::string& kv_dtype) {
  return kv_dtype == "fp8_e5m2" ? __NV_E5M2 : __NV_E4M3;
}

// fp8(float(x) / scale), as upstream's quantizing conversion does it.
std::uint8_t quantize(const std::uint8_t* element, DType dtype, float scale,
                      const std::string& kv_dtype) {
  return __nv_cvt_float_to_fp8(wide_to_float(element, dtype) / scale, __NV_SATFINITE,
                               kind_of(kv_dtype));
}

// float(fp8) × scale rounded into dtype, as upstream's dequantizing conversion does it: fp8 →
// fp16 → fp32, one multiplication, then the rounding conversion. Writes dtype_size(dtype) bytes.
void dequantize(std::uint8_t byte, float scale, const std::string& kv_dtype, DType dtype,
                std::uint8_t* out) {
  const __half_raw half = __nv_cvt_fp8_to_halfraw(byte, kind_of(kv_dtype));
  const float value = __half2float(__half(half)) * scale;
  if (dtype == DType::f32) {
    std::memcpy(out, &value, 4);
  } else if (dtype == DType::f16) {
    const std::uint16_t bits = static_cast<__half_raw>(__float2half_rn(value)).x;
    std::memcpy(out, &bits, 2);
  } else {
    const std::uint16_t bits = static_cast<__nv_bfloat16_raw>(__float2bfloat16_rn(value)).x;
    std::memcpy(out, &bits, 2);
  }
}

}  // namespace toolkit

// ---------------------------------------------------------------------------------------------
// Small helpers.

const char* const kFormats[] = {"fp8_e4m3", "fp8_e5m2"};
const DType kWideDtypes[] = {DType::f32, DType::f16, DType::bf16};

// A view with explicit shape and strides (in elements).
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

// Row-major strides of `shape`.
std::vector<std::int64_t> packed_strides(const std::vector<std::int64_t>& shape) {
  std::vector<std::int64_t> strides(shape.size());
  std::int64_t step = 1;
  for (std::size_t d = shape.size(); d-- > 0;) {
    strides[d] = step;
    step *= shape[d];
  }
  return strides;
}

// Counts mismatching elements and keeps the first few, for one readable failure message.
struct Mismatches {
  std::uint64_t count = 0;
  std::string first;
  void compare(std::int64_t index, std::uint32_t expected, std::uint32_t actual, float scale) {
    if (expected == actual) return;
    if (count++ < 5) {
      char line[160];
      std::snprintf(line, sizeof line, "\n  element %lld, scale %a: expected 0x%x, got 0x%x",
                    static_cast<long long>(index), scale, expected, actual);
      first += line;
    }
  }
};

#define CHECK_NO_MISMATCHES(m) \
  do {                         \
    INFO((m).first);           \
    CHECK((m).count == 0u);    \
  } while (0)

void convert_cpu(const TensorView& output, const TensorView& input, double scale,
                 const std::string& kv_dtype) {
  pagedkv::run<ConvertFp8>(Impl::cpu, {output, input, scale, kv_dtype});
}

// Scales of the exhaustive tests: 1, powers of two (exact), non-powers of two (rounding).
const float kScales[] = {1.f, 0.0625f, 16.f, 0.0123f, 3.7f, 4.f / 448.f};

// Every f16 or bf16 bit pattern, or 200,000 fp32 ones (random bits, NaN and inf included, plus
// the values near E4M3's and E5M2's saturation points).
Buffer wide_inputs(DType dtype, std::int64_t& count) {
  if (dtype != DType::f32) {
    count = 65536;
    Buffer buffer(Memory::host, 65536 * 2);
    for (std::uint32_t i = 0; i < 65536; ++i) {
      const auto bits = static_cast<std::uint16_t>(i);
      std::memcpy(buffer.data() + 2 * i, &bits, 2);
    }
    return buffer;
  }
  std::vector<float> values = {0.f, -0.f, 448.f, 464.f, 465.f, 57344.f, 61440.f, 61441.f,
                               std::numeric_limits<float>::infinity(),
                               -std::numeric_limits<float>::infinity(),
                               std::numeric_limits<float>::quiet_NaN(), float_of(0xFFC00001u),
                               std::ldexp(1.f, -10), std::ldexp(3.f, -10), std::ldexp(1.f, -17)};
  std::mt19937 rng(8);
  while (values.size() < 200'000) {
    const std::uint32_t r = rng();
    // Half fully random bits, half with the exponent where fp8 lives (2^-20 .. 2^20).
    values.push_back(values.size() % 2 ? float_of(r)
                                       : float_of((r & 0x807FFFFFu) | (107u + r % 41u) << 23));
  }
  count = static_cast<std::int64_t>(values.size());
  Buffer buffer(Memory::host, values.size() * 4);
  std::memcpy(buffer.data(), values.data(), buffer.size());
  return buffer;
}

}  // namespace

// =============================================================================================
// Worked examples.

TEST_CASE("convert_fp8 CPU: the worked example of the header", "[convert_fp8]") {
  // bf16 3.0 and 300.0, E4M3, scale 0.5: 6.0 = 1.5 · 2^2 → 0x4C; 600 saturates to 448 → 0x7E.
  const std::uint16_t wide[2] = {numerics::float_to_bf16_bits(3.f),
                                 numerics::float_to_bf16_bits(300.f)};
  std::uint8_t bytes[2] = {0, 0};
  convert_cpu(TensorView::contiguous(bytes, DType::u8, {2}),
              TensorView::contiguous(const_cast<std::uint16_t*>(wide), DType::bf16, {2}), 0.5,
              "fp8");
  CHECK(bytes[0] == 0x4C);
  CHECK(bytes[1] == 0x7E);
  // Back: 6.0 × 0.5 = 3.0 exactly; 448 × 0.5 = 224.
  float back[2] = {0.f, 0.f};
  convert_cpu(TensorView::contiguous(back, DType::f32, {2}),
              TensorView::contiguous(bytes, DType::u8, {2}), 0.5, "fp8_e4m3");
  CHECK(back[0] == 3.f);
  CHECK(back[1] == 224.f);
  // E5M2, scale 1: 3.0 = 1.5 · 2^1 → sign 0, exponent 1 + 15 = 10000, mantissa 10: 0x42;
  // 1e6 saturates to 57344 = 0x7B; -inf saturates to -57344 = 0xFB.
  const float f32[3] = {3.f, 1e6f, -std::numeric_limits<float>::infinity()};
  std::uint8_t e5m2[3] = {0, 0, 0};
  convert_cpu(TensorView::contiguous(e5m2, DType::f8_e5m2, {3}),
              TensorView::contiguous(const_cast<float*>(f32), DType::f32, {3}), 1.0, "fp8_e5m2");
  CHECK(e5m2[0] == 0x42);
  CHECK(e5m2[1] == 0x7B);
  CHECK(e5m2[2] == 0xFB);
}

// =============================================================================================
// Exhaustive numerics, against the toolkit.

TEST_CASE("convert_fp8 CPU: all 256 codes dequantize like the toolkit, every dtype and scale",
          "[convert_fp8]") {
  const std::string kv_dtype = GENERATE(values<std::string>({"fp8_e4m3", "fp8_e5m2"}));
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  INFO(kv_dtype << " -> " << dtype_name(dtype));
  std::uint8_t codes[256];
  for (int i = 0; i < 256; ++i) codes[i] = static_cast<std::uint8_t>(i);
  const auto size = static_cast<std::size_t>(dtype_size(dtype));
  Mismatches mismatches;
  for (const float scale : kScales) {
    std::vector<std::uint8_t> out(256 * size, 0);
    convert_cpu(TensorView::contiguous(out.data(), dtype, {256}),
                TensorView::contiguous(codes, DType::u8, {256}), scale, kv_dtype);
    for (int i = 0; i < 256; ++i) {
      std::uint8_t expected[4] = {};
      toolkit::dequantize(codes[i], scale, kv_dtype, dtype, expected);
      std::uint32_t want = 0, got = 0;
      std::memcpy(&want, expected, size);
      std::memcpy(&got, out.data() + i * size, size);
      mismatches.compare(i, want, got, scale);
    }
  }
  CHECK_NO_MISMATCHES(mismatches);
}

TEST_CASE("convert_fp8 CPU: every f16 and bf16 pattern (and 200,000 fp32) quantizes like the "
          "toolkit",
          "[convert_fp8]") {
  const std::string kv_dtype = GENERATE(values<std::string>({"fp8", "fp8_e4m3", "fp8_e5m2"}));
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  INFO(dtype_name(dtype) << " -> " << kv_dtype);
  std::int64_t count = 0;
  const Buffer inputs = wide_inputs(dtype, count);
  const auto size = static_cast<std::size_t>(dtype_size(dtype));
  Mismatches mismatches;
  std::uint64_t saturated = 0;
  for (const float scale : kScales) {
    std::vector<std::uint8_t> out(static_cast<std::size_t>(count), 0);
    convert_cpu(TensorView::contiguous(out.data(), DType::u8, {count}),
                TensorView::contiguous(inputs.data(), dtype, {count}), scale, kv_dtype);
    for (std::int64_t i = 0; i < count; ++i) {
      const std::uint8_t want = toolkit::quantize(inputs.data() + i * size, dtype, scale, kv_dtype);
      mismatches.compare(i, want, out[static_cast<std::size_t>(i)], scale);
      saturated += (want & 0x7F) == (kv_dtype == "fp8_e5m2" ? 0x7B : 0x7E);
    }
  }
  CHECK_NO_MISMATCHES(mismatches);
  CHECK(saturated > 100u);  // the inputs did reach the saturation
}

TEST_CASE("convert_fp8 CPU: fp8 -> wide -> fp8 gives back every finite code", "[convert_fp8]") {
  const std::string kv_dtype = GENERATE(values<std::string>({"fp8_e4m3", "fp8_e5m2"}));
  const bool e5m2 = kv_dtype == "fp8_e5m2";
  // (dtype, scale) pairs where the wide value is exact or close enough to round back: f32 and
  // bf16 at any scale that keeps the range; f16 where neither overflow (E5M2's 57344 × 4 is past
  // 65504) nor its subnormals (E5M2's 2^-16 × 0.0123) lose the value.
  struct Case {
    DType dtype;
    float scale;
  };
  const Case cases[] = {{DType::f32, 1.f},     {DType::f32, 0.0625f}, {DType::f32, 16.f},
                        {DType::f32, 0.0123f}, {DType::f32, 3.7f},    {DType::bf16, 1.f},
                        {DType::bf16, 0.0625f}, {DType::bf16, 0.0123f}, {DType::bf16, 3.7f},
                        {DType::f16, 1.f},     {DType::f16, 0.25f}};
  std::uint8_t codes[256];
  for (int i = 0; i < 256; ++i) codes[i] = static_cast<std::uint8_t>(i);
  for (const Case& c : cases) {
    INFO(kv_dtype << " via " << dtype_name(c.dtype) << ", scale " << c.scale);
    std::vector<std::uint8_t> wide(256 * static_cast<std::size_t>(dtype_size(c.dtype)));
    std::uint8_t back[256];
    convert_cpu(TensorView::contiguous(wide.data(), c.dtype, {256}),
                TensorView::contiguous(codes, DType::u8, {256}), c.scale, kv_dtype);
    convert_cpu(TensorView::contiguous(back, DType::u8, {256}),
                TensorView::contiguous(wide.data(), c.dtype, {256}), c.scale, kv_dtype);
    int finite_changed = 0;
    for (int i = 0; i < 256; ++i) {
      const std::uint8_t magnitude = codes[i] & 0x7F;
      const bool nan = e5m2 ? magnitude > 0x7C : magnitude == 0x7F;
      const bool inf = e5m2 && magnitude == 0x7C;
      if (nan) {
        CHECK(back[i] == 0x7F);  // NaN stays NaN (the canonical byte)
      } else if (inf) {
        CHECK(back[i] == ((codes[i] & 0x80) | 0x7B));  // ±inf saturates to ±57344
      } else {
        finite_changed += back[i] != codes[i];
      }
    }
    CHECK(finite_changed == 0);
  }
}

// =============================================================================================
// Layouts.

TEST_CASE("convert_fp8 CPU: strided views are converted element by element", "[convert_fp8]") {
  // input: a transposed view of a packed f32 [3, 2] buffer, so the logical [2, 3] has strides
  // (1, 2): input[r][c] = buffer[c * 2 + r]. output: u8 [2, 3] with a row pitch of 4 bytes in
  // an 8-byte poisoned buffer (bytes 3 and 7 are never written).
  const float buffer[6] = {1.f, -2.f, 0.5f, 448.f, 1000.f, -0.f};  // [c][r]
  Buffer out = poisoned(8);
  convert_cpu(make_view(out.data(), DType::u8, {2, 3}, {4, 1}),
              make_view(const_cast<float*>(buffer), DType::f32, {2, 3}, {1, 2}), 1.0, "fp8");
  Buffer expected = poisoned(8);
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 3; ++c)
      expected.data()[r * 4 + c] = numerics::float_to_fp8_e4m3(buffer[c * 2 + r]);
  CHECK(same_bytes(out, expected, 8));
  // Spot checks by hand: row 0 is (1, 0.5, 1000) → 0x38, 0x30, 0x7E (saturated).
  CHECK(out.data()[0] == 0x38);
  CHECK(out.data()[1] == 0x30);
  CHECK(out.data()[2] == 0x7E);

  // A broadcast input (stride 0) is read several times: [3, 2] from one row of 2.
  const std::uint8_t row[2] = {0x38, 0xB8};  // 1.0 and -1.0
  float dequantized[6] = {};
  convert_cpu(TensorView::contiguous(dequantized, DType::f32, {3, 2}),
              make_view(const_cast<std::uint8_t*>(row), DType::u8, {3, 2}, {0, 1}), 2.0, "fp8");
  for (int r = 0; r < 3; ++r) {
    CHECK(dequantized[2 * r] == 2.f);
    CHECK(dequantized[2 * r + 1] == -2.f);
  }
}

TEST_CASE("convert_fp8: the plan merges what both layouts allow", "[convert_fp8]") {
  Buffer wide(Memory::host, 4096 * 4);
  Buffer bytes(Memory::host, 4096);
  const auto plan_of = [&](const TensorView& output, const TensorView& input) {
    return ConvertFp8::validate({output, input, 1.0, "fp8"}, Impl::cpu);
  };
  // Two packed tensors: one run, whatever the shape.
  ConvertFp8Plan plan = plan_of(TensorView::contiguous(bytes.data(), DType::u8, {4, 16, 8}),
                                TensorView::contiguous(wide.data(), DType::bf16, {4, 16, 8}));
  CHECK(plan.contiguous);
  CHECK(plan.ndim == 1);
  CHECK(plan.shape[0] == 512);
  CHECK(plan.numel == 512);
  CHECK(plan.quantize);
  CHECK(plan.wide_dtype == DType::bf16);
  // The key half of a joint [blocks, 2, 64] allocation: rows of 64, 128 apart.
  plan = plan_of(TensorView::contiguous(bytes.data(), DType::u8, {8, 64}),
                 make_view(wide.data(), DType::f32, {8, 64}, {128, 1}));
  CHECK_FALSE(plan.contiguous);
  CHECK(plan.ndim == 2);
  CHECK(plan.shape[0] == 8);
  CHECK(plan.shape[1] == 64);
  CHECK(plan.input_strides[0] == 128);
  CHECK(plan.output_strides[0] == 64);
  // Size-1 dimensions do not matter, whatever their strides.
  plan = plan_of(make_view(wide.data(), DType::f16, {1, 32, 1}, {7, 1, 99}),
                 make_view(bytes.data(), DType::u8, {1, 32, 1}, {1000, 1, 3}));
  CHECK(plan.contiguous);
  CHECK_FALSE(plan.quantize);
  CHECK(plan.wide_dtype == DType::f16);
  // One element: a run of one.
  plan = plan_of(TensorView::contiguous(bytes.data(), DType::u8, {}),
                 TensorView::contiguous(wide.data(), DType::f32, {}));
  CHECK(plan.contiguous);
  CHECK(plan.numel == 1);
}

TEST_CASE("convert_fp8: zero elements is a no-op, null pointers included", "[convert_fp8]") {
  Buffer out = poisoned(16);
  for (const Impl impl : {Impl::cpu}) {
    CHECK_NOTHROW(pagedkv::run<ConvertFp8>(
        impl, {TensorView::contiguous(nullptr, DType::u8, {0, 16}),
               TensorView::contiguous(nullptr, DType::bf16, {0, 16}), 1.0, "fp8"}));
    CHECK_NOTHROW(pagedkv::run<ConvertFp8>(
        impl, {TensorView::contiguous(out.data(), DType::bf16, {4, 0}),
               TensorView::contiguous(nullptr, DType::u8, {4, 0}), 1.0, "fp8_e5m2"}));
  }
  CHECK(same_bytes(out, poisoned(16), 16));
}

// =============================================================================================
// Validation: one test per rule. A valid call (bf16 [4, 8] → u8 [4, 8], E4M3, scale 0.5), broken
// in exactly one way; the call must throw InvalidArgument naming the argument and write nothing.

namespace {

struct ValidCall {
  Buffer input_data{Memory::host, 256};
  Buffer output_data = poisoned(256);
  TensorView input = TensorView::contiguous(input_data.data(), DType::bf16, {4, 8});
  TensorView output = TensorView::contiguous(output_data.data(), DType::u8, {4, 8});
  double scale = 0.5;
  std::string kv_dtype = "fp8_e4m3";
  Impl impl = Impl::cpu;

  ValidCall() { test::fill_random(input_data.data(), DType::bf16, 4 * 8, 3); }

  // Switches to dequantizing: u8 [4, 8] bytes → f32 [4, 8].
  void dequantize() {
    input = TensorView::contiguous(input_data.data(), DType::u8, {4, 8});
    output = TensorView::contiguous(output_data.data(), DType::f32, {4, 8});
  }

  void call() const { pagedkv::run<ConvertFp8>(impl, {output, input, scale, kv_dtype}); }

  bool nothing_written() const { return same_bytes(output_data, poisoned(256), 256); }
};

}  // namespace

TEST_CASE("convert_fp8: the valid calls used by the rule tests pass", "[convert_fp8]") {
  ValidCall call;
  CHECK_NOTHROW(call.call());
  ValidCall back;
  back.dequantize();
  CHECK_NOTHROW(back.call());
}

TEST_CASE("convert_fp8 rejects kv_dtype \"auto\" (undefined upstream)", "[convert_fp8]") {
  ValidCall call;
  call.kv_dtype = "auto";
  CHECK_REJECTED(call, "kv_dtype");
  CHECK_THROWS_WITH(call.call(), Contains("\"auto\" names no fp8 format"));
  call.dequantize();
  CHECK_REJECTED(call, "kv_dtype");
}

TEST_CASE("convert_fp8 rejects an unknown kv_dtype", "[convert_fp8]") {
  ValidCall call;
  call.kv_dtype = GENERATE("fp8_ds_mla", "bfloat16", "float16", "int8", "", "FP8", "fp8_e4m3fn");
  CAPTURE(call.kv_dtype);
  CHECK_REJECTED(call, "kv_dtype");
}

TEST_CASE("convert_fp8 accepts fp8_e5m2 (rejected by the pinned upstream)", "[convert_fp8]") {
  ValidCall call;
  call.kv_dtype = "fp8_e5m2";
  CHECK_NOTHROW(call.call());
}

TEST_CASE("convert_fp8 rejects byte -> byte (a silent no-op upstream)", "[convert_fp8]") {
  ValidCall call;
  call.dequantize();
  call.output.dtype = GENERATE(DType::u8, DType::f8_e4m3);
  CHECK_REJECTED(call, "output");
  CHECK_THROWS_WITH(call.call(), Contains("byte to byte"));
}

TEST_CASE("convert_fp8 rejects wide -> wide", "[convert_fp8]") {
  ValidCall call;
  call.output.dtype = GENERATE(DType::f16, DType::bf16, DType::f32);
  CHECK_REJECTED(call, "output");
  CHECK_THROWS_WITH(call.call(), Contains("one fp8 byte per element"));
}

TEST_CASE("convert_fp8 rejects an input dtype that is neither wide nor one byte",
          "[convert_fp8]") {
  ValidCall call;
  call.input.dtype = GENERATE(DType::i32, DType::i64);
  CHECK_REJECTED(call, "input");
}

TEST_CASE("convert_fp8 rejects an output dtype that cannot take the direction", "[convert_fp8]") {
  ValidCall call;
  SECTION("quantizing into i32") {
    call.output.dtype = DType::i32;
    CHECK_REJECTED(call, "output");
  }
  SECTION("dequantizing into i64") {
    call.dequantize();
    call.output.dtype = DType::i64;
    CHECK_REJECTED(call, "output");
  }
}

TEST_CASE("convert_fp8 rejects a typed fp8 tensor of the other format", "[convert_fp8]") {
  ValidCall call;
  SECTION("output f8_e5m2, kv_dtype fp8_e4m3") {
    call.output.dtype = DType::f8_e5m2;
    CHECK_REJECTED(call, "output");
    call.kv_dtype = "fp8_e5m2";  // its own format is fine
    CHECK_NOTHROW(call.call());
  }
  SECTION("input f8_e4m3, kv_dtype fp8_e5m2") {
    call.dequantize();
    call.input.dtype = DType::f8_e4m3;
    call.kv_dtype = "fp8_e5m2";
    CHECK_REJECTED(call, "input");
    call.kv_dtype = "fp8";  // "fp8" is E4M3
    CHECK_NOTHROW(call.call());
  }
}

TEST_CASE("convert_fp8 rejects shapes that differ", "[convert_fp8]") {
  ValidCall call;
  SECTION("same count, other shape") {
    call.output = TensorView::contiguous(call.output_data.data(), DType::u8, {8, 4});
    CHECK_REJECTED(call, "output");
  }
  SECTION("other rank") {
    call.output = TensorView::contiguous(call.output_data.data(), DType::u8, {32});
    CHECK_REJECTED(call, "output");
  }
  SECTION("fewer elements") {
    call.output = TensorView::contiguous(call.output_data.data(), DType::u8, {4, 7});
    CHECK_REJECTED(call, "output");
  }
}

TEST_CASE("convert_fp8 rejects negative strides", "[convert_fp8]") {
  ValidCall call;
  call.input = make_view(static_cast<std::uint8_t*>(call.input_data.data()) + 62, DType::bf16,
                         {4, 8}, {-8, 1});
  CHECK_REJECTED(call, "input");
}

TEST_CASE("convert_fp8 rejects an output whose elements share memory", "[convert_fp8]") {
  ValidCall call;
  call.output = make_view(call.output_data.data(), DType::u8, {4, 8}, {0, 1});  // 4 rows, 1 row
  CHECK_REJECTED(call, "output");
  CHECK_THROWS_WITH(call.call(), Contains("own memory"));
}

TEST_CASE("convert_fp8 rejects input and output sharing memory", "[convert_fp8]") {
  ValidCall call;
  SECTION("in place") {
    call.output = TensorView::contiguous(call.input_data.data(), DType::u8, {4, 8});
    CHECK_THROWS_AS(call.call(), InvalidArgument);
    CHECK_THROWS_WITH(call.call(), Contains("output") && Contains("input"));
  }
  SECTION("partly overlapping") {
    call.input = TensorView::contiguous(call.output_data.data() + 16, DType::bf16, {4, 8});
    CHECK_REJECTED(call, "output");
  }
}

TEST_CASE("convert_fp8 rejects a scale that is not finite and positive as an fp32",
          "[convert_fp8]") {
  ValidCall call;
  call.scale = GENERATE(0.0, -1.0, -0.0, std::numeric_limits<double>::infinity(),
                        std::numeric_limits<double>::quiet_NaN(), 1e-50, 1e40);
  CAPTURE(call.scale);
  CHECK_REJECTED(call, "scale");
  call.dequantize();
  CHECK_REJECTED(call, "scale");
}

TEST_CASE("convert_fp8 accepts a tiny and a huge scale that fp32 holds", "[convert_fp8]") {
  ValidCall call;
  call.scale = GENERATE(1e-40, 1e38);  // an fp32 subnormal, and near the fp32 maximum
  CHECK_NOTHROW(call.call());
}

TEST_CASE("convert_fp8 rejects tensors on the wrong device", "[convert_fp8]") {
  ValidCall call;
  SECTION("CPU reference, output on cuda") {
    call.output.device = Device::cuda;
    CHECK_REJECTED(call, "output");
  }
  SECTION("CPU reference, input on cuda") {
    call.input.device = Device::cuda;
    CHECK_REJECTED(call, "input");
  }
  SECTION("naive and optimized, host tensors") {
    // Rejected before any CUDA call: runs without a GPU too.
    for (const Impl impl : {Impl::naive, Impl::optimized}) {
      call.impl = impl;
      call.output.device = Device::cpu;
      CHECK_REJECTED(call, "output");
      call.output.device = Device::cuda;
      CHECK_REJECTED(call, "input");
    }
  }
}

TEST_CASE("convert_fp8 rejects a null tensor with elements", "[convert_fp8]") {
  ValidCall call;
  call.input.data = nullptr;
  CHECK_REJECTED(call, "input");
}

// =============================================================================================
// W7.

TEST_CASE("convert_fp8: W7 points and byte model", "[convert_fp8]") {
  const OpEntry& op = find_op("convert_fp8");
  CHECK(op.workloads == std::vector<std::string>{"W7"});
  std::set<std::int64_t> sizes;
  std::set<std::string> variants;
  for (const WorkloadPoint& p : op.points("W7", false)) {
    sizes.insert(p.size);
    variants.insert(p.variant);
    CHECK(p.size_unit == "blocks");
  }
  // 64 MiB … 1 GiB of bf16 in 32 KiB blocks.
  CHECK(sizes == std::set<std::int64_t>{2048, 4096, 8192, 16384, 32768});
  CHECK(variants == std::set<std::string>{"bf16 -> fp8_e4m3", "fp8_e4m3 -> bf16"});
  for (const WorkloadPoint& p : op.points("W7", true)) {
    CAPTURE(p.variant, p.size);
    const auto c = op.make_case(p, 5);
    // 16384 elements per block, 2 bytes on one side and 1 on the other: read + written.
    CHECK(c->bytes_moved() == p.size * 16384 * 3);
    CHECK(c->copy_kind() == CopyKind::device_to_device);
    CHECK_NOTHROW(c->run_cpu());
  }
}

// =============================================================================================
// GPU: naive and optimized against the CPU reference, byte for byte.

namespace {

// One problem: host input and a poisoned host output, each with slack before and after the
// viewed elements (misaligned starts, and bytes the op must not touch).
struct Problem {
  Buffer input;
  Buffer output;
  TensorView input_view, output_view;
  double scale = 1.0;
  std::string kv_dtype;
};

// A problem of `shape` whose tensors have `input_strides` / `output_strides` (empty: packed),
// starting `input_shift` / `output_shift` elements into their buffers.
Problem make_problem(DType input_dtype, DType output_dtype, const std::vector<std::int64_t>& shape,
                     std::vector<std::int64_t> input_strides,
                     std::vector<std::int64_t> output_strides, std::int64_t input_shift,
                     std::int64_t output_shift, double scale, const std::string& kv_dtype,
                     std::uint64_t seed) {
  if (input_strides.empty()) input_strides = packed_strides(shape);
  if (output_strides.empty()) output_strides = packed_strides(shape);
  const auto span = [&](const std::vector<std::int64_t>& strides) {
    std::int64_t last = 0;
    for (std::size_t d = 0; d < shape.size(); ++d) last += (shape[d] - 1) * strides[d];
    return last + 1;
  };
  Problem p;
  const std::int64_t input_elements = span(input_strides) + input_shift + 16;
  const std::int64_t output_elements = span(output_strides) + output_shift + 16;
  p.input = Buffer(Memory::host, input_elements * dtype_size(input_dtype));
  test::fill_random(p.input.data(), input_dtype, input_elements, seed, 500.f);
  if (is_byte_dtype(input_dtype)) {  // every byte random: all codes, NaN and inf included
    std::mt19937 rng(static_cast<std::uint32_t>(seed));
    for (std::int64_t i = 0; i < input_elements; ++i) p.input.data()[i] = rng() & 0xFF;
  }
  p.output = poisoned(output_elements * dtype_size(output_dtype));
  p.input_view = make_view(p.input.data() + input_shift * dtype_size(input_dtype), input_dtype,
                           shape, input_strides);
  p.output_view = make_view(p.output.data() + output_shift * dtype_size(output_dtype),
                            output_dtype, shape, output_strides);
  p.scale = scale;
  p.kv_dtype = kv_dtype;
  return p;
}

// CPU reference, naive and optimized on the same problem: whole output buffers byte-identical.
void check_three_way(const Problem& p) {
  Buffer expected = copy_to(Memory::host, p.output);
  convert_cpu(test::rebase(p.output_view, p.output.data(), expected.data(), Device::cpu),
              p.input_view, p.scale, p.kv_dtype);
  REQUIRE(test::first_difference(expected.data(), p.output.data(), p.output.size()) >= 0);
  const Buffer input = copy_to(Memory::device, p.input);
  for (const Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    const Buffer output = copy_to(Memory::device, p.output);
    pagedkv::run<ConvertFp8>(
        impl, {test::rebase(p.output_view, p.output.data(), output.data(), Device::cuda),
               test::rebase(p.input_view, p.input.data(), input.data(), Device::cuda), p.scale,
               p.kv_dtype});
    PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
    Buffer actual(Memory::host, p.output.size());
    output.download(actual.data(), p.output.size());
    CHECK(same_bytes(actual, expected, p.output.size()));
  }
}

}  // namespace

TEST_CASE("convert_fp8 GPU: sizes around the vector width, misaligned starts, both directions",
          "[convert_fp8][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const std::string kv_dtype = GENERATE(values<std::string>({"fp8_e4m3", "fp8_e5m2"}));
  const DType wide = GENERATE(DType::f32, DType::f16, DType::bf16);
  const bool quantize = GENERATE(true, false);
  const double scale = GENERATE(1.0, 0.0625, 0.0123);
  const std::int64_t numel =
      GENERATE(1, 2, 15, 16, 17, 31, 33, 255, 1000, 4099, 65536 + 7, 3 * 1024 * 1024 + 5);
  // Element shifts of (input, output): aligned, the fp8 side off by some bytes, the wide side
  // off, both off the same (the vector path after a head), both off differently (scalar only).
  const auto shifts = GENERATE(table<std::int64_t, std::int64_t>(
      {{0, 0}, {0, 3}, {5, 0}, {7, 7}, {1, 2}, {16, 16}}));
  const DType input_dtype = quantize ? wide : DType::u8;
  const DType output_dtype = quantize ? DType::u8 : wide;
  INFO(dtype_name(input_dtype) << " -> " << dtype_name(output_dtype) << ", " << kv_dtype
                               << ", scale " << scale << ", numel " << numel << ", shifts "
                               << std::get<0>(shifts) << " / " << std::get<1>(shifts));
  check_three_way(make_problem(input_dtype, output_dtype, {numel}, {}, {}, std::get<0>(shifts),
                               std::get<1>(shifts), scale, kv_dtype,
                               static_cast<std::uint64_t>(numel)));
}

TEST_CASE("convert_fp8 GPU: shapes and strided views", "[convert_fp8][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const std::string kv_dtype = GENERATE(values<std::string>({"fp8", "fp8_e5m2"}));
  const DType wide = GENERATE(DType::f32, DType::bf16, DType::f16);
  const bool quantize = GENERATE(true, false);
  const DType input_dtype = quantize ? wide : DType::u8;
  const DType output_dtype = quantize ? DType::u8 : wide;
  struct Layout {
    const char* what;
    std::vector<std::int64_t> shape, input_strides, output_strides;
  };
  const Layout layouts[] = {
      {"cache [blocks, 16, 8, 128] packed", {5, 16, 8, 128}, {}, {}},
      {"HND view of an NHD buffer", {3, 16, 8, 64}, {16 * 8 * 64, 64, 16 * 64, 1}, {}},
      {"key half of a joint [blocks, 2, 16, 64] allocation",
       {6, 16, 64},
       {2 * 16 * 64, 64, 1},
       {2 * 16 * 64, 64, 1}},
      {"rows of 80 with a pitch of 96 on both sides", {33, 80}, {96, 1}, {96, 1}},
      {"transposed input", {48, 40}, {1, 48}, {}},
      {"broadcast input (stride 0)", {7, 300}, {0, 1}, {}},
      {"one element", {}, {}, {}},
      {"size-1 dimensions with odd strides", {1, 1000, 1}, {5, 1, 3}, {9, 1, 1}},
  };
  for (const Layout& layout : layouts) {
    INFO(layout.what << ": " << dtype_name(input_dtype) << " -> " << dtype_name(output_dtype)
                     << ", " << kv_dtype);
    for (const double scale : {1.0, 0.0625, 0.0123}) {
      INFO("scale " << scale);
      check_three_way(make_problem(input_dtype, output_dtype, layout.shape, layout.input_strides,
                                   layout.output_strides, 0, 0, scale, kv_dtype, 42));
    }
  }
}

TEST_CASE("convert_fp8 GPU: every code and every 16-bit pattern, bit-identical to the CPU",
          "[convert_fp8][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const std::string kv_dtype = GENERATE(values<std::string>({"fp8_e4m3", "fp8_e5m2"}));
  const DType wide = GENERATE(DType::f32, DType::f16, DType::bf16);
  for (const float scale : kScales) {
    INFO(dtype_name(wide) << ", " << kv_dtype << ", scale " << scale);
    // Quantize every f16 / bf16 pattern (200,000 fp32 ones).
    std::int64_t count = 0;
    const Buffer inputs = wide_inputs(wide, count);
    Problem quantize;
    quantize.input = copy_to(Memory::host, inputs);
    quantize.output = poisoned(static_cast<std::size_t>(count));
    quantize.input_view = TensorView::contiguous(quantize.input.data(), wide, {count});
    quantize.output_view = TensorView::contiguous(quantize.output.data(), DType::u8, {count});
    quantize.scale = scale;
    quantize.kv_dtype = kv_dtype;
    check_three_way(quantize);
    // Dequantize every code, 64 times over (so that the vector path sees every code too).
    Problem dequantize;
    dequantize.input = Buffer(Memory::host, 256 * 64);
    for (int i = 0; i < 256 * 64; ++i) dequantize.input.data()[i] = static_cast<std::uint8_t>(i);
    dequantize.output = poisoned(256 * 64 * static_cast<std::size_t>(dtype_size(wide)));
    dequantize.input_view = TensorView::contiguous(dequantize.input.data(), DType::u8, {256 * 64});
    dequantize.output_view = TensorView::contiguous(dequantize.output.data(), wide, {256 * 64});
    dequantize.scale = scale;
    dequantize.kv_dtype = kv_dtype;
    check_three_way(dequantize);
  }
}
