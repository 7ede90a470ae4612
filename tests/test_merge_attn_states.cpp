// Tests of merge_attn_states (vLLM csrc/libtorch_stable/attention/merge_attn_states.cu; chapter
// "merge_attn_states").
//
// CPU part (runs everywhere): the header's worked example; the CPU reference's float32 formula
// against a long double evaluation of the merge; the special rows bit for bit (equal LSEs, an
// empty key set in FlashAttention 2's +inf and FlashAttention 3's -inf conventions, two empty
// sets, a NaN, a gap too wide for float32, tokens without prefix context, fp8 output with its
// clamp); every layout the contract accepts giving the same result as the packed one; zero
// tokens and heads; one test per validation rule (the call throws InvalidArgument naming the
// argument, and no byte of output or output_lse changes); and the invariant the op exists for,
// "the LSE merge is exact": a dense attention computed here in float64, split over two (or
// three) key sets, each part's output and LSE rounded as a kernel stores them, merged, equals
// the attention over all the keys within a bound derived from those roundings.
//
// GPU part ([gpu]): naive and optimized bit-identical to each other (the same device math) over
// dtypes × head sizes × tokens × heads × layouts × fp8 output × output_lse × prefill tokens,
// each within MergeAttnStates::ulp_bound() of the CPU reference and its LSE within
// kLseUlpBound, the bytes around and between the elements untouched; the special rows bit for
// bit; the bounds measured over wide LSE spreads (printed); and the exact-merge invariant run on
// both kernels.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "merge_math.h"
#include "norm_support.h"
#include "numerics.h"
#include "pagedkv/agreement.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/merge_attn_states.h"
#include "support.h"

namespace {

using namespace pagedkv;
using pagedkv::test::norm::get;
using pagedkv::test::norm::set;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// ---------------------------------------------------------------------------------------------
// Tensors in their own poisoned buffers, in the layouts the contract accepts.

// How the [N, H, D] tensors and the [H, N] LSEs lie in memory.
enum class Layout {
  packed,          // contiguous, 16-byte aligned
  padded,          // heads and tokens with gaps (each tensor its own), LSE rows padded
  misaligned,      // contiguous, one element past an aligned address (no 16-byte packs)
  transposed_lse,  // packed heads; the LSEs are [N, H] tensors seen through their transpose
};

const char* layout_name(Layout layout) {
  switch (layout) {
    case Layout::packed: return "packed";
    case Layout::padded: return "padded";
    case Layout::misaligned: return "misaligned";
    case Layout::transposed_lse: return "transposed LSE";
  }
  return "?";
}

// A tensor in a poisoned buffer: its view, and where each logical element lies (offsets in
// elements from the buffer's start, in the view's row-major order).
struct Tensor {
  Buffer bytes;
  TensorView view;
  DType dtype = DType::f32;
  std::vector<std::int64_t> offsets;

  float at(std::size_t i) const { return read(bytes, i); }
  float read(const Buffer& from, std::size_t i) const {
    if (dtype == DType::f8_e4m3) return numerics::fp8_e4m3_to_float(from.data()[offsets[i]]);
    return get(from.data(), dtype, offsets[i]);
  }
  void put(std::size_t i, float value) { set(bytes.data(), dtype, offsets[i], value); }
};

// [N, H, D] of `dtype` in `layout`; `salt` gives each tensor padding of its own.
Tensor heads_tensor(DType dtype, std::int64_t n, std::int64_t h, std::int64_t d, Layout layout,
                    int salt) {
  Tensor t;
  t.dtype = dtype;
  const std::int64_t element = dtype_size(dtype);
  const bool padded = layout == Layout::padded;
  const std::int64_t head_stride = d + (padded ? 8 * (salt + 1) : 0);
  const std::int64_t token_stride = h * head_stride + (padded ? 16 * (salt + 1) : 0);
  std::int64_t front = 32 / element;  // 32 bytes: 16-byte aligned
  if (layout == Layout::misaligned) front += 1;
  const std::int64_t total = front + n * token_stride + 32;
  t.bytes = test::norm::poisoned(static_cast<std::size_t>(total * element));
  t.view = TensorView::strided(t.bytes.data() + front * element, dtype, {n, h, d},
                               {token_stride, head_stride, 1});
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < h; ++j)
      for (std::int64_t k = 0; k < d; ++k) t.offsets.push_back(front + i * token_stride + j * head_stride + k);
  return t;
}

// [H, N] f32: contiguous, padded rows, or the transpose of an [N, H] tensor.
Tensor lse_tensor(std::int64_t n, std::int64_t h, Layout layout, int salt) {
  Tensor t;
  t.dtype = DType::f32;
  const std::int64_t front = 4 + salt;
  std::int64_t head_stride = n, token_stride = 1;
  if (layout == Layout::padded) head_stride = n + 3 + salt;
  if (layout == Layout::transposed_lse) head_stride = 1, token_stride = h;
  const std::int64_t total = front + std::max(h * head_stride, n * token_stride) + 8 + n * h;
  t.bytes = test::norm::poisoned(static_cast<std::size_t>(total * 4));
  t.view = TensorView::strided(t.bytes.data() + front * 4, DType::f32, {h, n},
                               {head_stride, token_stride});
  for (std::int64_t j = 0; j < h; ++j)
    for (std::int64_t i = 0; i < n; ++i) t.offsets.push_back(front + j * head_stride + i * token_stride);
  return t;
}

// One call of the op, all its tensors in host memory.
struct MergeCall {
  DType dtype = DType::bf16;
  std::int64_t n = 3, h = 4, d = 16;
  bool fp8 = false;
  bool with_lse = true;
  std::int64_t prefill = -1;
  float scale = 0.25f;
  Layout layout = Layout::packed;
  Tensor prefix, suffix, output, prefix_lse, suffix_lse, output_lse;
  Buffer scale_bytes;

