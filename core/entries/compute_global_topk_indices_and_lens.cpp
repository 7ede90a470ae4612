// Registry entry of compute_global_topk_indices_and_lens, and its workload points (W4,
// sparse_index_case.h).
//
// One point: a decode batch of T requests (one query each); each query's top-k list holds
// min((pos + 1) / 4, 2048) local indices, then -1; the compressed block table is random. The
// outputs, global_topk_indices [T, 2048] and topk_lens [T], share one buffer.
#include "pagedkv/ops/compute_global_topk_indices_and_lens.h"

#include <memory>
#include <string>
#include <vector>

#include "sparse_index_case.h"

namespace pagedkv::entries {

namespace {

class ComputeGlobalTopkCase final : public PlannedCase<ComputeGlobalTopkIndicesAndLens> {
  using Op = ComputeGlobalTopkIndicesAndLens;

 public:
  ComputeGlobalTopkCase(const WorkloadPoint& point, std::uint64_t seed)
      : batch_(draw_sparse_batch(point.size, 0, seed)), tokens_(batch_.tokens()) {
    Random random{seed ^ 0x70F3ull};
    std::vector<std::int32_t> topk(static_cast<std::size_t>(tokens_ * kW4Topk));
    for (std::int64_t t = 0; t < tokens_; ++t) {
      draw_topk_row(random, batch_.positions[t], topk.data() + t * kW4Topk, kW4Topk);
    }
    std::vector<std::uint8_t> valid(static_cast<std::size_t>(tokens_), 1);
    topk_ = inputs_.add(topk);
    req_ = inputs_.add(batch_.token_to_req);
    table_ = inputs_.add(batch_.compressed_table);
    valid_ = inputs_.add(valid.data(), valid.size());
    host_output_ = Buffer(Memory::host, static_cast<std::size_t>(output_bytes()));
    host_output_.fill(kIndexPoisonByte);
  }

  std::int64_t bytes_moved() const override {
    // topk_indices read, global_topk_indices written, topk_lens written, and per token one
    // token_to_req_indices word and one is_valid_token byte.
    return tokens_ * kW4Topk * 4 * 2 + tokens_ * 4 + tokens_ * 5;
  }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    for (int set = 0; set < sets; ++set) {
      // Each set: the same inputs at other addresses, and outputs of its own.
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
  std::int64_t output_bytes() const { return tokens_ * kW4Topk * 4 + tokens_ * 4; }

  Op::Args args_for(const Buffer& inputs, const Buffer& output, Device device) const {
    auto* out = reinterpret_cast<std::int32_t*>(output.data());
    return {TensorView::contiguous(inputs_.at(inputs, topk_), DType::i32, {tokens_, kW4Topk},
                                   device),
            TensorView::contiguous(inputs_.at(inputs, req_), DType::i32, {tokens_}, device),
            TensorView::contiguous(inputs_.at(inputs, table_), DType::i32,
                                   {batch_.requests(), batch_.compressed_width}, device),
            kW4CompressedBlock,
            TensorView::contiguous(inputs_.at(inputs, valid_), DType::b8, {tokens_}, device),
            TensorView::contiguous(out, DType::i32, {tokens_, kW4Topk}, device),
            TensorView::contiguous(out + tokens_ * kW4Topk, DType::i32, {tokens_}, device)};
  }

  SparseBatch batch_;
  std::int64_t tokens_;
  PackedArrays inputs_;
  int topk_ = 0, req_ = 0, table_ = 0, valid_ = 0;
  Buffer host_output_;                  // the CPU reference's global_topk_indices, topk_lens
  std::vector<Buffer> device_inputs_;   // one copy per buffer set
  std::vector<Buffer> device_outputs_;  // one per buffer set
};

std::vector<WorkloadPoint> points(const std::string& workload, bool quick) {
  if (workload != "W4") return {};
  const std::vector<std::int64_t> sizes =
      quick ? std::vector<std::int64_t>{1, 8} : std::vector<std::int64_t>{1, 8, 64, 512};
  std::vector<WorkloadPoint> list;
  for (std::int64_t tokens : sizes) list.push_back({"W4", "decode", "random", tokens, "tokens", 0});
  return list;
}

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<ComputeGlobalTopkCase>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry ComputeGlobalTopkIndicesAndLens::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "DeepSeek V4";
  entry.role =
      "Translates each decode token's top-k local compressed-token indices into global slots "
      "of the paged compressed-K cache, packed to the left, and counts them (DeepSeek V4 C4A "
      "decode).";
  entry.upstream =
      "vLLM vllm/models/deepseek_v4/common/ops/cache_utils.py: "
      "compute_global_topk_indices_and_lens";
  entry.cpu_source = "reference_cpu/compute_global_topk_indices_and_lens.cpp";
  entry.naive_source = "kernels/deepseek_v4/compute_global_topk_indices_and_lens/naive.cu";
  entry.optimized_source = "kernels/deepseek_v4/compute_global_topk_indices_and_lens/optimized.cu";
  entry.byte_model =
      "topk_indices read once and global_topk_indices written once (4 bytes per entry each), "
      "topk_lens written (4 bytes per token), token_to_req_indices and is_valid_token read "
      "(5 bytes per token); block-table words not counted";
  entry.agreement_rule =
      "bit-exact: global_topk_indices and topk_lens equal the CPU reference's, element for "
      "element";
  entry.workloads = {"W4"};
  entry.workload_notes = sparse_index_workload_notes();
  entry.points = &points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
