/// \file
/// \brief `gelu_and_mul`: the GeGLU gate with the exact GELU (PyTorch's approximate="none"),
/// `out = gelu(x) * y` with `gelu(x) = 0.5 x (1 + erf(x / sqrt(2)))`, x the first half of each
/// row of input and y the second. Its tanh approximation is the op gelu_tanh_and_mul.
///
/// Worked example (d = 1, f32): input row (1, 2): gelu(1) = 0.5 (1 + erf(0.7071)) = 0.8413;
/// out = 0.8413 · 2 = 1.6827.
#pragma once

#include "pagedkv/act_and_mul.h"

namespace pagedkv {

/// \brief gelu_and_mul: the arguments, contract and implementations of ActAndMul<gelu>.
struct GeluAndMul : ActAndMul<Activation::gelu> {
  /// \brief The upstream name.
  static constexpr const char* name = "gelu_and_mul";
  /// \brief The op's card in the registry (core/entries/gelu_and_mul.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