  // Allocates every tensor; random partial outputs in [-4, 4] and LSEs in [-4, 12].
  void build(std::uint64_t seed = 1) {
    prefix = heads_tensor(dtype, n, h, d, layout, 0);
    suffix = heads_tensor(dtype, n, h, d, layout, 1);
    output = heads_tensor(fp8 ? DType::f8_e4m3 : dtype, n, h, d, layout, 2);
    prefix_lse = lse_tensor(n, h, layout, 0);
    suffix_lse = lse_tensor(n, h, layout, 1);
    output_lse = lse_tensor(n, h, layout, 2);
    scale_bytes = test::floats({scale});
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> value(-4.f, 4.f), lse(-4.f, 12.f);
    for (std::size_t i = 0; i < prefix.offsets.size(); ++i) {
      prefix.put(i, value(rng));
      suffix.put(i, value(rng));
    }
    for (std::size_t i = 0; i < prefix_lse.offsets.size(); ++i) {
      prefix_lse.put(i, lse(rng));
      suffix_lse.put(i, lse(rng));
    }
  }
  MergeAttnStates::Args args() const {
    MergeAttnStates::Args a;
    a.output = output.view;
    a.prefix_output = prefix.view;
    a.prefix_lse = prefix_lse.view;
    a.suffix_output = suffix.view;
    a.suffix_lse = suffix_lse.view;
    if (with_lse) a.output_lse = output_lse.view;
    a.prefill_tokens_with_context = prefill;
    if (fp8) a.output_scale = TensorView::contiguous(scale_bytes.data(), DType::f32, {1});
    return a;
  }
  void run_cpu() { pagedkv::run<MergeAttnStates>(Impl::cpu, args()); }
  // A call with the same parameters, layout and bytes (outputs included).
  MergeCall clone() const {
    MergeCall m;
    m.dtype = dtype, m.n = n, m.h = h, m.d = d, m.fp8 = fp8, m.with_lse = with_lse;
    m.prefill = prefill, m.scale = scale, m.layout = layout;
    m.build(0);
    for (auto [to, from] : {std::pair<Tensor*, const Tensor*>{&m.prefix, &prefix},
                            {&m.suffix, &suffix}, {&m.output, &output},
                            {&m.prefix_lse, &prefix_lse}, {&m.suffix_lse, &suffix_lse},
                            {&m.output_lse, &output_lse}}) {
      to->bytes.copy_from(from->bytes);
    }
    return m;
  }
  // Row (t, j)'s LSEs.
  float lp(std::int64_t t, std::int64_t j) const { return prefix_lse.at(j * n + t); }
  float ls(std::int64_t t, std::int64_t j) const { return suffix_lse.at(j * n + t); }
  // Element (t, j, k)'s index in the [N, H, D] tensors' offsets.
  std::size_t element(std::int64_t t, std::int64_t j, std::int64_t k) const {
    return static_cast<std::size_t>((t * h + j) * d + k);
  }
};

// The outputs of one GPU run, as host buffers laid out like the call's.
struct DeviceOutputs {
  Buffer output, output_lse;
};

DeviceOutputs run_on_gpu(const MergeCall& c, Impl impl) {
  const auto up = [](const Tensor& t) { return copy_to(Memory::device, t.bytes); };
  Buffer prefix = up(c.prefix), suffix = up(c.suffix), output = up(c.output);
  Buffer prefix_lse = up(c.prefix_lse), suffix_lse = up(c.suffix_lse);
  Buffer output_lse = up(c.output_lse);
  Buffer scale = copy_to(Memory::device, c.scale_bytes);
  MergeAttnStates::Args a = c.args();
  const auto moved = [](const TensorView& v, const Tensor& t, const Buffer& b) {
    return test::rebase(v, t.bytes.data(), b.data(), Device::cuda);
  };
  a.output = moved(a.output, c.output, output);
  a.prefix_output = moved(a.prefix_output, c.prefix, prefix);
  a.suffix_output = moved(a.suffix_output, c.suffix, suffix);
  a.prefix_lse = moved(a.prefix_lse, c.prefix_lse, prefix_lse);
  a.suffix_lse = moved(a.suffix_lse, c.suffix_lse, suffix_lse);
  if (c.with_lse) a.output_lse = moved(a.output_lse, c.output_lse, output_lse);
  if (c.fp8) a.output_scale = test::rebase(a.output_scale, c.scale_bytes.data(), scale.data(),
                                           Device::cuda);
  pagedkv::run<MergeAttnStates>(impl, a);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  return {copy_to(Memory::host, output), copy_to(Memory::host, output_lse)};
}

// Whether the bytes of `a` and `b` outside the elements of `t` are equal (nothing written
// there).
bool same_outside(const Tensor& t, const Buffer& a, const Buffer& b) {
  std::vector<bool> inside(a.size(), false);
  const std::int64_t element = dtype_size(t.dtype);
  for (std::int64_t offset : t.offsets)
    for (std::int64_t k = 0; k < element; ++k) inside[offset * element + k] = true;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!inside[i] && a.data()[i] != b.data()[i]) {
      UNSCOPED_INFO("byte " << i << " outside the elements changed");
      return false;
    }
  }
  return true;
}

// The largest distances of a result from the CPU reference's: the output in ulps of its
// dtype at |p| p_scale + |s| s_scale (× 1 / scale for fp8), the LSE in f32 ulps at
// max(|lse|, 1).
struct Distance {
  double output = 0.0;
  double lse = 0.0;
};

Distance distance(const MergeCall& c, const Buffer& output, const Buffer& output_lse,
                  const Buffer& ref_output, const Buffer& ref_lse) {
  Distance worst;
  const DType out_dtype = c.fp8 ? DType::f8_e4m3 : c.dtype;
  const double to_fp8 = c.fp8 ? 1.0 / static_cast<double>(c.scale) : 1.0;
  const std::int64_t merged = c.prefill < 0 ? c.n : c.prefill;
  for (std::int64_t t = 0; t < c.n; ++t) {
    for (std::int64_t j = 0; j < c.h; ++j) {
      const cpu::MergeWeights w = t < merged ? cpu::merge_weights(c.lp(t, j), c.ls(t, j))
                                             : cpu::MergeWeights{true, 0.f, 1.f, 0.f};
      for (std::int64_t k = 0; k < c.d; ++k) {
        const std::size_t e = c.element(t, j, k);
        const double p = c.prefix.at(e), s = c.suffix.at(e);
        const double got = c.output.read(output, e), want = c.output.read(ref_output, e);
        const double scales = w.merge ? std::fabs(p) * w.p_scale + std::fabs(s) * w.s_scale
                                      : std::fabs(p);
        const double magnitude = std::max(scales * to_fp8, std::fabs(want));
        worst.output = std::max(worst.output, ulp_error(got, want, magnitude, out_dtype));
      }
      if (c.with_lse) {
        const std::size_t e = static_cast<std::size_t>(j * c.n + t);
        const double got = c.output_lse.read(output_lse, e);
        const double want = c.output_lse.read(ref_lse, e);
        worst.lse = std::max(worst.lse,
                             ulp_error(got, want, std::max(std::fabs(want), 1.0), DType::f32));
      }
    }
  }
  return worst;
}

