/// \file
/// \brief `fused_add_rms_norm`: add the residual stream to the hidden states, keep the sum as
/// the new residual, and write the rms_norm of the sum over the hidden states, in one pass.
///
/// Per row: `z = round(input + residual)`; `residual = z`; `input = z / sqrt(mean(z²) +
/// epsilon) * weight`. Both tensors are overwritten. The sum is element-wise and bit-exact
/// across the three implementations; the normalized row is a reduction, compared within
/// reduction_tolerance() (pagedkv/agreement.h).
///
/// Worked example (hidden_size = 2, epsilon = 0, weight = 1): input (1, 2) and residual (2, -6)
/// give residual = (3, -4), mean(z²) = 12.5, input = (3, -4) / 3.5355 = (0.8485, -1.1314).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "pagedkv/impl.h"
#include "pagedkv/op.h"
#include "pagedkv/row_layout.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief fused_add_rms_norm: the op's arguments, its contract and its three implementations.
struct FusedAddRmsNorm {
  /// \brief The upstream name.
  static constexpr const char* name = "fused_add_rms_norm";

  /// \brief The arguments, in vLLM's order and with vLLM's names (documented in arguments()).
  struct Args {
    /// \name Arguments (documented in FusedAddRmsNorm::arguments)
    /// @{
    TensorView input;       ///< see FusedAddRmsNorm::arguments()
    TensorView residual;    ///< see FusedAddRmsNorm::arguments()
    TensorView weight;      ///< see FusedAddRmsNorm::arguments()
    double epsilon = 1e-6;  ///< see FusedAddRmsNorm::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::input, "input", ArgKind::inout,
        "[..., hidden_size] f32, f16 or bf16, 1 to 4 dimensions, the last packed, the leading "
        "ones with any strides; read as the hidden states, overwritten with the normalized sum");
    arg(&Args::residual, "residual", ArgKind::inout,
        "the shape and dtype of input, contiguous; read as the residual stream, overwritten "
        "with input + residual");
    arg(&Args::weight, "weight", ArgKind::input,
        "[hidden_size], the dtype of input, contiguous; multiplies every normalized row");
    arg(&Args::epsilon, "epsilon", ArgKind::real,
        "added to the mean square before the reciprocal square root (vLLM's default 1e-6)");
  }

  /// \brief What validate() derives from the arguments.
  struct Plan {
    RowLayout rows;                ///< where each row of input starts; residual's are packed
    std::int64_t hidden_size = 0;  ///< elements per row
    DType dtype = DType::bf16;     ///< dtype of input, residual and weight
    float epsilon = 0.f;           ///< as the kernels use it (vLLM casts it to float too)
  };

  /// \brief The contract: checks every argument for `impl` and returns the plan; throws
  /// InvalidArgument (naming the argument, the expected and the actual value) before anything
  /// is written. Zero rows is a valid call that writes nothing.
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: the sum rounded as the kernels round it, then the norm of the
  /// rounded sum in float64, every output element rounded to float32, then to the dtype.
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA: one block per row, a shared-memory tree reduction.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream.
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA: 16-byte vectors, a CUB block reduction, the sum kept in registers.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream.
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry: family, sources, byte model, workloads
  /// (core/entries/fused_add_rms_norm.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
