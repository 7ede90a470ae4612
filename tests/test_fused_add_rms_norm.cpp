// Tests of fused_add_rms_norm (vLLM csrc/layernorm_kernels.cu: fused_add_rms_norm; chapter
// "Normalizing hidden states").
//
// CPU part (runs everywhere): the header's worked example, the sum rounded once as the kernels
// round it, the norm of the ROUNDED sum (equal to rms_norm of the new residual), strided 4-D
// input rows with untouched padding, zero rows, and one test per validation rule: the call
// throws InvalidArgument naming the argument, and neither input nor residual changes.
//
// GPU part ([gpu]): naive and optimized against the CPU reference over dtypes × hidden sizes ×
// row counts × layouts: residual bit-identical (the sum is element-wise), input within
// reduction_tolerance(), padding between input rows and the slack around residual untouched.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "norm_support.h"
#include "pagedkv/agreement.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/fused_add_rms_norm.h"
#include "pagedkv/ops/rms_norm.h"
#include "support.h"

namespace {

using namespace pagedkv;
using namespace pagedkv::test::norm;
using Catch::Matchers::Contains;

// Runs fused_add_rms_norm with implementation `impl` (validated first).
void fused_add_rms_norm(Impl impl, const TensorView& input, const TensorView& residual,
                        const TensorView& weight, double epsilon) {
  pagedkv::run<FusedAddRmsNorm>(impl, FusedAddRmsNorm::Args{input, residual, weight, epsilon});
}

// ---------------------------------------------------------------------------------------------
// CPU reference: hand-computed cases.

TEST_CASE("fused_add_rms_norm CPU: the header's worked example", "[fused_add_rms_norm]") {
  // hidden_size 2, epsilon 0, weight 1: input (1, 2) + residual (2, -6) = (3, -4);
  // mean(z²) = 12.5, input = (3, -4) / 3.5355 = (0.8485, -1.1314).
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  CAPTURE(dtype_name(dtype));
  Buffer input = encoded(dtype, {1, 2});
  Buffer residual = encoded(dtype, {2, -6});
  Buffer weight = encoded(dtype, {1, 1});
  fused_add_rms_norm(Impl::cpu, TensorView::contiguous(input.data(), dtype, {1, 2}),
                     TensorView::contiguous(residual.data(), dtype, {1, 2}),
                     TensorView::contiguous(weight.data(), dtype, {2}), 0.0);
  CHECK(get(residual.data(), dtype, 0) == 3.f);
  CHECK(get(residual.data(), dtype, 1) == -4.f);
  CHECK(get(input.data(), dtype, 0) == rounded(dtype, static_cast<float>(3.0 / std::sqrt(12.5))));
  CHECK(get(input.data(), dtype, 1) == rounded(dtype, static_cast<float>(-4.0 / std::sqrt(12.5))));
  CHECK(std::fabs(get(input.data(), dtype, 0) - 0.8485f) < 0.005f);
}

TEST_CASE("fused_add_rms_norm CPU: the sum is one float32 addition rounded once, and the norm "
          "is rms_norm of that rounded sum", "[fused_add_rms_norm]") {
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  CAPTURE(dtype_name(dtype));
  constexpr std::int64_t kRows = 4, kHidden = 37;
  Rows input = make_packed(dtype, kRows, kHidden, 0, 21);
  Rows residual = make_packed(dtype, kRows, kHidden, 0, 22);
  Buffer weight(Memory::host, kHidden * dtype_size(dtype));
  test::fill_random(weight.data(), dtype, kHidden, 23);
  const Rows input_before = input;
  fused_add_rms_norm(Impl::cpu, input.view, residual.view,
                     TensorView::contiguous(weight.data(), dtype, {kHidden}), 1e-6);
  const Rows old_residual = make_packed(dtype, kRows, kHidden, 0, 22);  // the same random rows
  int mismatches = 0;
  for (std::int64_t r = 0; r < kRows; ++r) {
    for (std::int64_t i = 0; i < kHidden; ++i) {
      const float sum = row_element(input_before, input_before.bytes, r, i) +
                        row_element(old_residual, old_residual.bytes, r, i);
      mismatches += row_element(residual, residual.bytes, r, i) != rounded(dtype, sum);
    }
  }
  CHECK(mismatches == 0);
  // input now holds rms_norm(residual): the CPU rms_norm of the new residual, bit for bit.
  Buffer out = poisoned(kRows * kHidden * dtype_size(dtype));
  pagedkv::run<RmsNorm>(Impl::cpu,
                        RmsNorm::Args{TensorView::contiguous(out.data(), dtype, {kRows, kHidden}),
                                      residual.view,
                                      TensorView::contiguous(weight.data(), dtype, {kHidden}),
                                      1e-6});
  CHECK(std::memcmp(out.data(), input.view.data, kRows * kHidden * dtype_size(dtype)) == 0);
}

TEST_CASE("fused_add_rms_norm CPU: a sum of zero gives zeros, squares beyond float32 stay exact",
          "[fused_add_rms_norm]") {
  const DType dtype = GENERATE(DType::f32, DType::bf16);
  CAPTURE(dtype_name(dtype));
  // Row 0: x + (-x) = 0 exactly, normalized to 0 with epsilon > 0. Row 1: sums of ±1e30 whose
  // squares overflow float32; the float64 reference still gives ±w.
  Buffer input = encoded(dtype, {1.5f, -2, 3, 4, 5e29f, -5e29f, 5e29f, -5e29f});
  Buffer residual = encoded(dtype, {-1.5f, 2, -3, -4, 5e29f, -5e29f, 5e29f, -5e29f});
  Buffer weight = encoded(dtype, {0.5f, 2, -3, 1.25f});
  fused_add_rms_norm(Impl::cpu, TensorView::contiguous(input.data(), dtype, {2, 4}),
                     TensorView::contiguous(residual.data(), dtype, {2, 4}),
                     TensorView::contiguous(weight.data(), dtype, {4}), 1e-6);
  const float expected[8] = {0, 0, 0, 0, 0.5f, -2, -3, -1.25f};
  for (int i = 0; i < 8; ++i) {
    CAPTURE(i);
    CHECK(get(input.data(), dtype, i) == expected[i]);
  }
  CHECK(get(residual.data(), dtype, 4) == rounded(dtype, 2 * rounded(dtype, 5e29f)));
}

TEST_CASE("fused_add_rms_norm CPU: strided 4-D input rows, padding untouched",
          "[fused_add_rms_norm]") {
  const DType dtype = GENERATE(DType::f32, DType::bf16);
  CAPTURE(dtype_name(dtype));
  constexpr std::int64_t kRows = 12, kHidden = 9;
  Rows input = make_rows(dtype, kRows, kHidden, RowsLayout::strided, 31);  // [2, 2, 3, 9]
  REQUIRE(input.view.ndim == 4);
  Rows residual = make_packed(dtype, kRows, kHidden, 8, 32);
  residual.view = TensorView::contiguous(residual.view.data, dtype, {2, 2, 3, kHidden});
  Buffer weight(Memory::host, kHidden * dtype_size(dtype));
  test::fill_random(weight.data(), dtype, kHidden, 33);
  const Rows input_before = input;
  const Rows residual_before = residual;
  fused_add_rms_norm(Impl::cpu, input.view, residual.view,
                     TensorView::contiguous(weight.data(), dtype, {kHidden}), 1e-6);
  CHECK(first_difference_outside_rows(input, input.bytes, input_before.bytes) < 0);
  CHECK(first_difference_outside_rows(residual, residual.bytes, residual_before.bytes) < 0);
  // Each row as its own 1-D call gives the same bytes.
  for (std::int64_t r = 0; r < kRows; ++r) {
    CAPTURE(r);
    Buffer x(Memory::host, kHidden * dtype_size(dtype)),
        z(Memory::host, kHidden * dtype_size(dtype));
    std::memcpy(x.data(), input_before.bytes.data() + input.row_offset[r] * dtype_size(dtype),
                x.size());
    std::memcpy(z.data(),
                residual_before.bytes.data() + residual.row_offset[r] * dtype_size(dtype),
                z.size());
    fused_add_rms_norm(Impl::cpu, TensorView::contiguous(x.data(), dtype, {kHidden}),
                       TensorView::contiguous(z.data(), dtype, {kHidden}),
                       TensorView::contiguous(weight.data(), dtype, {kHidden}), 1e-6);
    CHECK(std::memcmp(x.data(), input.bytes.data() + input.row_offset[r] * dtype_size(dtype),
                      x.size()) == 0);
    CHECK(std::memcmp(z.data(),
                      residual.bytes.data() + residual.row_offset[r] * dtype_size(dtype),
                      z.size()) == 0);
  }
}

TEST_CASE("fused_add_rms_norm CPU: zero rows is a no-op", "[fused_add_rms_norm]") {
  Buffer weight = encoded(DType::bf16, {1, 1, 1, 1});
  for (Impl impl : {Impl::cpu, Impl::naive, Impl::optimized}) {
    const Device device = impl_device(impl);
    CHECK_NOTHROW(fused_add_rms_norm(
        impl, TensorView::contiguous(nullptr, DType::bf16, {0, 4}, device),
        TensorView::contiguous(nullptr, DType::bf16, {0, 4}, device),
        TensorView::contiguous(weight.data(), DType::bf16, {4}, device), 1e-6));
  }
}

// ---------------------------------------------------------------------------------------------
// Validation: one test per rule. A valid bf16 call, broken in exactly one way; the call must
// throw InvalidArgument naming the argument, and neither input nor residual may change.

struct ValidCall {
  static constexpr int kRows = 3, kHidden = 8, kBytes = kRows * kHidden * 2 + 64;
  Buffer input_data{Memory::host, kBytes};
  Buffer residual_data{Memory::host, kBytes};
  Buffer weight_data{Memory::host, kHidden * 2 + 64};
  Buffer input_before{Memory::host, kBytes};
  Buffer residual_before{Memory::host, kBytes};
  TensorView input = TensorView::contiguous(input_data.data(), DType::bf16, {kRows, kHidden});
  TensorView residual =
      TensorView::contiguous(residual_data.data(), DType::bf16, {kRows, kHidden});
  TensorView weight = TensorView::contiguous(weight_data.data(), DType::bf16, {kHidden});
  double epsilon = 1e-6;
  Impl impl = Impl::cpu;

