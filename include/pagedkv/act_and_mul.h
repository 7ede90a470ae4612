/// \file
/// \brief What the gated activations `silu_and_mul`, `gelu_and_mul` and `gelu_tanh_and_mul`
/// share: their arguments, their contract and their three implementations, written once as
/// ActAndMul<kActivation>. Each op is a struct of its own (silu_and_mul.h, gelu_and_mul.h,
/// gelu_tanh_and_mul.h) that adds its upstream name and its registry card.
///
/// For each row of `input [..., 2 d]` (gate `x = input[..., :d]`, up `y = input[..., d:]`):
/// `out[..., i] = round_T(float(round_T(act(float(x_i)))) * float(y_i))`: the activation in
/// float32, rounded to the dtype T, then one product rounded to T (vLLM's rounding points,
/// which are also PyTorch's `F.silu(x) * y`).
///
/// Agreement (the ulp-bounded class): naive and optimized compute every element with the same
/// device function, so they are bit-identical to each other; each is within ulp_bound() ulps of
/// the CPU reference, the ulp taken at |x_i × y_i| (ulp_error() in pagedkv/agreement.h).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "pagedkv/dtype.h"
#include "pagedkv/impl.h"
#include "pagedkv/op.h"
#include "pagedkv/row_layout.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief The activation applied to the gate half.
enum class Activation {
  silu,       ///< `x / (1 + exp(-x))` (silu_and_mul)
  gelu,       ///< `0.5 x (1 + erf(x / sqrt(2)))`, GELU with approximate "none" (gelu_and_mul)
  gelu_tanh,  ///< `0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x³)))`, "tanh" (gelu_tanh_and_mul)
};

/// \brief The gated activation ops: arguments, contract and the three implementations.
/// \tparam kActivation the activation of the gate half.
template <Activation kActivation>
struct ActAndMul {
  /// \brief The activation this op applies.
  static constexpr Activation activation = kActivation;

  /// \brief The arguments, in vLLM's order and with vLLM's names (documented in arguments()).
  struct Args {
    /// \name Arguments (documented in ActAndMul::arguments)
    /// @{
    TensorView out;    ///< see ActAndMul::arguments()
    TensorView input;  ///< see ActAndMul::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::out, "out", ArgKind::output,
        "[..., d], the leading shape and the dtype of input, contiguous; act(gate) * up");
    arg(&Args::input, "input", ArgKind::input,
        "[..., 2 d] f32, f16 or bf16, 1 to 4 dimensions, the last one packed and even (gate "
        "in the first half, up in the second), the leading ones with any strides");
  }

  /// \brief What validate() derives from the arguments.
  struct Plan {
    RowLayout rows;             ///< where each row of input starts; out's rows are packed
    std::int64_t d = 0;         ///< elements of out per row (half of input's last dimension)
    DType dtype = DType::bf16;  ///< dtype of input and out
  };

  /// \brief The contract: checks every argument for `impl` and returns the plan; throws
  /// InvalidArgument (naming the argument, the expected and the actual value) before anything
  /// is written. Zero rows is a valid call that writes nothing.
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: per element, upstream's float32 formula with each transcendental
  /// (exp, erf, tanh) rounded correctly to float, rounded to T, times up, rounded to T.
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA: one thread per output element over a 1-D grid.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream.
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA: 16-byte vectors of gate, up and out, row-contiguous blocks.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream.
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The largest distance of a GPU output element from the CPU reference's, in ulps of
  /// the dtype at |gate × up|: 4 for f16 and bf16, 16 for f32. Derived from the CUDA math
  /// functions' documented 2-ulp errors (chapter "The model ops beside the cache"); not yet
  /// measured on a GPU.
  /// \param dtype f32, f16 or bf16.
  /// \return the bound.
  static double ulp_bound(DType dtype) { return dtype == DType::f32 ? 16.0 : 4.0; }
};

}  // namespace pagedkv
