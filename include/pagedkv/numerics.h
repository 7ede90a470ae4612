/// \file
/// \brief CPU numerics written out by hand: fp16, bf16 and fp8 (E4M3, E5M2) encode and decode.
///
/// Each function works on the raw bits so that a learner can follow every step: split sign,
/// exponent and mantissa, round to nearest even, saturate or keep NaN as the upstream cache
/// kernels do. Tests prove them bit-identical to the CUDA Toolkit's own conversions.
#pragma once

#include <cstdint>

namespace pagedkv::numerics {

/// \brief fp32 → fp16 bits, round to nearest even; overflow becomes ±inf, NaN stays NaN.
std::uint16_t float_to_half_bits(float value);
/// \brief fp16 bits → fp32 (exact).
float half_bits_to_float(std::uint16_t bits);
/// \brief fp32 → bf16 bits, round to nearest even; NaN stays NaN (quiet).
std::uint16_t float_to_bf16_bits(float value);
/// \brief bf16 bits → fp32 (exact).
float bf16_bits_to_float(std::uint16_t bits);

/// \brief fp32 → fp8 E4M3 (OCP "fn", max 448), round to nearest even, saturating: values beyond
/// ±448 (±inf included) become ±448; NaN becomes 0x7F / 0xFF.
std::uint8_t float_to_fp8_e4m3(float value);
/// \brief fp8 E4M3 → fp32 (exact).
float fp8_e4m3_to_float(std::uint8_t bits);
/// \brief fp32 → fp8 E5M2 (max 57344), round to nearest even, saturating (±inf → ±57344);
/// NaN stays NaN.
std::uint8_t float_to_fp8_e5m2(float value);
/// \brief fp8 E5M2 → fp32 (exact).
float fp8_e5m2_to_float(std::uint8_t bits);

}  // namespace pagedkv::numerics
