// Tests of apply_repetition_penalties (vLLM csrc/sampler.cu; chapter "The model ops beside the
// cache").
//
// CPU part (runs everywhere): the header's worked example in every dtype; zero, negative, NaN
// and unmasked logits; true division (not a product with the reciprocal); zero sequences; and
// one test per validation rule: the call throws InvalidArgument naming the argument, and no
// byte of logits changes.
//
// GPU part ([gpu]): naive and optimized bit-identical to the CPU reference over dtypes ×
// sequences × vocabulary sizes × mask densities, with masks 16-byte aligned or not.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "norm_support.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/apply_repetition_penalties.h"
#include "support.h"

namespace {

using namespace pagedkv;
using namespace pagedkv::test::norm;
using pagedkv::test::floats;
using pagedkv::test::same_bytes;

void penalize(Impl impl, const TensorView& logits, const TensorView& prompt_mask,
              const TensorView& output_mask, const TensorView& penalties) {
  pagedkv::run<ApplyRepetitionPenalties>(impl, {logits, prompt_mask, output_mask, penalties});
}

Buffer bools(const std::vector<int>& values) {
  Buffer buffer(Memory::host, std::max<std::size_t>(values.size(), 1) + 64);
  std::memset(buffer.data(), 0, buffer.size());
  for (std::size_t i = 0; i < values.size(); ++i) buffer.data()[i] = values[i] ? 1 : 0;
  return buffer;
}

TEST_CASE("apply_repetition_penalties CPU: the header's worked example",
          "[apply_repetition_penalties]") {
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  CAPTURE(dtype_name(dtype));
  // Row 0: penalty 2; logits (4, -4, 0, 1), the first three seen (prompt, output, both).
  // Row 1: penalty 0.5; logits (3, -3, 5, -5), only the last two seen.
  Buffer logits = encoded(dtype, {4, -4, 0, 1, 3, -3, 5, -5});
  Buffer prompt = bools({1, 0, 1, 0, 0, 0, 1, 0});
  Buffer output = bools({0, 1, 1, 0, 0, 0, 0, 1});
  Buffer penalties = encoded(dtype, {2, 0.5f});
  penalize(Impl::cpu, TensorView::contiguous(logits.data(), dtype, {2, 4}),
           TensorView::contiguous(prompt.data(), DType::b8, {2, 4}),
           TensorView::contiguous(output.data(), DType::b8, {2, 4}),
           TensorView::contiguous(penalties.data(), dtype, {2}));
  const float expected[8] = {2, -8, 0, 1, 3, -3, 10, -2.5f};
  for (int i = 0; i < 8; ++i) {
    CAPTURE(i);
    CHECK(get(logits.data(), dtype, i) == expected[i]);
  }
}

TEST_CASE("apply_repetition_penalties CPU: true division, zeros, NaN",
          "[apply_repetition_penalties]") {
  // 1 / 3 rounded is not 1 · round(1/3) in float: the reference divides, as upstream's kernel.
  Buffer logits = floats({1.0f, 7.0f, -0.0f, std::numeric_limits<float>::quiet_NaN()});
  Buffer prompt = bools({1, 1, 1, 1});
  Buffer output = bools({0, 0, 0, 0});
  Buffer penalties = floats({3.0f});
  penalize(Impl::cpu, TensorView::contiguous(logits.data(), DType::f32, {1, 4}),
           TensorView::contiguous(prompt.data(), DType::b8, {1, 4}),
           TensorView::contiguous(output.data(), DType::b8, {1, 4}),
           TensorView::contiguous(penalties.data(), DType::f32, {1}));
  CHECK(get(logits.data(), DType::f32, 0) == 1.0f / 3.0f);
  CHECK(get(logits.data(), DType::f32, 1) == 7.0f / 3.0f);
  CHECK(test::bits_of(get(logits.data(), DType::f32, 2)) == test::bits_of(-0.0f));  // -0 · 3
  CHECK(std::isnan(get(logits.data(), DType::f32, 3)));
}

// One valid call: [3, 40] bf16 logits, masks, penalties; broken one way at a time.
struct ValidCall {
  static constexpr int kSeqs = 3, kVocab = 40;
  Buffer logits_data = poisoned(kSeqs * kVocab * 2 + 64);
  Buffer prompt_data = bools(std::vector<int>(kSeqs * kVocab + 64, 1));
  Buffer output_data = bools(std::vector<int>(kSeqs * kVocab + 64, 0));
  Buffer penalty_data = encoded(DType::bf16, {1.5f, 2.f, 3.f, 4.f, 5.f});
  TensorView logits = TensorView::contiguous(logits_data.data(), DType::bf16, {kSeqs, kVocab});
  TensorView prompt_mask = TensorView::contiguous(prompt_data.data(), DType::b8, {kSeqs, kVocab});
  TensorView output_mask = TensorView::contiguous(output_data.data(), DType::b8, {kSeqs, kVocab});
  TensorView penalties = TensorView::contiguous(penalty_data.data(), DType::bf16, {kSeqs});
  Impl impl = Impl::cpu;

