// What the CPU references of process_kv and flatten_kv share. See turbomind_kv.h.
#include "turbomind_kv.h"

#include <cstring>

#include "cache_element.h"
#include "lmdeploy/turbomind_math.h"
#include "numerics.h"

namespace pagedkv::cpu::turbomind {

namespace tm = pagedkv::turbomind;

TokenPlace place_of(const TurbomindKvPlan& plan, std::int64_t head, std::int64_t row) {
  const std::int64_t heads = plan.layout.head_num;
  const std::int64_t rows = plan.block_seq_len;
  const std::int64_t data_bytes = plan.quant_bits * plan.layout.head_dim / 8;  // one row, one head
  const std::int64_t param_bytes = plan.quant_bits == 16 ? 0 : 4;  // [scale, zero]
  const std::int64_t region = plan.layer_offset;
  TokenPlace place;
  // Data: head h owns 2 × rows rows, K first; after all heads come the parameters.
  place.k_data = region + (2 * head) * rows * data_bytes + row * data_bytes;
  place.v_data = region + (2 * head + 1) * rows * data_bytes + row * data_bytes;
  const std::int64_t params = region + heads * 2 * rows * data_bytes;
  place.k_param = params + (2 * head) * rows * param_bytes + row * param_bytes;
  place.v_param = params + (2 * head + 1) * rows * param_bytes + row * param_bytes;
  return place;
}

float round_to(DType dtype, float x) {
  if (dtype == DType::f16) return numerics::half_bits_to_float(numerics::float_to_half_bits(x));
  return numerics::bf16_bits_to_float(numerics::float_to_bf16_bits(x));
}

void store_value(DType dtype, float x, std::uint8_t* out) {
  const std::uint16_t bits = dtype == DType::f16 ? numerics::float_to_half_bits(x)
                                                 : numerics::float_to_bf16_bits(x);
  std::memcpy(out, &bits, 2);
}

void rotate(const TurbomindKvPlan& plan, std::int64_t sequence, std::int64_t position,
            float* row) {
  const TurbomindRope& rope = plan.rope;
  if (rope.type == static_cast<int>(TurbomindRopeType::none)) return;
  const float scale_factor = rope.type == static_cast<int>(TurbomindRopeType::dynamic)
                                 ? tm::dynamic_scale_factor(rope.bases[sequence], rope.dim)
                                 : rope.scale_factor;
  const DType t = plan.dtype;
  for (int d = 0; d < rope.dim; d += 2) {
    float c, s;
    tm::rope_cos_sin(rope, tm::rope_inv_freq(rope, scale_factor, d), position, &c, &s);
    c = round_to(t, c);  // upstream: (T)c, (T)s, then the rotation in T
    s = round_to(t, s);
    const float x0 = row[d], x1 = row[d + 1];
    row[d] = round_to(t, round_to(t, c * x0) - round_to(t, s * x1));
    row[d + 1] = round_to(t, round_to(t, c * x1) + round_to(t, s * x0));
  }
}

void quantize_row(const TurbomindKvPlan& plan, const float* row, std::uint8_t* codes,
                  std::uint8_t* param) {
  const DType t = plan.dtype;
  const int bits = plan.quant_bits;
  const int dim = plan.layout.head_dim;
  // 1. The row's range (a NaN is skipped; −0 counts below +0).
  float lo = row[0], hi = row[0];
  for (int d = 1; d < dim; ++d) {
    lo = tm::min_of(lo, row[d]);
    hi = tm::max_of(hi, row[d]);
  }
  // 2. scale in float, rounded to T; zero is the minimum itself; inv = T(1 / scale).
  const float scale = round_to(t, tm::scale_of(lo, hi, bits));
  const float zero = lo;
  const float inv = round_to(t, 1.f / scale);
  store_value(t, scale, param);
  store_value(t, zero, param + 2);
  // 3. Codes: (x − zero) and × inv, each rounded to T, then to an integer.
  std::uint32_t code[128];
  for (int d = 0; d < dim; ++d) {
    const float shifted = round_to(t, row[d] - zero);
    code[d] = tm::code_of(round_to(t, shifted * inv), bits);
  }
  if (bits == 8) {
    for (int d = 0; d < dim; ++d) codes[d] = static_cast<std::uint8_t>(code[d]);
    return;
  }
  for (int group = 0; group < dim / 8; ++group) {  // int4: 8 codes per 32-bit word
    std::uint32_t word = 0;
    for (int e = 0; e < 8; ++e) word |= code[group * 8 + e] << tm::int4_shift(e);
    for (int byte = 0; byte < 4; ++byte)
      codes[group * 4 + byte] = static_cast<std::uint8_t>(word >> (8 * byte));
  }
}

void dequantize_row(const TurbomindKvPlan& plan, const std::uint8_t* codes,
                    const std::uint8_t* param, float* row) {
  const DType t = plan.dtype;
  const int dim = plan.layout.head_dim;
  if (plan.quant_bits == 16) {
    for (int d = 0; d < dim; ++d) row[d] = load_activation(codes + 2 * d, t);
    return;
  }
  const float scale = load_activation(param, t);
  const float zero = load_activation(param + 2, t);
  for (int d = 0; d < dim; ++d) {
    std::uint32_t code;
    if (plan.quant_bits == 8) {
      code = codes[d];
    } else {
      const int group = d / 8;
      const std::uint32_t word = static_cast<std::uint32_t>(codes[group * 4]) |
                                 static_cast<std::uint32_t>(codes[group * 4 + 1]) << 8 |
                                 static_cast<std::uint32_t>(codes[group * 4 + 2]) << 16 |
                                 static_cast<std::uint32_t>(codes[group * 4 + 3]) << 24;
      code = (word >> tm::int4_shift(d % 8)) & 0xFu;
    }
    row[d] = round_to(t, round_to(t, static_cast<float>(code) * scale) + zero);
  }
}

}  // namespace pagedkv::cpu::turbomind
