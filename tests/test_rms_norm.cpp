// Tests of rms_norm (vLLM csrc/layernorm_kernels.cu: rms_norm; chapter "Normalizing hidden
// states").
//
// CPU part (runs everywhere): the worked examples of the op's header, zero rows, epsilon at
// both extremes, magnitudes whose squares overflow float32, strided 3-D and 4-D views, in place,
// and one test per validation rule: the call throws InvalidArgument naming the argument, and
// no byte of out changes.
//
// GPU part ([gpu]): naive and optimized against the CPU reference over dtypes × hidden sizes ×
// row counts × layouts: norm-wise relative error within reduction_tolerance(), poisoned out
// fully written, input and the bytes around out untouched; plus the documented behaviour of
// float32 overflow in the sum of squares.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "norm_support.h"
#include "pagedkv/agreement.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/rms_norm.h"
#include "support.h"

namespace {

using namespace pagedkv;
using namespace pagedkv::test::norm;
using Catch::Matchers::Contains;

// Runs rms_norm with implementation `impl` (validated first).
void rms_norm(Impl impl, const TensorView& out, const TensorView& input, const TensorView& weight,
              double epsilon) {
  pagedkv::run<RmsNorm>(impl, RmsNorm::Args{out, input, weight, epsilon});
}

// ---------------------------------------------------------------------------------------------
// CPU reference: hand-computed cases.

TEST_CASE("rms_norm CPU: the header's worked examples", "[rms_norm]") {
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  CAPTURE(dtype_name(dtype));
  // hidden_size 4, epsilon 0. Row 0: (1, -1, 1, -1) has mean(x²) = 1, so out = x · w.
  // Row 1: (2, 0, 0, 0) has mean(x²) = 4 / 4 = 1 too: out = (2 w0, 0, 0, 0). Every value is
  // exact in all three dtypes.
  Buffer input = encoded(dtype, {1, -1, 1, -1, 2, 0, 0, 0});
  Buffer weight = encoded(dtype, {0.5f, -2, 3, 0.25f});
  Buffer out = poisoned(8 * dtype_size(dtype));
  rms_norm(Impl::cpu, TensorView::contiguous(out.data(), dtype, {2, 4}),
           TensorView::contiguous(input.data(), dtype, {2, 4}),
           TensorView::contiguous(weight.data(), dtype, {4}), 0.0);
  const float expected[8] = {0.5f, 2, 3, -0.25f, 1, 0, 0, 0};
  for (int i = 0; i < 8; ++i) {
    CAPTURE(i);
    CHECK(get(out.data(), dtype, i) == expected[i]);
  }
}

TEST_CASE("rms_norm CPU: eps = 0 gives x / rms · w exactly rounded", "[rms_norm]") {
  // (3, 4): mean(x²) = 12.5, rms = 3.5355...; out = (0.8485..., 1.1313...) · w with w = (1, 2).
  Buffer input = encoded(DType::f32, {3, 4});
  Buffer weight = encoded(DType::f32, {1, 2});
  Buffer out = poisoned(8);
  rms_norm(Impl::cpu, TensorView::contiguous(out.data(), DType::f32, {2}),
           TensorView::contiguous(input.data(), DType::f32, {2}),
           TensorView::contiguous(weight.data(), DType::f32, {2}), 0.0);
  CHECK(get(out.data(), DType::f32, 0) == static_cast<float>(3.0 / std::sqrt(12.5)));
  CHECK(get(out.data(), DType::f32, 1) == static_cast<float>(4.0 / std::sqrt(12.5) * 2.0));
}

TEST_CASE("rms_norm CPU: a row of zeros gives zeros when epsilon > 0", "[rms_norm]") {
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  CAPTURE(dtype_name(dtype));
  Buffer input = encoded(dtype, {0, 0, 0, 0, 0});
  Buffer weight = encoded(dtype, {1, -2, 3, -4, 5});
  Buffer out = poisoned(5 * dtype_size(dtype));
  rms_norm(Impl::cpu, TensorView::contiguous(out.data(), dtype, {1, 5}),
           TensorView::contiguous(input.data(), dtype, {1, 5}),
           TensorView::contiguous(weight.data(), dtype, {5}), 1e-6);
  for (int i = 0; i < 5; ++i) CHECK(get(out.data(), dtype, i) == 0.f);
}

TEST_CASE("rms_norm CPU: a huge epsilon dominates the mean square", "[rms_norm]") {
  // epsilon = 1e30: 1 / sqrt(7.5 + 1e30) = 1e-15 to float precision, so out ≈ x · 1e-15.
  Buffer input = encoded(DType::f32, {1, -2, 3, -4});
  Buffer weight = encoded(DType::f32, {1, 1, 1, 1});
  Buffer out = poisoned(16);
  rms_norm(Impl::cpu, TensorView::contiguous(out.data(), DType::f32, {4}),
           TensorView::contiguous(input.data(), DType::f32, {4}),
           TensorView::contiguous(weight.data(), DType::f32, {4}), 1e30);
  const float x[4] = {1, -2, 3, -4};
  // The plan holds epsilon as a float: float(1e30) is 1.0000000150e30.
  const double inverse_rms = 1.0 / std::sqrt(7.5 + static_cast<double>(1e30f));
  for (int i = 0; i < 4; ++i) {
    CHECK(get(out.data(), DType::f32, i) == static_cast<float>(x[i] * inverse_rms));
    const double approximate = x[i] * 1e-15;
    CHECK(std::fabs(get(out.data(), DType::f32, i) - approximate) <= 1e-6 * std::fabs(approximate));
  }
}

TEST_CASE("rms_norm CPU: squares beyond float32 stay exact in the float64 reference",
          "[rms_norm]") {
  // ±1e30 squared is 1e60, far beyond float32's 3.4e38; the reference sums in float64, so
  // rms = |x| and out = ±w exactly. (The GPU sums in float32: see the [gpu] test below.)
  const DType dtype = GENERATE(DType::f32, DType::bf16);
  CAPTURE(dtype_name(dtype));
  Buffer input = encoded(dtype, {1e30f, -1e30f, 1e30f, -1e30f});
  Buffer weight = encoded(dtype, {0.5f, 2, -3, 1.25f});
  Buffer out = poisoned(4 * dtype_size(dtype));
  rms_norm(Impl::cpu, TensorView::contiguous(out.data(), dtype, {4}),
           TensorView::contiguous(input.data(), dtype, {4}),
           TensorView::contiguous(weight.data(), dtype, {4}), 1e-6);
  const float expected[4] = {0.5f, -2, -3, -1.25f};
  for (int i = 0; i < 4; ++i) CHECK(get(out.data(), dtype, i) == expected[i]);
}

TEST_CASE("rms_norm CPU: strided 3-D and 4-D views normalize each row like a 1-D call",
          "[rms_norm]") {
  const DType dtype = GENERATE(DType::f32, DType::bf16);
  const int rank = GENERATE(3, 4);
  CAPTURE(dtype_name(dtype), rank);
  constexpr std::int64_t kHidden = 5;
  // make_rows gives [1, 2, 3, 5]: rows 13 elements apart, groups of three 55 apart. Seen as
  // [2, 3, 5] (rank 3), or as is with an arbitrary stride for the size-1 dimension (rank 4).
  Rows rows = make_rows(dtype, 6, kHidden, RowsLayout::strided, 3);
  REQUIRE(rows.view.ndim == 4);
  REQUIRE(rows.view.size(0) == 1);
  TensorView input = rows.view;
  if (rank == 3) {
    input = TensorView::strided(rows.view.data, dtype, {2, 3, kHidden},
                                {rows.view.stride(1), rows.view.stride(2), 1});
  } else {
    input.strides[0] = 12345;  // never used: the dimension has one index
  }
  const Buffer before = copy_to(Memory::host, rows.bytes);
  Buffer weight = encoded(dtype, {1.5f, -0.5f, 2, 1, -1});
  Buffer out = poisoned(6 * kHidden * dtype_size(dtype));
  TensorView out_view = rank == 3 ? TensorView::contiguous(out.data(), dtype, {2, 3, kHidden})
                                  : TensorView::contiguous(out.data(), dtype, {1, 2, 3, kHidden});
  rms_norm(Impl::cpu, out_view, input, TensorView::contiguous(weight.data(), dtype, {kHidden}),
           1e-6);
  for (int r = 0; r < 6; ++r) {
    CAPTURE(r);
    Buffer one_out = poisoned(kHidden * dtype_size(dtype));
    rms_norm(Impl::cpu, TensorView::contiguous(one_out.data(), dtype, {kHidden}),
             TensorView::contiguous(rows.bytes.data() + rows.row_offset[r] * dtype_size(dtype),
                                    dtype, {kHidden}),
             TensorView::contiguous(weight.data(), dtype, {kHidden}), 1e-6);
    CHECK(std::memcmp(out.data() + r * kHidden * dtype_size(dtype), one_out.data(),
                      kHidden * dtype_size(dtype)) == 0);
  }
  CHECK(test::first_difference(rows.bytes.data(), before.data(), before.size()) < 0);
}

TEST_CASE("rms_norm CPU: in place (out is input) gives the out-of-place result", "[rms_norm]") {
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  CAPTURE(dtype_name(dtype));
  Rows rows = make_packed(dtype, 3, 7, 0, 5);
  Buffer weight(Memory::host, 7 * dtype_size(dtype));
  test::fill_random(weight.data(), dtype, 7, 6);
  const TensorView weight_view = TensorView::contiguous(weight.data(), dtype, {7});
  Buffer out = poisoned(21 * dtype_size(dtype));
  rms_norm(Impl::cpu, TensorView::contiguous(out.data(), dtype, {3, 7}), rows.view, weight_view,
           1e-6);
  rms_norm(Impl::cpu, rows.view, rows.view, weight_view, 1e-6);
  CHECK(std::memcmp(rows.view.data, out.data(), 21 * dtype_size(dtype)) == 0);
}

TEST_CASE("rms_norm CPU: one 1-D row, and zero rows as a no-op", "[rms_norm]") {
  Buffer input = encoded(DType::f32, {2, 0, 0, 0});
  Buffer weight = encoded(DType::f32, {3, 1, 1, 1});
  Buffer out = poisoned(16);
  rms_norm(Impl::cpu, TensorView::contiguous(out.data(), DType::f32, {4}),
           TensorView::contiguous(input.data(), DType::f32, {4}),
           TensorView::contiguous(weight.data(), DType::f32, {4}), 0.0);
  CHECK(get(out.data(), DType::f32, 0) == 6.f);
  // Zero rows: null data is fine when there are no elements; nothing is written.
  const Buffer fresh = poisoned(16);
  for (Impl impl : {Impl::cpu, Impl::naive, Impl::optimized}) {
    const Device device = impl_device(impl);
    TensorView weight_view = TensorView::contiguous(weight.data(), DType::f32, {4}, device);
    CHECK_NOTHROW(rms_norm(impl, TensorView::contiguous(nullptr, DType::f32, {0, 4}, device),
                           TensorView::contiguous(nullptr, DType::f32, {0, 4}, device),
                           weight_view, 1e-6));
    CHECK_NOTHROW(rms_norm(impl, TensorView::contiguous(nullptr, DType::f32, {2, 0, 3, 4}, device),
                           TensorView::contiguous(nullptr, DType::f32, {2, 0, 3, 4}, device),
                           weight_view, 1e-6));
  }
  const RmsNorm::Plan plan = RmsNorm::validate(
      {TensorView::contiguous(nullptr, DType::f32, {0, 4}),
       TensorView::contiguous(nullptr, DType::f32, {0, 4}),
       TensorView::contiguous(weight.data(), DType::f32, {4}), 1e-6},
      Impl::cpu);
  CHECK(plan.rows.num_rows == 0);
  CHECK(plan.hidden_size == 4);
}

TEST_CASE("rms_norm: the plan pads the leading dimensions to three", "[rms_norm]") {
  Buffer data(Memory::host, 4096);
  Buffer weight(Memory::host, 64);
  Buffer out(Memory::host, 4096);
  const TensorView w = TensorView::contiguous(weight.data(), DType::bf16, {8});
  SECTION("rank 1") {
    const RmsNorm::Plan plan = RmsNorm::validate(
        {TensorView::contiguous(out.data(), DType::bf16, {8}),
         TensorView::contiguous(data.data(), DType::bf16, {8}), w, 1e-6}, Impl::cpu);
    CHECK(plan.rows.num_rows == 1);
    CHECK(plan.rows.row_start(0) == 0);
  }
  SECTION("rank 4") {
    const RmsNorm::Plan plan = RmsNorm::validate(
        {TensorView::contiguous(out.data(), DType::bf16, {2, 3, 4, 8}),
         TensorView::strided(data.data(), DType::bf16, {2, 3, 4, 8}, {500, 100, 20, 1}), w,
         1e-6},
        Impl::cpu);
    CHECK(plan.rows.num_rows == 24);
    CHECK(plan.rows.row_start(23) == 500 + 2 * 100 + 3 * 20);
    CHECK(plan.rows.row_start(5) == 100 + 20);
  }
}

// ---------------------------------------------------------------------------------------------
// Validation: one test per rule. A valid bf16 call, broken in exactly one way; the call must
// throw InvalidArgument naming the argument, and out must keep its poison.

struct ValidCall {
  static constexpr int kRows = 3, kHidden = 8;
  Buffer input_data{Memory::host, kRows* kHidden * 2 + 64};
  Buffer weight_data{Memory::host, kHidden * 2 + 64};
  Buffer out_data = poisoned(kRows * kHidden * 2 + 64);
  TensorView out = TensorView::contiguous(out_data.data(), DType::bf16, {kRows, kHidden});
  TensorView input = TensorView::contiguous(input_data.data(), DType::bf16, {kRows, kHidden});
  TensorView weight = TensorView::contiguous(weight_data.data(), DType::bf16, {kHidden});
  double epsilon = 1e-6;
  Impl impl = Impl::cpu;

  ValidCall() {
    test::fill_random(input_data.data(), DType::bf16, kRows * kHidden + 32, 1);
    test::fill_random(weight_data.data(), DType::bf16, kHidden + 32, 2);
  }
  void call() const { rms_norm(impl, out, input, weight, epsilon); }
  bool nothing_written() const {
    const Buffer fresh = poisoned(out_data.size());
    return test::first_difference(out_data.data(), fresh.data(), fresh.size()) < 0;
  }
};

TEST_CASE("rms_norm: the valid call used by the rule tests passes", "[rms_norm]") {
  ValidCall call;
  CHECK_NOTHROW(call.call());
}

TEST_CASE("rms_norm rejects a tensor on the wrong device", "[rms_norm]") {
  ValidCall call;
  SECTION("out") { call.out.device = Device::cuda; CHECK_REJECTED(call, "out"); }
  SECTION("input") { call.input.device = Device::cuda; CHECK_REJECTED(call, "input"); }
  SECTION("weight") { call.weight.device = Device::cuda; CHECK_REJECTED(call, "weight"); }
  SECTION("naive given host tensors") {
    call.impl = Impl::naive;
    CHECK_REJECTED(call, "out");
    CHECK_THROWS_WITH(call.call(), Contains("cuda"));
  }
  SECTION("optimized given a host weight") {
    call.impl = Impl::optimized;
    call.out.device = call.input.device = Device::cuda;
    CHECK_REJECTED(call, "weight");
  }
}

TEST_CASE("rms_norm rejects an input rank outside 1..4", "[rms_norm]") {
  ValidCall call;
  SECTION("0-d") {
    call.input = TensorView::contiguous(call.input_data.data(), DType::bf16, {});
    call.out = TensorView::contiguous(call.out_data.data(), DType::bf16, {});
    CHECK_REJECTED(call, "input");
  }
  SECTION("5-D") {
    call.input = TensorView::contiguous(call.input_data.data(), DType::bf16, {1, 1, 1, 3, 8});
    call.out = TensorView::contiguous(call.out_data.data(), DType::bf16, {1, 1, 1, 3, 8});
    CHECK_REJECTED(call, "input");
    CHECK_THROWS_WITH(call.call(), Contains("5"));
  }
}

TEST_CASE("rms_norm rejects an input dtype other than f32, f16, bf16", "[rms_norm]") {
  ValidCall call;
  const DType dtype = GENERATE(DType::u8, DType::i32, DType::i64, DType::f8_e4m3);
  call.input.dtype = call.out.dtype = call.weight.dtype = dtype;
  CHECK_REJECTED(call, "input");
  CHECK_THROWS_WITH(call.call(), Contains(std::string(dtype_name(dtype))));
}

TEST_CASE("rms_norm rejects a negative stride", "[rms_norm]") {
  ValidCall call;
  call.input.strides[0] = -8;
  CHECK_REJECTED(call, "input");
}

TEST_CASE("rms_norm rejects an input whose last dimension is not packed", "[rms_norm]") {
  ValidCall call;
  call.input = TensorView::strided(call.input_data.data(), DType::bf16, {3, 8}, {16, 2});
  CHECK_REJECTED(call, "input");
}

TEST_CASE("rms_norm rejects hidden_size 0 and hidden_size above 2^24", "[rms_norm]") {
  ValidCall call;
  SECTION("0") {
    call.input = TensorView::contiguous(call.input_data.data(), DType::bf16, {3, 0});
    call.out = TensorView::contiguous(call.out_data.data(), DType::bf16, {3, 0});
    call.weight = TensorView::contiguous(call.weight_data.data(), DType::bf16, {0});
    CHECK_REJECTED(call, "input");
    CHECK_THROWS_WITH(call.call(), Contains("hidden_size"));
  }
  SECTION("2^24 + 1 (views only: the contract refuses them before touching memory)") {
    const std::int64_t too_long = (std::int64_t{1} << 24) + 1;
    call.input = TensorView::contiguous(call.input_data.data(), DType::bf16, {1, too_long});
    call.out = TensorView::contiguous(call.out_data.data(), DType::bf16, {1, too_long});
    call.weight = TensorView::contiguous(call.weight_data.data(), DType::bf16, {too_long});
    CHECK_REJECTED(call, "input");
    CHECK_THROWS_WITH(call.call(), Contains("2^24"));
  }
}

TEST_CASE("rms_norm rejects an out of another shape, dtype or not contiguous", "[rms_norm]") {
  ValidCall call;
  SECTION("shape") {
    call.out = TensorView::contiguous(call.out_data.data(), DType::bf16, {3, 1, 8});
    CHECK_REJECTED(call, "out");
    CHECK_THROWS_WITH(call.call(), Contains("[3, 8]"));
  }
  SECTION("dtype") {
    call.out.dtype = DType::f16;
    CHECK_REJECTED(call, "out");
  }
  SECTION("strided rows") {
    call.out = TensorView::strided(call.out_data.data(), DType::bf16, {3, 8}, {9, 1});
    CHECK_REJECTED(call, "out");
    CHECK_THROWS_WITH(call.call(), Contains("contiguous"));
  }
}

TEST_CASE("rms_norm rejects a weight of the wrong rank, size, dtype or layout", "[rms_norm]") {
  ValidCall call;
  SECTION("2-D") {
    call.weight = TensorView::contiguous(call.weight_data.data(), DType::bf16, {1, 8});
    CHECK_REJECTED(call, "weight");
  }
  SECTION("size") {
    call.weight = TensorView::contiguous(call.weight_data.data(), DType::bf16, {7});
    CHECK_REJECTED(call, "weight");
    CHECK_THROWS_WITH(call.call(), Contains("hidden_size"));
  }
  SECTION("dtype") {
    call.weight.dtype = DType::f16;
    CHECK_REJECTED(call, "weight");
  }
  SECTION("strided") {
    call.weight = TensorView::strided(call.weight_data.data(), DType::bf16, {8}, {2});
    CHECK_REJECTED(call, "weight");
  }
}

TEST_CASE("rms_norm rejects an epsilon that is negative, not finite or above FLT_MAX",
          "[rms_norm]") {
  ValidCall call;
  call.epsilon = GENERATE(-1e-6, std::numeric_limits<double>::quiet_NaN(),
                          std::numeric_limits<double>::infinity(), 1e39);
  CAPTURE(call.epsilon);
  CHECK_REJECTED(call, "epsilon");
}

TEST_CASE("rms_norm rejects null data pointers", "[rms_norm]") {
  ValidCall call;
  SECTION("out") { call.out.data = nullptr; CHECK_REJECTED(call, "out"); }
  SECTION("input") { call.input.data = nullptr; CHECK_REJECTED(call, "input"); }
  SECTION("weight") { call.weight.data = nullptr; CHECK_REJECTED(call, "weight"); }
}

TEST_CASE("rms_norm rejects out sharing memory with input, unless out is input",
          "[rms_norm]") {
  ValidCall call;
  SECTION("out one element into input") {
    call.out = TensorView::contiguous(call.input_data.data() + 2, DType::bf16, {3, 8});
    CHECK_THROWS_AS(call.call(), InvalidArgument);
    CHECK_THROWS_WITH(call.call(), Contains("out") && Contains("input"));
  }
  SECTION("input rows strided over out's memory") {
    call.input = TensorView::strided(call.out_data.data(), DType::bf16, {3, 8}, {10, 1});
    CHECK_REJECTED(call, "out");
  }
  SECTION("the same pointer, but input strided: not the same elements") {
    call.input = TensorView::strided(call.out_data.data(), DType::bf16, {3, 8}, {9, 1});
    CHECK_REJECTED(call, "out");
  }
  SECTION("exactly in place is accepted") {
    call.out = call.input;
    CHECK_NOTHROW(call.call());
  }
}

TEST_CASE("rms_norm rejects out sharing memory with weight", "[rms_norm]") {
  ValidCall call;
  call.weight = TensorView::contiguous(call.out_data.data() + 16, DType::bf16, {8});
  CHECK_REJECTED(call, "weight");
}

// ---------------------------------------------------------------------------------------------
// GPU: naive and optimized against the CPU reference.

struct GpuResult {
  Buffer out;
  Buffer input;
};

// Runs `impl` on device copies of input, weight and a poisoned out; returns out and input.
GpuResult run_on_device(Impl impl, const Rows& input, const Buffer& weight, const Rows& out,
                        double epsilon) {
  const Buffer d_input = copy_to(Memory::device, input.bytes);
  const Buffer d_weight = copy_to(Memory::device, weight);
  const Buffer d_out = copy_to(Memory::device, out.bytes);
  const TensorView weight_view = TensorView::contiguous(
      d_weight.data(), input.dtype, {input.hidden_size}, Device::cuda);
  rms_norm(impl, test::rebase(out.view, out.bytes.data(), d_out.data(), Device::cuda),
           test::rebase(input.view, input.bytes.data(), d_input.data(), Device::cuda),
           weight_view, epsilon);
  PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  return {download(d_out), download(d_input)};
}

// The out tensor matching `input`: packed, poisoned, with `input`'s shape; one element off an
// aligned address when input is misaligned.
Rows poisoned_out_like(const Rows& input, RowsLayout layout) {
  Rows out = make_packed(input.dtype, static_cast<std::int64_t>(input.row_offset.size()),
                         input.hidden_size, layout == RowsLayout::misaligned ? 9 : 8, 0, false);
  out.view.ndim = input.view.ndim;
  out.view.shape = input.view.shape;
  std::int64_t step = 1;
  for (int d = out.view.ndim - 1; d >= 0; --d) {
    out.view.strides[d] = step;
    step *= out.view.shape[d];
  }
  return out;
}

void check_against_cpu(DType dtype, std::int64_t hidden, std::int64_t num_rows,
                       RowsLayout layout) {
  INFO(dtype_name(dtype) << " hidden " << hidden << " rows " << num_rows << " "
                         << layout_name(layout));
  Rows input = make_rows(dtype, num_rows, hidden, layout, 1000 + hidden + num_rows);
  // Row 1 (when there is one) is all zeros: it must come out as exact zeros (epsilon > 0).
  if (num_rows > 1) {
    for (std::int64_t i = 0; i < hidden; ++i) set_row_element(input, 1, i, 0.f);
  }
  Buffer weight(Memory::host, hidden * dtype_size(dtype));
  test::fill_random(weight.data(), dtype, hidden, 7 + hidden, 2.f);
  const Rows out = poisoned_out_like(input, layout);
  const double epsilon = 1e-6;

  Rows expected = out;
  rms_norm(Impl::cpu, test::rebase(out.view, out.bytes.data(), expected.bytes.data(), Device::cpu),
           input.view, TensorView::contiguous(weight.data(), dtype, {hidden}), epsilon);
  const std::vector<std::uint8_t> expected_rows = gather(out, expected.bytes);
  const double tolerance = reduction_tolerance(dtype, hidden);

  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    const GpuResult result = run_on_device(impl, input, weight, out, epsilon);
    const std::vector<std::uint8_t> actual_rows = gather(out, result.out);
    const double error =
        relative_error(actual_rows.data(), expected_rows.data(), dtype, num_rows * hidden);
    INFO("relative error " << error << ", tolerance " << tolerance);
    CHECK(error <= tolerance);
    if (num_rows > 1) {
      bool zeros = true;
      for (std::int64_t i = 0; i < hidden; ++i) {
        zeros = zeros && row_element(out, result.out, 1, i) == 0.f;
      }
      CHECK(zeros);
    }
    // Nothing outside out's rows is written, and input is only read.
    CHECK(first_difference_outside_rows(out, result.out, out.bytes) < 0);
    CHECK(test::first_difference(result.input.data(), input.bytes.data(), input.bytes.size()) < 0);
  }
}

