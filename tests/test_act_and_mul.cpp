// Tests of the gated activations silu_and_mul, gelu_and_mul and gelu_tanh_and_mul (vLLM
// csrc/activation_kernels.cu; chapter "The model ops beside the cache").
//
// CPU part (runs everywhere): the headers' worked examples; the CPU reference's math against a
// long double evaluation of the exact functions, over every finite bf16 and f16 gate value and
// a sample of f32 ones; strided rows; zero rows; and one test per validation rule: the call
// throws InvalidArgument naming the argument, and no byte of out changes.
//
// GPU part ([gpu]): naive and optimized bit-identical to each other (the same device math) over
// dtypes × d × rows × layouts, each within ulp_bound() of the CPU reference (the ulp taken at
// |gate × up|), out fully written and the bytes around it untouched; and the bound measured
// over every bf16 and f16 gate value (up random) and a random sample of f32 pairs, the measured
// maximum printed.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "activation.h"
#include "norm_support.h"
#include "pagedkv/agreement.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/gelu_and_mul.h"
#include "pagedkv/ops/gelu_tanh_and_mul.h"
#include "pagedkv/ops/silu_and_mul.h"
#include "support.h"

namespace {

using namespace pagedkv;
using namespace pagedkv::test::norm;
using pagedkv::test::same_bytes;

// Runs the op of `activation` with implementation `impl` (validated first).
void act_and_mul(Activation activation, Impl impl, const TensorView& out, const TensorView& input) {
  switch (activation) {
    case Activation::silu:
      pagedkv::run<SiluAndMul>(impl, {out, input});
      return;
    case Activation::gelu:
      pagedkv::run<GeluAndMul>(impl, {out, input});
      return;
    case Activation::gelu_tanh:
      pagedkv::run<GeluTanhAndMul>(impl, {out, input});
      return;
  }
}

const char* activation_name(Activation activation) {
  switch (activation) {
    case Activation::silu:
      return "silu_and_mul";
    case Activation::gelu:
      return "gelu_and_mul";
    case Activation::gelu_tanh:
      return "gelu_tanh_and_mul";
  }
  return "?";
}

double bound_of(Activation activation, DType dtype) {
  switch (activation) {
    case Activation::silu:
      return SiluAndMul::ulp_bound(dtype);
    case Activation::gelu:
      return GeluAndMul::ulp_bound(dtype);
    case Activation::gelu_tanh:
      return GeluTanhAndMul::ulp_bound(dtype);
  }
  return 0.0;
}

// The exact activation in long double: the ground truth of the CPU reference's float math.
long double exact_activation(Activation activation, long double x) {
  switch (activation) {
    case Activation::silu:
      return x / (1.0L + std::exp(-x));
    case Activation::gelu:
      return 0.5L * x * std::erfc(-x / std::sqrt(2.0L));
    case Activation::gelu_tanh: {
      const long double beta = std::sqrt(2.0L / 3.14159265358979323846264338327950288L);
      return 0.5L * x * (1.0L + std::tanh(beta * (x + 0.044715L * x * x * x)));
    }
  }
  return x;
}

// ---------------------------------------------------------------------------------------------
// CPU reference.

TEST_CASE("act_and_mul CPU: the headers' worked examples", "[act_and_mul]") {
  // f32, d = 2: input rows (x0, x1, y0, y1).
  Buffer input = encoded(DType::f32, {0, 2, 5, 3, 1, -1, 2, 4});
  for (Activation activation : {Activation::silu, Activation::gelu, Activation::gelu_tanh}) {
    CAPTURE(activation_name(activation));
    Buffer out = poisoned(4 * 4);
    act_and_mul(activation, Impl::cpu, TensorView::contiguous(out.data(), DType::f32, {2, 2}),
                TensorView::contiguous(input.data(), DType::f32, {2, 4}));
    const float xs[4] = {0, 2, 1, -1}, ys[4] = {5, 3, 2, 4};
    for (int i = 0; i < 4; ++i) {
      CAPTURE(i);
      const double expected = static_cast<double>(exact_activation(activation, xs[i])) * ys[i];
      CHECK(get(out.data(), DType::f32, i) == Approx(expected).epsilon(1e-6).margin(1e-30));
    }
  }
  // The worked numbers of the headers.
  CHECK(cpu::activation_float(Activation::silu, 2.f) * 3.f == Approx(5.2848).epsilon(1e-4));
  CHECK(cpu::activation_float(Activation::gelu, 1.f) * 2.f == Approx(1.6827).epsilon(1e-4));
  CHECK(cpu::activation_float(Activation::gelu_tanh, 1.f) * 2.f == Approx(1.6824).epsilon(1e-4));
}

// The CPU reference's activation, rounded to T, against the exact function: within one ulp of
// T at max(|x|, |exact|) for every finite gate value of T (bf16, f16), and within 4 float ulps
// at |x| for a sample of f32 values. The float formula's own error (the cancellation in
// 1 + erf or 1 + tanh for negative x is an absolute error of about |x| 2^-24) is far below one
// ulp of T at |x|; rounding to T adds half an ulp.
TEST_CASE("act_and_mul CPU: the reference's math against long double", "[act_and_mul]") {
  const Activation activation = GENERATE(Activation::silu, Activation::gelu, Activation::gelu_tanh);
  CAPTURE(activation_name(activation));
  for (DType dtype : {DType::bf16, DType::f16}) {
    CAPTURE(dtype_name(dtype));
    double worst = 0.0;
    for (std::uint32_t bits = 0; bits < 0x10000u; ++bits) {
      std::uint8_t element[2] = {static_cast<std::uint8_t>(bits),
                                 static_cast<std::uint8_t>(bits >> 8)};
      const float x = get(element, dtype, 0);
      if (!std::isfinite(x)) continue;
      const float act = cpu::act_and_mul_element(activation, x, 1.0f, dtype);
      const double exact = static_cast<double>(exact_activation(activation, x));
      worst = std::max(
          worst, ulp_error(act, exact, std::max<double>(std::fabs(x), std::fabs(exact)), dtype));
    }
    INFO("largest error of round_T(act(x)) against the exact act(x): " << worst << " ulp");
    CHECK(worst <= 1.0);
  }
  double worst = 0.0;
  std::vector<float> xs(1 << 16);
  test::fill_random(xs.data(), DType::f32, static_cast<std::int64_t>(xs.size()), 5, 12.f);
  for (float x : xs) {
    const float act = cpu::activation_float(activation, x);
    const double exact = static_cast<double>(exact_activation(activation, x));
    worst = std::max(
        worst, ulp_error(act, exact, std::max<double>(std::fabs(x), std::fabs(exact)), DType::f32));
  }
  INFO("f32: largest error of act(x) against the exact act(x): " << worst << " ulp");
  CHECK(worst <= 4.0);
}

TEST_CASE("act_and_mul CPU: strided rows, one element per row, d = 0", "[act_and_mul]") {
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  CAPTURE(dtype_name(dtype));
  const std::int64_t size = dtype_size(dtype);
  // [2, 3, 2 d] with d = 5, rows 16 elements apart and groups 64 apart (padding between).
  const std::int64_t d = 5;
  Buffer input(Memory::host, 2 * 64 * size);
  test::fill_random(input.data(), dtype, 2 * 64, 9);
  Buffer out = poisoned(2 * 3 * d * size);
  act_and_mul(Activation::silu, Impl::cpu, TensorView::contiguous(out.data(), dtype, {2, 3, d}),
              TensorView::strided(input.data(), dtype, {2, 3, 2 * d}, {64, 16, 1}));
  for (int g = 0; g < 2; ++g)
    for (int r = 0; r < 3; ++r)
      for (int i = 0; i < d; ++i) {
        const float x = get(input.data(), dtype, g * 64 + r * 16 + i);
        const float y = get(input.data(), dtype, g * 64 + r * 16 + d + i);
        CHECK(get(out.data(), dtype, (g * 3 + r) * d + i) ==
              cpu::act_and_mul_element(Activation::silu, x, y, dtype));
      }
  // d = 0: a valid call that writes nothing.
  Buffer empty_out = poisoned(16);
  CHECK_NOTHROW(act_and_mul(Activation::gelu, Impl::cpu,
                            TensorView::contiguous(empty_out.data(), dtype, {4, 0}),
                            TensorView::contiguous(input.data(), dtype, {4, 0})));
  CHECK(same_bytes(empty_out, poisoned(16), 16));
}

// ---------------------------------------------------------------------------------------------
// The contract: one valid call, broken one way at a time.

struct ValidCall {
  static constexpr int kRows = 3, kD = 8;
  Buffer input_data{Memory::host, kRows * 2 * kD * 2 + 64};
  Buffer out_data = poisoned(kRows * kD * 2 + 64);
  TensorView out = TensorView::contiguous(out_data.data(), DType::bf16, {kRows, kD});
  TensorView input = TensorView::contiguous(input_data.data(), DType::bf16, {kRows, 2 * kD});
  Activation activation = Activation::silu;
  Impl impl = Impl::cpu;

