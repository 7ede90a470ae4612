// The UE8M0 scale of DeepSeek V4's K cache on the CPU. See ue8m0.h.
#include "ue8m0.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace pagedkv::ue8m0 {

namespace {

std::uint32_t bits_of(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

float float_of(std::uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

}  // namespace

int exponent_for(float amax) {
  const std::uint32_t bits = bits_of(amax);
  const int biased_exponent = static_cast<int>((bits >> 23) & 0xFFu);  // E
  const std::uint32_t mantissa = bits & 0x007FFFFFu;                   // m
  // 448 = 1.75 × 2^8: its mantissa field is 0.75 × 2^23 = 0x600000.
  constexpr std::uint32_t kMantissaOf448 = 0x00600000u;
  // +inf (a block with an infinite element): upstream's log2 and ceil give +inf and its code
  // clamps to 255; e = 128 is that code.
  if (biased_exponent == 0xFF) return 128;
  return biased_exponent - 135 + (mantissa > kMantissaOf448 ? 1 : 0);
}

std::uint8_t code_of(int exponent) {
  return static_cast<std::uint8_t>(std::clamp(exponent + 127, 0, 255));
}

float inverse_scale(int exponent) {
  // e = 128 (an infinite amax): upstream divides by an infinite scale, x / inf, which is
  // x × 0 (0 for finite x, NaN for an infinite one).
  if (exponent >= 128) return 0.f;
  // 2^-e has the biased exponent 127 - e and a zero mantissa.
  return float_of(static_cast<std::uint32_t>(127 - exponent) << 23);
}

float scale_of_code(std::uint8_t code) {
  // 2^(code - 127): the code is the biased fp32 exponent itself; code 0 is below the normal
  // range, 2^-127 = the subnormal with mantissa bit 22 set.
  return code == 0 ? float_of(0x00400000u) : float_of(static_cast<std::uint32_t>(code) << 23);
}

}  // namespace pagedkv::ue8m0
