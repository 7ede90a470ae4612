// One cache element on the CPU, written once for every cache writer's CPU reference.
//
// "auto" caches hold the activation's own bits, so storing is a byte copy (no conversion, so
// even NaN payloads survive). fp8 caches hold fp8(float(x) / scale): the activation is widened
// to fp32 exactly, divided by the scale in fp32 (a true division, as upstream; multiplying by
// 1/scale would round differently), then rounded to fp8 with saturation.
#include "cache_element.h"

#include <cstring>

#include "numerics.h"
#include "pagedkv/error.h"

namespace pagedkv::cpu {

float load_activation(const void* element, DType dtype) {
  switch (dtype) {
    case DType::f32: {
      float value;
      std::memcpy(&value, element, sizeof value);  // memcpy: no alignment or aliasing assumptions
      return value;
    }
    case DType::f16: {
      std::uint16_t bits;
      std::memcpy(&bits, element, sizeof bits);
      return numerics::half_bits_to_float(bits);
    }
    case DType::bf16: {
      std::uint16_t bits;
      std::memcpy(&bits, element, sizeof bits);
      return numerics::bf16_bits_to_float(bits);
    }
    default:
      break;
  }
  reject("load_activation: dtype must be f32, f16 or bf16, got ", dtype_name(dtype));
}

void store_cache_element(void* cache_element, const void* activation, DType activation_dtype,
                         KvCacheDtype cache_kind, float scale) {
  switch (cache_kind) {
    case KvCacheDtype::kAuto:
      PAGEDKV_CHECK(is_activation_dtype(activation_dtype),
                    "store_cache_element: activation_dtype must be f32, f16 or bf16, got ",
                    dtype_name(activation_dtype));
      std::memcpy(cache_element, activation, static_cast<std::size_t>(dtype_size(activation_dtype)));
      return;
    case KvCacheDtype::kFp8E4m3: {
      const float scaled = load_activation(activation, activation_dtype) / scale;
      const std::uint8_t byte = numerics::float_to_fp8_e4m3(scaled);
      std::memcpy(cache_element, &byte, 1);
      return;
    }
    case KvCacheDtype::kFp8E5m2: {
      const float scaled = load_activation(activation, activation_dtype) / scale;
      const std::uint8_t byte = numerics::float_to_fp8_e5m2(scaled);
      std::memcpy(cache_element, &byte, 1);
      return;
    }
  }
}

void dequantize_cache_element(void* element, DType dtype, std::uint8_t byte, KvCacheDtype format,
                              float scale) {
  const float decoded = format == KvCacheDtype::kFp8E4m3 ? numerics::fp8_e4m3_to_float(byte)
                                                         : numerics::fp8_e5m2_to_float(byte);
  const float value = decoded * scale;
  if (dtype == DType::f32) {
    std::memcpy(element, &value, sizeof value);
  } else {
    const std::uint16_t bits = dtype == DType::f16 ? numerics::float_to_half_bits(value)
                                                   : numerics::float_to_bf16_bits(value);
    std::memcpy(element, &bits, sizeof bits);
  }
}

}  // namespace pagedkv::cpu
