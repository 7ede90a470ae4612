// Registry entry of quantize_and_insert_k_cache, and its workload points (W4,
// deepseek_v4_case.h).
//
// One point: k [T, 512] bf16 contiguous, one cache [4096, 37440] u8 (pages of 64 tokens,
// padded as upstream's allocator pads them), slots random or contiguous.
#include "pagedkv/ops/quantize_and_insert_k_cache.h"

#include <memory>
#include <string>
#include <vector>

#include "deepseek_v4_case.h"
#include "pagedkv/error.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

// The OpCase of one W4 insert point: buffer sets of inputs (set 0 is the CPU reference's), one
// device cache shared by all sets, plans validated once per set and implementation.
class QuantizeAndInsertKCacheCase final : public PlannedCase<QuantizeAndInsertKCache> {
  using Op = QuantizeAndInsertKCache;

 public:
  QuantizeAndInsertKCacheCase(const WorkloadPoint& point, std::uint64_t seed)
      : shape_(dsv4_insert_shape(point)),
        seed_(seed),
        host_(make_dsv4_insert_inputs(shape_, seed, 0)),
        host_cache_(Memory::host, static_cast<std::size_t>(shape_.cache_bytes())) {
    host_cache_.fill(kPoisonByte);
  }

  std::int64_t bytes_moved() const override { return shape_.bytes(); }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    device_cache_ = Buffer(Memory::device, host_cache_.size());
    device_cache_.fill(kPoisonByte);
    const TensorView cache = dsv4_cache_view(shape_.num_blocks, device_cache_, Device::cuda);
    for (int set = 0; set < sets; ++set) {
      device_.push_back(
          set == 0 ? copy_dsv4_insert_inputs(shape_, host_, Memory::device)
                   : copy_dsv4_insert_inputs(shape_, make_dsv4_insert_inputs(shape_, seed_, set),
                                             Memory::device));
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
    return args_for(host_, dsv4_cache_view(shape_.num_blocks, host_cache_, Device::cpu));
  }
  Op::Args args_for(const Dsv4InsertInputs& in, const TensorView& cache) const {
    return {in.k, cache, in.slot_mapping, kW4BlockSize, true, false};
  }

  Dsv4InsertShape shape_;
  std::uint64_t seed_;
  Dsv4InsertInputs host_;                 // set 0, the CPU reference's input
  Buffer host_cache_;                     // the CPU reference's output
  std::vector<Dsv4InsertInputs> device_;  // one per buffer set
  Buffer device_cache_;                   // shared by all sets
};

std::vector<WorkloadPoint> points(const std::string& workload, bool quick) {
  if (workload != "W4") return {};
  return dsv4_insert_points(quick);
}

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<QuantizeAndInsertKCacheCase>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry QuantizeAndInsertKCache::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "cache writes";
  entry.role =
      "Quantizes each new token's DeepSeek V4 attention key to fp8 E4M3 with one power-of-two "
      "(UE8M0) scale per 64 elements, keeps its 64 RoPE dims in bf16, and stores both in the "
      "paged fp8_ds_mla K cache.";
  entry.upstream =
      "vLLM vllm/models/deepseek_v4/common/ops/cache_utils.py: quantize_and_insert_k_cache "
      "(Triton kernel _quantize_and_insert_k_cache)";
  entry.cpu_source = "reference_cpu/quantize_and_insert_k_cache.cpp";
  entry.naive_source = "kernels/deepseek_v4/quantize_and_insert_k_cache/naive.cu";
  entry.optimized_source = "kernels/deepseek_v4/quantize_and_insert_k_cache/optimized.cu";
  entry.byte_model =
      "k rows read once (tokens x 512 x 2 bytes), each token's 576-byte record and 8-byte scale "
      "record written once, slot_mapping read once (8 bytes per token)";
  entry.agreement_rule =
      "bit-exact: the whole cache, untouched slots and page padding included, equals the CPU "
      "reference byte for byte";
  entry.workloads = {"W4"};
  entry.workload_notes = dsv4_cache_workload_notes();
  entry.points = &points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