  ValidCall() {
    test::fill_random(input_data.data(), DType::bf16, kBytes / 2, 1);
    test::fill_random(residual_data.data(), DType::bf16, kBytes / 2, 2);
    test::fill_random(weight_data.data(), DType::bf16, kHidden + 32, 3);
    std::memcpy(input_before.data(), input_data.data(), kBytes);
    std::memcpy(residual_before.data(), residual_data.data(), kBytes);
  }
  void call() const { fused_add_rms_norm(impl, input, residual, weight, epsilon); }
  bool nothing_written() const {
    return test::first_difference(input_data.data(), input_before.data(), kBytes) < 0 &&
           test::first_difference(residual_data.data(), residual_before.data(), kBytes) < 0;
  }
};

TEST_CASE("fused_add_rms_norm: the valid call used by the rule tests passes",
          "[fused_add_rms_norm]") {
  ValidCall call;
  CHECK_NOTHROW(call.call());
  CHECK_FALSE(call.nothing_written());
}

TEST_CASE("fused_add_rms_norm rejects a tensor on the wrong device", "[fused_add_rms_norm]") {
  ValidCall call;
  SECTION("input") { call.input.device = Device::cuda; CHECK_REJECTED(call, "input"); }
  SECTION("residual") { call.residual.device = Device::cuda; CHECK_REJECTED(call, "residual"); }
  SECTION("weight") { call.weight.device = Device::cuda; CHECK_REJECTED(call, "weight"); }
  SECTION("naive given host tensors") {
    call.impl = Impl::naive;
    CHECK_REJECTED(call, "input");
    CHECK_THROWS_WITH(call.call(), Contains("cuda"));
  }
  SECTION("optimized given a host residual") {
    call.impl = Impl::optimized;
    call.input.device = call.weight.device = Device::cuda;
    CHECK_REJECTED(call, "residual");
  }
}

TEST_CASE("fused_add_rms_norm rejects an input rank outside 1..4", "[fused_add_rms_norm]") {
  ValidCall call;
  call.input = TensorView::contiguous(call.input_data.data(), DType::bf16, {1, 1, 1, 3, 8});
  call.residual = TensorView::contiguous(call.residual_data.data(), DType::bf16, {1, 1, 1, 3, 8});
  CHECK_REJECTED(call, "input");
}

TEST_CASE("fused_add_rms_norm rejects an input dtype other than f32, f16, bf16",
          "[fused_add_rms_norm]") {
  ValidCall call;
  call.input.dtype = call.residual.dtype = call.weight.dtype = DType::i32;
  CHECK_REJECTED(call, "input");
}

TEST_CASE("fused_add_rms_norm rejects an input whose last dimension is not packed, or a "
          "negative stride", "[fused_add_rms_norm]") {
  ValidCall call;
  SECTION("last dimension") {
    call.input = TensorView::strided(call.input_data.data(), DType::bf16, {3, 8}, {16, 2});
    CHECK_REJECTED(call, "input");
  }
  SECTION("negative") {
    call.input.strides[0] = -8;
    CHECK_REJECTED(call, "input");
  }
}

TEST_CASE("fused_add_rms_norm rejects hidden_size 0 and above 2^24", "[fused_add_rms_norm]") {
  ValidCall call;
  const std::int64_t hidden = GENERATE(std::int64_t{0}, (std::int64_t{1} << 24) + 1);
  call.input = TensorView::contiguous(call.input_data.data(), DType::bf16, {1, hidden});
  call.residual = TensorView::contiguous(call.residual_data.data(), DType::bf16, {1, hidden});
  call.weight = TensorView::contiguous(call.weight_data.data(), DType::bf16, {hidden});
  CHECK_REJECTED(call, "input");
  CHECK_THROWS_WITH(call.call(), Contains("hidden_size"));
}

TEST_CASE("fused_add_rms_norm rejects a residual of another shape, dtype or not contiguous",
          "[fused_add_rms_norm]") {
  ValidCall call;
  SECTION("shape") {
    call.residual = TensorView::contiguous(call.residual_data.data(), DType::bf16, {2, 8});
    CHECK_REJECTED(call, "residual");
  }
  SECTION("dtype") {
    call.residual.dtype = DType::f16;
    CHECK_REJECTED(call, "residual");
  }
  SECTION("strided") {
    call.residual = TensorView::strided(call.residual_data.data(), DType::bf16, {3, 8}, {9, 1});
    CHECK_REJECTED(call, "residual");
    CHECK_THROWS_WITH(call.call(), Contains("contiguous"));
  }
}

TEST_CASE("fused_add_rms_norm rejects a weight of the wrong rank, size, dtype or layout",
          "[fused_add_rms_norm]") {
  ValidCall call;
  SECTION("2-D") {
    call.weight = TensorView::contiguous(call.weight_data.data(), DType::bf16, {2, 8});
    CHECK_REJECTED(call, "weight");
  }
  SECTION("size") {
    call.weight = TensorView::contiguous(call.weight_data.data(), DType::bf16, {9});
    CHECK_REJECTED(call, "weight");
  }
  SECTION("dtype") {
    call.weight.dtype = DType::f32;
    CHECK_REJECTED(call, "weight");
  }
  SECTION("strided") {
    call.weight = TensorView::strided(call.weight_data.data(), DType::bf16, {8}, {3});
    CHECK_REJECTED(call, "weight");
  }
}

TEST_CASE("fused_add_rms_norm rejects an epsilon that is negative, not finite or above FLT_MAX",
          "[fused_add_rms_norm]") {
  ValidCall call;
  call.epsilon = GENERATE(-1.0, std::numeric_limits<double>::quiet_NaN(),
                          -std::numeric_limits<double>::infinity(), 1e300);
  CAPTURE(call.epsilon);
  CHECK_REJECTED(call, "epsilon");
}

TEST_CASE("fused_add_rms_norm rejects null data pointers", "[fused_add_rms_norm]") {
  ValidCall call;
  SECTION("input") { call.input.data = nullptr; CHECK_REJECTED(call, "input"); }
  SECTION("residual") { call.residual.data = nullptr; CHECK_REJECTED(call, "residual"); }
  SECTION("weight") { call.weight.data = nullptr; CHECK_REJECTED(call, "weight"); }
}

TEST_CASE("fused_add_rms_norm rejects input strides that map two rows onto one memory",
          "[fused_add_rms_norm]") {
  ValidCall call;
  SECTION("a broadcast (stride 0) row dimension") {
    call.input = TensorView::strided(call.input_data.data(), DType::bf16, {3, 8}, {0, 1});
    CHECK_REJECTED(call, "input");
    CHECK_THROWS_WITH(call.call(), Contains("own memory"));
  }
  SECTION("rows overlapping by half") {
    call.input = TensorView::strided(call.input_data.data(), DType::bf16, {3, 8}, {4, 1});
    CHECK_REJECTED(call, "input");
  }
  SECTION("two leading dims interleaved") {
    call.input = TensorView::strided(call.input_data.data(), DType::bf16, {2, 2, 8}, {8, 8, 1});
    call.residual = TensorView::contiguous(call.residual_data.data(), DType::bf16, {2, 2, 8});
    CHECK_REJECTED(call, "input");
  }
}

TEST_CASE("fused_add_rms_norm rejects input and residual sharing memory, even exactly",
          "[fused_add_rms_norm]") {
  ValidCall call;
  SECTION("same tensor") {
    call.residual = call.input;
    CHECK_REJECTED(call, "residual");
  }
  SECTION("overlap") {
    call.residual = TensorView::contiguous(call.input_data.data() + 16, DType::bf16, {3, 8});
    CHECK_REJECTED(call, "residual");
  }
}

TEST_CASE("fused_add_rms_norm rejects weight sharing memory with input or residual",
          "[fused_add_rms_norm]") {
  ValidCall call;
  SECTION("input") {
    call.weight = TensorView::contiguous(call.input_data.data() + 16, DType::bf16, {8});
    CHECK_REJECTED(call, "weight");
  }
  SECTION("residual") {
    call.weight = TensorView::contiguous(call.residual_data.data(), DType::bf16, {8});
    CHECK_REJECTED(call, "weight");
  }
}

// ---------------------------------------------------------------------------------------------
// GPU: naive and optimized against the CPU reference.

void check_against_cpu(DType dtype, std::int64_t hidden, std::int64_t num_rows,
                       RowsLayout layout, double epsilon = 1e-6) {
  INFO(dtype_name(dtype) << " hidden " << hidden << " rows " << num_rows << " "
                         << layout_name(layout) << " epsilon " << epsilon);
  Rows input = make_rows(dtype, num_rows, hidden, layout, 2000 + hidden + num_rows);
  Rows residual = make_packed(dtype, num_rows, hidden, layout == RowsLayout::misaligned ? 9 : 8,
                              3000 + hidden + num_rows);
  residual.view.ndim = input.view.ndim;
  residual.view.shape = input.view.shape;
  std::int64_t step = 1;
  for (int d = residual.view.ndim - 1; d >= 0; --d) {
    residual.view.strides[d] = step;
    step *= residual.view.shape[d];
  }
  // Row 1 (when there is one): residual = -input, so z = 0 and the output must be exact zeros.
  if (num_rows > 1 && epsilon > 0) {
    for (std::int64_t i = 0; i < hidden; ++i) {
      set_row_element(residual, 1, i, -row_element(input, input.bytes, 1, i));
    }
  }
  Buffer weight(Memory::host, hidden * dtype_size(dtype));
  test::fill_random(weight.data(), dtype, hidden, 9 + hidden, 2.f);

  Rows expected_input = input;
  Rows expected_residual = residual;
  fused_add_rms_norm(
      Impl::cpu,
      test::rebase(input.view, input.bytes.data(), expected_input.bytes.data(), Device::cpu),
      test::rebase(residual.view, residual.bytes.data(), expected_residual.bytes.data(),
                   Device::cpu),
      TensorView::contiguous(weight.data(), dtype, {hidden}), epsilon);
  const std::vector<std::uint8_t> expected_rows = gather(input, expected_input.bytes);
  const double tolerance = reduction_tolerance(dtype, hidden);

  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    const Buffer d_input = copy_to(Memory::device, input.bytes);
    const Buffer d_residual = copy_to(Memory::device, residual.bytes);
    const Buffer d_weight = copy_to(Memory::device, weight);
    fused_add_rms_norm(
        impl, test::rebase(input.view, input.bytes.data(), d_input.data(), Device::cuda),
        test::rebase(residual.view, residual.bytes.data(), d_residual.data(), Device::cuda),
        TensorView::contiguous(d_weight.data(), dtype, {hidden}, Device::cuda), epsilon);
    PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
    const Buffer actual_input = download(d_input);
    const Buffer actual_residual = download(d_residual);

    // The sum is element-wise: the whole residual buffer (slack included) is bit-identical.
    const std::int64_t residual_diff = test::first_difference(
        actual_residual.data(), expected_residual.bytes.data(), actual_residual.size());
    INFO("first differing residual byte " << residual_diff);
    CHECK(residual_diff < 0);
    // The normalized rows agree within the tolerance; padding between them is untouched.
    const double error = relative_error(gather(input, actual_input).data(), expected_rows.data(),
                                        dtype, num_rows * hidden);
    INFO("relative error " << error << ", tolerance " << tolerance);
    CHECK(error <= tolerance);
    CHECK(first_difference_outside_rows(input, actual_input, input.bytes) < 0);
    if (num_rows > 1 && epsilon > 0) {
      bool zeros = true;
      for (std::int64_t i = 0; i < hidden; ++i) {
        zeros = zeros && row_element(input, actual_input, 1, i) == 0.f;
      }
      CHECK(zeros);
    }
  }
}