TEST_CASE("rms_norm GPU: dtypes × hidden sizes × rows × layouts", "[rms_norm][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  const std::int64_t hidden =
      GENERATE(1, 3, 7, 8, 64, 127, 1000, 4096, 5120, 7168, 8192, 16384);
  const std::int64_t num_rows = GENERATE(1, 2, 33, 300);
  const RowsLayout layout = GENERATE(RowsLayout::packed, RowsLayout::strided,
                                     RowsLayout::misaligned, RowsLayout::odd_pitch);
  check_against_cpu(dtype, hidden, num_rows, layout);
}

TEST_CASE("rms_norm GPU: long rows (re-read path) and many rows", "[rms_norm][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const DType dtype = GENERATE(DType::f32, DType::bf16);
  SECTION("rows longer than the registers hold") {
    check_against_cpu(dtype, 40000, 3, RowsLayout::packed);   // 5000 vectors of 8 bf16
    check_against_cpu(dtype, 70000, 2, RowsLayout::packed);
    check_against_cpu(dtype, 5000, 5, RowsLayout::misaligned);  // 5000 one-element vectors
  }
  SECTION("more rows than 256 and 2-row groups") {
    check_against_cpu(dtype, 4096, 1024, RowsLayout::packed);
    check_against_cpu(dtype, 7168, 600, RowsLayout::strided);
  }
}

