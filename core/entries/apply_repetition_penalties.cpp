// Registry entry of apply_repetition_penalties, and its workload points (W13).
//
// One point: f32 logits [num_seqs, vocab_size] (vLLM's sampler penalizes float32 logits), two
// bool masks drawn as a prompt and an output would mark them, and one penalty per sequence.
// The op works in place: the checked run starts from the drawn logits, the timed launches from
// what the previous launch left (the same masks, the same work).
#include "pagedkv/ops/apply_repetition_penalties.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "harness.h"
#include "pagedkv/buffers.h"
#include "pagedkv/error.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

// One W13 point.
struct PenaltyShape {
  std::int64_t num_seqs = 0;
  std::int64_t vocab_size = 0;
  std::int64_t cells() const { return num_seqs * vocab_size; }
};

PenaltyShape penalty_shape(const WorkloadPoint& point) {
  PAGEDKV_CHECK(point.workload == "W13", "apply_repetition_penalties runs workload W13, got ",
                point.workload);
  PenaltyShape shape;
  shape.num_seqs = point.size;
  if (point.variant == "vocab 128256 f32") {
    shape.vocab_size = 128256;
  } else if (point.variant == "vocab 151936 f32") {
    shape.vocab_size = 151936;
  } else {
    reject("W13 variant: expected \"vocab 128256 f32\" or \"vocab 151936 f32\", got \"",
           point.variant, "\"");
  }
  return shape;
}

std::vector<WorkloadPoint> penalty_points(const std::string& workload, bool quick) {
  if (workload != "W13") return {};
  const std::vector<std::string> variants =
      quick ? std::vector<std::string>{"vocab 128256 f32"}
            : std::vector<std::string>{"vocab 128256 f32", "vocab 151936 f32"};
  const std::vector<std::int64_t> sizes = quick
                                              ? std::vector<std::int64_t>{1, 16, 64}
                                              : std::vector<std::int64_t>{1, 4, 16, 64, 256, 1024};
  std::vector<WorkloadPoint> points;
  for (const std::string& variant : variants)
    for (std::int64_t seqs : sizes) points.push_back({"W13", variant, "", seqs, "sequences", 0});
  return points;
}

// Masks as a prompt of 16 .. 4096 tokens and an output of 0 .. 512 tokens mark them: that many
// random token ids per sequence (repeats allowed, as in text), so at most 3.2 % (Llama-3) of a
// row is set in prompt_mask and 0.4 % in output_mask.
void draw_masks(const PenaltyShape& shape, std::uint64_t seed, Buffer& prompt, Buffer& output) {
  std::memset(prompt.data(), 0, prompt.size());
  std::memset(output.data(), 0, output.size());
  Random random{seed ^ 0x9A5Cull};
  for (std::int64_t s = 0; s < shape.num_seqs; ++s) {
    const std::int64_t prompt_tokens = 16 + random.below(4096 - 16 + 1);
    const std::int64_t output_tokens = random.below(512 + 1);
    for (std::int64_t t = 0; t < prompt_tokens; ++t)
      prompt.data()[s * shape.vocab_size + random.below(shape.vocab_size)] = 1;
    for (std::int64_t t = 0; t < output_tokens; ++t)
      output.data()[s * shape.vocab_size + random.below(shape.vocab_size)] = 1;
  }
}

// Penalties in [1, 1.5) (vLLM's repetition_penalty is > 0; 1 disables it; typical values
// 1.05 .. 1.3).
Buffer draw_penalties(const PenaltyShape& shape, std::uint64_t seed) {
  Buffer buffer(Memory::host,
                static_cast<std::size_t>(std::max<std::int64_t>(shape.num_seqs, 1) * 4));
  Random random{seed ^ 0x7E11ull};
  for (std::int64_t s = 0; s < shape.num_seqs; ++s) {
    const float p = 1.0f + static_cast<float>(random.below(1 << 20)) / static_cast<float>(1 << 21);
    std::memcpy(buffer.data() + 4 * s, &p, 4);
  }
  return buffer;
}

class PenaltyCase final : public PlannedCase<ApplyRepetitionPenalties> {
  struct Set {
    Buffer logits, prompt, output, penalties;
  };

 public:
  PenaltyCase(const WorkloadPoint& point, std::uint64_t seed)
      : shape_(penalty_shape(point)),
        seed_(seed),
        host_(draw(0)),
        reference_(Memory::host, logit_bytes()) {
    reference_.fill(kPoisonByte);
  }

