// Registry entry of reshape_and_cache_flash, and its workload points (W1).
//
// One point: the new tokens' keys and values are views into a fused qkv activation
// [T, 32 + 8 + 8, 128] bf16; the key and value caches are the two halves of one allocation
// [2, num_blocks, ...] (FlashAttention's layout), each with the logical shape
// [num_blocks, block_size, num_kv_heads, head_size]:
//   NHD: physical [num_blocks, block_size, heads, head_size], strides (bs·H·D, H·D, D, 1)
//   HND: physical [num_blocks, heads, block_size, head_size], strides (bs·H·D, D, bs·D, 1)
#include <memory>
#include <string>
#include <vector>

#include "case_support.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/reshape_and_cache_flash.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

class ReshapeAndCacheFlashCase final : public OpCase {
 public:
  ReshapeAndCacheFlashCase(const WorkloadPoint& point, std::uint64_t seed)
      : shape_(cache_write_shape(point)),
        hnd_(point.variant.rfind("HND", 0) == 0),
        seed_(seed),
        host_(make_token_inputs(shape_, seed, 0)),
        host_caches_(Memory::host, static_cast<std::size_t>(2 * shape_.cache_bytes())),
        host_k_scale_(make_scale(shape_.k_scale, Memory::host)),
        host_v_scale_(make_scale(shape_.v_scale, Memory::host)) {
    PAGEDKV_CHECK(hnd_ || point.variant.rfind("NHD", 0) == 0,
                  "reshape_and_cache_flash W1 variant: expected \"NHD ...\" or \"HND ...\", got \"",
                  point.variant, "\"");
    host_caches_.fill(kPoisonByte);
  }

