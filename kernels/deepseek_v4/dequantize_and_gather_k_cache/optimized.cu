// dequantize_and_gather_k_cache, optimized CUDA version: a dequantizing gather of 584-byte
// records into 1024-byte bf16 rows. Every output row depends on one data record and its 8
// exponent bytes only, so the job is wide, coalesced loads and stores with a few conversions
// in between; nothing is reused (no shared memory).
//
// What this version does differently from the naive one:
//   G1 a 2-D grid like upstream's (requests × workers): blockIdx.y is the request, and the
//      warps of its blocks stride over its gathered rows, one warp per row. A short request's
//      blocks finish early instead of idling over the longest request's rows, and the number of
//      workers per request is sized so that the grid holds about 8192 warps' worth of rows.
//   G2 the row as 64 chunks of 8 elements (16 bytes of bf16): lane l writes chunks l and
//      32 + l, so each of the warp's two 16-byte stores covers 512 contiguous bytes. Lane l
//      reads the 8 codes of each chunk with one 8-byte load (256 contiguous bytes per warp
//      instruction, whole sectors), lanes 24..31 the RoPE chunks with 16-byte loads.
//   G3 the scale record as one 8-byte load (the same address for the whole warp: one
//      broadcast), each lane picking its two quant blocks' codes out of it.
//   G4 the scale as the code shifted into the fp32 exponent field (no exp2), two codes per
//      conversion (fp8x2 → half2) and two bf16 per rounding (cvt ... bf16x2), each exact step
//      the CPU reference's.
//   G5 the block table entry and the request's lengths read once per row by the whole warp
//      (broadcasts), the record's loads issued back to back before any arithmetic.
//   G6 a layout no vector fits (a page or an out row not 16-byte aligned) falls back to the
//      naive kernel.
// A deferred call (a capture, vllm_ops) checks its lengths and block ids on the device, so the
// host knows only a bound of each request's rows (out.size(1) - offset): G1 sizes the workers
// by it, and the warps stride up to the gather length they read on the device, as always. Both
// kinds of call read the fault record once per thread (common/fault.cuh).
//
// Expected speed (not yet measured on a GPU): a row moves 584 bytes in and 1024 out, in whole
// sectors except the 8-byte scale record, which shares its sector with 3 neighbours' when they
// are gathered too (consecutive positions of a request are neighbours in their page). With 2
// loads and 2 stores per lane in flight and 64 warps per SM, the large points should run at
// about 85-90 % of a same-size copy (the target is 80 %); the cost above a copy is the
// dependent load of the block table entry before the record's loads.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cstdint>

#include "common/fault.cuh"
#include "common/vec.cuh"
#include "deepseek_v4/ue8m0.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/dequantize_and_gather_k_cache.h"

namespace pagedkv::kernels::dsv4_gather_optimized {

/// Threads per block: 8 warps, 8 rows at a time.
constexpr int kThreadsPerBlock = 256;
/// Warps per block.
constexpr int kWarpsPerBlock = kThreadsPerBlock / 32;
/// Lanes whose second chunk is RoPE: 24..31 (trick G2).
constexpr int kFirstRopeLane = 24;
/// Lanes per quant block: 64 elements, 8 per lane.
constexpr int kLanesPerQuantBlock = 8;
/// Rows the whole grid works on at once (trick G1): enough warps to fill an H100 several times.
constexpr std::int64_t kGridRows = 8192;
/// The most requests one launch takes (gridDim.y's limit).
constexpr std::int64_t kMaxRequestsPerLaunch = 65535;

/// \brief 8 codes (little-endian in 8 bytes) times `scale`, as 8 bf16 (16 bytes).
/// \param codes the fp8 bytes, element 0 in the lowest byte.
/// \param scale 2^(code - 127) of their quant block.
/// \return the bf16 values.
__device__ __forceinline__ AlignedVector<__nv_bfloat162, 4> decode_chunk(uint2 codes, float scale) {
  AlignedVector<__nv_bfloat162, 4> values;
  const std::uint32_t words[2] = {codes.x, codes.y};
#pragma unroll
  for (int pair = 0; pair < 4; ++pair) {
    // Trick G4: two codes per conversion; fp8 → fp16 → fp32 is exact.
    const auto two = static_cast<__nv_fp8x2_storage_t>(words[pair / 2] >> (16 * (pair % 2)));
    const float2 decoded = __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(two, __NV_E4M3)));
    values.elements[pair] = __floats2bfloat162_rn(decoded.x * scale, decoded.y * scale);
  }
  return values;
}

