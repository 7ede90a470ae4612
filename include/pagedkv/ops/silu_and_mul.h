/// \file
/// \brief `silu_and_mul`: the SwiGLU gate of Llama-style MLPs, `out = silu(x) * y` with
/// `silu(x) = x / (1 + exp(-x))`, x the first half of each row of input and y the second.
///
/// Worked example (d = 2, f32): input row (0, 2, 5, 3): silu(0) = 0, silu(2) = 2 / (1 + e^-2)
/// = 1.7616; out = (0 · 5, 1.7616 · 3) = (0, 5.2848).
#pragma once

#include "pagedkv/act_and_mul.h"

namespace pagedkv {

/// \brief silu_and_mul: the arguments, contract and implementations of ActAndMul<silu>.
struct SiluAndMul : ActAndMul<Activation::silu> {
  /// \brief The upstream name.
  static constexpr const char* name = "silu_and_mul";
  /// \brief The op's card in the registry (core/entries/silu_and_mul.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
