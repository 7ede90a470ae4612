// The GPU half of the numerics proof: tiny elementwise kernels that run exactly the device
// conversions the cache kernels use (common/convert.cuh, the CUDA fp16 / bf16 / fp8
// intrinsics), so a test can compare every output bit with the hand-written CPU numerics.
//
// Nothing here is fast or clever on purpose: one thread per element in a grid-stride loop.
// The launchers take HOST pointers, copy in, run, copy out and synchronize.
#include "numerics_device.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstddef>
#include <utility>

#include "common/convert.cuh"
#include "pagedkv/buffers.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/error.h"

namespace pagedkv::kernels::numerics_check {

/// Threads per block of every kernel here (any multiple of 32 would do).
constexpr int kThreadsPerBlock = 256;

/// \brief fp32 → fp16, bf16, E4M3, E5M2 with the device conversions of the kernels.
/// \param values the inputs.
/// \param count number of inputs.
/// \param half_bits fp16 results.
/// \param bf16_bits bf16 results.
/// \param fp8_e4m3 E4M3 results.
/// \param fp8_e5m2 E5M2 results.
__global__ void encode_kernel(const float* __restrict__ values,   // [count]
                              std::int64_t count,
                              std::uint16_t* __restrict__ half_bits,  // [count]
                              std::uint16_t* __restrict__ bf16_bits,  // [count]
                              std::uint8_t* __restrict__ fp8_e4m3,    // [count]
                              std::uint8_t* __restrict__ fp8_e5m2) {  // [count]
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const float value = values[i];
    half_bits[i] = __half_as_ushort(__float2half_rn(value));
    bf16_bits[i] = __bfloat16_as_ushort(__float2bfloat16_rn(value));
    // Scale 1: value / 1.0f is exact, so this is the bare saturating fp8 conversion.
    fp8_e4m3[i] = encode_fp8<KvCacheDtype::kFp8E4m3>(value, 1.0f);
    fp8_e5m2[i] = encode_fp8<KvCacheDtype::kFp8E5m2>(value, 1.0f);
  }
}

/// \brief f16 / bf16 → fp32 with the kernels' to_float (T is __half or __nv_bfloat16).
/// \param encoded the inputs.
/// \param count number of inputs.
/// \param values fp32 results.
template <typename T>
__global__ void decode_kernel(const T* __restrict__ encoded,  // [count]
                              std::int64_t count,
                              float* __restrict__ values) {   // [count]
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    values[i] = to_float(encoded[i]);
  }
}

/// \brief fp8 → fp16 bits (`__nv_cvt_fp8_to_halfraw`) and → fp32 (then `__half2float`), as the
/// dequantizing paths do.
/// \param fp8_bytes the inputs.
/// \param interpretation __NV_E4M3 or __NV_E5M2.
/// \param count number of inputs.
/// \param half_bits fp16 results, skipped when nullptr.
/// \param values fp32 results, skipped when nullptr.
__global__ void decode_fp8_kernel(const std::uint8_t* __restrict__ fp8_bytes,  // [count]
                                  __nv_fp8_interpretation_t interpretation,
                                  std::int64_t count,
                                  std::uint16_t* __restrict__ half_bits,  // [count] or nullptr
                                  float* __restrict__ values) {           // [count] or nullptr
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const __half_raw half = __nv_cvt_fp8_to_halfraw(fp8_bytes[i], interpretation);
    if (half_bits != nullptr) half_bits[i] = half.x;
    if (values != nullptr) values[i] = __half2float(__half(half));
  }
}

/// \brief One cache element per activation with the kernels' own to_cache<kKind>.
/// \param activations the inputs.
/// \param scales one fp8 scale per input.
/// \param count number of inputs.
/// \param cache the cache elements.
template <KvCacheDtype kKind, typename T>
__global__ void store_kernel(const T* __restrict__ activations,  // [count]
                             const float* __restrict__ scales,   // [count]
                             std::int64_t count,
                             typename CacheElement<T, kKind>::type* __restrict__ cache) {  // [count]
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    cache[i] = to_cache<kKind>(activations[i], scales[i]);
  }
}

}  // namespace pagedkv::kernels::numerics_check

namespace pagedkv::numerics {
namespace {

namespace check = kernels::numerics_check;

// Device memory is a pagedkv::Buffer of Memory::device: freed on scope exit, also when a
// launcher throws. This gives its bytes as `T`.
template <typename T>
T* as(const Buffer& buffer) {
  return reinterpret_cast<T*>(buffer.data());
}

// Enough blocks to cover `count` elements, capped: the grid-stride loop does the rest.
unsigned int grid_size(std::int64_t count) {
  const std::int64_t blocks = (count + check::kThreadsPerBlock - 1) / check::kThreadsPerBlock;
  return static_cast<unsigned int>(blocks < 65535 ? blocks : 65535);
}

// Waits for the kernel (surfacing launch and execution errors), then copies results back.
void download(void* host, const void* device, std::size_t bytes) {
  PAGEDKV_CUDA_CHECK_LAUNCH();
  PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  PAGEDKV_CUDA_CHECK(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost));
}

__nv_fp8_interpretation_t interpretation_of(DType fp8_dtype, const char* argument) {
  PAGEDKV_CHECK(fp8_dtype == DType::f8_e4m3 || fp8_dtype == DType::f8_e5m2, argument,
                " must be f8_e4m3 or f8_e5m2, got ", dtype_name(fp8_dtype));
  return fp8_dtype == DType::f8_e4m3 ? __NV_E4M3 : __NV_E5M2;
}

template <KvCacheDtype kKind, typename T>
void store_typed(void* cache_elements, const void* activations, const float* scales,
                 std::int64_t count) {
  using Element = typename kernels::CacheElement<T, kKind>::type;
  const auto n = static_cast<std::size_t>(count);
  Buffer device_activations(Memory::device, n * sizeof(T));
  Buffer device_scales(Memory::device, n * sizeof(float));
  Buffer device_cache(Memory::device, n * sizeof(Element));
  device_activations.upload(activations, n * sizeof(T));
  device_scales.upload(scales, n * sizeof(float));
  check::store_kernel<kKind, T><<<grid_size(count), check::kThreadsPerBlock>>>(
      as<const T>(device_activations), as<const float>(device_scales), count,
      as<Element>(device_cache));
  download(cache_elements, as<void>(device_cache), n * sizeof(Element));
}

template <typename T>
void store_for_type(void* cache_elements, const void* activations, KvCacheDtype cache_kind,
                    const float* scales, std::int64_t count) {
  switch (cache_kind) {
    case KvCacheDtype::kAuto:
      return store_typed<KvCacheDtype::kAuto, T>(cache_elements, activations, scales, count);
    case KvCacheDtype::kFp8E4m3:
      return store_typed<KvCacheDtype::kFp8E4m3, T>(cache_elements, activations, scales, count);
    case KvCacheDtype::kFp8E5m2:
      return store_typed<KvCacheDtype::kFp8E5m2, T>(cache_elements, activations, scales, count);
  }
}

}  // namespace

