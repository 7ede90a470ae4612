// CPU reference of silu_and_mul, gelu_and_mul and gelu_tanh_and_mul (vLLM
// csrc/activation_kernels.cu: silu_kernel, gelu_kernel, gelu_tanh_kernel inside
// act_and_mul_kernel): plain loops over rows and elements.
//
// Per element, upstream's rounding points: the activation in float32, rounded to the dtype T;
// the product with up computed in float32 and rounded to T, as the kernels do. For f16 and bf16
// that product is exact in float32 (11 + 11 and 8 + 8 significand bits fit in 24; for bf16,
// unless it leaves float32's normal range). The one place the CPU differs from the GPU
// on purpose: exp, erf and tanh are evaluated in float64 and rounded once to float, where the
// GPU's expf, erff and tanhf are within 2 ulp (CUDA C Programming Guide, Mathematical
// Functions). Hence the ulp-bounded agreement (pagedkv/agreement.h).
#include "pagedkv/act_and_mul.h"

#include <cmath>
#include <cstdint>

#include "activation.h"
#include "cache_element.h"
#include "norm_row.h"

namespace pagedkv::cpu {

float round_to(DType dtype, float value) {
  if (dtype == DType::f32) return value;
  std::uint8_t element[4];
  store_activation(element, dtype, value);
  return load_activation(element, dtype);
}

float activation_float(Activation activation, float x) {
  switch (activation) {
    case Activation::silu: {
      // x · sigmoid(x), written as x / (1 + e^-x).
      const float e = static_cast<float>(std::exp(-static_cast<double>(x)));
      return x / (1.0f + e);
    }
    case Activation::gelu: {
      // 0.5 x (1 + erf(x / sqrt(2))), the argument formed as x · float(1 / sqrt(2)).
      constexpr float kAlpha = static_cast<float>(M_SQRT1_2);
      const float e = static_cast<float>(std::erf(static_cast<double>(x * kAlpha)));
      return x * 0.5f * (1.0f + e);
    }
    case Activation::gelu_tanh: {
      // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x³))); x + kappa x³ is one fused multiply-add,
      // as nvcc contracts upstream's expression (and as the device math writes it).
      constexpr float kBeta = static_cast<float>(M_SQRT2 * M_2_SQRTPI * 0.5);
      constexpr float kKappa = static_cast<float>(0.044715);
      const float x_cube = x * x * x;
      const float inner = kBeta * std::fma(kKappa, x_cube, x);
      const float t = static_cast<float>(std::tanh(static_cast<double>(inner)));
      return 0.5f * x * (1.0f + t);
    }
  }
  return x;
}

float act_and_mul_element(Activation activation, float x, float y, DType dtype) {
  const float act = round_to(dtype, activation_float(activation, x));  // round_T(act(x))
  return round_to(dtype, act * y);                                     // round_T(act · y)
}

}  // namespace pagedkv::cpu

namespace pagedkv {

template <Activation kActivation>
void ActAndMul<kActivation>::cpu(const Plan& plan, const Args& args) {
  const auto* input = static_cast<const std::uint8_t*>(args.input.data);  // [..., 2 d] strided
  auto* out = static_cast<std::uint8_t*>(args.out.data);                  // [rows, d] packed
  const std::int64_t element_bytes = dtype_size(plan.dtype);

  for (std::int64_t row = 0; row < plan.rows.num_rows; ++row) {
    const std::uint8_t* gate = input + plan.rows.row_start(row) * element_bytes;  // [d]
    const std::uint8_t* up = gate + plan.d * element_bytes;                       // [d]
    std::uint8_t* result = out + row * plan.d * element_bytes;                    // [d]
    for (std::int64_t i = 0; i < plan.d; ++i) {
      const float x = cpu::load_activation(gate + i * element_bytes, plan.dtype);
      const float y = cpu::load_activation(up + i * element_bytes, plan.dtype);
      cpu::store_activation(result + i * element_bytes, plan.dtype,
                            cpu::act_and_mul_element(kActivation, x, y, plan.dtype));
    }
  }
}

template void ActAndMul<Activation::silu>::cpu(const Plan&, const Args&);
template void ActAndMul<Activation::gelu>::cpu(const Plan&, const Args&);
template void ActAndMul<Activation::gelu_tanh>::cpu(const Plan&, const Args&);

}  // namespace pagedkv
