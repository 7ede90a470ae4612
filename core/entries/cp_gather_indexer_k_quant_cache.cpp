// Registry entry of cp_gather_indexer_k_quant_cache, and its workload points (W5,
// indexer_case.h).
//
// One point: a cache [8192, 64, 132] u8 of random bytes, T tokens gathered through a random
// block table (one sequence, or 16 of skewed lengths) into dst_k [T, 128] u8 and dst_scale
// [T, 4] u8, both held in one output buffer (dst_k's rows, then dst_scale's).
#include "pagedkv/ops/cp_gather_indexer_k_quant_cache.h"

#include <memory>
#include <string>
#include <vector>

#include "indexer_case.h"
#include "pagedkv/error.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

// The OpCase of one W5 gather point: one cache and one output buffer, buffer sets of block
// tables (each set gathers other random blocks, so that a rotation through the sets reads
// beyond L2), plans validated once per set and implementation.
class CpGatherIndexerKQuantCacheCase final : public PlannedCase<CpGatherIndexerKQuantCache> {
  using Op = CpGatherIndexerKQuantCache;

 public:
  CpGatherIndexerKQuantCacheCase(const WorkloadPoint& point, std::uint64_t seed)
      : shape_(indexer_gather_shape(point)),
        seed_(seed),
        host_indices_(make_indexer_gather_indices(shape_, seed, 0)),
        host_cache_(Memory::host, static_cast<std::size_t>(shape_.cache_bytes())),
        host_output_(Memory::host, static_cast<std::size_t>(output_bytes())) {
    fill_random(host_cache_.data(), DType::u8, shape_.cache_bytes(), seed ^ 0xCAC4Eull);
    host_output_.fill(kPoisonByte);
  }

  std::int64_t bytes_moved() const override { return shape_.gather_bytes(); }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    device_cache_ = copy_to(Memory::device, host_cache_);
    device_output_ = Buffer(Memory::device, host_output_.size());
    device_output_.fill(kPoisonByte);
    for (int set = 0; set < sets; ++set) {
      device_indices_.push_back(
          set == 0 ? copy_indexer_gather_indices(host_indices_, Memory::device)
                   : copy_indexer_gather_indices(make_indexer_gather_indices(shape_, seed_, set),
                                                 Memory::device));
      calls_.add(args_for(device_cache_, device_output_, device_indices_.back(), Device::cuda));
      // Validation (it reads cu_seq_lens and the block table back) happens here, never timed.
    }
  }

  void reset_outputs() override { device_output_.fill(kPoisonByte); }

  Agreement compare_outputs() override {
    return compare_with_reference(device_output_, host_output_.data(), DType::u8);
  }

 private:
  // The CPU reference's call on the host inputs (what run_cpu() runs and cpu_arguments()
  // lists).
  Op::Args cpu_call() override {
    return args_for(host_cache_, host_output_, host_indices_, Device::cpu);
  }
  std::int64_t output_bytes() const { return shape_.num_tokens * kW5SlotBytes; }

  Op::Args args_for(const Buffer& cache, const Buffer& output, const IndexerGatherIndices& indices,
                    Device device) const {
    const std::int64_t T = shape_.num_tokens;
    auto* out = const_cast<std::uint8_t*>(output.data());
    return {TensorView::contiguous(const_cast<std::uint8_t*>(cache.data()), DType::u8,
                                   {shape_.num_blocks, kW5BlockSize, kW5SlotBytes}, device),
            TensorView::contiguous(out, DType::u8, {T, kW5HeadDim}, device),
            TensorView::contiguous(out + T * kW5HeadDim, DType::u8, {T, 4}, device),
            indices.block_table, indices.cu_seq_lens};
  }

  IndexerGatherShape shape_;
  std::uint64_t seed_;
  IndexerGatherIndices host_indices_;                 // set 0, the CPU reference's
  Buffer host_cache_;                                 // random bytes, the input of every set
  Buffer host_output_;                                // the CPU reference's dst_k then dst_scale
  std::vector<IndexerGatherIndices> device_indices_;  // one per buffer set
  Buffer device_cache_;
  Buffer device_output_;  // shared by all sets
};

std::vector<WorkloadPoint> points(const std::string& workload, bool quick) {
  if (workload != "W5") return {};
  return indexer_gather_points(quick);
}

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<CpGatherIndexerKQuantCacheCase>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry CpGatherIndexerKQuantCache::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "cache reads";
  entry.role =
      "Gathers the fp8 indexer keys and their scales of a batch of sequences from the paged "
      "indexer K cache into packed code and scale buffers, for the prefill indexer's MQA-logits "
      "kernel (DeepSeek-V3.2).";
  entry.upstream =
      "vLLM csrc/cache_kernels.cu: cp_gather_indexer_k_quant_cache "
      "(cp_gather_indexer_k_quant_cache_kernel)";
  entry.cpu_source = "reference_cpu/cp_gather_indexer_k_quant_cache.cpp";
  entry.naive_source = "kernels/indexer/cp_gather_indexer_k_quant_cache/naive.cu";
  entry.optimized_source = "kernels/indexer/cp_gather_indexer_k_quant_cache/optimized.cu";
  entry.byte_model =
      "each gathered token's 132 cache bytes read once and written once (128 into dst_k, 4 into "
      "dst_scale), each block id a sequence uses read once (4 bytes), cu_seq_lens read once "
      "(4 x (batch + 1) bytes)";
  entry.agreement_rule =
      "bit-exact: dst_k and dst_scale, untouched rows included, equal the CPU reference byte "
      "for byte";
  entry.workloads = {"W5"};
  entry.workload_notes = indexer_workload_notes();
  entry.points = &points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
