/// \file
/// \brief What the two norm ops share in the op registry
/// (core/entries/, not public API): the W9 points and inputs, the reduction agreement, and the
/// OpCase both use (NormCase).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "harness.h"
#include "pagedkv/buffers.h"
#include "pagedkv/dtype.h"
#include "pagedkv/op.h"
#include "pagedkv/ops/fused_add_rms_norm.h"
#include "pagedkv/ops/rms_norm.h"
#include "pagedkv/registry.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv::entries {

/// \brief Workload notes shared by the norms (OpEntry::workload_notes).
/// \return the text, in words.
inline const char* norm_workload_notes() {
  return "W9: hidden states [tokens, hidden] with hidden 4096 (Llama-3-8B), 7168 (DeepSeek-V3) or "
         "8192 (Llama-3-70B), bf16 or f16, random with |x| < 4 and never zero (fused_add_rms_norm: "
         "a "
         "residual drawn the same way); weight random in [0.75, 1.25]; epsilon 1e-6; a quick run "
         "keeps hidden 4096 bf16 at 1, 64 and 1024 tokens. fused_add_rms_norm overwrites its "
         "inputs: "
         "its checked run starts from the drawn inputs, its timed launches from what the previous "
         "launch left (the same work).";
}

/// \brief One W9 point: `num_tokens` rows of `hidden_size` elements.
struct NormShape {
  std::int64_t num_tokens = 0;   ///< rows (the point's size)
  std::int64_t hidden_size = 0;  ///< elements per row: 4096, 7168 or 8192
  DType dtype = DType::bf16;     ///< dtype of the hidden states, the weight and the output
  double epsilon = 1e-6;         ///< vLLM's default

  /// \brief Bytes of one [num_tokens, hidden_size] tensor.
  /// \return num_tokens × hidden_size × element bytes.
  std::int64_t tensor_bytes() const { return num_tokens * hidden_size * dtype_size(dtype); }
  /// \brief Bytes of the weight.
  /// \return hidden_size × element bytes.
  std::int64_t weight_bytes() const { return hidden_size * dtype_size(dtype); }
};

/// \brief Parses a W9 point; the variant is "hidden <H> <dtype>" (dtype bf16 or f16).
/// \param point the workload point.
/// \return its shape.
NormShape norm_shape(const WorkloadPoint& point);

/// \brief The W9 points: hidden {4096, 7168, 8192} × {bf16, f16} × tokens {1, 16, 64, 256,
/// 1024, 4096, 16384}; quick: hidden 4096 bf16 at {1, 64, 1024} tokens.
/// \param workload the workload asked for (no point unless "W9").
/// \param quick true for the quick points.
/// \return the points.
std::vector<WorkloadPoint> norm_points(const std::string& workload, bool quick);

/// \brief Random hidden states [num_tokens, hidden_size] in host memory, never zero.
/// \param shape the point's shape.
/// \param seed the seed (of the case, already mixed with the set and the tensor's role).
/// \return the buffer.
Buffer make_hidden_states(const NormShape& shape, std::uint64_t seed);

/// \brief A random weight [hidden_size] in host memory, uniform in [0.75, 1.25].
/// \param shape the point's shape.
/// \param seed the case's seed.
/// \return the buffer.
Buffer make_norm_weight(const NormShape& shape, std::uint64_t seed);

/// \brief Compares the output of a reduction with the CPU reference: byte for byte
/// (compare_with_reference()) and by the norm-wise relative error, with the tolerance
/// reduction_tolerance(dtype, hidden_size).
/// \param output the output, in device, pinned or host memory.
/// \param reference the CPU reference's output, host memory of the same size.
/// \param shape the point's shape.
/// \return the agreement (the reduction rule).
Agreement compare_norm_output(const Buffer& output, const void* reference, const NormShape& shape);

/// \brief The OpCase of a norm (RmsNorm or FusedAddRmsNorm), written once: the W9 inputs, the
/// buffer sets and the validated plans.
///
/// Buffer sets: each set has its own hidden states (set 0 holds the CPU reference's inputs) and
/// its own output; all sets share the weight. rms_norm writes `out`; fused_add_rms_norm
/// overwrites `input` and `residual`, so its timed launches on a set run on what the previous
/// launch left there: valid data of the same size, the same work. Its checked run starts again
/// from the drawn inputs: reset_outputs() copies them back into set 0, so compare_outputs()
/// judges exactly one run against one run of the CPU reference.
/// \tparam Op RmsNorm or FusedAddRmsNorm.
template <class Op>
class NormCase final : public PlannedCase<Op> {
  static constexpr bool kFused = std::is_same_v<Op, FusedAddRmsNorm>;
  static_assert(kFused || std::is_same_v<Op, RmsNorm>, "NormCase runs RmsNorm or FusedAddRmsNorm");
  // Seeds of the two drawn tensors of a set, so that input and residual differ.
  static constexpr std::uint64_t kInputSalt = 0x1A9B7E5Dull;
  static constexpr std::uint64_t kResidualSalt = 0x2E51D0A1ull;

  // One buffer set: its hidden states, and its output (rms_norm) or residual (fused).
  struct Set {
    Buffer input;
    Buffer second;  // rms_norm: out; fused_add_rms_norm: residual
  };

