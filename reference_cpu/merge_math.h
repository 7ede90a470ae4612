/// \file
/// \brief merge_attn_states' per-(token, head) and per-element math on the CPU, shared by its
/// CPU reference, its registry case and its tests.
///
/// The float32 operations of upstream's CUDA kernel (vLLM
/// csrc/libtorch_stable/attention/merge_attn_states.cu, merge_attn_states_kernel), in its order,
/// with `exp` and `log` evaluated in float64 and rounded once to float: the float32 formula with
/// the best possible transcendentals, against which the GPU's `expf` (2 ulp) and `logf` (1 ulp)
/// are measured.
#pragma once

#include <cstdint>

namespace pagedkv::cpu {

/// \brief What one (token, head) of a merged token needs: the two scales and the merged LSE, or
/// the both-empty case.
struct MergeWeights {
  /// false when both LSEs count as −inf (two empty key sets): the prefix row is copied and the
  /// LSE is −inf; true otherwise (the scales apply).
  bool merge = true;
  float p_scale = 0.f;  ///< a / (a + b), a = exp(prefix_lse − max)
  float s_scale = 0.f;  ///< b / (a + b), b = exp(suffix_lse − max)
  float lse = 0.f;      ///< log(a + b) + max, or −inf when !merge
};

/// \brief Upstream's scales: an infinite LSE of either sign becomes −inf; M = fmax of the two
/// (a NaN loses to a number, as fmaxf); both −inf: no merge; else a = exp(lp − M),
/// b = exp(ls − M), p_scale = a / (a + b), s_scale = b / (a + b), lse = log(a + b) + M, each
/// operation a float32 operation with one rounding.
/// \param prefix_lse prefix_lse[h, t].
/// \param suffix_lse suffix_lse[h, t].
/// \return the weights.
MergeWeights merge_weights(float prefix_lse, float suffix_lse);

/// \brief One merged element in float32: `fma(p, p_scale, s · s_scale)`, the product of the
/// suffix rounded, the rest fused (what nvcc makes of upstream's
/// `p * p_scale + (s * s_scale)`).
/// \param p the prefix element, as float.
/// \param s the suffix element, as float.
/// \param weights the row's weights (merge == true).
/// \return the merged value, float32.
float merge_value(float p, float s, const MergeWeights& weights);

/// \brief The largest finite fp8 E4M3 value, upstream's clamp bound.
inline constexpr float kFp8E4m3Max = 448.0f;

/// \brief The fp8 output byte of one value: `e4m3(fmax(−448, fmin(value × scale_inverse,
/// 448)))`, round to nearest even. As fminf and fmaxf, the clamp turns a NaN into 448 (0x7E).
/// \param value the merged (or copied) value, float32.
/// \param scale_inverse `1.0f / output_scale` (an IEEE float division, done once per call).
/// \return the E4M3 byte.
std::uint8_t fp8_output(float value, float scale_inverse);

}  // namespace pagedkv::cpu
