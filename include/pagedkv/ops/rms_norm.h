/// \file
/// \brief `rms_norm`: scale every row of hidden states by the reciprocal of its root mean
/// square, then by a learned weight.
///
/// For each row x of `hidden_size` elements: `out = x / sqrt(mean(x²) + epsilon) * weight`.
/// The mean is a reduction over the row, so unlike the cache ops this one is not bit-exact
/// between implementations: each GPU version is compared with the float64 CPU reference within
/// reduction_tolerance() (pagedkv/agreement.h).
///
/// Worked example (hidden_size = 4, epsilon = 0): x = (1, -1, 1, -1) has mean(x²) = 1, so
/// out = x * weight; x = (2, 0, 0, 0) has mean(x²) = 1 too, and out = (2·w0, 0, 0, 0).
#pragma once

#include <cstdint>
#include <string_view>

#include <cuda_runtime_api.h>

#include "pagedkv/impl.h"
#include "pagedkv/op.h"
#include "pagedkv/row_layout.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief rms_norm: the op's arguments, its contract and its three implementations.
struct RmsNorm {
  /// \brief The upstream name.
  static constexpr const char* name = "rms_norm";

  /// \cond INTERNAL
  // out may be input itself (in place, as vLLM calls it): the contract itself rejects any
  // other overlap of the two. Read by check_outputs_apart().
  static constexpr bool may_share_memory(std::string_view output, std::string_view other) {
    return output == "out" && other == "input";
  }
  /// \endcond

  /// \brief The arguments, in vLLM's order and with vLLM's names (documented in arguments()).
  struct Args {
    /// \name Arguments (documented in RmsNorm::arguments)
    /// @{
    TensorView out;         ///< see RmsNorm::arguments()
    TensorView input;       ///< see RmsNorm::arguments()
    TensorView weight;      ///< see RmsNorm::arguments()
    double epsilon = 1e-6;  ///< see RmsNorm::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::out, "out", ArgKind::output,
        "[..., hidden_size], the shape and dtype of input, contiguous; the normalized rows");
    arg(&Args::input, "input", ArgKind::input,
        "[..., hidden_size] f32, f16 or bf16, 1 to 4 dimensions; the last dimension packed, the "
        "leading ones with any strides");
    arg(&Args::weight, "weight", ArgKind::input,
        "[hidden_size], the dtype of input, contiguous; multiplies every normalized row");
    arg(&Args::epsilon, "epsilon", ArgKind::real,
        "added to the mean square before the reciprocal square root (vLLM's default 1e-6)");
  }

  /// \brief What validate() derives from the arguments.
  struct Plan {
    RowLayout rows;         ///< where each row of input starts; out's rows are packed
    std::int64_t hidden_size = 0;  ///< elements per row
    DType dtype = DType::bf16;     ///< dtype of input, weight and out
    float epsilon = 0.f;           ///< as the kernels use it (vLLM casts it to float too)
  };

  /// \brief The contract: checks every argument for `impl` and returns the plan; throws
  /// InvalidArgument (naming the argument, the expected and the actual value) before anything
  /// is written. Zero rows is a valid call that writes nothing.
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: per row, the mean square in float64, then every output element
  /// computed in float64 and rounded to float32, then to the dtype (the tolerance covers it).
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA: one block per row, a shared-memory tree reduction.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream.
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA: 16-byte vectors, a CUB block reduction, the row kept in registers.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream.
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry: family, sources, byte model, workloads
  /// (core/entries/rms_norm.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
