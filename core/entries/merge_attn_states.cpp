// Registry entry of merge_attn_states, and its workload points (W12).
//
// W12: the merge after a split attention (cascade attention's shared prefix and private
// suffix, chunked prefill's cached context and new tokens, MLA's context chunks): head_size
// 128, 16, 32 or 128 heads, bf16 partial outputs and output, f32 LSEs, 1 token (a decode step)
// to 65536 (a large prefill). The partial outputs are random bf16 (|x| in [2^-14, 4)), the LSEs
// uniform in [-4, 12] (the log-sum-exp of scaled scores over 1 to some 10^5 keys); every token
// merges (prefill_tokens_with_context None). One variant also writes output_lse, as MLA's
// chunked-context loop does between its chunks.
#include "pagedkv/ops/merge_attn_states.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "cache_element.h"
#include "harness.h"
#include "merge_math.h"
#include "pagedkv/agreement.h"
#include "pagedkv/buffers.h"
#include "pagedkv/error.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

// One W12 point.
struct MergeShape {
  std::int64_t num_tokens = 0;
  std::int64_t num_heads = 32;
  std::int64_t head_size = 128;
  DType dtype = DType::bf16;  // partial outputs and output
  bool write_lse = false;     // output_lse given

  std::int64_t elements() const { return num_tokens * num_heads * head_size; }
  std::int64_t head_bytes() const { return elements() * dtype_size(dtype); }  // one [N, H, D]
  std::int64_t lse_bytes() const { return num_tokens * num_heads * 4; }      // one [H, N]
};

MergeShape merge_shape(const WorkloadPoint& point) {
  PAGEDKV_CHECK(point.workload == "W12", "merge_attn_states runs workload W12, got ",
                point.workload);
  MergeShape shape;
  shape.num_tokens = point.size;
  if (point.variant == "heads 16") {
    shape.num_heads = 16;
  } else if (point.variant == "heads 32") {
    shape.num_heads = 32;
  } else if (point.variant == "heads 128") {
    shape.num_heads = 128;
  } else if (point.variant == "heads 128, output_lse") {
    shape.num_heads = 128;
    shape.write_lse = true;
  } else {
    reject("W12 variant: expected \"heads 16\", \"heads 32\", \"heads 128\" or \"heads 128, ",
           "output_lse\", got \"", point.variant, "\"");
  }
  return shape;
}

std::vector<WorkloadPoint> merge_points(const std::string& workload, bool quick) {
  if (workload != "W12") return {};
  const std::vector<std::string> variants = {"heads 16", "heads 32", "heads 128",
                                             "heads 128, output_lse"};
  const std::vector<std::int64_t> sizes =
      quick ? std::vector<std::int64_t>{1, 16, 256}
            : std::vector<std::int64_t>{1, 16, 256, 4096, 16384, 65536};
  std::vector<WorkloadPoint> points;
  for (const std::string& variant : variants)
    for (std::int64_t tokens : sizes) points.push_back({"W12", variant, "", tokens, "tokens", 0});
  return points;
}

// The largest ulp_error() of the merged outputs against the CPU reference's (the ulp of the
// output dtype at |p| p_scale + |s| s_scale) and, folded in, the LSEs: an output_lse element
// beyond kLseUlpBound f32 ulps at max(|lse|, 1) makes the distance infinite.
double merge_distance(const std::uint8_t* output, const std::uint8_t* reference,
                      const float* output_lse, const float* reference_lse,
                      const std::uint8_t* prefix, const std::uint8_t* suffix,
                      const float* prefix_lse, const float* suffix_lse, const MergeShape& shape) {
  const std::int64_t element = dtype_size(shape.dtype);
  const std::int64_t n = shape.num_tokens, heads = shape.num_heads, d = shape.head_size;
  double worst = 0.0;
  for (std::int64_t t = 0; t < n; ++t) {
    for (std::int64_t h = 0; h < heads; ++h) {
      const std::int64_t row = (t * heads + h) * d;
      if (output_lse != nullptr && std::memcmp(&output_lse[h * n + t], &reference_lse[h * n + t],
                                               4) != 0) {
        const double want = reference_lse[h * n + t];
        const double lse_ulp =
            ulp_error(output_lse[h * n + t], want, std::max(std::fabs(want), 1.0), DType::f32);
        if (!(lse_ulp <= MergeAttnStates::kLseUlpBound)) {
          return std::numeric_limits<double>::infinity();
        }
      }
      if (std::memcmp(output + row * element, reference + row * element,
                      static_cast<std::size_t>(d * element)) == 0) {
        continue;  // the row is bit-exact
      }
      const cpu::MergeWeights w = cpu::merge_weights(prefix_lse[h * n + t], suffix_lse[h * n + t]);
      for (std::int64_t i = 0; i < d; ++i) {
        const std::int64_t at = (row + i) * element;
        const double got = cpu::load_activation(output + at, shape.dtype);
        const double want = cpu::load_activation(reference + at, shape.dtype);
        const double p = cpu::load_activation(prefix + at, shape.dtype);
        const double s = cpu::load_activation(suffix + at, shape.dtype);
        const double magnitude =
            std::max(std::fabs(p) * w.p_scale + std::fabs(s) * w.s_scale, std::fabs(want));
        worst = std::max(worst, ulp_error(got, want, magnitude, shape.dtype));
      }
    }
  }
  return worst;
}

