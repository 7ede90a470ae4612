// Registry entry of reshape_and_cache (the legacy paged-attention cache), and its workload
// points (W1).
//
// One point: the new tokens' keys and values are views into a fused qkv activation
// [T, 32 + 8 + 8, 128] bf16; the key and value caches are the two halves of one allocation:
//   key_cache   [num_blocks, num_kv_heads, head_size / x, block_size, x], x × element = 16 bytes
//   value_cache [num_blocks, num_kv_heads, head_size, block_size]
// so a key lands as 16-byte chunks block_size chunks apart, and a value element by element,
// block_size elements apart (the transposed layout the v1/v2 attention kernels read).
#include <memory>
#include <string>
#include <vector>

#include "case_support.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/reshape_and_cache.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

class ReshapeAndCacheCase final : public OpCase {
 public:
  ReshapeAndCacheCase(const WorkloadPoint& point, std::uint64_t seed)
      : shape_(cache_write_shape(point)),
        seed_(seed),
        host_(make_token_inputs(shape_, seed, 0)),
        host_caches_(Memory::host, static_cast<std::size_t>(2 * shape_.cache_bytes())),
        host_k_scale_(make_scale(shape_.k_scale, Memory::host)),
        host_v_scale_(make_scale(shape_.v_scale, Memory::host)) {
    PAGEDKV_CHECK(point.variant == "bf16" || point.variant == "fp8_e4m3",
                  "reshape_and_cache W1 variant: expected \"bf16\" or \"fp8_e4m3\", got \"",
                  point.variant, "\"");
    host_caches_.fill(kPoisonByte);
  }

  std::int64_t bytes_moved() const override { return shape_.bytes_moved(); }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }
  int buffer_sets() const override {
    return static_cast<int>(device_.size() > 0 ? device_.size() : 1);
  }

  void run_cpu() override {
    cpu::reshape_and_cache(host_.key, host_.value, key_cache(host_caches_, Device::cpu),
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
      naive_plans_.push_back(validate_reshape_and_cache(in.key, in.value, kc, vc, in.slot_mapping,
                                                        shape_.kv_cache_dtype, k_scale_.view,
                                                        v_scale_.view, Impl::naive));
      optimized_plans_.push_back(validate_reshape_and_cache(
          in.key, in.value, kc, vc, in.slot_mapping, shape_.kv_cache_dtype, k_scale_.view,
          v_scale_.view, Impl::optimized));
    }
  }

  void launch(Impl impl, int set, cudaStream_t stream) override {
    const TokenInputs& in = device_.at(static_cast<std::size_t>(set));
    const TensorView kc = key_cache(device_caches_, Device::cuda);
    const TensorView vc = value_cache(device_caches_, Device::cuda);
    if (impl == Impl::naive) {
      naive::launch_reshape_and_cache(naive_plans_[set], in.key, in.value, kc, vc, in.slot_mapping,
                                      k_scale_.view, v_scale_.view, stream);
    } else {
      optimized::launch_reshape_and_cache(optimized_plans_[set], in.key, in.value, kc, vc,
                                          in.slot_mapping, k_scale_.view, v_scale_.view, stream);
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
    const DType dtype = shape_.activation_dtype;
    const std::int64_t bs = shape_.block_size, h = shape_.num_kv_heads, d = shape_.head_size;
    const std::int64_t x = 16 / shape_.cache_element_size();
    // Key: a row is one (token, head); its units are the head_size / x chunks of 16 bytes, each
    // going to key_cache[block, head, chunk, offset, :], block_size units apart.
    UnitScatter key;
    key.rows = UnitScatter::Rows::slots;
    key.unit_bytes = 16;
    key.num_rows = shape_.num_tokens * h;
    key.row_units = d / x;
    key.slot_mapping = static_cast<const std::int64_t*>(in.slot_mapping.data);
    key.num_heads = h;
    key.block_size = bs;
    key.src_token_stride = stride_in_units(in.key.stride(0), dtype, 16);
    key.src_head_stride = stride_in_units(in.key.stride(1), dtype, 16);
    key.dst_block_stride = h * (d / x) * bs;
    key.dst_page_stride = 1;
    key.dst_head_stride = (d / x) * bs;
    key.dst_unit_step = bs;
    key.src = in.key.data;
    key.dst = device_caches_.data();
    // Value: the units are single elements, each going to value_cache[block, head, d, offset].
    UnitScatter value = key;
    value.unit_bytes = static_cast<int>(dtype_size(dtype));
    value.row_units = d;
    value.src_token_stride = in.value.stride(0);
    value.src_head_stride = in.value.stride(1);
    value.dst_block_stride = h * d * bs;
    value.dst_page_stride = 1;
    value.dst_head_stride = d * bs;
    value.dst_unit_step = bs;
    value.src = in.value.data;
    value.dst = device_caches_.data() + shape_.cache_bytes();
    return {key, value};
  }

 protected:
  void run_checked(Impl impl) override {
    const TokenInputs& in = device_.at(0);
    const TensorView kc = key_cache(device_caches_, Device::cuda);
    const TensorView vc = value_cache(device_caches_, Device::cuda);
    if (impl == Impl::naive) {
      naive::reshape_and_cache(in.key, in.value, kc, vc, in.slot_mapping, shape_.kv_cache_dtype,
                               k_scale_.view, v_scale_.view);
    } else {
      optimized::reshape_and_cache(in.key, in.value, kc, vc, in.slot_mapping, shape_.kv_cache_dtype,
                                   k_scale_.view, v_scale_.view);
    }
  }

 private:
  // [num_blocks, num_kv_heads, head_size / x, block_size, x], contiguous.
  TensorView key_cache(const Buffer& caches, Device device) const {
    const std::int64_t bs = shape_.block_size, h = shape_.num_kv_heads, d = shape_.head_size;
    const std::int64_t x = 16 / shape_.cache_element_size();
    return TensorView::contiguous(caches.data(), cache_dtype(),
                                  {shape_.num_blocks, h, d / x, bs, x}, device);
  }
  // [num_blocks, num_kv_heads, head_size, block_size], contiguous, in the second half.
  TensorView value_cache(const Buffer& caches, Device device) const {
    const std::int64_t bs = shape_.block_size, h = shape_.num_kv_heads, d = shape_.head_size;
    return TensorView::contiguous(caches.data() + shape_.cache_bytes(), cache_dtype(),
                                  {shape_.num_blocks, h, d, bs}, device);
  }
  // fp8 caches are bytes, as vLLM allocates them.
  DType cache_dtype() const {
    return is_fp8(shape_.cache_kind) ? DType::u8 : shape_.activation_dtype;
  }

  CacheWriteShape shape_;
  std::uint64_t seed_;
  TokenInputs host_;    // set 0, the CPU reference's input
  Buffer host_caches_;  // [2, num_blocks, ...]: the CPU reference's output
  ScaleTensor host_k_scale_, host_v_scale_;
  std::vector<TokenInputs> device_;  // one per buffer set
  Buffer device_caches_;             // shared by all sets
  ScaleTensor k_scale_, v_scale_;
  std::vector<ReshapeAndCachePlan> naive_plans_, optimized_plans_;
};

std::vector<WorkloadPoint> points(const std::string& workload, bool quick) {
  if (workload != "W1") return {};
  return cache_write_points({"bf16", "fp8_e4m3"}, quick);
}

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<ReshapeAndCacheCase>(point, seed);
}

}  // namespace

OpEntry reshape_and_cache_entry() {
  OpEntry entry;
  entry.name = "reshape_and_cache";
  entry.family = "cache writes";
  entry.role =
      "Stores each new token's key and value in its slot of the legacy paged KV cache that "
      "vLLM's paged_attention v1/v2 kernels read (key in 16-byte chunks, value transposed), as "
      "is or quantized to fp8.";
  entry.upstream = "vLLM csrc/cache_kernels.cu: reshape_and_cache (reshape_and_cache_kernel)";
  entry.cpu_source = "reference_cpu/reshape_and_cache.cpp";
  entry.naive_source = "kernels/cache_write/reshape_and_cache/naive.cu";
  entry.optimized_source = "kernels/cache_write/reshape_and_cache/optimized.cu";
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