/// \brief Warps stride over the rows of request blockIdx.y + first_request, one warp per row.
/// \param out [>= R, max_tokens, 512] bf16, strides from the plan (rows 16-byte aligned).
/// \param k_cache pages of plan.block_stride bytes (16-byte aligned).
/// \param seq_lens [R].
/// \param gather_lens [R], or nullptr (then every seq_len is gathered).
/// \param block_table [>= R, max_blocks], rows plan.block_table_stride apart.
/// \param plan sizes and strides (max_gather a bound when plan.gathered_on_device).
/// \param first_request the request of blockIdx.y = 0 (launches of 65535 requests at most).
/// \param fault the device's fault record: set by a deferred check, the kernel writes nothing.
__global__ void __launch_bounds__(kThreadsPerBlock) dequantize_and_gather_k_cache_kernel(
    __nv_bfloat16* __restrict__ out, const std::uint8_t* __restrict__ k_cache,
    const std::int32_t* __restrict__ seq_lens, const std::int32_t* __restrict__ gather_lens,
    const std::int32_t* __restrict__ block_table, DequantizeAndGatherKCachePlan plan,
    std::int64_t first_request, const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred check rejected the call
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const std::int64_t request = first_request + blockIdx.y;
  // Trick G5: the request's lengths, one broadcast load each.
  const std::int64_t seq_len = seq_lens[request];
  const std::int64_t gather_len = gather_lens != nullptr ? gather_lens[request] : seq_len;
  const std::int64_t start = seq_len - gather_len;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * kWarpsPerBlock;
  const std::int32_t* table_row = block_table + request * plan.block_table_stride;
  __nv_bfloat16* out_request = out + request * plan.out_request_stride;

  for (std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock +
                          static_cast<std::int64_t>(threadIdx.x) / 32;
       row < gather_len; row += warps) {
    const std::int64_t position = start + row;
    const std::int64_t column = position / plan.block_size;
    // The bounds-hardened kernel's guards; validation has made them true, so they never skip.
    if (column >= plan.max_blocks || plan.offset + row >= plan.out_tokens) continue;
    const std::int64_t page = table_row[column];  // one address: a broadcast
    if (page < 0 || page >= plan.num_blocks) continue;
    const std::int64_t in_page = position - column * plan.block_size;
    const std::uint8_t* page_bytes = k_cache + page * plan.block_stride;
    const std::uint8_t* data = page_bytes + in_page * kDsv4TokenDataBytes;

    // Tricks G2, G3, G5: every load of the row, back to back.
    const uint2 first_codes = *reinterpret_cast<const uint2*>(data + 8 * lane);
    uint2 second_codes = make_uint2(0, 0);
    AlignedVector<__nv_bfloat162, 4> rope;
    if (lane < kFirstRopeLane) {
      second_codes = *reinterpret_cast<const uint2*>(data + 256 + 8 * lane);
    } else {
      rope = load_vector<4>(reinterpret_cast<const __nv_bfloat162*>(data + kDsv4NopeDim) +
                            4 * (lane - kFirstRopeLane));
    }
    const uint2 scale_record = *reinterpret_cast<const uint2*>(
        page_bytes + plan.block_size * kDsv4TokenDataBytes + in_page * kDsv4TokenScaleBytes);

    // The codes of this lane's two quant blocks: l / 8 (bytes 0..3) and 4 + l / 8 (4..6).
    const int group = lane / kLanesPerQuantBlock;
    const std::uint32_t first_code = (scale_record.x >> (8 * group)) & 0xFFu;
    const std::uint32_t second_code = (scale_record.y >> (8 * group)) & 0xFFu;

    __nv_bfloat16* out_row = out_request + (plan.offset + row) * plan.out_token_stride;
    store_vector<4>(reinterpret_cast<__nv_bfloat162*>(out_row) + 4 * lane,
                    decode_chunk(first_codes, dsv4::scale_of_code(first_code)));
    store_vector<4>(reinterpret_cast<__nv_bfloat162*>(out_row + 256) + 4 * lane,
                    lane < kFirstRopeLane
                        ? decode_chunk(second_codes, dsv4::scale_of_code(second_code))
                        : rope);
  }
}

/// \brief Whether every vector of the kernel is aligned: pages (records at multiples of
/// 576 = 36 × 16 bytes) and out rows (16-byte stores).
/// \param plan the validated plan.
/// \param args the arguments (their data pointers).
/// \return true when the vector kernel may run.
inline bool vectors_fit(const DequantizeAndGatherKCachePlan& plan,
                        const DequantizeAndGatherKCache::Args& args) {
  return is_aligned(args.k_cache.data, 16) && is_aligned(args.out.data, 16) &&
         stride_allows(plan.block_stride, plan.num_blocks, 16) &&
         stride_allows(plan.out_request_stride, plan.num_requests, 8) &&
         stride_allows(plan.out_token_stride, plan.out_tokens, 8);
}

}  // namespace pagedkv::kernels::dsv4_gather_optimized

namespace pagedkv {

void DequantizeAndGatherKCache::optimized(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels;
  using namespace pagedkv::kernels::dsv4_gather_optimized;
  if (plan.total_gathered == 0) return;  // nothing to gather, and no empty grid
  if (!vectors_fit(plan, args)) {
    naive(plan, args, stream);  // trick G6: a misaligned layout gets the scalar kernel
    return;
  }
  for (std::int64_t first = 0; first < plan.num_requests; first += kMaxRequestsPerLaunch) {
    const std::int64_t requests = std::min(kMaxRequestsPerLaunch, plan.num_requests - first);
    // Trick G1: workers per request, so that the grid covers about kGridRows rows at once.
    const std::int64_t rows_per_request =
        std::max<std::int64_t>(1, std::min(plan.max_gather, kGridRows / requests));
    const dim3 grid(static_cast<unsigned>((rows_per_request + kWarpsPerBlock - 1) / kWarpsPerBlock),
                    static_cast<unsigned>(requests));
    dequantize_and_gather_k_cache_kernel<<<grid, kThreadsPerBlock, 0, stream>>>(
        static_cast<__nv_bfloat16*>(args.out.data),
        static_cast<const std::uint8_t*>(args.k_cache.data),
        static_cast<const std::int32_t*>(args.seq_lens.data),
        plan.has_gather_lens ? static_cast<const std::int32_t*>(args.gather_lens.data) : nullptr,
        static_cast<const std::int32_t*>(args.block_table.data), plan, first, device_fault());
    PAGEDKV_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace pagedkv