TEST_CASE("rms_norm GPU: epsilon extremes", "[rms_norm][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const DType dtype = GENERATE(DType::f32, DType::bf16);
  const double epsilon = GENERATE(0.0, 1e-6, 1e30);
  CAPTURE(dtype_name(dtype), epsilon);
  const std::int64_t hidden = 1000, num_rows = 33;
  Rows input = make_rows(dtype, num_rows, hidden, RowsLayout::packed, 77);
  Buffer weight(Memory::host, hidden * dtype_size(dtype));
  test::fill_random(weight.data(), dtype, hidden, 78);
  const Rows out = poisoned_out_like(input, RowsLayout::packed);
  Rows expected = out;
  rms_norm(Impl::cpu, test::rebase(out.view, out.bytes.data(), expected.bytes.data(), Device::cpu),
           input.view, TensorView::contiguous(weight.data(), dtype, {hidden}), epsilon);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    const GpuResult result = run_on_device(impl, input, weight, out, epsilon);
    CHECK(relative_error(gather(out, result.out).data(), gather(out, expected.bytes).data(), dtype,
                         num_rows * hidden) <= reduction_tolerance(dtype, hidden));
  }
}

TEST_CASE("rms_norm GPU: a row whose squares overflow float32 comes out as zeros",
          "[rms_norm][gpu]") {
  // Documented behaviour, as upstream: the kernels sum float(x)² in float32, so a row with
  // |x| ≈ 1e30 sums to +inf, inv = rsqrtf(inf) = 0 and every output is ±0 (the float64 CPU
  // reference gives ±w instead). The other rows are unaffected.
  PAGEDKV_REQUIRE_GPU();
  const DType dtype = GENERATE(DType::f32, DType::bf16);
  CAPTURE(dtype_name(dtype));
  const std::int64_t hidden = 4096, num_rows = 3;
  Rows input = make_rows(dtype, num_rows, hidden, RowsLayout::packed, 91);
  for (std::int64_t i = 0; i < hidden; ++i) set_row_element(input, 1, i, i % 2 ? -1e30f : 1e30f);
  Buffer weight(Memory::host, hidden * dtype_size(dtype));
  test::fill_random(weight.data(), dtype, hidden, 92);
  const Rows out = poisoned_out_like(input, RowsLayout::packed);
  Rows expected = out;
  rms_norm(Impl::cpu, test::rebase(out.view, out.bytes.data(), expected.bytes.data(), Device::cpu),
           input.view, TensorView::contiguous(weight.data(), dtype, {hidden}), 1e-6);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    const GpuResult result = run_on_device(impl, input, weight, out, 1e-6);
    int nonzero = 0, cpu_nonzero = 0;
    for (std::int64_t i = 0; i < hidden; ++i) {
      nonzero += row_element(out, result.out, 1, i) != 0.f;
      cpu_nonzero += row_element(out, expected.bytes, 1, i) != 0.f;
    }
    CHECK(nonzero == 0);
    CHECK(cpu_nonzero > 0);
    for (std::int64_t r : {0, 2}) {
      double diff2 = 0, ref2 = 0;
      for (std::int64_t i = 0; i < hidden; ++i) {
        const double a = row_element(out, result.out, r, i);
        const double e = row_element(out, expected.bytes, r, i);
        diff2 += (a - e) * (a - e);
        ref2 += e * e;
      }
      CHECK(std::sqrt(diff2 / ref2) <= reduction_tolerance(dtype, hidden));
    }
  }
}

