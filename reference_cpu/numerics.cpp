// CPU numerics written out by hand: fp32 <-> fp16, bf16, fp8 E4M3 and fp8 E5M2.
//
// Every narrow format here is "sign | exponent | mantissa" with an exponent bias, exactly like
// fp32. So one routine, round_magnitude(), rounds any finite fp32 magnitude to any of them
// (round to nearest, ties to even, subnormals included), and each format's encoder only adds
// what is special about it: what happens on overflow, to infinities and to NaN.
//
// The special cases copy what the CUDA Toolkit does (cuda_fp16.hpp, cuda_bf16.hpp,
// cuda_fp8.hpp, host paths; tests/test_numerics.cpp proves every case bit for bit):
//   fp32 -> fp16   overflow rounds to +-inf; any NaN becomes 0x7FFF (sign dropped).
//   fp32 -> bf16   overflow rounds to +-inf; any NaN becomes 0x7FFF (sign dropped).
//   fp32 -> fp8    __NV_SATFINITE: beyond max finite (+-inf too) gives +-max finite;
//                  any NaN becomes 0x7F (sign dropped), for E4M3 and E5M2 alike.
//   fp16 -> fp32   exact; any NaN becomes 0x7FFFFFFF.
//   bf16 -> fp32   exact; the 16 bits are the top half of the fp32 (NaN payload kept).
//   fp8  -> fp32   exact (via fp16, as __nv_cvt_fp8_to_halfraw); any NaN becomes 0x7FFFFFFF.
//
// No hardware or library conversion is used: only integer operations on the bits.
#include "numerics.h"

#include <cstring>

