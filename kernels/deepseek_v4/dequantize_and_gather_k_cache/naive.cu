// dequantize_and_gather_k_cache, naive CUDA version: the CPU reference's loop in CUDA clothing.
// One thread per (request, gathered row, part), over the largest request's rows: parts 0..6
// are the 7 quant blocks (the thread reads the exponent code and dequantizes 64 codes one byte
// at a time), part 7 copies the 64 RoPE dims as raw bf16. Threads past their request's
// gather length return. The memory accesses are as narrow as they come.
// A deferred call (its lengths and block ids checked on the device) sizes the grid by the
// plan's bound, out.size(1) - offset rows per request, not by the largest gather length, which
// only the device knows: the threads past their request's gather length return as above. Every
// thread reads the fault record first (common/fault.cuh).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "common/fault.cuh"
#include "deepseek_v4/ue8m0.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/dequantize_and_gather_k_cache.h"

namespace pagedkv::kernels::dsv4_gather_naive {

/// Threads per block.
constexpr int kThreadsPerBlock = 128;
/// Parts per row: 7 quant blocks and the RoPE copy.
constexpr std::int64_t kPartsPerRow = kDsv4QuantBlocks + 1;

/// \brief One thread per (request, row, part): index = (request × max_gather + row) × 8 + part.
/// \param out [>= R, max_tokens, 512] bf16, strides from the plan.
/// \param k_cache pages of plan.block_stride bytes.
/// \param seq_lens [R].
/// \param gather_lens [R], or nullptr (then every seq_len is gathered).
/// \param block_table [>= R, max_blocks], rows plan.block_table_stride apart.
/// \param plan sizes and strides (max_gather a bound when plan.gathered_on_device).
/// \param fault the device's fault record: set by a deferred check, the kernel writes nothing.
__global__ void dequantize_and_gather_k_cache_kernel(__nv_bfloat16* __restrict__ out,
                                                     const std::uint8_t* __restrict__ k_cache,
                                                     const std::int32_t* __restrict__ seq_lens,
                                                     const std::int32_t* __restrict__ gather_lens,
                                                     const std::int32_t* __restrict__ block_table,
                                                     DequantizeAndGatherKCachePlan plan,
                                                     const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred check rejected the call
  const std::int64_t index = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= plan.num_requests * plan.max_gather * kPartsPerRow) return;
  const std::int64_t part = index % kPartsPerRow;
  const std::int64_t row = index / kPartsPerRow % plan.max_gather;
  const std::int64_t request = index / kPartsPerRow / plan.max_gather;
  const std::int64_t seq_len = seq_lens[request];
  const std::int64_t gather_len = gather_lens != nullptr ? gather_lens[request] : seq_len;
  if (row >= gather_len) return;
  const std::int64_t position = seq_len - gather_len + row;
  const std::int64_t column = position / plan.block_size;
  // The bounds-hardened kernel's guards; validation has made them true, so they never skip.
  if (column >= plan.max_blocks || plan.offset + row >= plan.out_tokens) return;
  const std::int64_t page = block_table[request * plan.block_table_stride + column];
  if (page < 0 || page >= plan.num_blocks) return;
  const std::int64_t in_page = position % plan.block_size;
  const std::uint8_t* page_bytes = k_cache + page * plan.block_stride;
  const std::uint8_t* data = page_bytes + in_page * kDsv4TokenDataBytes;
  __nv_bfloat16* out_row =
      out + request * plan.out_request_stride + (plan.offset + row) * plan.out_token_stride;

  if (part == kDsv4QuantBlocks) {  // the RoPE dims, bit for bit
    // Byte by byte: the cache is a u8 tensor that may start at any address, so a record's
    // bf16 values need not be 2-byte aligned (a bf16 load there faults: found by the fuzzer).
    const std::uint8_t* rope = data + kDsv4NopeDim;
    auto* out_rope = reinterpret_cast<std::uint8_t*>(out_row + kDsv4NopeDim);
    for (int b = 0; b < kDsv4RopeDim * 2; ++b) out_rope[b] = rope[b];
    return;
  }
  const std::uint8_t code =
      page_bytes[plan.block_size * kDsv4TokenDataBytes + in_page * kDsv4TokenScaleBytes + part];
  const float scale = dsv4::scale_of_code(code);
  for (int i = 0; i < kDsv4QuantBlock; ++i) {
    const std::int64_t d = part * kDsv4QuantBlock + i;
    // fp8 → fp16 → fp32 (both exact), times the power of two, rounded to bf16.
    const float value = __half2float(__half(__nv_cvt_fp8_to_halfraw(data[d], __NV_E4M3)));
    out_row[d] = __float2bfloat16_rn(value * scale);
  }
}

}  // namespace pagedkv::kernels::dsv4_gather_naive

namespace pagedkv {

void DequantizeAndGatherKCache::naive(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels::dsv4_gather_naive;
  const std::int64_t threads = plan.num_requests * plan.max_gather * kPartsPerRow;
  if (plan.total_gathered == 0) return;  // nothing to gather, and no empty grid
  const auto blocks = static_cast<unsigned>((threads + kThreadsPerBlock - 1) / kThreadsPerBlock);
  dequantize_and_gather_k_cache_kernel<<<blocks, kThreadsPerBlock, 0, stream>>>(
      static_cast<__nv_bfloat16*>(args.out.data),
      static_cast<const std::uint8_t*>(args.k_cache.data),
      static_cast<const std::int32_t*>(args.seq_lens.data),
      plan.has_gather_lens ? static_cast<const std::int32_t*>(args.gather_lens.data) : nullptr,
      static_cast<const std::int32_t*>(args.block_table.data), plan, device_fault());
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv
