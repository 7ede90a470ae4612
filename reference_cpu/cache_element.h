/// \file
/// \brief One cache element on the CPU: read an activation, store it as the cache stores it.
///
/// Shared by the CPU references of every cache writer, so that "auto" (bit copy) and fp8
/// (`fp8(float(x) / scale)`, round to nearest even, saturating) are written out once.
#pragma once

#include <cstdint>

#include "pagedkv/dtype.h"
#include "pagedkv/kv_cache_dtype.h"

namespace pagedkv::cpu {

/// \brief The value of one activation element (f32, f16 or bf16) as fp32 (exact).
/// \param element pointer to the element.
/// \param dtype its type.
/// \return the value.
float load_activation(const void* element, DType dtype);

/// \brief Stores one activation element into a cache element.
///
/// For kAuto the bytes are copied unchanged (`dtype_size(activation_dtype)` bytes); for the fp8
/// kinds one byte `fp8(float(x) / scale)` is written.
/// \param cache_element where the cache element goes.
/// \param activation the activation element to store.
/// \param activation_dtype dtype of the activation.
/// \param cache_kind how the cache stores elements.
/// \param scale the fp8 scale (ignored for kAuto).
void store_cache_element(void* cache_element, const void* activation, DType activation_dtype,
                         KvCacheDtype cache_kind, float scale);

}  // namespace pagedkv::cpu

namespace pagedkv::cpu {

/// \brief Reads one fp8 cache element back: `float(fp8) × scale` (an fp32 product), rounded to
/// nearest even into `dtype`. What every dequantizing reader stores (convert_fp8, the gathers).
/// \param element where the f32, f16 or bf16 result goes.
/// \param dtype f32, f16 or bf16.
/// \param byte the fp8 byte.
/// \param format kFp8E4m3 or kFp8E5m2: how the byte reads.
/// \param scale the scale.
void dequantize_cache_element(void* element, DType dtype, std::uint8_t byte, KvCacheDtype format,
                              float scale);

}  // namespace pagedkv::cpu