  // logits read and written, both masks read, one penalty per sequence read.
  std::int64_t bytes_moved() const override {
    return 2 * static_cast<std::int64_t>(logit_bytes()) + 2 * shape_.cells() + 4 * shape_.num_seqs;
  }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    for (int set = 0; set < sets; ++set) {
      Set drawn = set == 0 ? Set{} : draw(set);
      const Set& from = set == 0 ? host_ : drawn;
      Set s;
      s.logits = copy_to(Memory::device, from.logits);
      s.prompt = copy_to(Memory::device, from.prompt);
      s.output = copy_to(Memory::device, from.output);
      s.penalties = copy_to(Memory::device, from.penalties);
      device_.push_back(std::move(s));
      calls_.add(args_of(device_.back(), device_.back().logits, Device::cuda));
    }
  }

  // logits is read and overwritten: back to the drawn values.
  void reset_outputs() override { device_.at(0).logits.copy_from(host_.logits); }
  Agreement compare_outputs() override {
    return compare_with_reference(device_.at(0).logits, reference_.data(), DType::f32);
  }

 private:
  std::size_t logit_bytes() const {
    return static_cast<std::size_t>(std::max<std::int64_t>(shape_.cells(), 1) * 4);
  }
  std::size_t mask_bytes() const {
    return static_cast<std::size_t>(std::max<std::int64_t>(shape_.cells(), 1));
  }
  Set draw(int set) const {
    const std::uint64_t seed = set_seed(seed_, set);
    Set s;
    s.logits = Buffer(Memory::host, logit_bytes());
    fill_random(s.logits.data(), DType::f32, shape_.cells(), seed);
    s.prompt = Buffer(Memory::host, mask_bytes());
    s.output = Buffer(Memory::host, mask_bytes());
    draw_masks(shape_, seed, s.prompt, s.output);
    s.penalties = draw_penalties(shape_, seed);
    return s;
  }
  // The CPU reference's call on the host inputs (what run_cpu() runs and cpu_arguments()
  // lists). In place: every call starts from the drawn logits.
  ApplyRepetitionPenalties::Args cpu_call() override {
    reference_.copy_from(host_.logits);
    return args_of(host_, reference_, Device::cpu);
  }

  ApplyRepetitionPenalties::Args args_of(const Set& s, const Buffer& logits, Device device) const {
    const std::int64_t n = shape_.num_seqs, v = shape_.vocab_size;
    return {TensorView::contiguous(logits.data(), DType::f32, {n, v}, device),
            TensorView::contiguous(s.prompt.data(), DType::b8, {n, v}, device),
            TensorView::contiguous(s.output.data(), DType::b8, {n, v}, device),
            TensorView::contiguous(s.penalties.data(), DType::f32, {n}, device)};
  }

  PenaltyShape shape_;
  std::uint64_t seed_;
  Set host_;                 // set 0's drawn inputs
  Buffer reference_;         // the CPU reference's logits
  std::vector<Set> device_;  // one per buffer set
};

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<PenaltyCase>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry ApplyRepetitionPenalties::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "model ops";
  entry.role =
      "At sampling time, divides the positive logits (multiplies the others) of every token "
      "that already occurred in the sequence's prompt or output by the sequence's repetition "
      "penalty, in place, before temperature and top-k/top-p.";
  entry.upstream =
      "vLLM csrc/sampler.cu: apply_repetition_penalties_ "
      "(apply_repetition_penalties_kernel)";
  entry.cpu_source = "reference_cpu/apply_repetition_penalties.cpp";
  entry.naive_source = "kernels/sampling/apply_repetition_penalties/naive.cu";
  entry.optimized_source = "kernels/sampling/apply_repetition_penalties/optimized.cu";
  entry.byte_model =
      "logits read and written once (2 x num_seqs x vocab_size x element bytes), both masks "
      "read once (2 x num_seqs x vocab_size bytes), penalties read once";
  entry.agreement_rule =
      "bit-exact across the three: one IEEE float32 division or product per masked logit, "
      "rounded once to the logits' dtype";
  entry.workloads = {"W13"};
  entry.workload_notes =
      "W13: f32 logits [sequences, vocab] with vocab 128256 (Llama-3) or 151936 (Qwen2), "
      "uniform in [-4, 4]; prompt_mask marks the ids of a prompt of 16 to 4096 random tokens "
      "(at most 3.2 % of a Llama-3 row), output_mask those of an output of 0 to 512 tokens; "
      "penalties uniform in [1, 1.5); sequences 1 to 1024, a quick run keeps vocab 128256 at 1, "
      "16 and 64 sequences.";
  entry.points = &penalty_points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
