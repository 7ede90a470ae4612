// Registry entry of convert_fp8, and its workload points (W7).
//
// One point: a whole KV cache of `size` blocks of 32 KiB of bf16 (one Llama-3-8B layer's K or V
// block: 16 slots × 8 kv heads × 128), seen as [blocks, 16, 8, 128], converted to fp8_e4m3 bytes
// of the same shape ("bf16 -> fp8_e4m3"), or such bytes converted back to bf16
// ("fp8_e4m3 -> bf16"). 2048 … 32768 blocks: 64 MiB … 1 GiB of bf16 (32 … 512 MiB of fp8).
// Both tensors contiguous, as vLLM allocates caches; a per-tensor scale of 4 / 448 (a cache whose
// values reach 4).
#include "pagedkv/ops/convert_fp8.h"

#include <memory>
#include <string>
#include <vector>

#include "harness.h"
#include "pagedkv/error.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

// One block = [block_size 16, kv heads 8, head_size 128] elements: 32 KiB of bf16.
constexpr std::int64_t kSlotsPerBlock = 16;
constexpr std::int64_t kKvHeads = 8;
constexpr std::int64_t kHeadSize = 128;
constexpr std::int64_t kElementsPerBlock = kSlotsPerBlock * kKvHeads * kHeadSize;
// The scale of a cache whose values reach 4 (fill_random draws |x| < 4): amax / 448.
constexpr float kScale = 4.f / 448.f;

class ConvertFp8Case final : public PlannedCase<ConvertFp8> {
 public:
  ConvertFp8Case(const WorkloadPoint& point, std::uint64_t seed)
      : num_blocks_(point.size), seed_(seed) {
    PAGEDKV_CHECK(point.workload == "W7", "convert_fp8 runs workload W7, got ", point.workload);
    if (point.variant == "bf16 -> fp8_e4m3") {
      quantize_ = true;
    } else if (point.variant == "fp8_e4m3 -> bf16") {
      quantize_ = false;
    } else {
      reject(
          "convert_fp8 W7 variant: expected \"bf16 -> fp8_e4m3\" or \"fp8_e4m3 -> bf16\", got \"",
          point.variant, "\"");
    }
    host_input_ = draw(0);
    reference_ = Buffer(Memory::host, static_cast<std::size_t>(elements() * output_bytes()));
    reference_.fill(kPoisonByte);
  }

  // Each input byte read once, each output byte written once: 3 bytes per element.
  std::int64_t bytes_moved() const override {
    return elements() * (input_bytes() + output_bytes());
  }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    for (int set = 0; set < sets; ++set) {
      // Set 0 converts the CPU reference's input; every set has its own input and output, so
      // that no launch finds its bytes in L2.
      Set s;
      s.input =
          set == 0 ? copy_to(Memory::device, host_input_) : copy_to(Memory::device, draw(set));
      s.output = Buffer(Memory::device, reference_.size());
      s.output.fill(kPoisonByte);
      sets_.push_back(std::move(s));
      calls_.add({output_view(sets_.back().output, Device::cuda),
                  input_view(sets_.back().input, Device::cuda), kScale, "fp8_e4m3"});
      // Validation happens here, once per set and implementation, never inside the timed region.
    }
  }

  void reset_outputs() override { sets_.at(0).output.fill(kPoisonByte); }

  Agreement compare_outputs() override {
    return compare_with_reference(sets_.at(0).output, reference_.data(),
                                  quantize_ ? DType::f8_e4m3 : DType::bf16);
  }

 private:
  // The CPU reference's call on the host inputs (what run_cpu() runs and cpu_arguments()
  // lists).
  ConvertFp8::Args cpu_call() override {
    return ConvertFp8::Args{output_view(reference_, Device::cpu),
                            input_view(host_input_, Device::cpu), kScale, "fp8_e4m3"};
  }
  struct Set {
    Buffer input;
    Buffer output;
  };

  std::int64_t elements() const { return num_blocks_ * kElementsPerBlock; }
  std::int64_t input_bytes() const { return quantize_ ? 2 : 1; }
  std::int64_t output_bytes() const { return quantize_ ? 1 : 2; }

  // Random bf16 (|x| < 4, never 0) to quantize, or random bytes (every fp8 code, NaN included)
  // to dequantize.
  Buffer draw(int set) const {
    Buffer buffer(Memory::host, static_cast<std::size_t>(elements() * input_bytes()));
    fill_random(buffer.data(), quantize_ ? DType::bf16 : DType::u8, elements(),
                set_seed(seed_, set));
    return buffer;
  }
  TensorView view(const Buffer& buffer, DType dtype, Device device) const {
    return TensorView::contiguous(buffer.data(), dtype,
                                  {num_blocks_, kSlotsPerBlock, kKvHeads, kHeadSize}, device);
  }
  TensorView input_view(const Buffer& buffer, Device device) const {
    return view(buffer, quantize_ ? DType::bf16 : DType::u8, device);
  }
  TensorView output_view(const Buffer& buffer, Device device) const {
    return view(buffer, quantize_ ? DType::u8 : DType::bf16, device);
  }

  std::int64_t num_blocks_;
  std::uint64_t seed_;
  bool quantize_ = true;
  Buffer host_input_;      // set 0's input, on the host
  Buffer reference_;       // the CPU reference's output
  std::vector<Set> sets_;  // one per buffer set, on the device
};

std::vector<WorkloadPoint> points(const std::string& workload, bool quick) {
  if (workload != "W7") return {};
  const std::vector<std::int64_t> sizes =
      quick ? std::vector<std::int64_t>{16, 256}
            : std::vector<std::int64_t>{2048, 4096, 8192, 16384, 32768};
  std::vector<WorkloadPoint> result;
  for (const char* variant : {"bf16 -> fp8_e4m3", "fp8_e4m3 -> bf16"})
    for (std::int64_t blocks : sizes)
      result.push_back({"W7", variant, "", blocks, "blocks", blocks});
  return result;
}

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<ConvertFp8Case>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry ConvertFp8::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "fp8 conversion";
  entry.role =
      "Converts a whole tensor between fp8 bytes (E4M3 or E5M2) and f32 / f16 / bf16 with a "
      "scale, in either direction: quantizing a cache to fp8, or reading an fp8 cache back "
      "(vLLM uses it in tests).";
  entry.upstream = "vLLM csrc/cache_kernels.cu: convert_fp8 (convert_fp8_kernel)";
  entry.cpu_source = "reference_cpu/convert_fp8.cpp";
  entry.naive_source = "kernels/convert_fp8/naive.cu";
  entry.optimized_source = "kernels/convert_fp8/optimized.cu";
  entry.byte_model =
      "input read once and output written once: elements x (2 + 1) bytes for bf16 <-> fp8 "
      "(bytes read + bytes written)";
  entry.agreement_rule =
      "bit-exact: the whole output equals the CPU reference byte for byte (NaN bytes and "
      "saturated values included)";
  entry.workloads = {"W7"};
  entry.workload_notes =
      "W7: a whole KV cache of 2048 to 32768 blocks of [16 slots, 8 kv heads, 128] (64 MiB to "
      "1 GiB of bf16; 16 and 256 blocks in a quick run), contiguous, converted bf16 -> "
      "fp8_e4m3 (random bf16 with |x| < 4, never zero) or fp8_e4m3 -> bf16 (random bytes, "
      "every fp8 code including NaN), with the per-tensor scale 4 / 448.";
  entry.points = &points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
