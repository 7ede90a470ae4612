/// \file
/// \brief What the three gated activations share in the op registry (core/entries/, not public
/// API): the W10 points and inputs, the ulp-bounded agreement, and the OpCase all three use
/// (ActAndMulCase).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "harness.h"
#include "pagedkv/act_and_mul.h"
#include "pagedkv/buffers.h"
#include "pagedkv/dtype.h"
#include "pagedkv/op.h"
#include "pagedkv/registry.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv::entries {

/// \brief Workload notes shared by the gated activations (OpEntry::workload_notes).
/// \return the text, in words.
const char* act_and_mul_workload_notes();

/// \brief Agreement rule shared by the gated activations (OpEntry::agreement_rule).
/// \return the text, in words.
const char* act_and_mul_agreement_rule();

/// \brief One W10 point: `num_tokens` rows of input [2 d] and of out [d].
struct ActAndMulShape {
  std::int64_t num_tokens = 0;  ///< rows (the point's size)
  std::int64_t d = 0;           ///< elements of out per row: 14336
  DType dtype = DType::bf16;    ///< dtype of input and out

  /// \brief Bytes of out.
  /// \return num_tokens × d × element bytes.
  std::int64_t out_bytes() const { return num_tokens * d * dtype_size(dtype); }
};

/// \brief Parses a W10 point; the variant is "d <d> <dtype>" (dtype bf16 or f16).
/// \param point the workload point.
/// \return its shape.
ActAndMulShape act_and_mul_shape(const WorkloadPoint& point);

/// \brief The W10 points: d 14336 × {bf16, f16} × tokens {1, 16, 64, 256, 1024, 4096, 16384};
/// quick: bf16 at {1, 64, 1024} tokens.
/// \param workload the workload asked for (no point unless "W10").
/// \param quick true for the quick points.
/// \return the points.
std::vector<WorkloadPoint> act_and_mul_points(const std::string& workload, bool quick);

/// \brief The ulp-bounded comparison: bit_exact and bytes as compare_with_reference(), and
/// max_ulp = the largest ulp_error() of an output element at |gate × up|.
/// \param output out, in device or host memory.
/// \param reference the CPU reference's out (host).
/// \param input the input the reference ran on (host, [num_tokens, 2 d] packed).
/// \param shape the point's shape.
/// \param bound the op's ulp bound for the dtype.
/// \return the agreement (the ulp-bounded rule).
Agreement compare_act_and_mul_output(const Buffer& output, const Buffer& reference,
                                     const Buffer& input, const ActAndMulShape& shape,
                                     double bound);

/// \brief The OpCase of a gated activation: the W10 input [tokens, 2 d] (set 0 the CPU
/// reference's), out [tokens, d] per buffer set.
/// \tparam Op SiluAndMul, GeluAndMul or GeluTanhAndMul.
template <class Op>
class ActAndMulCase final : public PlannedCase<Op> {
 public:
  /// \brief Draws the host input of buffer set 0 and allocates the CPU reference's out.
  /// \param point the W10 point.
  /// \param seed seed of the random inputs.
  ActAndMulCase(const WorkloadPoint& point, std::uint64_t seed)
      : shape_(act_and_mul_shape(point)),
        seed_(seed),
        input_host_(draw(0)),
        reference_(Memory::host, static_cast<std::size_t>(shape_.out_bytes())) {
    reference_.fill(kPoisonByte);
  }

  // input read once (2 d per row), out written once (d per row).
  std::int64_t bytes_moved() const override { return 3 * shape_.out_bytes(); }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    for (int set = 0; set < sets; ++set) {
      if (set == 0) {
        inputs_.push_back(copy_to(Memory::device, input_host_));
      } else {
        inputs_.push_back(copy_to(Memory::device, draw(set)));
      }
      outs_.emplace_back(Memory::device, static_cast<std::size_t>(shape_.out_bytes()));
      outs_.back().fill(kPoisonByte);
      this->calls_.add(
          {out_view(outs_.back(), Device::cuda), in_view(inputs_.back(), Device::cuda)});
    }
  }

  void reset_outputs() override { outs_.at(0).fill(kPoisonByte); }
  Agreement compare_outputs() override {
    return compare_act_and_mul_output(outs_.at(0), reference_, input_host_, shape_,
                                      Op::ulp_bound(shape_.dtype));
  }

 private:
  // The CPU reference's call on the host inputs (what run_cpu() runs and cpu_arguments()
  // lists).
  typename Op::Args cpu_call() override {
    return {out_view(reference_, Device::cpu), in_view(input_host_, Device::cpu)};
  }
  Buffer draw(int set) const {
    Buffer buffer(Memory::host, static_cast<std::size_t>(2 * shape_.out_bytes()));
    fill_random(buffer.data(), shape_.dtype, 2 * shape_.num_tokens * shape_.d,
                set_seed(seed_, set) ^ 0x5E1Dull);
    return buffer;
  }
  TensorView in_view(const Buffer& b, Device device) const {
    return TensorView::contiguous(b.data(), shape_.dtype, {shape_.num_tokens, 2 * shape_.d},
                                  device);
  }
  TensorView out_view(const Buffer& b, Device device) const {
    return TensorView::contiguous(b.data(), shape_.dtype, {shape_.num_tokens, shape_.d}, device);
  }

  ActAndMulShape shape_;
  std::uint64_t seed_;
  Buffer input_host_;           // set 0's input
  Buffer reference_;            // the CPU reference's out
  std::vector<Buffer> inputs_;  // one per buffer set, on the device
  std::vector<Buffer> outs_;    // one per buffer set, on the device
};

}  // namespace pagedkv::entries