TEST_CASE("fused_add_rms_norm GPU: dtypes × hidden sizes × rows × layouts",
          "[fused_add_rms_norm][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  const std::int64_t hidden =
      GENERATE(1, 3, 7, 8, 64, 127, 1000, 4096, 5120, 7168, 8192, 16384);
  const std::int64_t num_rows = GENERATE(1, 2, 33, 300);
  const RowsLayout layout = GENERATE(RowsLayout::packed, RowsLayout::strided,
                                     RowsLayout::misaligned, RowsLayout::odd_pitch);
  check_against_cpu(dtype, hidden, num_rows, layout);
}

TEST_CASE("fused_add_rms_norm GPU: long rows, many rows, epsilon extremes",
          "[fused_add_rms_norm][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const DType dtype = GENERATE(DType::f32, DType::bf16);
  SECTION("rows longer than the registers hold (re-read path)") {
    check_against_cpu(dtype, 40000, 3, RowsLayout::packed);
    check_against_cpu(dtype, 70000, 2, RowsLayout::strided);
    check_against_cpu(dtype, 5000, 5, RowsLayout::misaligned);
  }
  SECTION("many rows") {
    check_against_cpu(dtype, 4096, 1024, RowsLayout::packed);
    check_against_cpu(dtype, 7168, 600, RowsLayout::strided);
  }
  SECTION("epsilon") {
    check_against_cpu(dtype, 1000, 33, RowsLayout::packed, 0.0);
    check_against_cpu(dtype, 1000, 33, RowsLayout::packed, 1e30);
  }
}

