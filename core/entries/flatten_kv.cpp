// Registry entry of flatten_kv, and its workload points (W14, turbomind_case.h).
//
// One point: a batch of 4 sequences of T tokens in all, read from layer 1 of a pool of random
// codes with valid [scale, zero] pairs into K and V views of one [T, 16, 128] bf16 output.
#include "pagedkv/ops/flatten_kv.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "pagedkv/error.h"
#include "pagedkv/registry.h"
#include "turbomind_case.h"

namespace pagedkv::entries {

namespace {

class FlattenKvCase final : public PlannedCase<FlattenKv> {
  using Op = FlattenKv;

 public:
  FlattenKvCase(const WorkloadPoint& point, std::uint64_t seed)
      : shape_(turbomind_shape(point, false)),
        seed_(seed),
        host_indices_(make_turbomind_indices(shape_, seed, 0)),
        host_pool_(Memory::host,
                   static_cast<std::size_t>(shape_.pool_blocks() * shape_.block_bytes())),
        host_output_(Memory::host,
                     static_cast<std::size_t>(shape_.tokens * 2 * kW14Heads * kW14HeadDim * 2)) {
    fill_turbomind_pool(shape_, host_pool_, seed ^ 0x9001ull);
    host_output_.fill(kPoisonByte);
  }

  std::int64_t bytes_moved() const override { return shape_.bytes(); }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    device_pool_ = copy_to(Memory::device, host_pool_);
    device_output_ = Buffer(Memory::device, host_output_.size());
    device_output_.fill(kPoisonByte);
    for (int set = 0; set < sets; ++set) {
      if (set == 0) {
        device_indices_.push_back(copy_turbomind_indices(shape_, host_indices_, Memory::device));
      } else {
        const TurbomindIndices drawn = make_turbomind_indices(shape_, seed_, set);
        device_indices_.push_back(copy_turbomind_indices(shape_, drawn, Memory::device));
      }
      calls_.add(args_for(device_indices_.back(), device_pool_, device_output_, Device::cuda));
    }
  }

  void reset_outputs() override { device_output_.fill(kPoisonByte); }

  Agreement compare_outputs() override {
    return compare_with_reference(device_output_, host_output_.data(), DType::bf16);
  }

 private:
  Op::Args cpu_call() override {
    return args_for(host_indices_, host_pool_, host_output_, Device::cpu);
  }

  Op::Args args_for(const TurbomindIndices& indices, const Buffer& pool, const Buffer& output,
                    Device device) const {
    Op::Args args;
    args.k_out = turbomind_rows_view(shape_.tokens, output, device, false);
    args.v_out = turbomind_rows_view(shape_.tokens, output, device, true);
    args.kv_cache = turbomind_pool_view(shape_, pool, device);
    args.blocks = indices.blocks;
    args.cu_k_len = indices.cu_k_len;
    args.cu_block_num = indices.cu_block_num;
    args.block_seq_len = kW14BlockSeqLen;
    args.layer_id = kW14Layer;
    std::int64_t longest = 0;
    for (std::int64_t length : shape_.lengths()) longest = std::max(longest, length);
    args.max_seq_len = longest;
    args.quant_policy = static_cast<std::int64_t>(shape_.policy);
    return args;
  }

  TurbomindShape shape_;
  std::uint64_t seed_;
  TurbomindIndices host_indices_;
  Buffer host_pool_;
  Buffer host_output_;
  std::vector<TurbomindIndices> device_indices_;
  Buffer device_pool_;
  Buffer device_output_;
};

std::vector<WorkloadPoint> points(const std::string& workload, bool quick) {
  if (workload != "W14") return {};
  return turbomind_points(quick);
}

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<FlattenKvCase>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry FlattenKv::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "LMDeploy TurboMind";
  entry.role =
      "Reads every token of each sequence back from TurboMind's paged blocks into contiguous K "
      "and V rows, dequantizing int8 / int4 codes with their [scale, zero] (the prefill path's "
      "linear copy of the context).";
  entry.upstream =
      "LMDeploy src/turbomind/kernels/attention/kv_cache_utils_v2.cu: invokeFlattenKV_v2 "
      "(kernel flattenKV_v2)";
  entry.cpu_source = "reference_cpu/flatten_kv.cpp";
  entry.naive_source = "kernels/lmdeploy/flatten_kv/naive.cu";
  entry.optimized_source = "kernels/lmdeploy/flatten_kv/optimized.cu";
  entry.byte_model =
      "per token and KV head: its codes and parameters read once (2 x 256, 128 or 64 bytes, "
      "plus 2 x 4 when quantized) and the K and V rows written once (2 x 128 x 2 bytes); the "
      "cu_ arrays and the block offsets read once";
  entry.agreement_rule =
      "bit-exact: k_out and v_out, rows not written included, equal the CPU reference byte for "
      "byte";
  entry.workloads = {"W14"};
  entry.workload_notes = turbomind_workload_notes();
  entry.points = &points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
