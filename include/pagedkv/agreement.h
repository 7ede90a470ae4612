/// \file
/// \brief The agreement rules that are not "bit for bit", written once: the ulp bound of the
/// element-wise ops with transcendentals (silu, gelu) and the tolerance of reductions (norms,
/// attention, merges).
///
/// Element-wise ops with transcendentals: the GPU's `expf`, `erff` and `tanhf` are not the CPU's,
/// so naive and optimized (the same device math) are bit-identical to each other and each is
/// within a stated number of units in the last place of the output dtype of the CPU reference
/// (ulp_error()). Chapter "The model ops beside the cache" explains the unit.
///
/// Copy, quantize and index ops are bit-identical across the three implementations. A
/// reduction is not: the GPU sums in float32 in an order of its own. Each GPU version is
/// therefore compared with the CPU reference, which evaluates in float64 and rounds each output
/// element once, by the norm-wise relative error
/// \code
/// rel_err = ||gpu - reference||_2 / ||reference||_2
/// \endcode
/// which must stay within reduction_tolerance(). Chapter "Normalizing hidden states", section
/// "How close is close enough", derives the bound.
#pragma once

#include <cstdint>

#include "pagedkv/dtype.h"

namespace pagedkv {

/// \brief Unit roundoff of a floating-point dtype: 2^-p for a p-bit significand (f32 2^-24,
/// f16 2^-11, bf16 2^-8), the largest relative error of one rounding to nearest.
/// \param dtype f32, f16 or bf16.
/// \return the unit roundoff.
double unit_roundoff(DType dtype);

/// \brief Largest acceptable norm-wise relative error of a GPU result whose elements each come
/// from a float32 reduction over `reduced_length` terms, rounded to `output` dtype:
/// \code
/// 2 u_out + (8 sqrt(n) + 8) u_f32
/// \endcode
/// Two output roundings (the GPU's and the reference's: they may round the same value to
/// neighbouring numbers), plus the float32 work: the sum of n squares, whose error grows like
/// sqrt(n) u_f32 for rounding errors of random sign (with a factor 8 to spare), and a few
/// single operations (rsqrtf's 2 ulp, the products).
/// \param output dtype of the output elements.
/// \param reduced_length terms in each reduction (hidden_size for a norm).
/// \return the tolerance.
double reduction_tolerance(DType output, std::int64_t reduced_length);

/// \brief Largest acceptable norm-wise relative error of a paged attention output (and of its
/// workspaces) against the float64 CPU reference:
/// \code
/// 3 u_out + (8 sqrt(context_length) + 8 sqrt(head_size) + 64) u_f32
/// \endcode
/// Two output roundings (GPU and reference), plus one unit for the probabilities, which the
/// GPU rounds to the output dtype from float32 estimates that may land on the other side of a
/// rounding boundary than the exact value (and which the optimized v1 rounds per 512-token
/// partition, where upstream rounds once per sequence); then the float32 work: the dot
/// products over head_size terms and the sums over up to context_length tokens (errors of
/// random sign, factor 8 to spare), and 64 units for `__expf` (at most 2 + 1.2 |x| units for
/// the terms that matter, |x| < 17), the epsilons 1e-6 of the denominators where the GPU's
/// merge order adds them differently (17 units), and a few single operations. Chapter
/// "Attention over a paged cache", section "How close is close enough", derives it.
/// \param output dtype of the output (f32 for exp_sums and max_logits).
/// \param context_length the longest sequence (max_seq_len).
/// \param head_size elements per head.
/// \return the tolerance.
double attention_tolerance(DType output, std::int64_t context_length, std::int64_t head_size);

/// \brief Norm-wise relative error of `count` elements of `dtype` at `actual` against the
/// same elements at `reference` (both host memory): ||a - r|| / ||r||, computed in float64.
/// A NaN or infinity anywhere gives infinity; an all-zero reference gives ||a||.
/// \param actual the elements to judge.
/// \param reference the reference elements.
/// \param dtype f32, f16 or bf16.
/// \param count number of elements.
/// \return the relative error.
double relative_error(const void* actual, const void* reference, DType dtype, std::int64_t count);

/// \brief One unit in the last place of `dtype` at `magnitude`: the distance between two
/// neighbouring numbers of the dtype around it (f32: 2^(e-23), f16: 2^(e-10), bf16: 2^(e-7),
/// fp8 E4M3: 2^(e-3) for 2^e <= magnitude < 2^(e+1)); below the smallest normal the subnormal
/// spacing, above the largest finite number the spacing at the largest finite number.
/// \param dtype f32, f16, bf16 or f8_e4m3 (merge_attn_states' fp8 output).
/// \param magnitude a non-negative value (infinity allowed).
/// \return the ulp.
double ulp_of(DType dtype, double magnitude);

/// \brief The ulp-bounded rule's distance of one element: |actual - reference| in ulps of
/// `dtype` at `magnitude` (ulp_of()). Two NaNs, or equal values, give 0; a NaN or infinity
/// against anything else gives infinity.
/// \param actual the element to judge.
/// \param reference the reference element.
/// \param magnitude where the ulp is taken (the op says: e.g. |gate × up| for act_and_mul).
/// \param dtype f32, f16, bf16 or f8_e4m3.
/// \return the distance in ulps.
double ulp_error(double actual, double reference, double magnitude, DType dtype);

}  // namespace pagedkv