TEST_CASE("fused_add_rms_norm GPU: a sum whose squares overflow float32 comes out as zeros",
          "[fused_add_rms_norm][gpu]") {
  // Documented behaviour, as upstream: the float32 sum of squares becomes +inf, inv = 0, and
  // the row's outputs are ±0 (the float64 CPU reference gives z / rms · w). The residual is
  // still the exact rounded sum, bit for bit.
  PAGEDKV_REQUIRE_GPU();
  const DType dtype = GENERATE(DType::f32, DType::bf16);
  CAPTURE(dtype_name(dtype));
  const std::int64_t hidden = 4096, num_rows = 3;
  Rows input = make_packed(dtype, num_rows, hidden, 8, 101);
  Rows residual = make_packed(dtype, num_rows, hidden, 8, 102);
  for (std::int64_t i = 0; i < hidden; ++i) {
    set_row_element(input, 1, i, i % 2 ? -1e30f : 1e30f);
    set_row_element(residual, 1, i, i % 3 ? 1.f : 2e30f);
  }
  Buffer weight(Memory::host, hidden * dtype_size(dtype));
  test::fill_random(weight.data(), dtype, hidden, 103);
  Rows expected_input = input;
  Rows expected_residual = residual;
  fused_add_rms_norm(
      Impl::cpu,
      test::rebase(input.view, input.bytes.data(), expected_input.bytes.data(), Device::cpu),
      test::rebase(residual.view, residual.bytes.data(), expected_residual.bytes.data(),
                   Device::cpu),
      TensorView::contiguous(weight.data(), dtype, {hidden}), 1e-6);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    const Buffer d_input = copy_to(Memory::device, input.bytes);
    const Buffer d_residual = copy_to(Memory::device, residual.bytes);
    const Buffer d_weight = copy_to(Memory::device, weight);
    fused_add_rms_norm(
        impl, test::rebase(input.view, input.bytes.data(), d_input.data(), Device::cuda),
        test::rebase(residual.view, residual.bytes.data(), d_residual.data(), Device::cuda),
        TensorView::contiguous(d_weight.data(), dtype, {hidden}, Device::cuda), 1e-6);
    PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
    const Buffer actual_input = download(d_input);
    const Buffer actual_residual = download(d_residual);
    CHECK(test::first_difference(actual_residual.data(), expected_residual.bytes.data(),
                                 actual_residual.size()) < 0);
    int nonzero = 0;
    for (std::int64_t i = 0; i < hidden; ++i) {
      nonzero += row_element(input, actual_input, 1, i) != 0.f;
    }
    CHECK(nonzero == 0);
    for (std::int64_t r : {0, 2}) {
      double diff2 = 0, ref2 = 0;
      for (std::int64_t i = 0; i < hidden; ++i) {
        const double a = row_element(input, actual_input, r, i);
        const double e = row_element(input, expected_input.bytes, r, i);
        diff2 += (a - e) * (a - e);
        ref2 += e * e;
      }
      CHECK(std::sqrt(diff2 / ref2) <= reduction_tolerance(dtype, hidden));
    }
  }
}

}  // namespace
