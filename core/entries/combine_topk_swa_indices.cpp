// Registry entry of combine_topk_swa_indices, and its workload points (W4,
// sparse_index_case.h).
//
// One point: a prefill chunk of Tc query tokens, 2,048 per request, each request after a random
// prefix; each token's top-k list holds min((pos + 1) / 4, 2048) local indices, then -1;
// gather_lens are the smallest the window needs; N is the longest compressed length, M = N +
// the longest gather. The outputs, combined_indices [Tc, 2176] (upstream's width,
// round_up(2048 + 128, 128)) and combined_lens [Tc], share one buffer.
#include "pagedkv/ops/combine_topk_swa_indices.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "sparse_index_case.h"

namespace pagedkv::entries {

namespace {

constexpr std::int64_t kWidth = (kW4Topk + kW4Window + 127) / 128 * 128;  // 2176

class CombineTopkSwaCase final : public PlannedCase<CombineTopkSwaIndices> {
  using Op = CombineTopkSwaIndices;

 public:
  CombineTopkSwaCase(const WorkloadPoint& point, std::uint64_t seed)
      : batch_(draw_sparse_batch(0, point.size, seed)), tokens_(batch_.tokens()) {
    Random random{seed ^ 0xC0B1ull};
    std::vector<std::int32_t> topk(static_cast<std::size_t>(tokens_ * kW4Topk));
    for (std::int64_t t = 0; t < tokens_; ++t) {
      draw_topk_row(random, batch_.positions[t], topk.data() + t * kW4Topk, kW4Topk);
      topk_read_ += std::min<std::int64_t>((batch_.positions[t] + 1) / kW4Ratio, kW4Topk);
    }
    std::vector<std::int32_t> gather_lens;
    std::int64_t longest_gather = 0;
    for (std::int64_t r = 0; r < batch_.requests(); ++r) {
      const std::int64_t queries = batch_.query_start_loc[r + 1] - batch_.query_start_loc[r];
      const std::int64_t prefix = batch_.seq_lens[r] - queries;
      gather_lens.push_back(static_cast<std::int32_t>(queries + std::min(prefix, kW4Window - 1)));
      N_ = std::max<std::int64_t>(N_, batch_.seq_lens[r] / kW4Ratio);
      longest_gather = std::max<std::int64_t>(longest_gather, gather_lens.back());
    }
    M_ = N_ + longest_gather;
    topk_ = inputs_.add(topk);
    qsl_ = inputs_.add(batch_.query_start_loc);
    seq_ = inputs_.add(batch_.seq_lens);
    gather_ = inputs_.add(gather_lens);
    host_output_ = Buffer(Memory::host, static_cast<std::size_t>(output_bytes()));
    host_output_.fill(kIndexPoisonByte);
  }

  std::int64_t bytes_moved() const override {
    // combined_indices and combined_lens written; the top-k entries the queries use read;
    // query_start_loc, seq_lens and gather_lens read.
    return tokens_ * kWidth * 4 + tokens_ * 4 + topk_read_ * 4 + batch_.requests() * 12 + 4;
  }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    for (int set = 0; set < sets; ++set) {
      device_inputs_.push_back(copy_to(Memory::device, inputs_.host()));
      device_outputs_.emplace_back(Memory::device, host_output_.size());
      device_outputs_.back().fill(kIndexPoisonByte);
      calls_.add(args_for(device_inputs_.back(), device_outputs_.back(), Device::cuda));
    }
  }

  void reset_outputs() override { device_outputs_.at(0).fill(kIndexPoisonByte); }

  Agreement compare_outputs() override {
    return compare_with_reference(device_outputs_.at(0), host_output_.data(), DType::i32);
  }

 private:
  Op::Args cpu_call() override { return args_for(inputs_.host(), host_output_, Device::cpu); }
  std::int64_t output_bytes() const { return tokens_ * kWidth * 4 + tokens_ * 4; }

  Op::Args args_for(const Buffer& inputs, const Buffer& output, Device device) const {
    auto* out = reinterpret_cast<std::int32_t*>(output.data());
    const std::int64_t R = batch_.requests();
    return {TensorView::contiguous(inputs_.at(inputs, topk_), DType::i32, {tokens_, kW4Topk},
                                   device),
            TensorView::contiguous(inputs_.at(inputs, qsl_), DType::i32, {R + 1}, device),
            TensorView::contiguous(inputs_.at(inputs, seq_), DType::i32, {R}, device),
            TensorView::contiguous(inputs_.at(inputs, gather_), DType::i32, {R}, device),
            kW4Window,
            kW4Ratio,
            kW4Topk,
            M_,
            N_,
            TensorView::contiguous(out, DType::i32, {tokens_, kWidth}, device),
            TensorView::contiguous(out + tokens_ * kWidth, DType::i32, {tokens_}, device)};
  }

  SparseBatch batch_;
  std::int64_t tokens_;
  std::int64_t topk_read_ = 0;  // top-k entries the queries use (the byte model's reads)
  std::int64_t N_ = 0, M_ = 0;
  PackedArrays inputs_;
  int topk_ = 0, qsl_ = 0, seq_ = 0, gather_ = 0;
  Buffer host_output_;                  // the CPU reference's combined_indices, combined_lens
  std::vector<Buffer> device_inputs_;   // one copy per buffer set
  std::vector<Buffer> device_outputs_;  // one per buffer set
};

std::vector<WorkloadPoint> points(const std::string& workload, bool quick) {
  if (workload != "W4") return {};
  const std::vector<std::int64_t> sizes =
      quick ? std::vector<std::int64_t>{64, 256} : std::vector<std::int64_t>{1024, 8192};
  std::vector<WorkloadPoint> list;
  for (std::int64_t tokens : sizes) {
    list.push_back({"W4", "prefill", "random", tokens, "tokens", 0});
  }
  return list;
}

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<CombineTopkSwaCase>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry CombineTopkSwaIndices::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "DeepSeek V4";
  entry.role =
      "Builds each sparse-prefill query's row of workspace indices: its top-k compressed "
      "tokens, then its sliding window, as rows of the gathered bf16 workspace (DeepSeek V4).";
  entry.upstream =
      "vLLM vllm/models/deepseek_v4/common/ops/cache_utils.py: combine_topk_swa_indices "
      "(bounds-hardened revision)";
  entry.cpu_source = "reference_cpu/combine_topk_swa_indices.cpp";
  entry.naive_source = "kernels/deepseek_v4/combine_topk_swa_indices/naive.cu";
  entry.optimized_source = "kernels/deepseek_v4/combine_topk_swa_indices/optimized.cu";
  entry.byte_model =
      "combined_indices written whole (4 bytes per column) and combined_lens (4 bytes per "
      "token), the top-k entries each query uses read (min((pos + 1) / ratio, topk) x 4 bytes), "
      "query_start_loc, seq_lens and gather_lens read once";
  entry.agreement_rule =
      "bit-exact: combined_indices and combined_lens equal the CPU reference's, element for "
      "element";
  entry.workloads = {"W4"};
  entry.workload_notes = sparse_index_workload_notes();
  entry.points = &points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