// ---------------------------------------------------------------------------------------------
// The CPU reference.

TEST_CASE("merge_attn_states CPU: the header's worked example", "[merge_attn_states]") {
  // One head of 4 f32 elements, all equal: the prefix attended to one key of score 0 and value
  // 1, the suffix to three keys of score 0 and value 3.
  MergeCall c;
  c.dtype = DType::f32;
  c.n = 1, c.h = 1, c.d = 4;
  c.build();
  for (std::size_t i = 0; i < 4; ++i) c.prefix.put(i, 1.f), c.suffix.put(i, 3.f);
  c.prefix_lse.put(0, 0.f);
  c.suffix_lse.put(0, static_cast<float>(std::log(3.0)));
  c.run_cpu();
  for (std::size_t i = 0; i < 4; ++i) CHECK(c.output.at(i) == Approx(2.5).epsilon(1e-6));
  CHECK(c.output_lse.at(0) == Approx(std::log(4.0)).epsilon(1e-6));
}

// The CPU reference's float32 formula against the merge evaluated in long double on the same
// float inputs: the output within 8 f32 ulps at the magnitude |p| a' + |s| b' (a', b' the exact
// scales), the LSE within 4 f32 ulps at max(|lse|, 1). Over LSE gaps from 0 to 100 (beyond
// about 88 the smaller weight underflows to 0 in float32, as in the exact value's rounding).
TEST_CASE("merge_attn_states CPU: the float32 formula against long double",
          "[merge_attn_states]") {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<float> value(-4.f, 4.f), base(-30.f, 30.f);
  std::uniform_real_distribution<double> gap_exponent(-8.0, std::log2(100.0));
  double worst_out = 0.0, worst_lse = 0.0;
  for (int i = 0; i < 200000; ++i) {
    const float lp = base(rng);
    const double gap = std::exp2(gap_exponent(rng)) * (rng() & 1 ? 1 : -1);
    const float ls = static_cast<float>(lp + gap);
    const float p = value(rng), s = value(rng);
    const cpu::MergeWeights w = cpu::merge_weights(lp, ls);
    const float out = cpu::merge_value(p, s, w);
    const long double m = std::max<long double>(lp, ls);
    const long double a = std::exp(static_cast<long double>(lp) - m);
    const long double b = std::exp(static_cast<long double>(ls) - m);
    const long double exact = (p * a + s * b) / (a + b);
    const long double exact_lse = std::log(a + b) + m;
    const double magnitude = static_cast<double>((std::fabs(p) * a + std::fabs(s) * b) / (a + b));
    worst_out = std::max(worst_out, ulp_error(out, static_cast<double>(exact), magnitude,
                                              DType::f32));
    worst_lse = std::max(worst_lse, ulp_error(w.lse, static_cast<double>(exact_lse),
                                              std::max(std::fabs(static_cast<double>(exact_lse)), 1.0),
                                              DType::f32));
  }
  INFO("largest error of the float32 formula: output " << worst_out << " ulp, LSE " << worst_lse
                                                        << " ulp");
  CHECK(worst_out <= 8.0);
  CHECK(worst_lse <= 4.0);
}

// Rows whose result is known exactly: every implementation must give these bytes.
enum class Known { average, prefix, suffix, nan };

struct SpecialRow {
  const char* what;
  float lp, ls;
  Known result;  // the output row
  float lse;     // the LSE (bit for bit, except the average's: log 2 comes from logf)
};

const std::vector<SpecialRow>& special_rows() {
  static const std::vector<SpecialRow> rows = {
      {"equal LSEs: the two halves, averaged", 2.5f, 2.5f, Known::average,
       static_cast<float>(std::log(2.0)) + 2.5f},
      {"empty prefix, FlashAttention 2 (+inf): the suffix", kInf, 1.75f, Known::suffix, 1.75f},
      {"empty prefix, FlashAttention 3 (-inf): the suffix", -kInf, 1.75f, Known::suffix, 1.75f},
      {"empty suffix, FlashAttention 2 (+inf): the prefix", -3.f, kInf, Known::prefix, -3.f},
      {"empty suffix, FlashAttention 3 (-inf): the prefix", -3.f, -kInf, Known::prefix, -3.f},
      {"both empty (+inf, +inf): the prefix row, LSE -inf", kInf, kInf, Known::prefix, -kInf},
      {"both empty (-inf, +inf): the prefix row, LSE -inf", -kInf, kInf, Known::prefix, -kInf},
      {"both empty (-inf, -inf): the prefix row, LSE -inf", -kInf, -kInf, Known::prefix, -kInf},
      {"a gap float32 cannot weigh (200): the larger side", 210.f, 10.f, Known::prefix, 210.f},
      {"a NaN prefix LSE against a number: NaN", kNaN, 1.f, Known::nan, kNaN},
      {"a NaN prefix LSE against an empty suffix: fmaxf drops the NaN, both count as empty",
       kNaN, -kInf, Known::prefix, -kInf},
  };
  return rows;
}

// A call whose head j of token t is special row (t * h + j) % rows.
MergeCall special_call(DType dtype) {
  MergeCall c;
  c.dtype = dtype;
  c.n = 4, c.h = 3, c.d = 16;
  c.build(11);
  const auto& rows = special_rows();
  for (std::int64_t t = 0; t < c.n; ++t)
    for (std::int64_t j = 0; j < c.h; ++j) {
      const SpecialRow& row = rows[static_cast<std::size_t>((t * c.h + j) % rows.size())];
      c.prefix_lse.put(static_cast<std::size_t>(j * c.n + t), row.lp);
      c.suffix_lse.put(static_cast<std::size_t>(j * c.n + t), row.ls);
    }
  return c;
}