 public:
  /// \brief Draws the host inputs of buffer set 0 and allocates the CPU reference's outputs.
  /// \param point the W9 point.
  /// \param seed seed of the random inputs.
  NormCase(const WorkloadPoint& point, std::uint64_t seed)
      : shape_(norm_shape(point)), seed_(seed), weight_host_(make_norm_weight(shape_, seed)) {
    host_.input = draw(0, kInputSalt);
    reference_.second = Buffer(Memory::host, host_.input.size());
    reference_.second.fill(kPoisonByte);
    if constexpr (kFused) {
      host_.second = draw(0, kResidualSalt);
      reference_.input = Buffer(Memory::host, host_.input.size());
      reference_.input.fill(kPoisonByte);
    }
  }

  // rms_norm: input read, out written; fused: input and residual read and written. Plus the
  // weight, read once.
  std::int64_t bytes_moved() const override {
    return (kFused ? 4 : 2) * shape_.tensor_bytes() + shape_.weight_bytes();
  }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    weight_ = copy_to(Memory::device, weight_host_);
    const TensorView weight = weight_view(weight_, Device::cuda);
    for (int set = 0; set < sets; ++set) {
      // Set 0 is the CPU reference's input; the others are drawn the same way.
      Set s;
      s.input = set == 0 ? copy_to(Memory::device, host_.input)
                         : copy_to(Memory::device, draw(set, kInputSalt));
      if constexpr (kFused) {
        s.second = set == 0 ? copy_to(Memory::device, host_.second)
                            : copy_to(Memory::device, draw(set, kResidualSalt));
      } else {
        s.second = Buffer(Memory::device, s.input.size());
        s.second.fill(kPoisonByte);
      }
      device_.push_back(std::move(s));
      const Set& in = device_.back();
      if constexpr (kFused) {
        this->calls_.add(
            {rows(in.input, Device::cuda), rows(in.second, Device::cuda), weight, shape_.epsilon});
      } else {
        this->calls_.add(
            {rows(in.second, Device::cuda), rows(in.input, Device::cuda), weight, shape_.epsilon});
      }
      // Validation happens here, once per set and implementation, never inside the timed region.
    }
  }

  void reset_outputs() override {
    Set& s = device_.at(0);
    if constexpr (kFused) {
      // Both tensors are inputs too: back to the drawn values (earlier runs overwrote them).
      s.input.copy_from(host_.input);
      s.second.copy_from(host_.second);
    } else {
      s.second.fill(kPoisonByte);
    }
  }

  Agreement compare_outputs() override {
    const Set& s = device_.at(0);
    if constexpr (kFused) {
      // The normalized sum is a reduction; the new residual is an element-wise sum, bit-exact.
      Agreement agreement = compare_norm_output(s.input, reference_.input.data(), shape_);
      const Agreement residual =
          compare_with_reference(s.second, reference_.second.data(), shape_.dtype);
      agreement.exact_part_equal = residual.bit_exact;
      agreement.bit_exact = agreement.bit_exact && residual.bit_exact;
      agreement.bytes_differing += residual.bytes_differing;
      agreement.bytes_compared += residual.bytes_compared;
      agreement.max_abs_err = std::max(agreement.max_abs_err, residual.max_abs_err);
      return agreement;
    } else {
      return compare_norm_output(s.second, reference_.second.data(), shape_);
    }
  }

 private:
  // The CPU reference's call on the host inputs (what run_cpu() runs and cpu_arguments()
  // lists).
  typename Op::Args cpu_call() override {
    const TensorView weight = weight_view(weight_host_, Device::cpu);
    if constexpr (kFused) {
      // The op works in place: start every run from the drawn inputs, so that running it again
      // gives the same output.
      reference_.input.copy_from(host_.input);
      reference_.second.copy_from(host_.second);
      return {rows(reference_.input, Device::cpu), rows(reference_.second, Device::cpu), weight,
              shape_.epsilon};
    } else {
      return {rows(reference_.second, Device::cpu), rows(host_.input, Device::cpu), weight,
              shape_.epsilon};
    }
  }
  Buffer draw(int set, std::uint64_t salt) const {
    return make_hidden_states(shape_, set_seed(seed_, set) ^ salt);
  }
  // [num_tokens, hidden_size], contiguous.
  TensorView rows(const Buffer& buffer, Device device) const {
    return TensorView::contiguous(buffer.data(), shape_.dtype,
                                  {shape_.num_tokens, shape_.hidden_size}, device);
  }
  TensorView weight_view(const Buffer& buffer, Device device) const {
    return TensorView::contiguous(buffer.data(), shape_.dtype, {shape_.hidden_size}, device);
  }

  NormShape shape_;
  std::uint64_t seed_;
  Buffer weight_host_;       // the weight, on the host
  Set host_;                 // set 0's drawn inputs (second: the residual; empty for rms_norm)
  Set reference_;            // the CPU reference's outputs (rms_norm: second = out; input empty)
  Buffer weight_;            // on the device, shared by all sets
  std::vector<Set> device_;  // one per buffer set
};

}  // namespace pagedkv::entries
