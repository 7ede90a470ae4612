// One row of RMS normalization on the CPU: the specification in code (vLLM
// vllm/model_executor/layers/layernorm.py: RMSNorm.forward_native, with the single rounding of
// csrc/layernorm_kernels.cu's newest rms_norm_kernel).
//
// The reference is deliberately more accurate than the kernels, so that it measures them:
//   - the sum of squares, the mean, the reciprocal square root and both products are evaluated
//     in float64 (the kernels use float32 and the approximate rsqrtf);
//   - each result is rounded to float32, then stored as the row's dtype by the project's
//     numerics. For f16 / bf16 that is two roundings (float64 → float32 → T), which can differ
//     from one direct rounding by one unit in the last place of T on rare near-ties: a
//     difference the agreement tolerance already allows (its 2 u_out term).
// Because the square sum is float64, a row whose squares overflow float32 (|x| above about
// 1.8e19, possible in f32 and bf16) still gets its exact answer here, while the kernels' float32
// sum becomes infinity and their rows come out as zeros (tests document both).
#include "norm_row.h"

#include <cmath>
#include <cstring>

#include "cache_element.h"
#include "numerics.h"
#include "pagedkv/error.h"

namespace pagedkv::cpu {

void store_activation(void* element, DType dtype, float value) {
  switch (dtype) {
    case DType::f32:
      std::memcpy(element, &value, sizeof value);
      return;
    case DType::f16: {
      const std::uint16_t bits = numerics::float_to_half_bits(value);
      std::memcpy(element, &bits, sizeof bits);
      return;
    }
    case DType::bf16: {
      const std::uint16_t bits = numerics::float_to_bf16_bits(value);
      std::memcpy(element, &bits, sizeof bits);
      return;
    }
    default:
      break;
  }
  reject("store_activation: dtype must be f32, f16 or bf16, got ", dtype_name(dtype));
}

void rms_norm_row(const std::uint8_t* row, const std::uint8_t* weight, std::uint8_t* out,
                  DType dtype, std::int64_t hidden_size, float epsilon) {
  const std::int64_t element_bytes = dtype_size(dtype);

  // 1. The mean of the squares, in float64.
  double sum_of_squares = 0.0;
  for (std::int64_t i = 0; i < hidden_size; ++i) {
    const double x = load_activation(row + i * element_bytes, dtype);
    sum_of_squares += x * x;
  }
  const double mean_square = sum_of_squares / static_cast<double>(hidden_size);

  // 2. The reciprocal root mean square (a zero row with epsilon = 0 gives 1 / 0 = inf, and its
  //    outputs 0 · inf = NaN, as on the GPU).
  const double inverse_rms = 1.0 / std::sqrt(mean_square + static_cast<double>(epsilon));

  // 3. Every element scaled, weighted, rounded. Each x[i] is read before out[i] is written, so
  //    out may be the row itself (in place).
  for (std::int64_t i = 0; i < hidden_size; ++i) {
    const double x = load_activation(row + i * element_bytes, dtype);
    const double w = load_activation(weight + i * element_bytes, dtype);
    const double y = x * inverse_rms * w;
    store_activation(out + i * element_bytes, dtype, static_cast<float>(y));
  }
}

}  // namespace pagedkv::cpu