// Checks a result of special_call() against the known values, bit for bit (the average's
// LSE within kLseUlpBound: logf(2) on the GPU need not be log 2 correctly rounded).
void check_special(const MergeCall& c, const Buffer& output, const Buffer& output_lse) {
  const auto& rows = special_rows();
  for (std::int64_t t = 0; t < c.n; ++t)
    for (std::int64_t j = 0; j < c.h; ++j) {
      const SpecialRow& row = rows[static_cast<std::size_t>((t * c.h + j) % rows.size())];
      CAPTURE(row.what, t, j);
      for (std::int64_t k = 0; k < c.d; ++k) {
        const std::size_t e = c.element(t, j, k);
        const float p = c.prefix.at(e), s = c.suffix.at(e), got = c.output.read(output, e);
        switch (row.result) {
          case Known::average: {
            // p / 2 + s / 2, rounded once to float (exact in double), then to the dtype.
            const float want = test::norm::rounded(
                c.dtype, static_cast<float>((static_cast<double>(p) + s) / 2.0));
            CHECK(test::bits_of(got) == test::bits_of(want));
            break;
          }
          case Known::prefix: CHECK(test::bits_of(got) == test::bits_of(p)); break;
          case Known::suffix: CHECK(test::bits_of(got) == test::bits_of(s)); break;
          case Known::nan: CHECK(std::isnan(got)); break;
        }
      }
      const float lse = c.output_lse.read(output_lse, static_cast<std::size_t>(j * c.n + t));
      if (row.result == Known::nan) {
        CHECK(std::isnan(lse));
      } else if (row.result == Known::average) {
        CHECK(ulp_error(lse, row.lse, std::fabs(row.lse), DType::f32) <=
              MergeAttnStates::kLseUlpBound);
      } else {
        CHECK(test::bits_of(lse) == test::bits_of(row.lse));
      }
    }
}

TEST_CASE("merge_attn_states CPU: rows with a known result, bit for bit", "[merge_attn_states]") {
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  CAPTURE(dtype_name(dtype));
  MergeCall c = special_call(dtype);
  c.run_cpu();
  check_special(c, c.output.bytes, c.output_lse.bytes);
}

TEST_CASE("merge_attn_states CPU: tokens without prefix context copy the suffix",
          "[merge_attn_states]") {
  MergeCall c;
  c.n = 5, c.prefill = 2;
  c.build(3);
  // A raw +inf LSE of a token without context is copied as it is (no merge sees it).
  c.suffix_lse.put(static_cast<std::size_t>(1 * c.n + 4), kInf);
  // The prefix of the copied tokens is never read: NaN there changes nothing.
  for (std::int64_t t = 2; t < c.n; ++t)
    for (std::int64_t j = 0; j < c.h; ++j) {
      c.prefix_lse.put(static_cast<std::size_t>(j * c.n + t), kNaN);
      for (std::int64_t k = 0; k < c.d; ++k) c.prefix.put(c.element(t, j, k), kNaN);
    }
  c.run_cpu();
  for (std::int64_t t = 0; t < c.n; ++t)
    for (std::int64_t j = 0; j < c.h; ++j) {
      CAPTURE(t, j);
      const std::size_t lse_at = static_cast<std::size_t>(j * c.n + t);
      if (t >= c.prefill) {
        for (std::int64_t k = 0; k < c.d; ++k) {
          const std::size_t e = c.element(t, j, k);
          CHECK(test::bits_of(c.output.at(e)) == test::bits_of(c.suffix.at(e)));
        }
        CHECK(test::bits_of(c.output_lse.at(lse_at)) == test::bits_of(c.suffix_lse.at(lse_at)));
      } else {
        const cpu::MergeWeights w = cpu::merge_weights(c.lp(t, j), c.ls(t, j));
        CHECK(c.output_lse.at(lse_at) == w.lse);
        const std::size_t e = c.element(t, j, 0);
        CHECK(c.output.at(e) == test::norm::rounded(c.dtype, cpu::merge_value(c.prefix.at(e),
                                                                              c.suffix.at(e), w)));
      }
    }
  // P = 0: every token copies.
  MergeCall none;
  none.n = 5, none.prefill = 0;
  none.build(3);
  none.run_cpu();
  for (std::size_t e = 0; e < none.suffix.offsets.size(); ++e)
    CHECK(test::bits_of(none.output.at(e)) == test::bits_of(none.suffix.at(e)));
}

TEST_CASE("merge_attn_states CPU: fp8 output, its scale and its clamp", "[merge_attn_states]") {
  const DType dtype = GENERATE(DType::f32, DType::bf16);
  MergeCall c;
  c.dtype = dtype;
  c.fp8 = true;
  c.scale = 0.01f;  // values up to 4 become 400: near the top of E4M3
  c.n = 3, c.prefill = 2;
  c.build(5);
  // Saturation, a NaN element (the clamp turns it into 448) and a both-empty row.
  c.prefix.put(c.element(0, 0, 0), 100.f);
  c.suffix.put(c.element(0, 0, 0), 100.f);
  c.prefix.put(c.element(0, 1, 3), kNaN);
  c.prefix_lse.put(2 * c.n + 1, -kInf);
  c.suffix_lse.put(2 * c.n + 1, kInf);
  c.run_cpu();
  const float inverse = 1.0f / c.scale;
  const auto fp8 = [&](float v) {
    const float x = std::fmax(-448.f, std::fmin(v * inverse, 448.f));
    return numerics::float_to_fp8_e4m3(x);
  };
  for (std::int64_t t = 0; t < c.n; ++t)
    for (std::int64_t j = 0; j < c.h; ++j)
      for (std::int64_t k = 0; k < c.d; ++k) {
        CAPTURE(t, j, k);
        const std::size_t e = c.element(t, j, k);
        const std::uint8_t got = c.output.bytes.data()[c.output.offsets[e]];
        const float p = c.prefix.at(e), s = c.suffix.at(e);
        std::uint8_t want;
        if (t >= c.prefill) {
          want = fp8(s);
        } else {
          const cpu::MergeWeights w = cpu::merge_weights(c.lp(t, j), c.ls(t, j));
          want = w.merge ? fp8(cpu::merge_value(p, s, w)) : fp8(p);
        }
        CHECK(int(got) == int(want));
      }
  CHECK(int(c.output.bytes.data()[c.output.offsets[c.element(0, 0, 0)]]) == 0x7E);  // 448
  CHECK(int(c.output.bytes.data()[c.output.offsets[c.element(0, 1, 3)]]) == 0x7E);  // NaN → 448
}