  std::int64_t bytes_moved() const override { return shape_.bytes_moved(); }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }
  int buffer_sets() const override {
    return static_cast<int>(device_.size() > 0 ? device_.size() : 1);
  }

  void run_cpu() override {
    cpu::reshape_and_cache_flash(host_.key, host_.value, key_cache(host_caches_, Device::cpu),
                                 value_cache(host_caches_, Device::cpu), host_.slot_mapping,
                                 shape_.kv_cache_dtype, host_k_scale_.view, host_v_scale_.view);
  }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    device_caches_ = Buffer(Memory::device, host_caches_.size());
    device_caches_.fill(kPoisonByte);
    k_scale_ = make_scale(shape_.k_scale, Memory::device);
    v_scale_ = make_scale(shape_.v_scale, Memory::device);
    const TensorView kc = key_cache(device_caches_, Device::cuda);
    const TensorView vc = value_cache(device_caches_, Device::cuda);
    for (int set = 0; set < sets; ++set) {
      // Set 0 is the CPU reference's input; the others are drawn the same way.
      device_.push_back(set == 0 ? copy_token_inputs(shape_, host_, Memory::device)
                                 : copy_token_inputs(shape_, make_token_inputs(shape_, seed_, set),
                                                     Memory::device));
      const TokenInputs& in = device_.back();
      // Validation (with its synchronizing slot-range check) happens here, once per set and
      // implementation, never inside the timed region.
      naive_plans_.push_back(validate_reshape_and_cache_flash(
          in.key, in.value, kc, vc, in.slot_mapping, shape_.kv_cache_dtype, k_scale_.view,
          v_scale_.view, Impl::naive));
      optimized_plans_.push_back(validate_reshape_and_cache_flash(
          in.key, in.value, kc, vc, in.slot_mapping, shape_.kv_cache_dtype, k_scale_.view,
          v_scale_.view, Impl::optimized));
    }
  }

  void launch(Impl impl, int set, cudaStream_t stream) override {
    const TokenInputs& in = device_.at(static_cast<std::size_t>(set));
    const TensorView kc = key_cache(device_caches_, Device::cuda);
    const TensorView vc = value_cache(device_caches_, Device::cuda);
    if (impl == Impl::naive) {
      naive::launch_reshape_and_cache_flash(naive_plans_[set], in.key, in.value, kc, vc,
                                            in.slot_mapping, k_scale_.view, v_scale_.view, stream);
    } else {
      optimized::launch_reshape_and_cache_flash(optimized_plans_[set], in.key, in.value, kc, vc,
                                                in.slot_mapping, k_scale_.view, v_scale_.view,
                                                stream);
    }
  }

  void reset_outputs() override { device_caches_.fill(kPoisonByte); }

  Agreement compare_outputs() override {
    return compare_with_reference(device_caches_, host_caches_.data(),
                                  shape_.cache_element_dtype());
  }

  std::vector<UnitScatter> library_scatters(int set) const override {
    if (is_fp8(shape_.cache_kind)) return {};  // quantizing is not a plain scatter
    const TokenInputs& in = device_.at(static_cast<std::size_t>(set));
    const TensorView kc = key_cache(device_caches_, Device::cuda);
    const DType dtype = shape_.activation_dtype;
    // One row = the head_size elements of one (token, head): 16-byte units, contiguous in both
    // the activation and the cache in either layout.
    UnitScatter key;
    key.rows = UnitScatter::Rows::slots;
    key.unit_bytes = 16;
    key.num_rows = shape_.num_tokens * shape_.num_kv_heads;
    key.row_units = stride_in_units(shape_.head_size, dtype, 16);
    key.slot_mapping = static_cast<const std::int64_t*>(in.slot_mapping.data);
    key.num_heads = shape_.num_kv_heads;
    key.block_size = shape_.block_size;
    key.src_token_stride = stride_in_units(in.key.stride(0), dtype, 16);
    key.src_head_stride = stride_in_units(in.key.stride(1), dtype, 16);
    key.dst_block_stride = stride_in_units(kc.stride(0), dtype, 16);
    key.dst_page_stride = stride_in_units(kc.stride(1), dtype, 16);
    key.dst_head_stride = stride_in_units(kc.stride(2), dtype, 16);
    key.dst_unit_step = 1;
    UnitScatter value = key;
    key.src = in.key.data;
    key.dst = kc.data;
    value.src = in.value.data;
    value.dst = value_cache(device_caches_, Device::cuda).data;
    return {key, value};
  }

 protected:
  void run_checked(Impl impl) override {
    const TokenInputs& in = device_.at(0);
    const TensorView kc = key_cache(device_caches_, Device::cuda);
    const TensorView vc = value_cache(device_caches_, Device::cuda);
    if (impl == Impl::naive) {
      naive::reshape_and_cache_flash(in.key, in.value, kc, vc, in.slot_mapping,
                                     shape_.kv_cache_dtype, k_scale_.view, v_scale_.view);
    } else {
      optimized::reshape_and_cache_flash(in.key, in.value, kc, vc, in.slot_mapping,
                                         shape_.kv_cache_dtype, k_scale_.view, v_scale_.view);
    }
  }

 private:
  // [num_blocks, block_size, num_kv_heads, head_size] logical; strides pick NHD or HND.
  TensorView key_cache(const Buffer& caches, Device device) const {
    const std::int64_t bs = shape_.block_size, h = shape_.num_kv_heads, d = shape_.head_size;
    const DType dtype = is_fp8(shape_.cache_kind) ? DType::u8 : shape_.activation_dtype;
    if (hnd_)
      return TensorView::strided(caches.data(), dtype, {shape_.num_blocks, bs, h, d},
                                 {bs * h * d, d, bs * d, 1}, device);
    return TensorView::strided(caches.data(), dtype, {shape_.num_blocks, bs, h, d},
                               {bs * h * d, h * d, d, 1}, device);
  }
  // The second half of the allocation, with the key cache's strides.
  TensorView value_cache(const Buffer& caches, Device device) const {
    TensorView view = key_cache(caches, device);
    view.data = caches.data() + shape_.cache_bytes();
    return view;
  }

  CacheWriteShape shape_;
  bool hnd_;
  std::uint64_t seed_;
  TokenInputs host_;    // set 0, the CPU reference's input
  Buffer host_caches_;  // [2, num_blocks, ...]: the CPU reference's output
  ScaleTensor host_k_scale_, host_v_scale_;
  std::vector<TokenInputs> device_;  // one per buffer set
  Buffer device_caches_;             // shared by all sets
  ScaleTensor k_scale_, v_scale_;
  std::vector<ReshapeAndCacheFlashPlan> naive_plans_, optimized_plans_;
};

std::vector<WorkloadPoint> points(const std::string& workload, bool quick) {
  if (workload != "W1") return {};
  return cache_write_points({"NHD bf16", "HND bf16", "NHD fp8_e4m3", "HND fp8_e4m3"}, quick);
}

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<ReshapeAndCacheFlashCase>(point, seed);
}

}  // namespace

OpEntry reshape_and_cache_flash_entry() {
  OpEntry entry;
  entry.name = "reshape_and_cache_flash";
  entry.family = "cache writes";
  entry.role =
      "Stores each new token's key and value in its slot of the paged KV cache that "
      "FlashAttention / FlashInfer read (NHD or HND layout), as is or quantized to fp8.";
  entry.upstream =
      "vLLM csrc/cache_kernels.cu: reshape_and_cache_flash (reshape_and_cache_flash_kernel)";
  entry.cpu_source = "reference_cpu/reshape_and_cache_flash.cpp";
  entry.naive_source = "kernels/cache_write/reshape_and_cache_flash/naive.cu";
  entry.optimized_source = "kernels/cache_write/reshape_and_cache_flash/optimized.cu";
  entry.byte_model =
      "key and value rows read once (tokens x heads x head_size x 2 x activation bytes), the same "
      "elements written once into the caches (x cache element bytes: 2 for bf16, 1 for fp8), "
      "slot_mapping read once (8 bytes per token)";
  entry.agreement_rule =
      "bit-exact: the whole key and value caches, untouched slots included, equal the CPU "
      "reference byte for byte";
  entry.workloads = {"W1"};
  entry.points = &points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv::entries
