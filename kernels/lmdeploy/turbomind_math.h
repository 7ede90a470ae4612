/// \file
/// \brief The float arithmetic of TurboMind's K/V processing, written once for the host and the
/// device: the RoPE angles (exp2, log2, sin and cos of our own, every operation rounded to
/// nearest), the per-token statistics and the rounding of a code. The CPU reference and both
/// kernels call these very functions, so they compute the same bits.
///
/// Why our own transcendentals: upstream builds with `-use_fast_math`, so its `exp2f`,
/// `log2f` and `sincosf` are the GPU's approximate instructions (`ex2.approx`, `lg2.approx`,
/// `__sincosf`), which no CPU reproduces. Here each function is a short polynomial of
/// correctly rounded float operations (`__fmul_rn`, `__fmaf_rn` on the device, `*` and
/// `std::fma` on the host, whose translation unit is compiled with `-ffp-contract=off`), so the
/// host and the device agree bit for bit. Their accuracy (tests/test_process_kv.cpp measures
/// it against double precision) is a few float ulps over the angles of 65,536 positions, finer
/// than `__sincosf`; the chapter "LMDeploy TurboMind" says how far the stored K therefore is
/// from TurboMind's.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "pagedkv/turbomind_kv.h"

namespace pagedkv::turbomind {

/// \brief a × b, rounded once.
/// \param a a factor.
/// \param b a factor.
/// \return the product.
PAGEDKV_TM_FN float mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
/// \brief a + b, rounded once.
/// \param a a term.
/// \param b a term.
/// \return the sum.
PAGEDKV_TM_FN float add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
/// \brief a − b, rounded once.
/// \param a the minuend.
/// \param b the subtrahend.
/// \return the difference.
PAGEDKV_TM_FN float sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
/// \brief a × b + c, rounded once (a fused multiply-add).
/// \param a a factor.
/// \param b a factor.
/// \param c the addend.
/// \return the result.
PAGEDKV_TM_FN float fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
/// \brief a / b, correctly rounded (upstream's `fdividef` is the approximate division).
/// \param a the dividend.
/// \param b the divisor.
/// \return the quotient.
PAGEDKV_TM_FN float div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
/// \brief x rounded to the nearest integer, ties to even (`rintf`, exact on both sides).
/// \param x the value.
/// \return the integral value.
PAGEDKV_TM_FN float round_even(float x) {
#if defined(__CUDA_ARCH__)
  return rintf(x);
#else
  return std::rint(x);
#endif
}
/// \brief The bits of a float.
/// \param x the value.
/// \return its bits.
PAGEDKV_TM_FN std::uint32_t bits_of(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  std::uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
#endif
}
/// \brief The float of some bits.
/// \param bits the bits.
/// \return the value.
PAGEDKV_TM_FN float float_of(std::uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
#endif
}

/// \brief 2^x: x = n + f with n = rint(x) and |f| <= 1/2 (exact), 2^f by its Taylor
/// polynomial of degree 7 (error below 6e-9 relative), then scaled by 2^n in two exact steps.
/// \param x the exponent; results below the float range flush to 0, above it become inf.
/// \return 2^x.
PAGEDKV_TM_FN float exp2_rn(float x) {
  if (x != x) return x;
  if (x < -150.f) return 0.f;
  if (x > 128.f) return float_of(0x7F800000u);
  const float n = round_even(x);
  const float f = sub(x, n);
  float p = 0x1.ffcbfcp-17f;  // ln2^7 / 7!
  p = fma(p, f, 0x1.430912p-13f);
  p = fma(p, f, 0x1.5d87fep-10f);
  p = fma(p, f, 0x1.3b2ab6p-7f);
  p = fma(p, f, 0x1.c6b08ep-5f);
  p = fma(p, f, 0x1.ebfbe0p-3f);
  p = fma(p, f, 0x1.62e430p-1f);  // ln2
  p = fma(p, f, 1.f);
  const int e = static_cast<int>(n);
  const int half = e / 2;  // two powers of two, each a normal float for every e in [-150, 128]
  const float scale_a = float_of(static_cast<std::uint32_t>(half + 127) << 23);
  const float scale_b = float_of(static_cast<std::uint32_t>(e - half + 127) << 23);
  return mul(mul(p, scale_a), scale_b);
}

/// \brief log2(x) for a positive normal x: x = m × 2^e with m in [√½, √2), then
/// log2(m) = 2 / ln2 × atanh(s) with s = (m − 1) / (m + 1), an odd polynomial of degree 9 in s
/// (|s| <= 0.1716).
/// \param x the value (> 0; what pagedkv passes is a RoPE base >= 1).
/// \return log2(x).
PAGEDKV_TM_FN float log2_rn(float x) {
  if (!(x > 0.f)) return x == 0.f ? -float_of(0x7F800000u) : float_of(0x7FC00000u);
  std::uint32_t bits = bits_of(x);
  int e = 0;
  if ((bits >> 23) == 0) {  // subnormal: scale into the normal range first
    bits = bits_of(mul(x, 0x1p23f));
    e = -23;
  }
  if ((bits >> 23) >= 255) return x;  // inf
  e += static_cast<int>(bits >> 23) - 127;
  float m = float_of((bits & 0x007FFFFFu) | 0x3F800000u);  // [1, 2)
  if (m > 0x1.6a09e6p+0f) {  // √2
    m = mul(m, 0.5f);
    e += 1;
  }
  const float s = div(sub(m, 1.f), add(m, 1.f));
  const float z = mul(s, s);
  float p = 0x1.484b14p-2f;  // 2 / (9 ln2)
  p = fma(p, z, 0x1.a61762p-2f);
  p = fma(p, z, 0x1.2776c6p-1f);
  p = fma(p, z, 0x1.ec709ep-1f);
  p = fma(p, z, 0x1.715476p+1f);  // 2 / ln2
  return add(static_cast<float>(e), mul(s, p));
}

/// \brief sin(x) and cos(x): x − q·π/2 with q = rint(x · 2/π), reduced by three fused steps
/// (π/2 split in three floats), then the minimax polynomials of Cephes' sinf / cosf on
/// [−π/4, π/4] and the quadrant q mod 4. Accurate to a few ulps for |x| up to about 10^5.
/// \param x the angle, radians.
/// \param sin_x receives sin(x).
/// \param cos_x receives cos(x).
PAGEDKV_TM_FN void sincos_rn(float x, float* sin_x, float* cos_x) {
  if (!(x - x == 0.f)) {  // inf or NaN
    *sin_x = *cos_x = float_of(0x7FC00000u);
    return;
  }
  const float q = round_even(mul(x, 0x1.45f306p-1f));  // 2/π
  float r = fma(-q, 0x1.921fb6p+0f, x);
  r = fma(-q, -0x1.777a5cp-25f, r);
  r = fma(-q, -0x1.ee59dap-50f, r);
  const float z = mul(r, r);
  float ps = -0x1.9943f2p-13f;
  ps = fma(ps, z, 0x1.11073cp-7f);
  ps = fma(ps, z, -0x1.555546p-3f);
  const float sin_r = fma(mul(r, z), ps, r);
  float pc = 0x1.99eb9cp-16f;
  pc = fma(pc, z, -0x1.6c0c34p-10f);
  pc = fma(pc, z, 0x1.55554ap-5f);
  const float cos_r = fma(mul(z, z), pc, fma(-0.5f, z, 1.f));
  // q mod 4, exact for every finite q (floor is exact).
  const float quadrant_f = sub(q, mul(4.f, std::floor(mul(q, 0.25f))));
  const int quadrant = static_cast<int>(quadrant_f) & 3;
  // Quadrant 0: (sin r, cos r); 1: (cos r, −sin r); 2: (−sin r, −cos r); 3: (−cos r, sin r).
  // Written as selects, not a switch, so that the GPU computes it without branching.
  const float s = (quadrant & 1) != 0 ? cos_r : sin_r;
  const float c = (quadrant & 1) != 0 ? sin_r : cos_r;
  *sin_x = (quadrant & 2) != 0 ? -s : s;
  *cos_x = ((quadrant + 1) & 2) != 0 ? -c : c;
}

/// \brief min(max(x, 0), 1).
/// \param x the value.
/// \return x clamped to [0, 1].
PAGEDKV_TM_FN float clamp01(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }

/// \brief The scale factor −log2(base) / dim of a sequence's own base (dynamic NTK), computed
/// the same way on the host and the device (upstream computes it on the device with the
/// approximate `log2f`).
/// \param base the sequence's base.
/// \param dim rotated dims.
/// \return the scale factor.
PAGEDKV_TM_FN float dynamic_scale_factor(float base, int dim) {
  return div(-log2_rn(base), static_cast<float>(dim));
}

/// \brief The inverse frequency of the pair that starts at dim d (even), for `rope`'s type:
/// f = 2^(d · scale_factor), then
/// - default, linear, dynamic: inv_factor × f;
/// - yarn: f − f · α · (1 − inv_factor), with α = clamp(d · ramp_div_2 − ramp_mul_min, 0, 1);
/// - llama3: (1 − σ) · f · inv_factor + σ · f, with σ = clamp(α · f − β, 0, 1);
/// in upstream's order of operations (`rotary_embedding.h`: init_default, init_yarn,
/// init_llama3), each operation rounded once.
/// \param rope the parameters.
/// \param scale_factor rope.scale_factor, or the sequence's own (dynamic).
/// \param d the pair's first dim.
/// \return the inverse frequency.
PAGEDKV_TM_FN float rope_inv_freq(const TurbomindRope& rope, float scale_factor, int d) {
  const float dim = static_cast<float>(d);
  const float f = exp2_rn(mul(dim, scale_factor));
  switch (static_cast<TurbomindRopeType>(rope.type)) {
    case TurbomindRopeType::yarn: {
      const float alpha = clamp01(sub(mul(dim, rope.yarn_ramp_div_2), rope.yarn_ramp_mul_min));
      return sub(f, mul(mul(f, alpha), sub(1.f, rope.inv_factor)));
    }
    case TurbomindRopeType::llama3: {
      const float smooth = clamp01(sub(mul(rope.llama3_alpha, f), rope.llama3_beta));
      return add(mul(mul(sub(1.f, smooth), f), rope.inv_factor), mul(smooth, f));
    }
    default: return mul(rope.inv_factor, f);
  }
}

/// \brief cos and sin of the angle position × inv_freq, each times attention_scaling (1
/// except for yarn): what rotates the pair (x[d], x[d + 1]).
/// \param rope the parameters.
/// \param inv_freq rope_inv_freq() of the pair.
/// \param position the token's position in its sequence.
/// \param cos_out receives the scaled cosine.
/// \param sin_out receives the scaled sine.
PAGEDKV_TM_FN void rope_cos_sin(const TurbomindRope& rope, float inv_freq,
                                      std::int64_t position, float* cos_out, float* sin_out) {
  float s, c;
  sincos_rn(mul(static_cast<float>(position), inv_freq), &s, &c);
  *cos_out = mul(c, rope.attention_scaling);
  *sin_out = mul(s, rope.attention_scaling);
}

/// \brief Whether a is below b in the order min / max use: numbers as usual, and −0 below +0,
/// so that the smallest of a row does not depend on the order it is searched in (a warp's
/// butterfly or a loop). NaNs are skipped by min_of() and max_of().
/// \param a a value.
/// \param b a value.
/// \return a < b in that order.
PAGEDKV_TM_FN bool below(float a, float b) {
  return a < b || (a == b && (bits_of(a) >> 31) > (bits_of(b) >> 31));
}
/// \brief The smaller of a and b (below()); a NaN loses to a number.
/// \param a a value.
/// \param b a value.
/// \return the minimum.
PAGEDKV_TM_FN float min_of(float a, float b) {
  if (b != b) return a;
  if (a != a) return b;
  return below(b, a) ? b : a;
}
/// \brief The larger of a and b (below()); a NaN loses to a number.
/// \param a a value.
/// \param b a value.
/// \return the maximum.
PAGEDKV_TM_FN float max_of(float a, float b) {
  if (b != b) return a;
  if (a != a) return b;
  return below(a, b) ? b : a;
}

/// \brief The order min_of() and max_of() use, as an integer: a float's bits with the
/// magnitude bits flipped when the sign is set sort as the values do, and −0 (key −1) sorts just
/// below +0 (key 0). The optimized process_kv reduces rows with integer min / max over these
/// keys (one instruction each, no branch); tests check the two reductions agree bit for bit.
/// \param x a number (not NaN; see range_min_key()).
/// \return its key.
PAGEDKV_TM_FN std::int32_t order_key(float x) {
  const std::uint32_t bits = bits_of(x);
  const std::uint32_t negative = 0u - (bits >> 31);  // all ones for a set sign: no branch
  return static_cast<std::int32_t>(bits ^ (negative & 0x7FFFFFFFu));
}
/// \brief The float of a key (order_key() is its own inverse on the bits). The keys of an
/// all-NaN row, range_min_key()'s and range_max_key()'s NaN keys, come back as NaN.
/// \param key a key.
/// \return the float.
PAGEDKV_TM_FN float key_float(std::int32_t key) {
  const auto bits = static_cast<std::uint32_t>(key);
  const std::uint32_t negative = 0u - (bits >> 31);
  return float_of(bits ^ (negative & 0x7FFFFFFFu));
}
/// \brief x's key for a minimum: a NaN gets the largest key, so that it never wins (min_of()
/// skips a NaN).
/// \param x the value.
/// \return the key.
PAGEDKV_TM_FN std::int32_t range_min_key(float x) { return x != x ? 0x7FFFFFFF : order_key(x); }
/// \brief x's key for a maximum: a NaN gets the smallest key.
/// \param x the value.
/// \return the key.
PAGEDKV_TM_FN std::int32_t range_max_key(float x) {
  return x != x ? static_cast<std::int32_t>(0x80000000u) : order_key(x);
}

/// \brief The float scale of a row, before it is rounded to the activation type:
/// (max − min) × (1 / (2^bits − 1)), the reciprocal a correctly rounded constant.
/// \param min_value the row's smallest value.
/// \param max_value the row's largest value.
/// \param bits 8 or 4.
/// \return the scale.
PAGEDKV_TM_FN float scale_of(float min_value, float max_value, int bits) {
  const float inv_q_max = bits == 8 ? 0x1.010102p-8f : 0x1.111112p-4f;  // 1/255, 1/15
  return mul(sub(max_value, min_value), inv_q_max);
}

/// \brief The code of a scaled value: rounded to nearest even and saturated to [0, 2^bits − 1]
/// (upstream's `cvt.rni.sat.u8`, then `min(q, 15)` for int4); NaN gives 0.
/// \param value (x − zero) × inv_scale, as the activation type computed it.
/// \param bits 8 or 4.
/// \return the code.
PAGEDKV_TM_FN std::uint32_t code_of(float value, int bits) {
  const float q_max = bits == 8 ? 255.f : 15.f;
  if (!(value > 0.f)) return 0;  // negative, zero, NaN
  const float rounded = round_even(value);
  return rounded >= q_max ? static_cast<std::uint32_t>(q_max) : static_cast<std::uint32_t>(rounded);
}

/// \brief Where an element of 8 consecutive int4 codes goes in their 32-bit word: nibble k
/// holds e0, e2, e4, e6, e1, e3, e5, e7 (upstream's pack: OR with itself shifted by 12, then the
/// byte permute 0x5140).
/// \param element 0..7, the element's index in its group of 8.
/// \return the nibble's bit offset in the little-endian word.
PAGEDKV_TM_FN int int4_shift(int element) {
  return 4 * ((element & 1) * 4 + (element >> 1));
}

}  // namespace pagedkv::turbomind
