// Registry entry of dequantize_and_gather_k_cache, and its workload points (W4,
// deepseek_v4_case.h).
//
// One point: a cache [2 × R × max_blocks, 37440] u8 of random bytes with realistic exponent
// codes, T tokens gathered through random block tables (one request, or a prefill chunk of 4
// with a prefix) into out [R, rows, 512] bf16.
#include "pagedkv/ops/dequantize_and_gather_k_cache.h"

#include <memory>
#include <string>
#include <vector>

#include "deepseek_v4_case.h"
#include "pagedkv/error.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

// The OpCase of one W4 gather point: one cache and one output buffer, buffer sets of block
// tables (each set gathers other random pages, so that a rotation through the sets reads
// beyond L2), plans validated once per set and implementation.
class DequantizeAndGatherKCacheCase final : public PlannedCase<DequantizeAndGatherKCache> {
  using Op = DequantizeAndGatherKCache;

 public:
  DequantizeAndGatherKCacheCase(const WorkloadPoint& point, std::uint64_t seed)
      : shape_(dsv4_gather_shape(point)),
        seed_(seed),
        host_indices_(make_dsv4_gather_indices(shape_, seed, 0)),
        host_cache_(Memory::host, static_cast<std::size_t>(shape_.num_blocks() * kW4PageStride)),
        host_output_(Memory::host, static_cast<std::size_t>(output_bytes())) {
    fill_dsv4_cache(host_cache_, shape_.num_blocks(), seed ^ 0xCAC4Eull);
    host_output_.fill(kPoisonByte);
  }

  std::int64_t bytes_moved() const override { return shape_.bytes(); }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    device_cache_ = copy_to(Memory::device, host_cache_);
    device_output_ = Buffer(Memory::device, host_output_.size());
    device_output_.fill(kPoisonByte);
    for (int set = 0; set < sets; ++set) {
      device_indices_.push_back(
          set == 0 ? copy_dsv4_gather_indices(shape_, host_indices_, Memory::device)
                   : copy_dsv4_gather_indices(shape_, make_dsv4_gather_indices(shape_, seed_, set),
                                              Memory::device));
      calls_.add(args_for(device_cache_, device_output_, device_indices_.back(), Device::cuda));
      // Validation (it reads the lengths and the block table back) happens here, never timed.
    }
  }

  void reset_outputs() override { device_output_.fill(kPoisonByte); }

  Agreement compare_outputs() override {
    return compare_with_reference(device_output_, host_output_.data(), DType::bf16);
  }

 private:
  // The CPU reference's call on the host inputs (what run_cpu() runs and cpu_arguments()
  // lists).
  Op::Args cpu_call() override {
    return args_for(host_cache_, host_output_, host_indices_, Device::cpu);
  }
  std::int64_t output_bytes() const {
    return shape_.num_requests * shape_.rows() * kDsv4HeadDim * 2;
  }

  Op::Args args_for(const Buffer& cache, const Buffer& output, const Dsv4GatherIndices& indices,
                    Device device) const {
    return {TensorView::contiguous(const_cast<std::uint8_t*>(output.data()), DType::bf16,
                                   {shape_.num_requests, shape_.rows(), kDsv4HeadDim}, device),
            dsv4_cache_view(shape_.num_blocks(), cache, device),
            indices.seq_lens,
            indices.gather_lens,
            indices.block_table,
            kW4BlockSize,
            0,
            false};
  }

  Dsv4GatherShape shape_;
  std::uint64_t seed_;
  Dsv4GatherIndices host_indices_;                 // set 0, the CPU reference's
  Buffer host_cache_;                              // the input of every set
  Buffer host_output_;                             // the CPU reference's out
  std::vector<Dsv4GatherIndices> device_indices_;  // one per buffer set
  Buffer device_cache_;
  Buffer device_output_;  // shared by all sets
};

std::vector<WorkloadPoint> points(const std::string& workload, bool quick) {
  if (workload != "W4") return {};
  return dsv4_gather_points(quick);
}

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<DequantizeAndGatherKCacheCase>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry DequantizeAndGatherKCache::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "cache reads";
  entry.role =
      "Gathers the last tokens of each request from DeepSeek V4's paged fp8_ds_mla K cache "
      "through its block table, dequantizes their fp8 codes with the power-of-two block "
      "scales to bf16 and writes them into a packed workspace for sparse prefill attention.";
  entry.upstream =
      "vLLM vllm/models/deepseek_v4/common/ops/cache_utils.py: dequantize_and_gather_k_cache "
      "(Triton kernel _dequantize_and_gather_k_cache, bounds-hardened revision)";
  entry.cpu_source = "reference_cpu/dequantize_and_gather_k_cache.cpp";
  entry.naive_source = "kernels/deepseek_v4/dequantize_and_gather_k_cache/naive.cu";
  entry.optimized_source = "kernels/deepseek_v4/dequantize_and_gather_k_cache/optimized.cu";
  entry.byte_model =
      "each gathered token's 576-byte record and 8-byte scale record read once and its 1024-byte "
      "bf16 row written once, each page id it uses read once (4 bytes per page touched), "
      "seq_lens and gather_lens read once (4 bytes per request each)";
  entry.agreement_rule =
      "bit-exact: the whole workspace, untouched rows included, equals the CPU reference bit "
      "for bit";
  entry.workloads = {"W4"};
  entry.workload_notes = dsv4_cache_workload_notes();
  entry.points = &points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
