// Registry entry of indexer_k_quant_and_cache, and its workload points (W5, indexer_case.h).
//
// One point: k [T, 128] bf16 contiguous, one cache [4096, 64, 132] u8, slots random or
// contiguous, scales fp32 or ue8m0.
#include "pagedkv/ops/indexer_k_quant_and_cache.h"

#include <memory>
#include <string>
#include <vector>

#include "indexer_case.h"
#include "pagedkv/error.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

// The OpCase of one W5 write point: buffer sets of inputs (set 0 is the CPU reference's), one
// device cache shared by all sets, plans validated once per set and implementation.
class IndexerKQuantAndCacheCase final : public PlannedCase<IndexerKQuantAndCache> {
  using Op = IndexerKQuantAndCache;

 public:
  IndexerKQuantAndCacheCase(const WorkloadPoint& point, std::uint64_t seed)
      : shape_(indexer_write_shape(point)),
        seed_(seed),
        host_(make_indexer_write_inputs(shape_, seed, 0)),
        host_cache_(Memory::host, static_cast<std::size_t>(shape_.cache_bytes())) {
    host_cache_.fill(kPoisonByte);
  }

  std::int64_t bytes_moved() const override { return shape_.write_bytes(); }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    device_cache_ = Buffer(Memory::device, host_cache_.size());
    device_cache_.fill(kPoisonByte);
    const TensorView cache = indexer_cache_view(shape_.num_blocks, device_cache_, Device::cuda);
    for (int set = 0; set < sets; ++set) {
      device_.push_back(
          set == 0 ? copy_indexer_write_inputs(shape_, host_, Memory::device)
                   : copy_indexer_write_inputs(
                         shape_, make_indexer_write_inputs(shape_, seed_, set), Memory::device));
      calls_.add(args_for(device_.back(), cache));
      // Validation (with its synchronizing slot-range check) happens here, never when timed.
    }
  }

  void reset_outputs() override { device_cache_.fill(kPoisonByte); }

  Agreement compare_outputs() override {
    return compare_with_reference(device_cache_, host_cache_.data(), DType::u8);
  }

 private:
  // The CPU reference's call on the host inputs (what run_cpu() runs and cpu_arguments()
  // lists).
  Op::Args cpu_call() override {
    return args_for(host_, indexer_cache_view(shape_.num_blocks, host_cache_, Device::cpu));
  }
  Op::Args args_for(const IndexerWriteInputs& in, const TensorView& cache) const {
    return {in.k, cache, in.slot_mapping, kIndexerQuantBlock, shape_.ue8m0 ? "ue8m0" : ""};
  }

  IndexerWriteShape shape_;
  std::uint64_t seed_;
  IndexerWriteInputs host_;                 // set 0, the CPU reference's input
  Buffer host_cache_;                       // the CPU reference's output
  std::vector<IndexerWriteInputs> device_;  // one per buffer set
  Buffer device_cache_;                     // shared by all sets
};

std::vector<WorkloadPoint> points(const std::string& workload, bool quick) {
  if (workload != "W5") return {};
  return indexer_write_points(quick);
}

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<IndexerKQuantAndCacheCase>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry IndexerKQuantAndCache::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "cache writes";
  entry.role =
      "Quantizes each new token's sparse-attention indexer key (DeepSeek-V3.2) to fp8 E4M3 with "
      "one scale per 128 elements and stores codes and scales in the indexer's block-planar "
      "paged K cache, which the indexer's MQA-logits kernel reads.";
  entry.upstream =
      "vLLM csrc/cache_kernels.cu: indexer_k_quant_and_cache (indexer_k_quant_and_cache_kernel)";
  entry.cpu_source = "reference_cpu/indexer_k_quant_and_cache.cpp";
  entry.naive_source = "kernels/indexer/indexer_k_quant_and_cache/naive.cu";
  entry.optimized_source = "kernels/indexer/indexer_k_quant_and_cache/optimized.cu";
  entry.byte_model =
      "k rows read once (tokens x 128 x 2 bytes), each slot written once (128 code bytes + 4 "
      "scale bytes), slot_mapping read once (8 bytes per token)";
  entry.agreement_rule =
      "bit-exact: the whole cache, untouched slots included, equals the CPU reference byte for "
      "byte";
  entry.workloads = {"W5"};
  entry.workload_notes = indexer_workload_notes();
  entry.points = &points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
