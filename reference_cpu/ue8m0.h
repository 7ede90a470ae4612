/// \file
/// \brief The UE8M0 scale of DeepSeek V4's K cache, on the CPU: a quant block's exponent
/// ceil(log2(amax / 448)) computed exactly from amax's bits, and the power of two a stored
/// exponent code stands for. Used by the CPU references of quantize_and_insert_k_cache and
/// dequantize_and_gather_k_cache; the kernels write the same steps out on their own
/// (kernels/deepseek_v4/ue8m0.cuh).
#pragma once

#include <cstdint>

namespace pagedkv::ue8m0 {

/// \brief The exponent e = ceil(log2(amax / 448)) of a block whose largest |element| is
/// `amax`: the smallest e with 448 × 2^e >= amax, so that every element / 2^e fits E4M3.
///
/// Exact, from the bits: amax = (1 + m / 2^23) × 2^(E - 127) and 448 = 1.75 × 2^8, so
/// amax / 448 = ((1 + m / 2^23) / 1.75) × 2^(E - 135). The first factor lies in (0.5, 1] when
/// the mantissa is at most 1.75's (m <= 0x600000) and in (1, 8/7) above it, so e is E - 135
/// or E - 134. No log2, no division: a float log2 returns a wrong integer for some exact powers
/// of two (the chapter shows one), and this rule is the same integer test on the CPU and GPU.
/// \param amax a positive normal fp32 (callers apply the 1e-4 floor first) or +inf.
/// \return the exponent: in [-22, 120] for a finite amax of at least 1e-4 (120 for bf16's
/// largest value); 128 for +inf, whose code is 255 as upstream's clamped +inf exponent.
int exponent_for(float amax);

/// \brief The UE8M0 code of exponent e: e + 127, clamped to [0, 255] (the clamp never binds
/// for an exponent_for() result).
/// \param exponent the block's exponent.
/// \return the byte stored in the scale record.
std::uint8_t code_of(int exponent);

/// \brief 2^-e as an fp32 (e in [-22, 120], so a normal number): elements are multiplied by
/// it, which is exact and equals the division by the scale 2^e. For e = 128 (an infinite
/// amax) it is 0: x × 0 equals upstream's x / inf (0, or NaN for the infinite element).
/// \param exponent the block's exponent.
/// \return 2^-exponent, or 0 for 128.
float inverse_scale(int exponent);

/// \brief The scale a stored code stands for, 2^(code - 127), as fp32: a normal number for
/// codes 1..254, 2^-127 (a subnormal) for code 0, +inf for code 255.
/// \param code the byte of the scale record.
/// \return the scale.
float scale_of_code(std::uint8_t code);

}  // namespace pagedkv::ue8m0
