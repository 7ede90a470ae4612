// The RoPE pair rotation on the CPU (rope.h). Compiled with -ffp-contract=off (CMakeLists.txt):
// the products below stay rounded products, as the kernels' __fmul_rn.
#include "rope.h"

#include <cmath>
#include <cstring>

#include "cache_element.h"
#include "numerics.h"

namespace pagedkv::cpu {

RotatedPair rotate_pair(float x, float y, float c, float s) {
  const float y_sin = y * s;  // rounded to fp32, as the kernels' __fmul_rn
  const float x_sin = x * s;
  return {std::fma(x, c, -y_sin), std::fma(y, c, x_sin)};
}

void store_rotated(std::uint8_t* element, DType dtype, float value) {
  if (dtype == DType::f32) {
    // x86 keeps a NaN's payload; the GPU's arithmetic gives the canonical 0x7FFFFFFF.
    if (std::isnan(value)) {
      const std::uint32_t canonical = 0x7FFFFFFFu;
      std::memcpy(element, &canonical, 4);
    } else {
      std::memcpy(element, &value, 4);
    }
    return;
  }
  const std::uint16_t bits = dtype == DType::f16 ? numerics::float_to_half_bits(value)
                                                 : numerics::float_to_bf16_bits(value);
  std::memcpy(element, &bits, 2);
}

void rotate_head(std::uint8_t* rotated, const std::uint8_t* cos_sin_row, std::int64_t half,
                 bool is_neox, bool inverse, DType dtype, DType cache_dtype) {
  const std::int64_t bytes = dtype_size(dtype);
  const std::int64_t cache_bytes = dtype_size(cache_dtype);
  for (std::int64_t j = 0; j < half; ++j) {
    // NeoX pairs element j with element half + j; GPT-J pairs neighbours 2j, 2j + 1.
    std::uint8_t* x_at = rotated + (is_neox ? j : 2 * j) * bytes;
    std::uint8_t* y_at = rotated + (is_neox ? half + j : 2 * j + 1) * bytes;
    const float x = load_activation(x_at, dtype);
    const float y = load_activation(y_at, dtype);
    const float c = load_activation(cos_sin_row + j * cache_bytes, cache_dtype);
    const float s = load_activation(cos_sin_row + (half + j) * cache_bytes, cache_dtype);
    const RotatedPair pair = rotate_pair(x, y, c, inverse ? -s : s);
    store_rotated(x_at, dtype, pair.x);
    store_rotated(y_at, dtype, pair.y);
  }
}

}  // namespace pagedkv::cpu
