/// \file
/// \brief One row of RMS normalization on the CPU, shared by the references of rms_norm and
/// fused_add_rms_norm (the second normalizes the sum it has just stored).
#pragma once

#include <cstdint>

#include "pagedkv/dtype.h"

namespace pagedkv::cpu {

/// \brief Stores `value` as one element of `dtype` (f32: as is; f16 / bf16: rounded to nearest
/// even by the project's numerics).
/// \param element where the element goes.
/// \param dtype f32, f16 or bf16.
/// \param value the value to store.
void store_activation(void* element, DType dtype, float value);

/// \brief out[i] = x[i] / sqrt(mean(x²) + epsilon) · weight[i] for one packed row, evaluated in
/// float64; each element is rounded to float, then stored as `dtype`.
/// \param row the row's hidden_size packed elements.
/// \param weight hidden_size packed elements.
/// \param out where the row's hidden_size packed results go (may be `row` itself).
/// \param dtype f32, f16 or bf16, of all three.
/// \param hidden_size elements per row (>= 1).
/// \param epsilon added to the mean square, as the kernels use it (a float).
void rms_norm_row(const std::uint8_t* row, const std::uint8_t* weight, std::uint8_t* out,
                  DType dtype, std::int64_t hidden_size, float epsilon);

}  // namespace pagedkv::cpu
