// quantize_and_insert_k_cache, naive CUDA version: the CPU reference's loop in CUDA clothing.
// One thread per (token, part): parts 0..6 are the 7 quant blocks of the NoPE dims (the thread
// takes the block's amax in a plain loop, writes its 64 codes one byte at a time and its
// exponent code), part 7 copies the 64 RoPE dims as raw bf16 and writes the pad byte. Nothing
// is shared between threads; the memory accesses are as narrow as they come.
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "common/fault.cuh"
#include "deepseek_v4/ue8m0.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/quantize_and_insert_k_cache.h"

namespace pagedkv::kernels::dsv4_insert_naive {

/// Threads per block.
constexpr int kThreadsPerBlock = 128;
/// Parts per token: 7 quant blocks and the RoPE copy.
constexpr std::int64_t kPartsPerToken = kDsv4QuantBlocks + 1;

/// \brief One thread per (token, part): part_index = token × 8 + part.
/// \param k [>= num_tokens, 512] bf16, rows plan.k_stride elements apart.
/// \param k_cache pages of plan.block_stride bytes: B data records of 576 bytes, then B scale
///        records of 8 bytes.
/// \param slot_mapping [num_tokens]; negative = padding.
/// \param plan sizes and strides.
/// \param fault the device's fault record: set by a deferred slot check, it makes the kernel
/// return before writing anything.
__global__ void quantize_and_insert_k_cache_kernel(const __nv_bfloat16* __restrict__ k,
                                                   std::uint8_t* __restrict__ k_cache,
                                                   const std::int64_t* __restrict__ slot_mapping,
                                                   QuantizeAndInsertKCachePlan plan,
                                                   const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred index check rejected the call
  const std::int64_t part_index = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (part_index >= plan.num_tokens * kPartsPerToken) return;
  const std::int64_t token = part_index / kPartsPerToken;
  const std::int64_t part = part_index % kPartsPerToken;
  const std::int64_t slot = slot_mapping[token];
  if (slot < 0) return;  // padding token: nothing is written
  const std::int64_t page = slot / plan.block_size;
  const std::int64_t position = slot % plan.block_size;
  std::uint8_t* page_bytes = k_cache + page * plan.block_stride;
  std::uint8_t* data = page_bytes + position * kDsv4TokenDataBytes;
  std::uint8_t* scales =
      page_bytes + plan.block_size * kDsv4TokenDataBytes + position * kDsv4TokenScaleBytes;
  const __nv_bfloat16* key = k + token * plan.k_stride;

  if (part == kDsv4QuantBlocks) {  // the RoPE dims, bit for bit, and the pad byte
    const auto* rope = reinterpret_cast<const std::uint8_t*>(key + kDsv4NopeDim);
    for (int b = 0; b < 2 * kDsv4RopeDim; ++b) data[kDsv4NopeDim + b] = rope[b];
    scales[kDsv4QuantBlocks] = 0;
    return;
  }
  const __nv_bfloat16* values = key + part * kDsv4QuantBlock;
  float amax = 0.f;
  for (int i = 0; i < kDsv4QuantBlock; ++i) amax = fmaxf(amax, fabsf(__bfloat162float(values[i])));
  const int exponent = dsv4::block_exponent(amax);
  const float inverse = dsv4::inverse_scale(exponent);
  for (int i = 0; i < kDsv4QuantBlock; ++i) {
    // x × 2^-e exactly (upstream divides by 2^e: the same number), then E4M3, nearest even,
    // saturating.
    data[part * kDsv4QuantBlock + i] = static_cast<std::uint8_t>(
        __nv_cvt_float_to_fp8(__bfloat162float(values[i]) * inverse, __NV_SATFINITE, __NV_E4M3));
  }
  scales[part] = static_cast<std::uint8_t>(dsv4::exponent_code(exponent));
}

}  // namespace pagedkv::kernels::dsv4_insert_naive

namespace pagedkv {

void QuantizeAndInsertKCache::naive(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels::dsv4_insert_naive;
  const std::int64_t parts = plan.num_tokens * kPartsPerToken;
  if (parts == 0) return;  // zero tokens: nothing to do, and no empty grid
  const auto blocks = static_cast<unsigned>((parts + kThreadsPerBlock - 1) / kThreadsPerBlock);
  quantize_and_insert_k_cache_kernel<<<blocks, kThreadsPerBlock, 0, stream>>>(
      static_cast<const __nv_bfloat16*>(args.k.data), static_cast<std::uint8_t*>(args.k_cache.data),
      static_cast<const std::int64_t*>(args.slot_mapping.data), plan, device_fault());
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv
