// Registry entry of cp_gather_and_upconvert_fp8_kv_cache, and its workload points (W3,
// gather_case.h; the fp8_ds_mla cache only).
//
// One point: a batch of requests (one long request, or a skewed batch) whose 656-byte entries
// sit in random blocks of a cache [num_blocks, 64, 656], read into a bf16 workspace
// [total_tokens, 576] at workspace_starts = the running sum of seq_lens.
#include "pagedkv/ops/cp_gather_and_upconvert_fp8_kv_cache.h"

#include <memory>
#include <string>
#include <vector>

#include "gather_case.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/gather_and_maybe_dequant_cache.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

// The OpCase of one W3 point: buffer sets of inputs (set 0 is the CPU reference's), one device
// workspace shared by all sets, plans validated once per set and implementation.
class CpGatherAndUpconvertFp8KvCacheCase final
    : public PlannedCase<CpGatherAndUpconvertFp8KvCache> {
  using Op = CpGatherAndUpconvertFp8KvCache;

 public:
  CpGatherAndUpconvertFp8KvCacheCase(const WorkloadPoint& point, std::uint64_t seed)
      : shape_(gather_shape(point)),
        seed_(seed),
        host_(make_gather_inputs(shape_, seed, 0)),
        host_dst_(Memory::host, static_cast<std::size_t>(dst_bytes())) {
    PAGEDKV_CHECK(shape_.ds_mla(), "cp_gather_and_upconvert_fp8_kv_cache reads fp8_ds_mla ",
                  "caches: W3 variant fp8_ds_mla, got ", shape_.variant);
    host_dst_.fill(kPoisonByte);
  }

  // Each entry read once (656 bytes), each workspace row written once (1152 bytes), seq_lens,
  // workspace_starts and the used block-table entries once (4 bytes each).
  std::int64_t bytes_moved() const override {
    return shape_.total_tokens * (shape_.entry_bytes() + 2 * kMlaGatherRow) + 8 * host_.batch +
           4 * host_.used_blocks;
  }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    device_dst_ = Buffer(Memory::device, host_dst_.size());
    device_dst_.fill(kPoisonByte);
    for (int set = 0; set < sets; ++set) {
      device_.push_back(
          set == 0
              ? copy_gather_inputs(shape_, host_, Memory::device)
              : copy_gather_inputs(shape_, make_gather_inputs(shape_, seed_, set), Memory::device));
      calls_.add(args_of(device_.back(), device_dst_, Device::cuda));
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
  Op::Args cpu_call() override { return args_of(host_, host_dst_, Device::cpu); }
  std::int64_t dst_bytes() const { return shape_.total_tokens * kMlaGatherRow * 2; }

  Op::Args args_of(const GatherInputs& in, const Buffer& dst, Device device) const {
    Op::Args args;
    args.src_cache = in.src_cache;
    args.dst = TensorView::contiguous(dst.data(), DType::bf16, {shape_.total_tokens, kMlaGatherRow},
                                      device);
    args.block_table = in.block_table;
    args.seq_lens = in.seq_lens;
    args.workspace_starts = in.workspace_starts;
    args.batch_size = in.batch;
    return args;
  }

  GatherShape shape_;
  std::uint64_t seed_;
  GatherInputs host_;                 // set 0, the CPU reference's input
  Buffer host_dst_;                   // the CPU reference's output
  std::vector<GatherInputs> device_;  // one per buffer set
  Buffer device_dst_;                 // shared by all sets
};

std::vector<WorkloadPoint> points(const std::string& workload, bool quick) {
  if (workload != "W3") return {};
  return gather_points({"fp8_ds_mla"}, quick);
}

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<CpGatherAndUpconvertFp8KvCacheCase>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry CpGatherAndUpconvertFp8KvCache::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "cache reads";
  entry.role =
      "Reads the 656-byte fp8_ds_mla entries of a batch of requests back into a bf16 workspace "
      "(latent bytes times their tile's scale, RoPE copied): the dense context of DeepSeek's "
      "sparse MLA prefill.";
  entry.upstream =
      "vLLM csrc/cache_kernels.cu: cp_gather_and_upconvert_fp8_kv_cache (the kernel of the same "
      "name)";
  entry.cpu_source = "reference_cpu/cp_gather_and_upconvert_fp8_kv_cache.cpp";
  entry.naive_source = "kernels/mla/cp_gather_and_upconvert_fp8_kv_cache/naive.cu";
  entry.optimized_source = "kernels/mla/cp_gather_and_upconvert_fp8_kv_cache/optimized.cu";
  entry.byte_model =
      "each gathered 656-byte entry read once, each workspace row written once (576 x 2 bytes), "
      "seq_lens, workspace_starts and the used block-table entries once (4 bytes each)";
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