  ValidCall() { test::fill_random(logits_data.data(), DType::bf16, kSeqs * kVocab, 4); }
  void call() const { penalize(impl, logits, prompt_mask, output_mask, penalties); }
  bool nothing_written() const {
    Buffer fresh = poisoned(logits_data.size());
    test::fill_random(fresh.data(), DType::bf16, kSeqs * kVocab, 4);
    return test::first_difference(logits_data.data(), fresh.data(), fresh.size()) < 0;
  }
};

TEST_CASE("apply_repetition_penalties: the valid call used by the rule tests passes",
          "[apply_repetition_penalties]") {
  ValidCall call;
  CHECK(call.nothing_written());
  CHECK_NOTHROW(call.call());
  CHECK_FALSE(call.nothing_written());  // every logit was masked: all changed
}

TEST_CASE("apply_repetition_penalties rejects bad arguments, naming them, writing nothing",
          "[apply_repetition_penalties]") {
  ValidCall call;
  SECTION("logits on the wrong device") {
    call.logits.device = Device::cuda;
    CHECK_REJECTED(call, "logits");
  }
  SECTION("a mask on the wrong device") {
    call.output_mask.device = Device::cuda;
    CHECK_REJECTED(call, "output_mask");
  }
  SECTION("logits of another rank") {
    call.logits = TensorView::contiguous(call.logits_data.data(), DType::bf16, {120});
    CHECK_REJECTED(call, "logits");
  }
  SECTION("logits of another dtype") {
    call.logits.dtype = DType::i32;
    CHECK_REJECTED(call, "logits");
  }
  SECTION("logits not contiguous (last dimension strided)") {
    call.logits = TensorView::strided(call.logits_data.data(), DType::bf16, {3, 20}, {40, 2});
    CHECK_REJECTED(call, "logits: expected a contiguous tensor");
  }
  SECTION("prompt_mask of the wrong shape") {
    call.prompt_mask = TensorView::contiguous(call.prompt_data.data(), DType::b8, {3, 39});
    CHECK_REJECTED(call, "prompt_mask");
  }
  SECTION("output_mask with too few sequences") {
    call.output_mask = TensorView::contiguous(call.output_data.data(), DType::b8, {2, 40});
    CHECK_REJECTED(call, "output_mask");
  }
  SECTION("prompt_mask of another dtype (uint8, not bool)") {
    call.prompt_mask.dtype = DType::u8;
    CHECK_REJECTED(call, "prompt_mask");
  }
  SECTION("output_mask of another dtype (the logits')") {
    call.output_mask = TensorView::contiguous(call.output_data.data(), DType::bf16, {3, 40});
    CHECK_REJECTED(call, "output_mask");
  }
  SECTION("a mask not contiguous") {
    call.prompt_mask = TensorView::strided(call.prompt_data.data(), DType::b8, {3, 40}, {41, 1});
    CHECK_REJECTED(call, "prompt_mask: expected a contiguous tensor");
  }
  SECTION("penalties of the wrong length") {
    call.penalties = TensorView::contiguous(call.penalty_data.data(), DType::bf16, {4});
    CHECK_REJECTED(call, "repetition_penalties.size(0)");
  }
  SECTION("penalties of another dtype") {
    call.penalties.dtype = DType::f32;
    CHECK_REJECTED(call, "repetition_penalties");
  }
  SECTION("penalties of another rank") {
    call.penalties = TensorView::contiguous(call.penalty_data.data(), DType::bf16, {3, 1});
    CHECK_REJECTED(call, "repetition_penalties");
  }
  SECTION("penalties not contiguous") {
    call.penalties = TensorView::strided(call.penalty_data.data(), DType::bf16, {3}, {2});
    CHECK_REJECTED(call, "repetition_penalties");
  }
  SECTION("logits without memory") {
    call.logits.data = nullptr;
    CHECK_REJECTED(call, "logits");
  }
  SECTION("logits overlapping a mask") {
    call.prompt_mask = TensorView::contiguous(call.logits_data.data(), DType::b8, {3, 40});
    CHECK_REJECTED(call, "logits: expected memory apart from prompt_mask");
  }
}

TEST_CASE("apply_repetition_penalties: zero sequences is a no-op", "[apply_repetition_penalties]") {
  ValidCall call;
  call.logits = TensorView::contiguous(call.logits_data.data(), DType::bf16, {0, 40});
  call.prompt_mask = TensorView::contiguous(call.prompt_data.data(), DType::b8, {0, 40});
  call.output_mask = TensorView::contiguous(call.output_data.data(), DType::b8, {0, 40});
  call.penalties = TensorView::contiguous(call.penalty_data.data(), DType::bf16, {0});
  CHECK_NOTHROW(call.call());
  CHECK(call.nothing_written());
}

// ---------------------------------------------------------------------------------------------
// GPU: the three bit-identical.

void check_against_cpu(DType dtype, std::int64_t seqs, std::int64_t vocab, int density_percent,
                       std::int64_t mask_offset) {
  CAPTURE(dtype_name(dtype), seqs, vocab, density_percent, mask_offset);
  const std::int64_t cells = seqs * vocab, size = dtype_size(dtype);
  Buffer logits(Memory::host, static_cast<std::size_t>(std::max<std::int64_t>(cells, 1) * size));
  test::fill_random(logits.data(), dtype, cells, 21);
  std::vector<int> p(static_cast<std::size_t>(cells + mask_offset)), o(p.size());
  std::uint64_t state = 0x1234567ull;
  auto next = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 33;
  };
  for (std::size_t i = 0; i < p.size(); ++i) {
    p[i] = static_cast<int>(next() % 100) < density_percent;
    o[i] = static_cast<int>(next() % 100) < density_percent / 4;
  }
  Buffer prompt = bools(p), output = bools(o);
  Buffer penalties(Memory::host, static_cast<std::size_t>(std::max<std::int64_t>(seqs, 1) * size));
  test::fill_random(penalties.data(), dtype, seqs, 22, 2.f);
  auto args = [&](const Buffer& l, const Buffer& pm, const Buffer& om, const Buffer& pen,
                  Device device) {
    return ApplyRepetitionPenalties::Args{
        TensorView::contiguous(l.data(), dtype, {seqs, vocab}, device),
        TensorView::contiguous(pm.data() + mask_offset, DType::b8, {seqs, vocab}, device),
        TensorView::contiguous(om.data() + mask_offset, DType::b8, {seqs, vocab}, device),
        TensorView::contiguous(pen.data(), dtype, {seqs}, device)};
  };
  Buffer expected = copy_to(Memory::host, logits);
  pagedkv::run<ApplyRepetitionPenalties>(Impl::cpu,
                                         args(expected, prompt, output, penalties, Device::cpu));
  const Buffer dp = copy_to(Memory::device, prompt), dout = copy_to(Memory::device, output),
               dpen = copy_to(Memory::device, penalties);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    CAPTURE(impl_name(impl));
    Buffer dl = copy_to(Memory::device, logits);
    pagedkv::run<ApplyRepetitionPenalties>(impl, args(dl, dp, dout, dpen, Device::cuda));
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    const Buffer got = copy_to(Memory::host, dl);
    CHECK(same_bytes(got, expected, static_cast<std::size_t>(cells * size)));
  }
}

TEST_CASE("apply_repetition_penalties GPU: bit-identical to the CPU reference",
          "[apply_repetition_penalties][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  const std::int64_t seqs = GENERATE(1, 3, 17);
  const std::int64_t vocab = GENERATE(1, 15, 16, 1000, 4099, 128256);
  const int density = GENERATE(0, 3, 50, 100);
  const std::int64_t offset = GENERATE(0, 1);
  check_against_cpu(dtype, seqs, vocab, density, offset);
}

}  // namespace
