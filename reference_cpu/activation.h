/// \file
/// \brief The gated activations' per-element math on the CPU, shared by the CPU reference of
/// silu_and_mul, gelu_and_mul and gelu_tanh_and_mul and by their tests.
#pragma once

#include "pagedkv/dtype.h"
#include "pagedkv/act_and_mul.h"

namespace pagedkv::cpu {

/// \brief The activation in float32 as upstream writes it (the same operations, in the same
/// order, the same float constants), with each transcendental (exp, erf, tanh) evaluated in
/// float64 and rounded to the nearest float: the float32 formula with the best possible
/// exp, erf and tanh, so that the GPU's 2-ulp versions are measured against it.
/// \param activation which activation.
/// \param x the gate element, as float.
/// \return act(x) in float32.
float activation_float(Activation activation, float x);

/// \brief One output element: `round_T(float(round_T(act(x))) · y)`, returned as float (the
/// value of the element of `dtype`).
/// \param activation which activation.
/// \param x the gate element (a value of `dtype`).
/// \param y the up element (a value of `dtype`).
/// \param dtype f32, f16 or bf16.
/// \return the output element's value.
float act_and_mul_element(Activation activation, float x, float y, DType dtype);

/// \brief `value` rounded to `dtype` (f32: itself; f16 / bf16: to nearest even), as float.
/// \param dtype f32, f16 or bf16.
/// \param value the value.
/// \return the rounded value.
float round_to(DType dtype, float value);

}  // namespace pagedkv::cpu