namespace pagedkv::numerics {
namespace {

// ---------------------------------------------------------------------------------------------
// fp32 layout: 1 sign bit | 8 exponent bits (bias 127) | 23 mantissa bits.
constexpr int kFloatMantissaBits = 23;
constexpr std::uint32_t kFloatSignMask = 0x80000000u;
constexpr std::uint32_t kFloatAbsMask = 0x7FFFFFFFu;
constexpr std::uint32_t kFloatInfBits = 0x7F800000u;  // exponent all ones, mantissa 0
constexpr std::uint32_t kFloatCanonicalNan = 0x7FFFFFFFu;  // the toolkit's "canonical" NaN

std::uint32_t bits_of(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);  // memcpy is the well-defined way to read the bits
  return bits;
}

float float_of(std::uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// ---------------------------------------------------------------------------------------------
// Rounds the magnitude of a FINITE fp32 (sign bit already cleared) to a narrow format with
// `exponent_bits` exponent bits and `mantissa_bits` mantissa bits, round to nearest, ties to
// even. Returns the narrow encoding of the magnitude, without sign. The exponent range is not
// bounded above: a result at or past the format's infinity / NaN encodings means "overflow", and
// each caller decides what overflow becomes.
//
// Idea: every fp32 is an integer significand times a power of two,
//     value = significand * 2^(exponent - 23),   significand < 2^24.
// Every narrow value near it is q * 2^(E - mantissa_bits) with q < 2^(mantissa_bits + 1), where E
// is the value's exponent, but never below the narrow format's smallest normal exponent (below
// it the narrow format has subnormals: fixed exponent, no implicit 1). So q is the significand
// shifted right by (23 - mantissa_bits) + (E - exponent) bits, rounded.
std::uint32_t round_magnitude(std::uint32_t magnitude_bits, int exponent_bits, int mantissa_bits) {
  // 1. Split the fp32 into exponent and significand.
  const int biased_exponent = static_cast<int>(magnitude_bits >> kFloatMantissaBits);
  std::uint32_t significand = magnitude_bits & 0x7FFFFFu;
  int exponent;
  if (biased_exponent == 0) {
    exponent = -126;  // fp32 subnormal: same scale as the smallest normal, but no implicit 1
  } else {
    exponent = biased_exponent - 127;
    significand |= 1u << kFloatMantissaBits;  // the implicit leading 1 of a normal number
  }

  // 2. The narrow format's bias and smallest normal exponent (E4M3: bias 7, min exponent -6).
  const int bias = (1 << (exponent_bits - 1)) - 1;
  const int min_normal_exponent = 1 - bias;
  const int target_exponent = exponent < min_normal_exponent ? min_normal_exponent : exponent;

  // 3. How many low bits of the significand do not fit: the mantissa is shorter, and a value
  //    below the smallest normal loses one more bit per step below it.
  const int shift = (kFloatMantissaBits - mantissa_bits) + (target_exponent - exponent);
  if (shift > 24) {
    // The significand (< 2^24) is less than half of the smallest step 2^shift: rounds to 0.
    return 0;
  }

  // 4. Round to nearest, ties to even: compare the dropped bits with half a step.
  std::uint32_t q = significand >> shift;
  const std::uint32_t dropped = significand & ((1u << shift) - 1u);
  const std::uint32_t half_step = 1u << (shift - 1);  // shift >= 1 for all our formats
  if (dropped > half_step || (dropped == half_step && (q & 1u) != 0u)) {
    q += 1;  // may carry into the next power of two; step 5 handles that for free
  }

  // 5. Assemble the encoding. For a normal result q = 2^mantissa_bits + mantissa, and the
  //    field wanted is (target_exponent + bias) << mantissa_bits | mantissa. Writing it as
  //        ((target_exponent + bias - 1) << mantissa_bits) + q
  //    lets q's leading 1 add the missing 1 to the exponent field. The same sum is right for a
  //    subnormal result (target_exponent + bias - 1 == 0, q has no leading 1), for a subnormal
  //    that rounded up to the smallest normal, and for a mantissa that rounded up to the next
  //    exponent (q == 2^(mantissa_bits + 1) carries one more into the exponent field).
  return (static_cast<std::uint32_t>(target_exponent + bias - 1) << mantissa_bits) + q;
}

// ---------------------------------------------------------------------------------------------
// Decodes a narrow format with fewer exponent bits than fp32 (fp16, E4M3, E5M2), given that
// the caller has already dealt with infinity and NaN. Every such value is exactly representable
// as an fp32, usually as a normal number, so only the fields move.
float decode_finite(std::uint32_t bits, int exponent_bits, int mantissa_bits) {
  const std::uint32_t sign = (bits >> (exponent_bits + mantissa_bits)) & 1u;
  int biased_exponent = static_cast<int>((bits >> mantissa_bits) & ((1u << exponent_bits) - 1u));
  std::uint32_t mantissa = bits & ((1u << mantissa_bits) - 1u);
  const int bias = (1 << (exponent_bits - 1)) - 1;

  std::uint32_t result = sign << 31;
  if (biased_exponent == 0) {
    if (mantissa == 0) return float_of(result);  // +-0
    // Subnormal: value = mantissa * 2^(1 - bias - mantissa_bits). Normalise it: shift the
    // mantissa left until its highest 1 sits at the implicit-bit position, lowering the
    // exponent once per shift. fp32's wider exponent range always has room for the result.
    biased_exponent = 1;
    while ((mantissa & (1u << mantissa_bits)) == 0u) {
      mantissa <<= 1;
      biased_exponent -= 1;
    }
    mantissa &= (1u << mantissa_bits) - 1u;  // drop the now implicit leading 1
  }
  // Re-bias the exponent for fp32 and left-align the mantissa in fp32's 23 bits.
  const std::uint32_t float_exponent = static_cast<std::uint32_t>(biased_exponent - bias + 127);
  result |= float_exponent << kFloatMantissaBits;
  result |= mantissa << (kFloatMantissaBits - mantissa_bits);
  return float_of(result);
}

}  // namespace

// ============================================================================ fp16 (1 | 5 | 10)
std::uint16_t float_to_half_bits(float value) {
  const std::uint32_t bits = bits_of(value);
  const std::uint16_t sign = static_cast<std::uint16_t>((bits & kFloatSignMask) >> 16);
  const std::uint32_t magnitude = bits & kFloatAbsMask;
  if (magnitude > kFloatInfBits) return 0x7FFF;                     // NaN: canonical, no sign
  if (magnitude == kFloatInfBits) return sign | 0x7C00;             // +-inf stays inf
  std::uint32_t rounded = round_magnitude(magnitude, 5, 10);
  if (rounded >= 0x7C00u) rounded = 0x7C00u;  // past 65504 (after rounding): overflow to inf
  return static_cast<std::uint16_t>(sign | rounded);
}

float half_bits_to_float(std::uint16_t bits) {
  if ((bits & 0x7C00u) == 0x7C00u) {  // exponent all ones: infinity or NaN
    if ((bits & 0x03FFu) != 0u) return float_of(kFloatCanonicalNan);  // NaN: canonical
    return float_of((static_cast<std::uint32_t>(bits & 0x8000u) << 16) | kFloatInfBits);
  }
  return decode_finite(bits, 5, 10);
}

// ============================================================================ bf16 (1 | 8 | 7)
// bf16 has fp32's exponent, so a bf16 is just the top 16 bits of an fp32; encoding is rounding
// away the low 16 mantissa bits.
std::uint16_t float_to_bf16_bits(float value) {
  const std::uint32_t bits = bits_of(value);
  const std::uint16_t sign = static_cast<std::uint16_t>((bits & kFloatSignMask) >> 16);
  const std::uint32_t magnitude = bits & kFloatAbsMask;
  if (magnitude > kFloatInfBits) return 0x7FFF;          // NaN: canonical, no sign
  if (magnitude == kFloatInfBits) return sign | 0x7F80;  // +-inf
  // Same exponent range as fp32, so rounding the largest finite values up reaches exactly the
  // inf encoding 0x7F80 (overflow to inf) and never goes beyond it.
  return static_cast<std::uint16_t>(sign | round_magnitude(magnitude, 8, 7));
}

float bf16_bits_to_float(std::uint16_t bits) {
  return float_of(static_cast<std::uint32_t>(bits) << 16);  // exact, NaN payload kept
}

// ===================================================================== fp8 E4M3 fn (1 | 4 | 3)
// OCP "fn" variant: no infinities; exponent 1111 holds normal numbers up to 448 (0x7E), and only
// 0x7F / 0xFF (all ones) is NaN.
std::uint8_t float_to_fp8_e4m3(float value) {
  const std::uint32_t bits = bits_of(value);
  const std::uint8_t sign = static_cast<std::uint8_t>((bits & kFloatSignMask) >> 24);
  const std::uint32_t magnitude = bits & kFloatAbsMask;
  if (magnitude > kFloatInfBits) return 0x7F;  // NaN: 0x7F whatever the input's sign
  constexpr std::uint32_t kMaxFinite = 0x7E;   // 448 = 1.75 * 2^8
  // Saturate (__NV_SATFINITE): +-inf, and anything that rounds past 448, becomes +-448.
  // (+-inf must be caught first: round_magnitude only takes finite values.)
  if (magnitude == kFloatInfBits) return sign | kMaxFinite;
  std::uint32_t rounded = round_magnitude(magnitude, 4, 3);
  if (rounded > kMaxFinite) rounded = kMaxFinite;
  return static_cast<std::uint8_t>(sign | rounded);
}

float fp8_e4m3_to_float(std::uint8_t bits) {
  if ((bits & 0x7Fu) == 0x7Fu) return float_of(kFloatCanonicalNan);  // the only NaN encoding
  return decode_finite(bits, 4, 3);  // exponent 1111 is an ordinary exponent here
}

// ========================================================================= fp8 E5M2 (1 | 5 | 2)
// IEEE-like: exponent 11111 is inf (mantissa 0) or NaN (mantissa != 0); max finite 57344 (0x7B).
std::uint8_t float_to_fp8_e5m2(float value) {
  const std::uint32_t bits = bits_of(value);
  const std::uint8_t sign = static_cast<std::uint8_t>((bits & kFloatSignMask) >> 24);
  const std::uint32_t magnitude = bits & kFloatAbsMask;
  if (magnitude > kFloatInfBits) return 0x7F;  // NaN: 0x7F whatever the input's sign
  constexpr std::uint32_t kMaxFinite = 0x7B;   // 57344 = 1.75 * 2^15
  // Saturate: even though E5M2 has an infinity, __NV_SATFINITE never produces it.
  if (magnitude == kFloatInfBits) return sign | kMaxFinite;
  std::uint32_t rounded = round_magnitude(magnitude, 5, 2);
  if (rounded > kMaxFinite) rounded = kMaxFinite;
  return static_cast<std::uint8_t>(sign | rounded);
}

float fp8_e5m2_to_float(std::uint8_t bits) {
  if ((bits & 0x7Cu) == 0x7Cu) {  // exponent all ones: infinity or NaN
    if ((bits & 0x03u) != 0u) return float_of(kFloatCanonicalNan);
    return float_of((static_cast<std::uint32_t>(bits & 0x80u) << 24) | kFloatInfBits);
  }
  return decode_finite(bits, 5, 2);
}

}  // namespace pagedkv::numerics
