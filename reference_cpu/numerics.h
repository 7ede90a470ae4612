/// \file
/// \brief CPU numerics written out by hand: fp16, bf16 and fp8 (E4M3, E5M2) encode and decode.
///
/// Each function works on the raw bits so that a learner can follow every step: split sign,
/// exponent and mantissa, round to nearest even, saturate or keep NaN as the upstream cache
/// kernels do. Tests prove them bit-identical to the CUDA Toolkit's own conversions (all 2^32
/// fp32 inputs were checked once; the test suite checks every 16-bit and 8-bit input and more
/// than 10 million fp32 inputs on every run).
///
/// NaN follows the toolkit: a NaN result is always the positive "canonical" NaN of the target
/// format (fp16 / bf16 0x7FFF, fp8 0x7F, fp32 0x7FFFFFFF); only bf16 → fp32 keeps the payload.
#pragma once

#include <cstdint>

namespace pagedkv::numerics {

/// \brief fp32 → fp16 bits, round to nearest even (subnormals included).
///
/// Values that round past 65504 become ±inf (0x7C00 / 0xFC00); ±inf stays ±inf; any NaN
/// becomes 0x7FFF. Same as `__float2half_rn`.
/// \param value the fp32 value.
/// \return the fp16 bit pattern.
std::uint16_t float_to_half_bits(float value);

/// \brief fp16 bits → fp32 (exact); any NaN becomes 0x7FFFFFFF. Same as `__half2float`.
/// \param bits the fp16 bit pattern.
/// \return the value as fp32.
float half_bits_to_float(std::uint16_t bits);

/// \brief fp32 → bf16 bits, round to nearest even.
///
/// Values that round past the largest bf16 become ±inf; any NaN becomes 0x7FFF. Same as
/// `__float2bfloat16_rn`.
/// \param value the fp32 value.
/// \return the bf16 bit pattern.
std::uint16_t float_to_bf16_bits(float value);

/// \brief bf16 bits → fp32 (exact: the bits become the top half of the fp32, NaN payload kept).
/// Same as `__bfloat162float` on the host.
/// \param bits the bf16 bit pattern.
/// \return the value as fp32.
float bf16_bits_to_float(std::uint16_t bits);

/// \brief fp32 → fp8 E4M3 (OCP "fn", max 448), round to nearest even, saturating.
///
/// Values that round past ±448, ±inf included, become ±448 (0x7E / 0xFE); any NaN becomes
/// 0x7F. Same as `__nv_cvt_float_to_fp8(value, __NV_SATFINITE, __NV_E4M3)`.
/// \param value the fp32 value (for a cache store: `float(x) / scale`).
/// \return the fp8 byte.
std::uint8_t float_to_fp8_e4m3(float value);

/// \brief fp8 E4M3 → fp32 (exact); 0x7F and 0xFF (the only NaNs) become 0x7FFFFFFF.
/// Same as `__nv_cvt_fp8_to_halfraw(bits, __NV_E4M3)` followed by `__half2float`.
/// \param bits the fp8 byte.
/// \return the value as fp32.
float fp8_e4m3_to_float(std::uint8_t bits);

/// \brief fp32 → fp8 E5M2 (max 57344), round to nearest even, saturating.
///
/// Values that round past ±57344, ±inf included, become ±57344 (0x7B / 0xFB): E5M2 has an
/// infinity but the saturating conversion never produces it. Any NaN becomes 0x7F. Same as
/// `__nv_cvt_float_to_fp8(value, __NV_SATFINITE, __NV_E5M2)`.
/// \param value the fp32 value (for a cache store: `float(x) / scale`).
/// \return the fp8 byte.
std::uint8_t float_to_fp8_e5m2(float value);

/// \brief fp8 E5M2 → fp32 (exact); ±inf stays ±inf, any NaN becomes 0x7FFFFFFF.
/// Same as `__nv_cvt_fp8_to_halfraw(bits, __NV_E5M2)` followed by `__half2float`.
/// \param bits the fp8 byte.
/// \return the value as fp32.
float fp8_e5m2_to_float(std::uint8_t bits);

}  // namespace pagedkv::numerics