TEST_CASE("merge_attn_states CPU: every accepted layout gives the packed layout's values",
          "[merge_attn_states]") {
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  const Layout layout = GENERATE(Layout::padded, Layout::misaligned, Layout::transposed_lse);
  const bool fp8 = GENERATE(false, true);
  CAPTURE(dtype_name(dtype), layout_name(layout), fp8);
  MergeCall packed, other;
  for (MergeCall* c : {&packed, &other}) {
    c->dtype = dtype;
    c->fp8 = fp8;
    c->n = 5, c->h = 3, c->d = dtype == DType::f32 ? 12 : 24;
  }
  other.layout = layout;
  packed.build(9);
  other.build(9);
  packed.run_cpu();
  other.run_cpu();
  for (std::size_t e = 0; e < packed.output.offsets.size(); ++e) {
    CHECK(test::bits_of(packed.output.at(e)) == test::bits_of(other.output.at(e)));
  }
  for (std::size_t e = 0; e < packed.output_lse.offsets.size(); ++e) {
    CHECK(test::bits_of(packed.output_lse.at(e)) == test::bits_of(other.output_lse.at(e)));
  }
  // Nothing outside the elements is written (the padding stays poisoned).
  const Buffer fresh = test::norm::poisoned(other.output.bytes.size());
  CHECK(same_outside(other.output, other.output.bytes, fresh));
  const Buffer fresh_lse = test::norm::poisoned(other.output_lse.bytes.size());
  CHECK(same_outside(other.output_lse, other.output_lse.bytes, fresh_lse));
}

TEST_CASE("merge_attn_states: zero tokens or zero heads is a no-op", "[merge_attn_states]") {
  for (auto [n, h] : {std::pair<std::int64_t, std::int64_t>{0, 4}, {3, 0}}) {
    MergeCall c;
    c.n = n, c.h = h;
    c.build();
    const Buffer before = copy_to(Memory::host, c.output.bytes);
    CHECK_NOTHROW(c.run_cpu());
    CHECK(test::same_bytes(c.output.bytes, before, before.size()));
  }
}

// ---------------------------------------------------------------------------------------------
// The contract: one valid call, broken one way at a time.

struct ValidCall {
  MergeCall c;
  MergeAttnStates::Args a;
  Impl impl = Impl::cpu;

  ValidCall() {
    c.n = 3, c.h = 4, c.d = 16;
    c.build();
    a = c.args();
  }
  void call() const { pagedkv::run<MergeAttnStates>(impl, a); }
  bool nothing_written() const {
    const Buffer fresh = test::norm::poisoned(c.output.bytes.size());
    const Buffer fresh_lse = test::norm::poisoned(c.output_lse.bytes.size());
    return test::first_difference(c.output.bytes.data(), fresh.data(), fresh.size()) < 0 &&
           test::first_difference(c.output_lse.bytes.data(), fresh_lse.data(),
                                  fresh_lse.size()) < 0;
  }
  // A view of `t`'s buffer with another shape and strides.
  static TensorView reshaped(const Tensor& t, DType dtype, std::initializer_list<std::int64_t> shape,
                             std::initializer_list<std::int64_t> strides) {
    return TensorView::strided(t.view.data, dtype, shape, strides);
  }
};

TEST_CASE("merge_attn_states: the valid call used by the rule tests passes",
          "[merge_attn_states]") {
  ValidCall call;
  CHECK_NOTHROW(call.call());
}

