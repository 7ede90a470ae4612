/// \file
/// \brief `gelu_tanh_and_mul`: the GeGLU gate with GELU's tanh approximation (PyTorch's
/// approximate="tanh"), `out = gelu_tanh(x) * y` with
/// `gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x³)))`.
///
/// Worked example (d = 1, f32): input row (1, 2): sqrt(2/pi) (1 + 0.044715) = 0.8336,
/// tanh(0.8336) = 0.6827, gelu_tanh(1) = 0.8412; out = 1.6824.
#pragma once

#include "pagedkv/act_and_mul.h"

namespace pagedkv {

/// \brief gelu_tanh_and_mul: the arguments, contract and implementations of
/// ActAndMul<gelu_tanh>.
struct GeluTanhAndMul : ActAndMul<Activation::gelu_tanh> {
  /// \brief The upstream name.
  static constexpr const char* name = "gelu_tanh_and_mul";
  /// \brief The op's card in the registry (core/entries/gelu_tanh_and_mul.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