  ValidCall() { test::fill_random(input_data.data(), DType::bf16, kRows * 2 * kD + 32, 1); }
  void call() const { act_and_mul(activation, impl, out, input); }
  bool nothing_written() const {
    const Buffer fresh = poisoned(out_data.size());
    return test::first_difference(out_data.data(), fresh.data(), fresh.size()) < 0;
  }
};

TEST_CASE("act_and_mul: the valid call used by the rule tests passes", "[act_and_mul]") {
  for (Activation activation : {Activation::silu, Activation::gelu, Activation::gelu_tanh}) {
    ValidCall call;
    call.activation = activation;
    CHECK_NOTHROW(call.call());
  }
}

TEST_CASE("act_and_mul rejects bad arguments, naming them, writing nothing", "[act_and_mul]") {
  ValidCall call;
  call.activation = GENERATE(Activation::silu, Activation::gelu, Activation::gelu_tanh);
  CAPTURE(activation_name(call.activation));
  SECTION("out on the wrong device") {
    call.out.device = Device::cuda;
    CHECK_REJECTED(call, "out");
  }
  SECTION("input on the wrong device") {
    call.input.device = Device::cuda;
    CHECK_REJECTED(call, "input");
  }
  SECTION("an odd last dimension") {
    call.input = TensorView::contiguous(call.input_data.data(), DType::bf16, {3, 15});
    CHECK_REJECTED(call, "input: expected an even last dimension");
  }
  SECTION("a last dimension that is not packed") {
    call.input = TensorView::strided(call.input_data.data(), DType::bf16, {3, 8}, {16, 2});
    call.out = TensorView::contiguous(call.out_data.data(), DType::bf16, {3, 4});
    CHECK_REJECTED(call, "input");
  }
  SECTION("input of another dtype") {
    call.input.dtype = DType::i32;
    CHECK_REJECTED(call, "input");
  }
  SECTION("input with 5 dimensions") {
    call.input = TensorView::contiguous(call.input_data.data(), DType::bf16, {1, 1, 1, 3, 16});
    call.out = TensorView::contiguous(call.out_data.data(), DType::bf16, {1, 1, 1, 3, 8});
    CHECK_REJECTED(call, "input");
  }
  SECTION("out of the wrong shape: last dimension 2 d") {
    call.out = TensorView::contiguous(call.out_data.data(), DType::bf16, {1, 16});
    CHECK_REJECTED(call, "out: expected the shape of input with the last dimension halved");
  }
  SECTION("out of the wrong shape: leading dimension") {
    call.out = TensorView::contiguous(call.out_data.data(), DType::bf16, {2, 8});
    CHECK_REJECTED(call, "out");
  }
  SECTION("out of the wrong rank") {
    call.out = TensorView::contiguous(call.out_data.data(), DType::bf16, {24});
    CHECK_REJECTED(call, "out");
  }
  SECTION("out of another dtype") {
    call.out.dtype = DType::f16;
    CHECK_REJECTED(call, "out");
  }
  SECTION("out not contiguous") {
    call.out = TensorView::strided(call.out_data.data(), DType::bf16, {3, 8}, {9, 1});
    CHECK_REJECTED(call, "out: expected a contiguous tensor");
  }
  SECTION("input without memory") {
    call.input.data = nullptr;
    CHECK_REJECTED(call, "input");
  }
  SECTION("out overlapping input") {
    call.out = TensorView::contiguous(call.input_data.data(), DType::bf16, {3, 8});
    CHECK_THROWS_WITH(call.call(), Catch::Matchers::Contains("out: expected memory apart"));
  }
}

TEST_CASE("act_and_mul: zero tokens is a no-op", "[act_and_mul]") {
  ValidCall call;
  call.activation = GENERATE(Activation::silu, Activation::gelu, Activation::gelu_tanh);
  call.input = TensorView::contiguous(call.input_data.data(), DType::bf16, {0, 16});
  call.out = TensorView::contiguous(call.out_data.data(), DType::bf16, {0, 8});
  CHECK_NOTHROW(call.call());
  CHECK(call.nothing_written());
  call.input = TensorView::contiguous(call.input_data.data(), DType::bf16, {2, 0, 16});
  call.out = TensorView::contiguous(call.out_data.data(), DType::bf16, {2, 0, 8});
  CHECK_NOTHROW(call.call());
  CHECK(call.nothing_written());
}

// ---------------------------------------------------------------------------------------------
// GPU: naive == optimized bit for bit, each within the bound of the CPU reference.

// How the input rows lie in memory.
enum class Layout { packed, misaligned, strided };

struct GpuCheck {
  double max_ulp = 0.0;  // the largest distance of either GPU version from the CPU reference
};

// Runs the three implementations on `rows` rows of [2 d] drawn with `seed` (or given by
// `host_input`, packed) and checks the rule; returns the measured distance.
GpuCheck check_against_cpu(Activation activation, DType dtype, std::int64_t d, std::int64_t rows,
                           Layout layout, const Buffer* host_input = nullptr,
                           std::uint64_t seed = 1) {
  CAPTURE(activation_name(activation), dtype_name(dtype), d, rows, static_cast<int>(layout));
  const std::int64_t size = dtype_size(dtype);
  const std::int64_t pitch = layout == Layout::strided ? 2 * d + 8 : 2 * d;  // elements
  const std::int64_t offset = layout == Layout::misaligned ? 1 : 0;          // elements
  const std::size_t in_bytes = static_cast<std::size_t>((rows * pitch + offset + 8) * size);
  Buffer input(Memory::host, in_bytes);
  test::fill_random(input.data(), dtype, rows * pitch + offset + 8, seed);
  if (host_input != nullptr) std::memcpy(input.data(), host_input->data(), host_input->size());
  const TensorView in_view =
      TensorView::strided(input.data() + offset * size, dtype, {rows, 2 * d}, {pitch, 1});
  const std::size_t out_bytes = static_cast<std::size_t>(rows * d * size);
  // out with a poisoned margin of 64 bytes on both sides.
  Buffer expected = poisoned(out_bytes + 128);
  act_and_mul(activation, Impl::cpu, TensorView::contiguous(expected.data() + 64, dtype, {rows, d}),
              in_view);

  const Buffer device_input = copy_to(Memory::device, input);
  const TensorView device_in =
      test::rebase(in_view, input.data(), device_input.data(), Device::cuda);
  Buffer results[2];
  int k = 0;
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    Buffer device_out = copy_to(Memory::device, poisoned(out_bytes + 128));
    act_and_mul(activation, impl,
                TensorView::contiguous(device_out.data() + 64, dtype, {rows, d}, Device::cuda),
                device_in);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    results[k++] = copy_to(Memory::host, device_out);
  }
  // naive and optimized: the same device function, the same bytes (margins included).
  CHECK(same_bytes(results[0], results[1], out_bytes + 128));
  // The margins untouched.
  const Buffer fresh = poisoned(out_bytes + 128);
  CHECK(same_bytes(results[1].data(), fresh.data(), 64));
  CHECK(same_bytes(results[1].data() + 64 + out_bytes, fresh.data() + 64 + out_bytes, 64));
  // Each element within the bound of the CPU reference, the ulp taken at |x y|.
  GpuCheck result;
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t i = 0; i < d; ++i) {
      const double x = get(input.data() + offset * size, dtype, r * pitch + i);
      const double y = get(input.data() + offset * size, dtype, r * pitch + d + i);
      const double want = get(expected.data() + 64, dtype, r * d + i);
      const double got = get(results[1].data() + 64, dtype, r * d + i);
      if (std::isnan(x) || std::isnan(y)) continue;  // NaN in, NaN out (any NaN)
      result.max_ulp = std::max(
          result.max_ulp, ulp_error(got, want, std::max(std::fabs(x * y), std::fabs(want)), dtype));
    }
  CHECK(result.max_ulp <= bound_of(activation, dtype));
  return result;
}

TEST_CASE("act_and_mul GPU: dtypes × d × rows × layouts", "[act_and_mul][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const Activation activation = GENERATE(Activation::silu, Activation::gelu, Activation::gelu_tanh);
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  const std::int64_t d = GENERATE(1, 7, 8, 64, 1000, 14336);
  const std::int64_t rows = GENERATE(1, 3, 33);
  const Layout layout = GENERATE(Layout::packed, Layout::misaligned, Layout::strided);
  check_against_cpu(activation, dtype, d, rows, layout);
}

// The bound measured: every gate value of bf16 and f16 (NaN and infinities included) against
// random up values, and a random sample of f32 pairs; the largest distance is printed.
TEST_CASE("act_and_mul GPU: the ulp bound over every 16-bit gate value", "[act_and_mul][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const Activation activation = GENERATE(Activation::silu, Activation::gelu, Activation::gelu_tanh);
  for (DType dtype : {DType::bf16, DType::f16}) {
    const std::int64_t d = 1 << 16;
    Buffer input(Memory::host, static_cast<std::size_t>(2 * d * 2));
    test::fill_random(input.data(), dtype, 2 * d, 3);  // up: random
    for (std::int64_t bits = 0; bits < d; ++bits) {    // gate: every value
      const std::uint16_t b = static_cast<std::uint16_t>(bits);
      std::memcpy(input.data() + 2 * bits, &b, 2);
    }
    const GpuCheck measured = check_against_cpu(activation, dtype, d, 1, Layout::packed, &input);
    WARN(activation_name(activation)
         << " " << dtype_name(dtype)
         << ": largest distance from the CPU reference over every "
            "gate value: "
         << measured.max_ulp << " ulp (bound " << bound_of(activation, dtype) << ")");
  }
  const GpuCheck f32 = check_against_cpu(activation, DType::f32, 4096, 256, Layout::packed);
  WARN(activation_name(activation)
       << " f32: largest distance over 1 M random pairs: " << f32.max_ulp << " ulp (bound "
       << bound_of(activation, DType::f32) << ")");
}

}  // namespace