TEST_CASE("merge_attn_states rejects bad arguments, naming them, writing nothing",
          "[merge_attn_states]") {
  ValidCall call;
  SECTION("each tensor on the wrong device") {
    call.a.output.device = Device::cuda;
    CHECK_REJECTED(call, "output");
    call.a = call.c.args();
    call.a.prefix_lse.device = Device::cuda;
    CHECK_REJECTED(call, "prefix_lse");
    call.a = call.c.args();
    call.a.output_lse.device = Device::cuda;
    CHECK_REJECTED(call, "output_lse");
  }
  SECTION("a prefix_output dtype the kernel has no path for") {
    call.a.prefix_output.dtype = DType::i32;
    CHECK_REJECTED(call, "prefix_output: expected dtype in {f32, f16, bf16}");
  }
  SECTION("a head size upstream's kernel cannot load in 16-byte packs") {
    call.a.prefix_output = ValidCall::reshaped(call.c.prefix, DType::bf16, {3, 4, 12}, {48, 12, 1});
    call.a.suffix_output = ValidCall::reshaped(call.c.suffix, DType::bf16, {3, 4, 12}, {48, 12, 1});
    call.a.output = ValidCall::reshaped(call.c.output, DType::bf16, {3, 4, 12}, {48, 12, 1});
    CHECK_REJECTED(call, "head_size = size(2) = 12 is not a multiple of 8");
  }
  SECTION("an f32 head size that is not a multiple of 4") {
    for (TensorView* v : {&call.a.prefix_output, &call.a.suffix_output, &call.a.output}) {
      *v = TensorView::strided(v->data, DType::f32, {3, 4, 6}, {24, 6, 1});
    }
    CHECK_REJECTED(call, "is not a multiple of 4");
  }
  SECTION("head size 0") {
    for (TensorView* v : {&call.a.prefix_output, &call.a.suffix_output, &call.a.output}) {
      *v = TensorView::strided(v->data, DType::bf16, {3, 4, 0}, {64, 16, 1});
    }
    CHECK_REJECTED(call, "prefix_output: expected head_size = size(2) > 0");
  }
  SECTION("suffix_output of another shape or dtype") {
    call.a.suffix_output.shape[1] = 3;
    CHECK_REJECTED(call, "suffix_output: expected the shape of prefix_output");
    call.a = call.c.args();
    call.a.suffix_output.dtype = DType::f16;
    CHECK_REJECTED(call, "suffix_output: expected dtype bf16");
  }
  SECTION("output of another shape") {
    call.a.output.shape[0] = 2;
    CHECK_REJECTED(call, "output: expected the shape of prefix_output");
  }
  SECTION("output of another rank") {
    call.a.output = ValidCall::reshaped(call.c.output, DType::bf16, {3, 64}, {64, 1});
    CHECK_REJECTED(call, "output: expected 3 dimensions");
  }
  SECTION("an fp8 output without output_scale") {
    call.a.output.dtype = DType::f8_e4m3;
    CHECK_REJECTED(call, "output: expected dtype bf16 (prefix_output's), got f8_e4m3: an fp8 "
                         "output needs output_scale");
  }
  SECTION("output_scale with an output that is not fp8") {
    call.a.output_scale = TensorView::contiguous(call.c.scale_bytes.data(), DType::f32, {1});
    CHECK_REJECTED(call, "output: expected dtype f8_e4m3 (fp8 E4M3) because output_scale is given");
  }
  SECTION("output of another dtype than prefix_output") {
    call.a.output.dtype = DType::f16;
    CHECK_REJECTED(call, "output: expected dtype bf16");
  }
  SECTION("output_scale of another dtype or size") {
    call.a.output.dtype = DType::f8_e4m3;
    call.a.output_scale = TensorView::contiguous(call.c.scale_bytes.data(), DType::f16, {1});
    CHECK_REJECTED(call, "output_scale: expected dtype f32");
    call.a.output_scale = TensorView::contiguous(call.c.scale_bytes.data(), DType::f32, {2});
    CHECK_REJECTED(call, "output_scale: expected one element");
  }
  SECTION("a token-major [N, H] LSE") {
    call.a.prefix_lse = ValidCall::reshaped(call.c.prefix_lse, DType::f32, {3, 4}, {4, 1});
    CHECK_REJECTED(call, "prefix_lse: expected [num_heads, num_tokens] = [4, 3] (head-major), "
                         "got [3, 4]: a token-major");
  }
  SECTION("an LSE of the wrong shape, rank or dtype") {
    call.a.suffix_lse.shape[1] = 4;
    CHECK_REJECTED(call, "suffix_lse: expected [num_heads, num_tokens] = [4, 3]");
    call.a = call.c.args();
    call.a.suffix_lse = ValidCall::reshaped(call.c.suffix_lse, DType::f32, {12}, {1});
    CHECK_REJECTED(call, "suffix_lse: expected 2 dimensions");
    call.a = call.c.args();
    call.a.prefix_lse.dtype = DType::bf16;
    CHECK_REJECTED(call, "prefix_lse: expected dtype f32");
    call.a = call.c.args();
    call.a.output_lse.shape[0] = 5;
    CHECK_REJECTED(call, "output_lse: expected [num_heads, num_tokens]");
  }
  SECTION("output elements sharing memory") {
    call.a.output.strides[0] = 0;  // every token on the same bytes
    CHECK_REJECTED(call, "output: expected every element to have memory of its own");
    call.a = call.c.args();
    call.a.output_lse.strides[1] = 0;
    CHECK_REJECTED(call, "output_lse: expected every element to have memory of its own");
  }
  SECTION("heads whose elements are not packed") {
    call.a.prefix_output = ValidCall::reshaped(call.c.prefix, DType::bf16, {3, 4, 16}, {128, 32, 2});
    CHECK_REJECTED(call, "prefix_output: expected the elements of a head packed");
  }
  SECTION("prefill_tokens_with_context out of range") {
    call.a.prefill_tokens_with_context = 4;
    CHECK_REJECTED(call, "prefill_tokens_with_context: expected None (-1) or 0 <= P <= "
                         "num_tokens = 3, got 4");
    call.a.prefill_tokens_with_context = -2;
    CHECK_REJECTED(call, "prefill_tokens_with_context");
  }
  SECTION("a tensor without memory") {
    call.a.suffix_output.data = nullptr;
    CHECK_REJECTED(call, "suffix_output");
  }
  SECTION("output overlapping an input") {
    call.a.output = ValidCall::reshaped(call.c.prefix, DType::bf16, {3, 4, 16}, {64, 16, 1});
    CHECK_THROWS_WITH(call.call(), Catch::Matchers::Contains("output: expected memory of its own"));
    call.a = call.c.args();
    call.a.output_lse = call.a.suffix_lse;
    CHECK_THROWS_WITH(call.call(),
                      Catch::Matchers::Contains("output_lse: expected memory of its own"));
    CHECK(call.nothing_written());
  }
}

// ---------------------------------------------------------------------------------------------
// The invariant: the LSE merge is exact.

// Dense attention of one query over keys [first, last) in float64, as a kernel would report
// it: the output (the softmax-weighted values) and the log-sum-exp of the scores. An empty set
// gives output 0 and LSE -inf.
struct Partial {
  std::vector<double> out;  // [D]
  double lse = -INFINITY;
};

struct Attention {
  std::int64_t n = 0, h = 0, d = 0, keys = 0;
  std::vector<double> q, k, v;  // [N, H, D], [L, H, D], [L, H, D]

  Partial over(std::int64_t t, std::int64_t j, std::int64_t first, std::int64_t last) const {
    Partial r;
    r.out.assign(static_cast<std::size_t>(d), 0.0);
    if (first >= last) return r;
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    std::vector<double> scores;
    for (std::int64_t l = first; l < last; ++l) {
      double dot = 0.0;
      for (std::int64_t x = 0; x < d; ++x) dot += q[(t * h + j) * d + x] * k[(l * h + j) * d + x];
      scores.push_back(dot * scale);
    }
    const double m = *std::max_element(scores.begin(), scores.end());
    double sum = 0.0;
    for (double s : scores) sum += std::exp(s - m);
    for (std::int64_t l = first; l < last; ++l) {
      const double p = std::exp(scores[static_cast<std::size_t>(l - first)] - m) / sum;
      for (std::int64_t x = 0; x < d; ++x) r.out[x] += p * v[(l * h + j) * d + x];
    }
    r.lse = m + std::log(sum);
    return r;
  }
};

