// Registry entry of gather_and_maybe_dequant_cache, and its workload points (W3, gather_case.h).
//
// One point: a batch of requests (one long request, or a skewed batch) whose entries sit in
// random blocks of a cache [num_blocks, 64, entry] ("auto" bf16: 576 elements, fp8_e4m3: 576
// bytes, fp8_ds_mla: 656 bytes), gathered into a bf16 workspace [total_tokens, 576].
#include "pagedkv/ops/gather_and_maybe_dequant_cache.h"

#include <memory>
#include <string>
#include <vector>

#include "gather_case.h"
#include "pagedkv/error.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

// The OpCase of one W3 point: buffer sets of inputs (set 0 is the CPU reference's), one device
// workspace shared by all sets, plans validated once per set and implementation.
class GatherAndMaybeDequantCacheCase final : public PlannedCase<GatherAndMaybeDequantCache> {
  using Op = GatherAndMaybeDequantCache;

 public:
  GatherAndMaybeDequantCacheCase(const WorkloadPoint& point, std::uint64_t seed)
      : shape_(gather_shape(point)),
        seed_(seed),
        host_(make_gather_inputs(shape_, seed, 0)),
        host_dst_(Memory::host, static_cast<std::size_t>(dst_bytes())),
        host_scale_(make_scale(shape_.scale, Memory::host)) {
    host_dst_.fill(kPoisonByte);
  }

  // Each gathered entry read once, each workspace row written once, token_to_seq read once per
  // row, cu_seq_lens and the used block-table entries once.
  std::int64_t bytes_moved() const override {
    return shape_.total_tokens * (shape_.entry_bytes() + 2 * kMlaGatherRow + 4) +
           4 * (host_.batch + 1) + 4 * host_.used_blocks;
  }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    device_dst_ = Buffer(Memory::device, host_dst_.size());
    device_dst_.fill(kPoisonByte);
    scale_ = make_scale(shape_.scale, Memory::device);
    for (int set = 0; set < sets; ++set) {
      device_.push_back(
          set == 0
              ? copy_gather_inputs(shape_, host_, Memory::device)
              : copy_gather_inputs(shape_, make_gather_inputs(shape_, seed_, set), Memory::device));
      calls_.add(args_of(device_.back(), device_dst_, scale_, Device::cuda));
      // Validation (it reads the index tensors back, synchronizing) happens here, never when
      // timed.
    }
  }

  void reset_outputs() override { device_dst_.fill(kPoisonByte); }

  Agreement compare_outputs() override {
    return compare_with_reference(device_dst_, host_dst_.data(), DType::bf16);
  }

 private:
  // The CPU reference's call on the host inputs (what run_cpu() runs and cpu_arguments()
  // lists).
  Op::Args cpu_call() override { return args_of(host_, host_dst_, host_scale_, Device::cpu); }
  std::int64_t dst_bytes() const { return shape_.total_tokens * kMlaGatherRow * 2; }

  // The op's arguments over one set of inputs and a [total_tokens, 576] bf16 workspace.
  Op::Args args_of(const GatherInputs& in, const Buffer& dst, const ScaleTensor& scale,
                   Device device) const {
    Op::Args args;
    args.src_cache = in.src_cache;
    args.dst = TensorView::contiguous(dst.data(), DType::bf16, {shape_.total_tokens, kMlaGatherRow},
                                      device);
    args.block_table = in.block_table;
    args.cu_seq_lens = in.cu_seq_lens;
    args.token_to_seq = in.token_to_seq;
    args.num_tokens = shape_.total_tokens;
    args.kv_cache_dtype = shape_.kv_cache_dtype();
    args.scale = scale.view;
    return args;  // seq_starts: none (each request's context from position 0)
  }

  GatherShape shape_;
  std::uint64_t seed_;
  GatherInputs host_;  // set 0, the CPU reference's input
  Buffer host_dst_;    // the CPU reference's output
  ScaleTensor host_scale_;
  std::vector<GatherInputs> device_;  // one per buffer set
  Buffer device_dst_;                 // shared by all sets
  ScaleTensor scale_;
};

std::vector<WorkloadPoint> points(const std::string& workload, bool quick) {
  if (workload != "W3") return {};
  return gather_points({"bf16", "fp8_e4m3", "fp8_ds_mla"}, quick);
}

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<GatherAndMaybeDequantCacheCase>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry GatherAndMaybeDequantCache::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "cache reads";
  entry.role =
      "Reads the MLA latent cache entries of a batch of sequences back into one contiguous "
      "workspace, token by token, decoding fp8 (one scale) or the 656-byte fp8_ds_mla entry "
      "(four tile scales) on the way: the context of MLA's chunked prefill.";
  entry.upstream =
      "vLLM csrc/cache_kernels.cu: gather_and_maybe_dequant_cache (the kernel of the same name)";
  entry.cpu_source = "reference_cpu/gather_and_maybe_dequant_cache.cpp";
  entry.naive_source = "kernels/mla/gather_and_maybe_dequant_cache/naive.cu";
  entry.optimized_source = "kernels/mla/gather_and_maybe_dequant_cache/optimized.cu";
  entry.byte_model =
      "each gathered entry read once (1152 bytes bf16, 576 fp8_e4m3, 656 fp8_ds_mla), each "
      "workspace row written once (576 x 2 bytes), token_to_seq read once per row (4 bytes), "
      "cu_seq_lens and the used block-table entries once (4 bytes each)";
  entry.agreement_rule =
      "bit-exact: the whole workspace, rows not gathered included, equals the CPU reference "
      "byte for byte";
  entry.workloads = {"W3"};
  entry.workload_notes = gather_workload_notes();
  entry.points = &points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
