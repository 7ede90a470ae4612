/// \file
/// \brief The RoPE rotation of one pair on the CPU, shared by the references of
/// concat_and_cache_mla_rope_fused and rotary_embedding: exactly the kernels' fp32 operations
/// (kernels/mla/rope.cuh), and the store of a rotated value as the GPU stores it.
///
/// rope.cpp is compiled with -ffp-contract=off, so that `std::fma` is the one fused
/// multiply-add, where the kernels write `__fmaf_rn`; chapters/mla.md explains why this matters
/// for bit-exact agreement.
#pragma once

#include <cstdint>

#include "pagedkv/dtype.h"

namespace pagedkv::cpu {

/// \brief A rotated pair, in fp32.
struct RotatedPair {
  float x;  ///< the pair's first value
  float y;  ///< the pair's second value
};

/// \brief Rotates the pair (x, y) by the angle whose cosine and sine are c and s:
/// `(fma(x, c, −(y·s)), fma(y, c, x·s))`, each product and fma rounded once in fp32.
/// \param x the pair's first value.
/// \param y the pair's second value.
/// \param c the cosine.
/// \param s the sine.
/// \return the rotated pair.
RotatedPair rotate_pair(float x, float y, float c, float s);

/// \brief Stores a rotated value, rounded to nearest even, into one activation element; a NaN
/// is stored as the GPU's canonical NaN (x86 keeps the payload, the GPU's arithmetic does not).
/// \param element where the f32, f16 or bf16 element goes.
/// \param dtype f32, f16 or bf16.
/// \param value the value.
void store_rotated(std::uint8_t* element, DType dtype, float value);

/// \brief Rotates the `half` pairs of one head in place by the angles of one cos_sin_cache
/// row: load, rotate_pair(), store_rotated(), pair by pair.
/// \param rotated the head's first rotated element (rope_dim_offset already applied).
/// \param cos_sin_row the position's row: `half` cosines, then `half` sines.
/// \param half rot_dim / 2, the number of pairs.
/// \param is_neox pairs (j, half + j) (GPT-NeoX), else (2j, 2j + 1) (GPT-J).
/// \param inverse turn by the opposite angle (each sine negated, which is exact).
/// \param dtype the head's dtype: f32, f16 or bf16.
/// \param cache_dtype the row's dtype: f32, f16 or bf16.
void rotate_head(std::uint8_t* rotated, const std::uint8_t* cos_sin_row, std::int64_t half,
                 bool is_neox, bool inverse, DType dtype, DType cache_dtype);

}  // namespace pagedkv::cpu