Attention random_attention(std::int64_t n, std::int64_t h, std::int64_t d, std::int64_t keys,
                           std::uint64_t seed) {
  Attention a;
  a.n = n, a.h = h, a.d = d, a.keys = keys;
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  // Queries and keys with some structure (a few large scores), values around 1.
  for (std::int64_t i = 0; i < n * h * d; ++i) a.q.push_back(2.0 * normal(rng));
  for (std::int64_t i = 0; i < keys * h * d; ++i) a.k.push_back(normal(rng));
  for (std::int64_t i = 0; i < keys * h * d; ++i) a.v.push_back(1.0 + normal(rng));
  return a;
}

// Puts a part's outputs and LSEs into a call's prefix (or suffix), rounded as a kernel stores
// them: the output to the dtype, the LSE to f32. An empty part reports `empty_lse` (+inf as
// FlashAttention 2, -inf as FlashAttention 3).
void put_part(MergeCall& c, bool prefix, const Attention& a, std::int64_t first,
              std::int64_t last, float empty_lse) {
  Tensor& out = prefix ? c.prefix : c.suffix;
  Tensor& lse = prefix ? c.prefix_lse : c.suffix_lse;
  for (std::int64_t t = 0; t < c.n; ++t)
    for (std::int64_t j = 0; j < c.h; ++j) {
      const Partial part = a.over(t, j, first, last);
      for (std::int64_t x = 0; x < c.d; ++x)
        out.put(c.element(t, j, x), static_cast<float>(part.out[x]));
      lse.put(static_cast<std::size_t>(j * c.n + t),
              first >= last ? empty_lse : static_cast<float>(part.lse));
    }
}

// The merged result against the whole attention: per element,
//   |merged - whole| <= u_T (wA |oA| + wB |oB|)           the parts rounded to T
//                     + wA wB u_32 (|lA| + |lB|) (|oA| + |oB|)   their LSEs rounded to f32
//                     + 16 u_32 m + ulp_T(m)               the float32 merge, the final rounding
// with m = wA |oA| + wB |oB|; the LSE within u_32 (|lA| + |lB|) + 10 ulp_32(max(|lse|, 1)).
// Returns the largest ratio error / bound seen (<= 1 passes).
double check_exact_merge(const MergeCall& c, const Buffer& output, const Buffer& output_lse,
                         const Attention& a, std::int64_t split) {
  const double u_t = unit_roundoff(c.dtype), u_32 = unit_roundoff(DType::f32);
  double worst = 0.0;
  for (std::int64_t t = 0; t < c.n; ++t)
    for (std::int64_t j = 0; j < c.h; ++j) {
      const Partial whole = a.over(t, j, 0, a.keys);
      const Partial pa = a.over(t, j, 0, split), pb = a.over(t, j, split, a.keys);
      const double la = pa.lse, lb = pb.lse;
      const double wa = std::isinf(la) ? 0.0 : std::exp(la - whole.lse);
      const double wb = std::isinf(lb) ? 0.0 : std::exp(lb - whole.lse);
      const double lse_terms = (std::isinf(la) ? 0.0 : std::fabs(la)) +
                               (std::isinf(lb) ? 0.0 : std::fabs(lb));
      for (std::int64_t x = 0; x < c.d; ++x) {
        const double oa = std::fabs(pa.out[x]), ob = std::fabs(pb.out[x]);
        const double m = wa * oa + wb * ob;
        const double bound = u_t * m + wa * wb * u_32 * lse_terms * (oa + ob) + 16 * u_32 * m +
                             ulp_of(c.dtype, m);
        const double got = c.output.read(output, c.element(t, j, x));
        worst = std::max(worst, std::fabs(got - whole.out[x]) / bound);
      }
      const double got_lse = c.output_lse.read(output_lse, static_cast<std::size_t>(j * c.n + t));
      const double lse_bound =
          u_32 * lse_terms + 10 * ulp_of(DType::f32, std::max(std::fabs(whole.lse), 1.0));
      worst = std::max(worst, std::fabs(got_lse - whole.lse) / lse_bound);
    }
  return worst;
}

// A call holding the two parts of `a` split at `split`.
MergeCall split_call(const Attention& a, DType dtype, std::int64_t split, float empty_lse) {
  MergeCall c;
  c.dtype = dtype;
  c.n = a.n, c.h = a.h, c.d = a.d;
  c.build();
  put_part(c, true, a, 0, split, empty_lse);
  put_part(c, false, a, split, a.keys, empty_lse);
  return c;
}

TEST_CASE("merge_attn_states CPU: the LSE merge is exact (dense attention split in two)",
          "[merge_attn_states]") {
  const DType dtype = GENERATE(DType::f32, DType::bf16);
  const std::int64_t keys = 37;
  const Attention a = random_attention(3, 4, 32, keys, 21);
  for (std::int64_t split : {1, 5, 18, 36}) {
    CAPTURE(dtype_name(dtype), split);
    MergeCall c = split_call(a, dtype, split, kInf);
    c.run_cpu();
    const double worst = check_exact_merge(c, c.output.bytes, c.output_lse.bytes, a, split);
    INFO("largest error / bound: " << worst);
    CHECK(worst <= 1.0);
  }
}

TEST_CASE("merge_attn_states CPU: merging with an empty key set gives the other part exactly",
          "[merge_attn_states]") {
  const Attention a = random_attention(2, 3, 16, 9, 4);
  for (float empty : {kInf, -kInf}) {  // FlashAttention 2's and 3's reports
    for (std::int64_t split : {std::int64_t{0}, a.keys}) {
      CAPTURE(empty, split);
      MergeCall c = split_call(a, DType::bf16, split, empty);
      c.run_cpu();
      const Tensor& full = split == 0 ? c.suffix : c.prefix;
      const Tensor& full_lse = split == 0 ? c.suffix_lse : c.prefix_lse;
      for (std::size_t e = 0; e < full.offsets.size(); ++e)
        CHECK(test::bits_of(c.output.at(e)) == test::bits_of(full.at(e)));
      for (std::size_t e = 0; e < full_lse.offsets.size(); ++e)
        CHECK(test::bits_of(c.output_lse.at(e)) == test::bits_of(full_lse.at(e)));
    }
  }
}