class MergeCase final : public PlannedCase<MergeAttnStates> {
  struct Set {
    Buffer prefix, suffix, prefix_lse, suffix_lse;  // the inputs
    Buffer output, output_lse;                      // the outputs
  };

 public:
  MergeCase(const WorkloadPoint& point, std::uint64_t seed)
      : shape_(merge_shape(point)), seed_(seed), host_(draw(0)) {
    reference_.output = Buffer(Memory::host, at_least_one(shape_.head_bytes()));
    reference_.output.fill(kPoisonByte);
    reference_.output_lse = Buffer(Memory::host, at_least_one(shape_.lse_bytes()));
    reference_.output_lse.fill(kPoisonByte);
  }

  // prefix_output and suffix_output read once, both LSEs read once, output written once, and
  // output_lse written once when given.
  std::int64_t bytes_moved() const override {
    return 3 * shape_.head_bytes() + (shape_.write_lse ? 3 : 2) * shape_.lse_bytes();
  }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    for (int set = 0; set < sets; ++set) {
      Set drawn = set == 0 ? Set{} : draw(set);
      const Set& from = set == 0 ? host_ : drawn;
      Set s;
      s.prefix = copy_to(Memory::device, from.prefix);
      s.suffix = copy_to(Memory::device, from.suffix);
      s.prefix_lse = copy_to(Memory::device, from.prefix_lse);
      s.suffix_lse = copy_to(Memory::device, from.suffix_lse);
      s.output = Buffer(Memory::device, at_least_one(shape_.head_bytes()));
      s.output.fill(kPoisonByte);
      s.output_lse = Buffer(Memory::device, at_least_one(shape_.lse_bytes()));
      s.output_lse.fill(kPoisonByte);
      device_.push_back(std::move(s));
      calls_.add(args_of(device_.back(), device_.back(), Device::cuda));
    }
  }

  void reset_outputs() override {
    device_.at(0).output.fill(kPoisonByte);
    device_.at(0).output_lse.fill(kPoisonByte);
  }

  Agreement compare_outputs() override {
    const Set& d = device_.at(0);
    Agreement agreement = compare_with_reference(d.output, reference_.output.data(), shape_.dtype);
    const Buffer output = copy_to(Memory::host, d.output);
    Buffer output_lse;
    if (shape_.write_lse) {
      const Agreement lse =
          compare_with_reference(d.output_lse, reference_.output_lse.data(), DType::f32);
      agreement.bytes_differing += lse.bytes_differing;
      agreement.bytes_compared += lse.bytes_compared;
      agreement.max_abs_err = std::max(agreement.max_abs_err, lse.max_abs_err);
      agreement.bit_exact = agreement.bit_exact && lse.bit_exact;
      output_lse = copy_to(Memory::host, d.output_lse);
    }
    agreement.max_ulp = merge_distance(
        output.data(), reference_.output.data(),
        shape_.write_lse ? reinterpret_cast<const float*>(output_lse.data()) : nullptr,
        reinterpret_cast<const float*>(reference_.output_lse.data()), host_.prefix.data(),
        host_.suffix.data(), reinterpret_cast<const float*>(host_.prefix_lse.data()),
        reinterpret_cast<const float*>(host_.suffix_lse.data()), shape_);
    agreement.ulp_bound = MergeAttnStates::ulp_bound(shape_.dtype);
    return agreement;
  }

 private:
  static std::size_t at_least_one(std::int64_t bytes) {
    return static_cast<std::size_t>(std::max<std::int64_t>(bytes, 1));
  }
  Set draw(int set) const {
    const std::uint64_t seed = set_seed(seed_, set);
    Set s;
    s.prefix = Buffer(Memory::host, at_least_one(shape_.head_bytes()));
    s.suffix = Buffer(Memory::host, at_least_one(shape_.head_bytes()));
    fill_random(s.prefix.data(), shape_.dtype, shape_.elements(), seed ^ 0x9E3Full);
    fill_random(s.suffix.data(), shape_.dtype, shape_.elements(), seed ^ 0x5F1Full);
    s.prefix_lse = Buffer(Memory::host, at_least_one(shape_.lse_bytes()));
    s.suffix_lse = Buffer(Memory::host, at_least_one(shape_.lse_bytes()));
    Random random{seed ^ 0x15E0ull};
    const std::int64_t count = shape_.num_tokens * shape_.num_heads;
    for (Buffer* lse : {&s.prefix_lse, &s.suffix_lse}) {
      auto* values = reinterpret_cast<float*>(lse->data());
      for (std::int64_t i = 0; i < count; ++i) values[i] = 4.0f + 2.0f * random.value();
    }
    return s;
  }
  // The CPU reference's call on the host inputs (what run_cpu() runs and cpu_arguments()
  // lists).
  MergeAttnStates::Args cpu_call() override { return args_of(host_, reference_, Device::cpu); }

  MergeAttnStates::Args args_of(const Set& in, const Set& out, Device device) const {
    const std::int64_t n = shape_.num_tokens, h = shape_.num_heads, d = shape_.head_size;
    MergeAttnStates::Args args;
    args.output = TensorView::contiguous(out.output.data(), shape_.dtype, {n, h, d}, device);
    args.prefix_output = TensorView::contiguous(in.prefix.data(), shape_.dtype, {n, h, d}, device);
    args.prefix_lse = TensorView::contiguous(in.prefix_lse.data(), DType::f32, {h, n}, device);
    args.suffix_output = TensorView::contiguous(in.suffix.data(), shape_.dtype, {n, h, d}, device);
    args.suffix_lse = TensorView::contiguous(in.suffix_lse.data(), DType::f32, {h, n}, device);
    if (shape_.write_lse) {
      args.output_lse = TensorView::contiguous(out.output_lse.data(), DType::f32, {h, n}, device);
    }
    args.prefill_tokens_with_context = -1;
    return args;
  }

  MergeShape shape_;
  std::uint64_t seed_;
  Set host_;                 // set 0's inputs
  Set reference_;            // the CPU reference's output and output_lse
  std::vector<Set> device_;  // one per buffer set
};

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<MergeCase>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry MergeAttnStates::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "attention";
  entry.role =
      "After attention ran in two parts over disjoint key sets (a shared or cached prefix and "
      "the new tokens, or two splits of a long context), combines the two partial outputs by "
      "their log-sum-exp into the attention over all the keys, exactly.";
  entry.upstream =
      "vLLM csrc/libtorch_stable/attention/merge_attn_states.cu: merge_attn_states "
      "(merge_attn_states_kernel)";
  entry.cpu_source = "reference_cpu/merge_attn_states.cpp";
  entry.naive_source = "kernels/attention/merge_attn_states/naive.cu";
  entry.optimized_source = "kernels/attention/merge_attn_states/optimized.cu";
  entry.byte_model =
      "prefix_output and suffix_output read once (2 x tokens x heads x head_size x element "
      "bytes), prefix_lse and suffix_lse read once (2 x heads x tokens x 4 bytes), output "
      "written once (tokens x heads x head_size x element bytes), output_lse written once "
      "when given (heads x tokens x 4 bytes)";
  entry.agreement_rule =
      "ulp-bounded: naive and optimized bit-identical (the same device functions); each output "
      "element within ulp_bound(dtype) ulps of the CPU reference's, the ulp of the dtype taken "
      "at |p| p_scale + |s| s_scale (1 for bf16, f16 and fp8, 16 for f32), and each output_lse "
      "within 8 f32 ulps at max(|lse|, 1) (a wider one counts as an infinite distance)";
  entry.workloads = {"W12"};
  entry.workload_notes =
      "W12: merges of two partial attention results, head_size 128, 16, 32 or 128 heads, "
      "prefix_output, suffix_output and output bf16 [tokens, heads, 128] contiguous (random "
      "with |x| in [2^-14, 4)), prefix_lse and suffix_lse f32 [heads, tokens] uniform in "
      "[-4, 12], every token merged (prefill_tokens_with_context None); the 'output_lse' "
      "variant (128 heads) also writes the merged LSE; tokens 1 to 65536, a quick run keeps 1, "
      "16 and 256.";
  entry.points = &merge_points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
