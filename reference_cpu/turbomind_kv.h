/// \file
/// \brief What the CPU references of process_kv and flatten_kv share: TurboMind's block layout
/// spelled out (not taken from the kernels' TurbomindLayout, so that a wrong formula cannot hide
/// in both), the activation type's arithmetic (each operation rounded to f16 / bf16), a row's
/// quantization and dequantization, and the rotation of a row.
#pragma once

#include <cstdint>

#include "pagedkv/dtype.h"
#include "pagedkv/ops/process_kv.h"

namespace pagedkv::cpu::turbomind {

/// \brief Byte offsets of one token's K and V codes and parameters in a block, from the block's
/// first byte. The layer region starts at layer_offset; in it come each head's K rows and V
/// rows, for all heads, then each head's K and V `[scale, zero]` pairs.
struct TokenPlace {
  std::int64_t k_data = 0;   ///< K codes of (head, row)
  std::int64_t v_data = 0;   ///< V codes
  std::int64_t k_param = 0;  ///< K [scale, zero]
  std::int64_t v_param = 0;  ///< V [scale, zero]
};

/// \brief Where head h's row `row` lies.
/// \param plan the plan (layout, layer offset).
/// \param head the KV head.
/// \param row the row in the block.
/// \return the offsets.
TokenPlace place_of(const TurbomindKvPlan& plan, std::int64_t head, std::int64_t row);

/// \brief x rounded to the activation type (f16 or bf16), as a float.
/// \param dtype f16 or bf16.
/// \param x the value.
/// \return the rounded value.
float round_to(DType dtype, float x);

/// \brief Rotates a row's first rope.dim dims in place, pairs (x[d], x[d + 1]), by `position`:
/// c, s from the shared float arithmetic (kernels/lmdeploy/turbomind_math.h), rounded to the
/// activation type, then x0' = T(T(c·x0) − T(s·x1)), x1' = T(T(c·x1) + T(s·x0)).
/// \param plan the plan (rope parameters, dtype).
/// \param sequence the sequence (its own base for "dynamic").
/// \param position the token's position.
/// \param row head_dim values of the activation type.
void rotate(const TurbomindKvPlan& plan, std::int64_t sequence, std::int64_t position, float* row);

/// \brief Quantizes one row (head_dim values of the activation type) and stores its codes at
/// `codes` and its [scale, zero] at `param`: min and max of the row, scale = T((max − min) ×
/// (1 / (2^bits − 1))), zero = min, inv = T(1 / scale), code = rne_sat(T(T(x − zero) × inv)).
/// int4 codes go 8 to a little-endian word, nibbles e0 e2 e4 e6 e1 e3 e5 e7.
/// \param plan the plan (dtype, bits, head_dim).
/// \param row the values.
/// \param codes where the codes go.
/// \param param where the two parameter values go (activation type bits).
void quantize_row(const TurbomindKvPlan& plan, const float* row, std::uint8_t* codes,
                  std::uint8_t* param);

/// \brief Reads one row back: x = T(T(code × scale) + zero) (policy 0: the values as stored).
/// \param plan the plan.
/// \param codes the row's codes (or values).
/// \param param its [scale, zero] (unused for policy 0).
/// \param row receives head_dim values.
void dequantize_row(const TurbomindKvPlan& plan, const std::uint8_t* codes,
                    const std::uint8_t* param, float* row);

/// \brief Stores a value as the activation type's bits.
/// \param dtype f16 or bf16.
/// \param x the value (already representable).
/// \param out where the 2 bytes go.
void store_value(DType dtype, float x, std::uint8_t* out);

}  // namespace pagedkv::cpu::turbomind