// Three key sets merged in two steps, (A ⊕ B) ⊕ C, with the intermediate LSE from output_lse:
// the split-KV tree of a long context. The first merge's output, rounded to T, is the second's
// prefix, so the bound grows by one rounding of T (checked with twice the two-part bound).
TEST_CASE("merge_attn_states CPU: a chain of merges over three key sets", "[merge_attn_states]") {
  const Attention a = random_attention(2, 2, 16, 30, 8);
  MergeCall first = split_call(a, DType::f32, 10, kInf);
  // The second part of `first` must be keys [10, 20) only.
  put_part(first, false, a, 10, 20, kInf);
  first.run_cpu();
  MergeCall second;
  second.dtype = DType::f32;
  second.n = a.n, second.h = a.h, second.d = a.d;
  second.build();
  for (std::size_t e = 0; e < second.prefix.offsets.size(); ++e) second.prefix.put(e, first.output.at(e));
  for (std::size_t e = 0; e < second.prefix_lse.offsets.size(); ++e)
    second.prefix_lse.put(e, first.output_lse.at(e));
  put_part(second, false, a, 20, 30, kInf);
  second.run_cpu();
  const double worst = check_exact_merge(second, second.output.bytes, second.output_lse.bytes, a, 20);
  INFO("largest error / bound of the chain: " << worst);
  CHECK(worst <= 2.0);
}

// ---------------------------------------------------------------------------------------------
// GPU: naive == optimized bit for bit, each within the bounds of the CPU reference.

// Runs the three implementations on `c` and checks the rule; returns the measured distance.
Distance check_against_cpu(const MergeCall& c) {
  CAPTURE(dtype_name(c.dtype), c.n, c.h, c.d, layout_name(c.layout), c.fp8, c.with_lse,
          c.prefill);
  MergeCall reference = c.clone();
  reference.run_cpu();
  const DeviceOutputs naive = run_on_gpu(c, Impl::naive);
  const DeviceOutputs optimized = run_on_gpu(c, Impl::optimized);
  // naive and optimized: the same device functions, the same bytes (everything around too).
  CHECK(test::same_bytes(naive.output, optimized.output, naive.output.size()));
  CHECK(test::same_bytes(naive.output_lse, optimized.output_lse, naive.output_lse.size()));
  // Nothing written outside the elements.
  CHECK(same_outside(c.output, optimized.output, reference.output.bytes));
  CHECK(same_outside(c.output_lse, optimized.output_lse, reference.output_lse.bytes));
  const Distance d = distance(c, optimized.output, optimized.output_lse, reference.output.bytes,
                              reference.output_lse.bytes);
  CHECK(d.output <= MergeAttnStates::ulp_bound(c.fp8 ? DType::f8_e4m3 : c.dtype));
  CHECK(d.lse <= MergeAttnStates::kLseUlpBound);
  return d;
}

TEST_CASE("merge_attn_states GPU: dtypes × head sizes × shapes × layouts",
          "[merge_attn_states][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  const std::int64_t packs = GENERATE(1, 3, 16, 40);  // head size in 16-byte packs
  const Layout layout =
      GENERATE(Layout::packed, Layout::padded, Layout::misaligned, Layout::transposed_lse);
  const bool fp8 = GENERATE(false, true);
  for (auto [n, h] : {std::pair<std::int64_t, std::int64_t>{1, 1}, {3, 5}, {33, 8}}) {
    MergeCall c;
    c.dtype = dtype;
    c.d = packs * MergeAttnStates::pack_elements(dtype);
    c.n = n, c.h = h;
    c.layout = layout;
    c.fp8 = fp8;
    c.with_lse = n != 3;
    c.prefill = n == 33 ? 20 : -1;
    c.build(static_cast<std::uint64_t>(n * 131 + h));
    check_against_cpu(c);
  }
}

TEST_CASE("merge_attn_states GPU: rows with a known result, bit for bit",
          "[merge_attn_states][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    CAPTURE(dtype_name(dtype), impl_name(impl));
    const MergeCall c = special_call(dtype);
    const DeviceOutputs result = run_on_gpu(c, impl);
    check_special(c, result.output, result.output_lse);
  }
}

// The bounds measured: 128 heads × 256 tokens of head_size 128 per dtype, LSE gaps spread from
// 0 to 90 (where the smaller weight is still a float32 number), fp8 output too; the largest
// distances are printed.
TEST_CASE("merge_attn_states GPU: the ulp bounds over wide LSE spreads", "[merge_attn_states][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
    for (bool fp8 : {false, true}) {
      MergeCall c;
      c.dtype = dtype;
      c.n = 256, c.h = 128, c.d = 128;
      c.fp8 = fp8;
      c.scale = 0.02f;
      c.build(dtype == DType::f32 ? 31 : 37);
      std::mt19937_64 rng(5);
      std::uniform_real_distribution<double> gap_exponent(-10.0, std::log2(90.0));
      std::uniform_real_distribution<float> base(-20.f, 20.f);
      for (std::size_t e = 0; e < c.prefix_lse.offsets.size(); ++e) {
        const float lp = base(rng);
        const double gap = std::exp2(gap_exponent(rng)) * (rng() & 1 ? 1 : -1);
        c.prefix_lse.put(e, lp);
        c.suffix_lse.put(e, static_cast<float>(lp + gap));
      }
      const Distance d = check_against_cpu(c);
      WARN("merge_attn_states " << dtype_name(dtype) << (fp8 ? " -> fp8" : "")
                                << ": largest distance from the CPU reference: output "
                                << d.output << " ulp (bound "
                                << MergeAttnStates::ulp_bound(fp8 ? DType::f8_e4m3 : dtype)
                                << "), LSE " << d.lse << " ulp (bound "
                                << MergeAttnStates::kLseUlpBound << ")");
    }
  }
}

TEST_CASE("merge_attn_states GPU: the LSE merge is exact on both kernels",
          "[merge_attn_states][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const DType dtype = GENERATE(DType::f32, DType::bf16);
  const Attention a = random_attention(5, 4, 64, 50, 23);
  for (std::int64_t split : {0, 7, 25, 50}) {
    for (Impl impl : {Impl::naive, Impl::optimized}) {
      CAPTURE(dtype_name(dtype), split, impl_name(impl));
      const MergeCall c = split_call(a, dtype, split, split == 0 ? kInf : -kInf);
      const DeviceOutputs result = run_on_gpu(c, impl);
      const double worst = check_exact_merge(c, result.output, result.output_lse, a, split);
      INFO("largest error / bound: " << worst);
      CHECK(worst <= 1.0);
    }
  }
}

}  // namespace
