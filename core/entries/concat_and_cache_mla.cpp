// Registry entry of concat_and_cache_mla, and its workload points (W2, mla_case.h).
//
// One point: kv_c [T, 512] bf16 contiguous, k_pe [T, 64] bf16 a view with row pitch 576 into
// the kv_a projection's output, one cache [4096, 64, entry] ("auto" bf16: 576 elements,
// fp8_e4m3: 576 bytes, fp8_ds_mla: 656 bytes).
#include "pagedkv/ops/concat_and_cache_mla.h"

#include <memory>
#include <string>
#include <vector>

#include "library_baseline.h"
#include "mla_case.h"
#include "pagedkv/error.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

// The OpCase of one W2 point: buffer sets of inputs (set 0 is the CPU reference's), one device
// cache shared by all sets, plans validated once per set and implementation.
class ConcatAndCacheMlaCase final : public PlannedCase<ConcatAndCacheMla>, public LibraryBaseline {
  using Op = ConcatAndCacheMla;

 public:
  ConcatAndCacheMlaCase(const WorkloadPoint& point, std::uint64_t seed)
      : shape_(mla_shape(point)),
        seed_(seed),
        host_(make_mla_inputs(shape_, seed, 0)),
        host_cache_(Memory::host, static_cast<std::size_t>(shape_.cache_bytes())),
        host_scale_(make_scale(shape_.scale, Memory::host)) {
    host_cache_.fill(kPoisonByte);
  }

  std::int64_t bytes_moved() const override { return shape_.write_bytes(); }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    device_cache_ = Buffer(Memory::device, host_cache_.size());
    device_cache_.fill(kPoisonByte);
    scale_ = make_scale(shape_.scale, Memory::device);
    const TensorView cache = mla_cache_view(shape_, device_cache_, Device::cuda);
    for (int set = 0; set < sets; ++set) {
      device_.push_back(
          set == 0 ? copy_mla_inputs(shape_, host_, Memory::device)
                   : copy_mla_inputs(shape_, make_mla_inputs(shape_, seed_, set), Memory::device));
      const MlaInputs& in = device_.back();
      calls_.add({in.kv_c, in.k_pe, cache, in.slot_mapping, shape_.kv_cache_dtype, scale_.view});
      // Validation (with its synchronizing slot-range check) happens here, never when timed.
    }
  }

  void reset_outputs() override { device_cache_.fill(kPoisonByte); }

  Agreement compare_outputs() override {
    return compare_with_reference(device_cache_, host_cache_.data(),
                                  shape_.fp8() ? DType::u8 : shape_.activation_dtype);
  }

  // "auto": the op is two plain scatters of 16-byte units, the latent rows (64 units) to the
  // entries' first 1024 bytes and the RoPE rows (8 units) to their last 128.
  std::vector<UnitScatter> library_scatters(int set) const override {
    if (shape_.fp8()) return {};  // quantizing is not a plain scatter
    const MlaInputs& in = device_.at(static_cast<std::size_t>(set));
    const DType dtype = shape_.activation_dtype;
    UnitScatter latent;
    latent.rows = UnitScatter::Rows::slots;
    latent.unit_bytes = 16;
    latent.num_rows = shape_.num_tokens;
    latent.row_units = stride_in_units(shape_.kv_lora_rank, dtype, 16);
    latent.slot_mapping = static_cast<const std::int64_t*>(in.slot_mapping.data);
    latent.num_heads = 1;
    latent.block_size = shape_.block_size;
    latent.src_token_stride = stride_in_units(in.kv_c.stride(0), dtype, 16);
    latent.dst_block_stride =
        stride_in_units(shape_.block_size * shape_.entry_elements(), dtype, 16);
    latent.dst_page_stride = stride_in_units(shape_.entry_elements(), dtype, 16);
    latent.src = in.kv_c.data;
    latent.dst = device_cache_.data();
    UnitScatter rope = latent;
    rope.row_units = stride_in_units(shape_.rope_dim, dtype, 16);
    rope.src_token_stride = stride_in_units(in.k_pe.stride(0), dtype, 16);
    rope.src = in.k_pe.data;
    rope.dst = device_cache_.data() + shape_.kv_lora_rank * dtype_size(dtype);
    return {latent, rope};
  }

 private:
  // The CPU reference's call on the host inputs (what run_cpu() runs and cpu_arguments()
  // lists).
  Op::Args cpu_call() override {
    return Op::Args{host_.kv_c,
                    host_.k_pe,
                    mla_cache_view(shape_, host_cache_, Device::cpu),
                    host_.slot_mapping,
                    shape_.kv_cache_dtype,
                    host_scale_.view};
  }
  MlaShape shape_;
  std::uint64_t seed_;
  MlaInputs host_;     // set 0, the CPU reference's input
  Buffer host_cache_;  // the CPU reference's output
  ScaleTensor host_scale_;
  std::vector<MlaInputs> device_;  // one per buffer set
  Buffer device_cache_;            // shared by all sets
  ScaleTensor scale_;
};

std::vector<WorkloadPoint> points(const std::string& workload, bool quick) {
  if (workload != "W2") return {};
  return mla_points({"bf16", "fp8_e4m3", "fp8_ds_mla"}, quick);
}

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<ConcatAndCacheMlaCase>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry ConcatAndCacheMla::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "cache writes";
  entry.role =
      "Stores each new token's MLA latent vector and RoPE key, concatenated, as one entry of "
      "the paged latent cache (as is, fp8 with one scale, or the 656-byte fp8_ds_mla entry with "
      "per-tile scales).";
  entry.upstream =
      "vLLM csrc/cache_kernels.cu: concat_and_cache_mla (concat_and_cache_mla_kernel, "
      "concat_and_cache_ds_mla_kernel)";
  entry.cpu_source = "reference_cpu/concat_and_cache_mla.cpp";
  entry.naive_source = "kernels/mla/concat_and_cache_mla/naive.cu";
  entry.optimized_source = "kernels/mla/concat_and_cache_mla/optimized.cu";
  entry.byte_model =
      "kv_c and k_pe rows read once (tokens x (512 + 64) x activation bytes), each entry "
      "written once (1152 bytes bf16, 576 fp8_e4m3, 656 fp8_ds_mla), slot_mapping read once "
      "(8 bytes per token)";
  entry.agreement_rule =
      "bit-exact: the whole cache, untouched slots included, equals the CPU reference byte for "
      "byte";
  entry.workloads = {"W2"};
  entry.workload_notes = mla_workload_notes();
  entry.points = &points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