TEST_CASE("rms_norm GPU: in place", "[rms_norm][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  const std::int64_t hidden = GENERATE(7, 4096, 70000);
  CAPTURE(dtype_name(dtype), hidden);
  const std::int64_t num_rows = 5;
  Rows input = make_packed(dtype, num_rows, hidden, 8, 55);
  Buffer weight(Memory::host, hidden * dtype_size(dtype));
  test::fill_random(weight.data(), dtype, hidden, 56);
  Rows expected = input;
  rms_norm(Impl::cpu,
           test::rebase(input.view, input.bytes.data(), expected.bytes.data(), Device::cpu),
           input.view, TensorView::contiguous(weight.data(), dtype, {hidden}), 1e-6);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    const Buffer d_rows = copy_to(Memory::device, input.bytes);
    const Buffer d_weight = copy_to(Memory::device, weight);
    const TensorView rows_view =
        test::rebase(input.view, input.bytes.data(), d_rows.data(), Device::cuda);
    rms_norm(impl, rows_view, rows_view,
             TensorView::contiguous(d_weight.data(), dtype, {hidden}, Device::cuda), 1e-6);
    PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
    const Buffer actual = download(d_rows);
    CHECK(relative_error(gather(input, actual).data(), gather(input, expected.bytes).data(),
                         dtype, num_rows * hidden) <= reduction_tolerance(dtype, hidden));
    CHECK(first_difference_outside_rows(input, actual, input.bytes) < 0);
  }
}

}  // namespace