void encode_on_device(const float* values, std::int64_t count, std::uint16_t* half_bits,
                      std::uint16_t* bf16_bits, std::uint8_t* fp8_e4m3, std::uint8_t* fp8_e5m2) {
  if (count <= 0) return;  // a grid of zero blocks is a launch error
  const auto n = static_cast<std::size_t>(count);
  Buffer device_values(Memory::device, n * sizeof(float));
  Buffer device_half(Memory::device, n * 2), device_bf16(Memory::device, n * 2);
  Buffer device_e4m3(Memory::device, n), device_e5m2(Memory::device, n);
  device_values.upload(values, n * sizeof(float));
  check::encode_kernel<<<grid_size(count), check::kThreadsPerBlock>>>(
      as<const float>(device_values), count, as<std::uint16_t>(device_half),
      as<std::uint16_t>(device_bf16), as<std::uint8_t>(device_e4m3),
      as<std::uint8_t>(device_e5m2));
  download(half_bits, as<void>(device_half), n * 2);
  download(bf16_bits, as<void>(device_bf16), n * 2);
  download(fp8_e4m3, as<void>(device_e4m3), n);
  download(fp8_e5m2, as<void>(device_e5m2), n);
}

void decode_on_device(const void* encoded, DType dtype, std::int64_t count, float* values) {
  PAGEDKV_CHECK(dtype == DType::f16 || dtype == DType::bf16 || dtype == DType::f8_e4m3 ||
                    dtype == DType::f8_e5m2,
                "decode_on_device: dtype must be f16, bf16, f8_e4m3 or f8_e5m2, got ",
                dtype_name(dtype));
  if (count <= 0) return;
  const auto n = static_cast<std::size_t>(count);
  const auto element_size = static_cast<std::size_t>(dtype_size(dtype));
  Buffer device_encoded(Memory::device, n * element_size);
  Buffer device_values(Memory::device, n * sizeof(float));
  device_encoded.upload(encoded, n * element_size);
  if (dtype == DType::f16) {
    check::decode_kernel<__half><<<grid_size(count), check::kThreadsPerBlock>>>(
        as<const __half>(device_encoded), count, as<float>(device_values));
  } else if (dtype == DType::bf16) {
    check::decode_kernel<__nv_bfloat16><<<grid_size(count), check::kThreadsPerBlock>>>(
        as<const __nv_bfloat16>(device_encoded), count, as<float>(device_values));
  } else {
    check::decode_fp8_kernel<<<grid_size(count), check::kThreadsPerBlock>>>(
        as<const std::uint8_t>(device_encoded), interpretation_of(dtype, "decode_on_device: dtype"),
        count, nullptr, as<float>(device_values));
  }
  download(values, as<void>(device_values), n * sizeof(float));
}

void fp8_to_half_on_device(const std::uint8_t* fp8_bytes, DType fp8_dtype, std::int64_t count,
                           std::uint16_t* half_bits) {
  const __nv_fp8_interpretation_t interpretation =
      interpretation_of(fp8_dtype, "fp8_to_half_on_device: fp8_dtype");
  if (count <= 0) return;
  const auto n = static_cast<std::size_t>(count);
  Buffer device_bytes(Memory::device, n);
  Buffer device_half(Memory::device, n * 2);
  device_bytes.upload(fp8_bytes, n);
  check::decode_fp8_kernel<<<grid_size(count), check::kThreadsPerBlock>>>(
      as<const std::uint8_t>(device_bytes), interpretation, count,
      as<std::uint16_t>(device_half), nullptr);
  download(half_bits, as<void>(device_half), n * 2);
}

void store_cache_elements_on_device(void* cache_elements, const void* activations,
                                    DType activation_dtype, KvCacheDtype cache_kind,
                                    const float* scales, std::int64_t count) {
  PAGEDKV_CHECK(is_activation_dtype(activation_dtype),
                "store_cache_elements_on_device: activation_dtype must be f32, f16 or bf16, got ",
                dtype_name(activation_dtype));
  if (count <= 0) return;
  switch (activation_dtype) {
    case DType::f32:
      return store_for_type<float>(cache_elements, activations, cache_kind, scales, count);
    case DType::f16:
      return store_for_type<__half>(cache_elements, activations, cache_kind, scales, count);
    default:
      return store_for_type<__nv_bfloat16>(cache_elements, activations, cache_kind, scales, count);
  }
}

}  // namespace pagedkv::numerics
