// Registry entry of process_kv, and its workload points (W14, turbomind_case.h).
//
// One point: a batch of 4 sequences writing T new tokens (after 100 cached ones each) from K and
// V views of one [T, 16, 128] bf16 activation into layer 1 of a pool of random blocks, with
// Llama 3.1's RoPE and quant policy 0, 8 or 4.
#include "pagedkv/ops/process_kv.h"

#include <memory>
#include <string>
#include <vector>

#include "pagedkv/error.h"
#include "pagedkv/registry.h"
#include "turbomind_case.h"

namespace pagedkv::entries {

namespace {

// One buffer set's activation (K and V views into one buffer) and indices.
struct ProcessInputs {
  Buffer activation;  // [T, 16, 128] bf16
  TurbomindIndices indices;
};

class ProcessKvCase final : public PlannedCase<ProcessKv> {
  using Op = ProcessKv;

 public:
  ProcessKvCase(const WorkloadPoint& point, std::uint64_t seed)
      : shape_(turbomind_shape(point, true)),
        seed_(seed),
        host_(make_inputs(0, Memory::host)),
        host_pool_(Memory::host,
                   static_cast<std::size_t>(shape_.pool_blocks() * shape_.block_bytes())) {
    host_pool_.fill(kPoisonByte);
  }

  std::int64_t bytes_moved() const override { return shape_.bytes(); }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    device_pool_ = Buffer(Memory::device, host_pool_.size());
    device_pool_.fill(kPoisonByte);
    for (int set = 0; set < sets; ++set) {
      device_.push_back(set == 0 ? ProcessInputs{copy_to(Memory::device, host_.activation),
                                                 copy_turbomind_indices(shape_, host_.indices,
                                                                        Memory::device)}
                                 : make_inputs(set, Memory::device));
      calls_.add(args_for(device_.back(), device_pool_, Device::cuda));
    }
  }

  void reset_outputs() override { device_pool_.fill(kPoisonByte); }

  Agreement compare_outputs() override {
    return compare_with_reference(device_pool_, host_pool_.data(), DType::u8);
  }

 private:
  Op::Args cpu_call() override { return args_for(host_, host_pool_, Device::cpu); }

  ProcessInputs make_inputs(int set, Memory memory) const {
    ProcessInputs inputs;
    Buffer activation(Memory::host,
                      static_cast<std::size_t>(shape_.tokens * 2 * kW14Heads * kW14HeadDim * 2));
    fill_random(activation.data(), DType::bf16, shape_.tokens * 2 * kW14Heads * kW14HeadDim,
                set_seed(seed_, set));
    TurbomindIndices indices = make_turbomind_indices(shape_, seed_, set);
    if (memory == Memory::host) return {std::move(activation), std::move(indices)};
    return {copy_to(memory, activation), copy_turbomind_indices(shape_, indices, memory)};
  }

  Op::Args args_for(const ProcessInputs& in, const Buffer& pool, Device device) const {
    Op::Args args;
    args.kv_cache = turbomind_pool_view(shape_, pool, device);
    args.blocks = in.indices.blocks;
    args.k = turbomind_rows_view(shape_.tokens, in.activation, device, false);
    args.v = turbomind_rows_view(shape_.tokens, in.activation, device, true);
    args.cu_q_len = in.indices.cu_q_len;
    args.cu_k_len = in.indices.cu_k_len;
    args.cu_block_num = in.indices.cu_block_num;
    args.rope_type = "llama3";  // Llama 3.1
    args.rope_dim = kW14HeadDim;
    args.rope_base = 500000.0;
    args.rope_factor = 8.0;
    args.llama3_low_freq_factor = 1.0;
    args.llama3_high_freq_factor = 4.0;
    args.llama3_original_max_position_embeddings = 8192;
    args.block_seq_len = kW14BlockSeqLen;
    args.layer_id = kW14Layer;
    std::int64_t longest = 0;
    for (std::int64_t share : shape_.shares()) longest = std::max(longest, share);
    args.max_q_len = longest;
    args.quant_policy = static_cast<std::int64_t>(shape_.policy);
    return args;
  }

  TurbomindShape shape_;
  std::uint64_t seed_;
  ProcessInputs host_;
  Buffer host_pool_;                   // the CPU reference's output
  std::vector<ProcessInputs> device_;  // one per buffer set
  Buffer device_pool_;                 // shared by all sets
};

std::vector<WorkloadPoint> points(const std::string& workload, bool quick) {
  if (workload != "W14") return {};
  return turbomind_points(quick);
}

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<ProcessKvCase>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry ProcessKv::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "LMDeploy TurboMind";
  entry.role =
      "Writes each new token's K and V (bias added, K rotated by its position: RoPE on write) "
      "into TurboMind's paged blocks, as they are or as int8 / int4 codes with a [scale, zero] "
      "per token and head, the blocks named by their byte offsets (TurboMind's block pointers).";
  entry.upstream =
      "LMDeploy src/turbomind/kernels/attention/kv_cache_utils_v2.cu: invokeProcessKV_v2 "
      "(kernel ProcessKV_v2)";
  entry.cpu_source = "reference_cpu/process_kv.cpp";
  entry.naive_source = "kernels/lmdeploy/process_kv/naive.cu";
  entry.optimized_source = "kernels/lmdeploy/process_kv/optimized.cu";
  entry.byte_model =
      "per new token and KV head: the K and V rows read once (2 x 128 x 2 bytes) and their "
      "codes written once (2 x 256, 128 or 64 bytes) with their parameters (2 x 4 bytes when "
      "quantized); the cu_ arrays and the block offsets read once";
  entry.agreement_rule =
      "bit-exact: the whole pool, untouched blocks and rows included, equals the CPU reference "
      "byte for byte (the RoPE angles use pagedkv's own float sin / cos / exp2, the same on the "
      "CPU and the GPU)";
  entry.workloads = {"W14"};
  entry.workload_notes = turbomind_workload_notes();
  entry.points = &points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
