/// \file
/// \brief The GPU side of the numerics check: runs the device conversions that the kernels use
/// (kernels/common/convert.cuh and the CUDA fp16 / bf16 / fp8 intrinsics) over host arrays, so
/// that tests can compare them bit for bit with the hand-written CPU numerics (reference_cpu/numerics.h).
///
/// Plain C++ (no CUDA syntax): every pointer is HOST memory; each call copies its inputs to the
/// GPU, runs one small kernel, copies the results back and synchronizes. Failures throw
/// CudaError; an unsupported dtype throws InvalidArgument.
#pragma once

#include <cstdint>

#include "pagedkv/dtype.h"
#include "pagedkv/kv_cache_dtype.h"

namespace pagedkv::numerics {

/// \brief Encodes fp32 values on the GPU into all four narrow formats.
///
/// fp16 with `__float2half_rn`, bf16 with `__float2bfloat16_rn`, fp8 with the kernels'
/// `kernels::encode_fp8<kind>(value, 1.0f)` (division by 1 is exact, so this is the bare
/// `__nv_cvt_float_to_fp8(value, __NV_SATFINITE, kind)`).
/// \param values the inputs, `[count]` fp32.
/// \param count number of values (0 does nothing).
/// \param half_bits output, `[count]` fp16 bit patterns.
/// \param bf16_bits output, `[count]` bf16 bit patterns.
/// \param fp8_e4m3 output, `[count]` E4M3 bytes.
/// \param fp8_e5m2 output, `[count]` E5M2 bytes.
void encode_on_device(const float* values, std::int64_t count, std::uint16_t* half_bits,
                      std::uint16_t* bf16_bits, std::uint8_t* fp8_e4m3, std::uint8_t* fp8_e5m2);

/// \brief Decodes narrow values to fp32 on the GPU.
///
/// f16 and bf16 with the kernels' `kernels::to_float`; f8_e4m3 / f8_e5m2 as the dequantizing
/// paths do: `__nv_cvt_fp8_to_halfraw`, then `__half2float`.
/// \param encoded the inputs, `[count]` elements of `dtype`.
/// \param dtype f16, bf16, f8_e4m3 or f8_e5m2.
/// \param count number of elements (0 does nothing).
/// \param values output, `[count]` fp32.
/// \throws InvalidArgument naming `dtype` for any other dtype.
void decode_on_device(const void* encoded, DType dtype, std::int64_t count, float* values);

/// \brief fp8 → fp16 bits on the GPU with `__nv_cvt_fp8_to_halfraw` (the first step of a
/// dequantization).
/// \param fp8_bytes the inputs, `[count]` bytes.
/// \param fp8_dtype f8_e4m3 or f8_e5m2.
/// \param count number of bytes (0 does nothing).
/// \param half_bits output, `[count]` fp16 bit patterns.
/// \throws InvalidArgument naming `fp8_dtype` for any other dtype.
void fp8_to_half_on_device(const std::uint8_t* fp8_bytes, DType fp8_dtype, std::int64_t count,
                           std::uint16_t* half_bits);

/// \brief Stores activations as cache elements on the GPU with the kernels' own
/// `kernels::to_cache<cache_kind>(value, scale)`, one scale per element.
/// \param cache_elements output, `[count]` cache elements (`dtype_size(activation_dtype)`
///        bytes each for kAuto, 1 byte each for fp8).
/// \param activations the inputs, `[count]` elements of `activation_dtype`.
/// \param activation_dtype f32, f16 or bf16.
/// \param cache_kind how the cache stores elements.
/// \param scales `[count]` fp32 scales, element i divided by `scales[i]` (unused for kAuto
///        but still read; pass any values).
/// \param count number of elements (0 does nothing).
/// \throws InvalidArgument naming `activation_dtype` when it is not an activation type.
void store_cache_elements_on_device(void* cache_elements, const void* activations,
                                    DType activation_dtype, KvCacheDtype cache_kind,
                                    const float* scales, std::int64_t count);

}  // namespace pagedkv::numerics
