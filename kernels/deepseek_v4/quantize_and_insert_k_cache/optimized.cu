// quantize_and_insert_k_cache, optimized CUDA version: a quantizing scatter of 1024-byte keys
// into 576-byte records plus 8 exponent bytes. Each 64-element quant block needs its amax
// before any of its codes can be written, so the job is a fast block reduction next to wide,
// coalesced loads and stores; nothing is reused (no shared memory).
//
// What this version does differently from the naive one:
//   I1 one warp per token: the key row is 64 chunks of 16 bytes (8 bf16); lane l takes chunks
//      l and 32 + l, so each of the two loads of the warp reads 512 contiguous bytes. Quant
//      block j is chunks 8j .. 8j + 7: the first chunk of lane l is in block l / 8, the second
//      in block 4 + l / 8, and lanes 24..31's second chunk is the RoPE part.
//   I2 16-byte loads (two per lane, issued before the slot arrives) and wide stores: the 8 codes
//      of a chunk go out as one 8-byte store (a warp stores 256 contiguous bytes per
//      instruction, whole 32-byte sectors), the RoPE chunks as 16-byte stores.
//   I3 the block amax by three xor-shuffles (offsets 4, 2, 1) inside each 8-lane group, for
//      both chunks at once. max is exact in any order, so it equals the CPU's sequential fmax.
//   I4 the exponent on the bits (deepseek_v4/ue8m0.cuh) and the division by 2^e as a multiply
//      by 2^-e: no log2, no divide; two codes per conversion instruction (cvt ... e4m3x2).
//   I5 the scale record in one 8-byte store: lane 0 collects the 7 exponent codes with
//      shuffles and adds the pad byte 0.
//   I6 a layout no vector fits (a key row or page not 16-byte aligned) falls back to the
//      naive kernel.
//
// Expected speed (not yet measured on a GPU): a token moves 1024 bytes in (k) and 584 out
// (record and scales), plus 8 bytes of slot, all in full sectors except the 8-byte scale
// record. The warp has 2 loads in flight per lane and 64 warps fit an SM, far more bytes in
// flight than an H100 needs to cover DRAM latency, and the arithmetic per byte is a few
// instructions. So the large points should stream at the rate of a copy of the same bytes,
// about 85-90 % of it (the target is 80 %): what is lost is the partial-sector scale write and
// the shuffle latency between the loads and the first store.
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cstdint>

#include "common/fault.cuh"
#include "common/vec.cuh"
#include "deepseek_v4/ue8m0.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/quantize_and_insert_k_cache.h"

namespace pagedkv::kernels::dsv4_insert_optimized {

/// Threads per block: 8 warps, 8 tokens at a time.
constexpr int kThreadsPerBlock = 256;
/// Warps per block.
constexpr int kWarpsPerBlock = kThreadsPerBlock / 32;
/// Lanes per quant block (trick I1): 64 elements, 8 per lane.
constexpr int kLanesPerQuantBlock = 8;
/// Lanes whose second chunk is RoPE: 24..31 (trick I1).
constexpr int kFirstRopeLane = 24;
/// All 32 lanes take part in the shuffles.
constexpr unsigned kFullWarp = 0xFFFFFFFFu;

/// \brief The 8 E4M3 codes of 8 bf16 values times 2^-e, packed little-endian in 8 bytes.
/// \param values 8 key elements.
/// \param inverse 2^-e of their quant block.
/// \return the codes, element 0 in the lowest byte.
__device__ __forceinline__ uint2 encode_chunk(const AlignedVector<__nv_bfloat16, 8>& values,
                                              float inverse) {
  std::uint32_t words[2];
#pragma unroll
  for (int w = 0; w < 2; ++w) {
    std::uint32_t word = 0;
#pragma unroll
    for (int pair = 0; pair < 2; ++pair) {
      const int e = 4 * w + 2 * pair;
      // Trick I4: two codes per conversion, bit-identical to two single conversions.
      const __nv_fp8x2_storage_t codes =
          __nv_cvt_float2_to_fp8x2(make_float2(__bfloat162float(values.elements[e]) * inverse,
                                               __bfloat162float(values.elements[e + 1]) * inverse),
                                   __NV_SATFINITE, __NV_E4M3);
      word |= static_cast<std::uint32_t>(codes) << (16 * pair);
    }
    words[w] = word;
  }
  return make_uint2(words[0], words[1]);
}

/// \brief The largest |element| of 8 bf16 values.
/// \param values the elements.
/// \return fmaxf over their absolute values.
__device__ __forceinline__ float chunk_amax(const AlignedVector<__nv_bfloat16, 8>& values) {
  float amax = 0.f;
#pragma unroll
  for (int e = 0; e < 8; ++e) amax = fmaxf(amax, fabsf(__bfloat162float(values.elements[e])));
  return amax;
}

/// \brief One warp per token, grid-stride over tokens (every lane of a warp runs the same
/// iterations, so the shuffles always have all 32 lanes).
/// \param k [>= num_tokens, 512] bf16, rows plan.k_stride elements apart (16-byte aligned).
/// \param k_cache pages of plan.block_stride bytes (16-byte aligned).
/// \param slot_mapping [num_tokens]; negative = padding.
/// \param plan sizes and strides.
/// \param fault the device's fault record: set by a deferred slot check, it makes the kernel
/// return before writing anything.
__global__ void __launch_bounds__(kThreadsPerBlock)
    quantize_and_insert_k_cache_kernel(const __nv_bfloat16* __restrict__ k,
                                       std::uint8_t* __restrict__ k_cache,
                                       const std::int64_t* __restrict__ slot_mapping,
                                       QuantizeAndInsertKCachePlan plan, const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred index check rejected the call
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * kWarpsPerBlock;

  for (std::int64_t token = static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock +
                            static_cast<std::int64_t>(threadIdx.x) / 32;
       token < plan.num_tokens; token += warps) {
    // Tricks I1, I2: chunks lane and 32 + lane of the key, loaded before the slot is known.
    const __nv_bfloat16* key = k + token * plan.k_stride;
    const AlignedVector<__nv_bfloat16, 8> first = load_vector<8>(key + 8 * lane);
    const AlignedVector<__nv_bfloat16, 8> second = load_vector<8>(key + 256 + 8 * lane);
    const std::int64_t slot = slot_mapping[token];  // one address: a broadcast
    if (slot < 0) continue;                         // padding token (the whole warp skips together)

    // Trick I3: both blocks' amax over their 8-lane groups.
    float first_amax = chunk_amax(first);
    float second_amax = lane < kFirstRopeLane ? chunk_amax(second) : 0.f;
#pragma unroll
    for (int offset = kLanesPerQuantBlock / 2; offset > 0; offset /= 2) {
      first_amax = fmaxf(first_amax, __shfl_xor_sync(kFullWarp, first_amax, offset));
      second_amax = fmaxf(second_amax, __shfl_xor_sync(kFullWarp, second_amax, offset));
    }
    const int first_exponent = dsv4::block_exponent(first_amax);
    const int second_exponent = dsv4::block_exponent(second_amax);

    const std::int64_t page = slot / plan.block_size;
    const std::int64_t position = slot - page * plan.block_size;
    std::uint8_t* page_bytes = k_cache + page * plan.block_stride;
    std::uint8_t* data = page_bytes + position * kDsv4TokenDataBytes;  // 16-byte aligned

    // Trick I2: 8 codes per 8-byte store; the RoPE chunks as they came, 16 bytes each.
    *reinterpret_cast<uint2*>(data + 8 * lane) =
        encode_chunk(first, dsv4::inverse_scale(first_exponent));
    if (lane < kFirstRopeLane) {
      *reinterpret_cast<uint2*>(data + 256 + 8 * lane) =
          encode_chunk(second, dsv4::inverse_scale(second_exponent));
    } else {
      store_vector<8>(
          reinterpret_cast<__nv_bfloat16*>(data + kDsv4NopeDim) + 8 * (lane - kFirstRopeLane),
          second);
    }

    // Trick I5: lane 8j holds block j's exponent (j < 4 from the first chunks, 4..6 from the
    // second); lane 0 packs the 7 codes and the pad byte into one 8-byte store.
    const std::uint32_t first_code = dsv4::exponent_code(first_exponent);
    const std::uint32_t second_code = dsv4::exponent_code(second_exponent);
    std::uint32_t low = 0, high = 0;  // bytes 0..3 and 4..7 of the scale record
#pragma unroll
    for (int group = 0; group < 4; ++group) {
      const std::uint32_t a = __shfl_sync(kFullWarp, first_code, group * kLanesPerQuantBlock);
      const std::uint32_t b = __shfl_sync(kFullWarp, second_code, group * kLanesPerQuantBlock);
      low |= a << (8 * group);
      if (group < 3) high |= b << (8 * group);  // group 3's second chunk is RoPE: byte 7 = 0
    }
    if (lane == 0) {
      *reinterpret_cast<uint2*>(page_bytes + plan.block_size * kDsv4TokenDataBytes +
                                position * kDsv4TokenScaleBytes) = make_uint2(low, high);
    }
  }
}

/// \brief Blocks for `num_tokens` tokens, one warp each (the loop is grid-stride).
/// \param num_tokens tokens to insert.
/// \return the grid size.
inline unsigned blocks_for(std::int64_t num_tokens) {
  const std::int64_t needed = (num_tokens + kWarpsPerBlock - 1) / kWarpsPerBlock;
  return static_cast<unsigned>(std::min<std::int64_t>(needed, 1 << 30));
}

/// \brief Whether every vector of the kernel is aligned: the key rows (16-byte loads) and the
/// pages (records at multiples of 576 = 36 × 16 bytes, scale records at multiples of 8).
/// \param plan the validated plan.
/// \param args the arguments (their data pointers).
/// \return true when the vector kernel may run.
inline bool vectors_fit(const QuantizeAndInsertKCachePlan& plan,
                        const QuantizeAndInsertKCache::Args& args) {
  return is_aligned(args.k.data, 16) && is_aligned(args.k_cache.data, 16) &&
         stride_allows(plan.k_stride, plan.num_tokens, 8) &&
         stride_allows(plan.block_stride, plan.num_blocks, 16);
}

}  // namespace pagedkv::kernels::dsv4_insert_optimized

namespace pagedkv {

void QuantizeAndInsertKCache::optimized(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels;
  using namespace pagedkv::kernels::dsv4_insert_optimized;
  if (plan.num_tokens == 0) return;  // zero tokens: nothing to do, and no empty grid
  if (!vectors_fit(plan, args)) {
    naive(plan, args, stream);  // trick I6: a misaligned layout gets the scalar kernel
    return;
  }
  quantize_and_insert_k_cache_kernel<<<blocks_for(plan.num_tokens), kThreadsPerBlock, 0, stream>>>(
      static_cast<const __nv_bfloat16*>(args.k.data), static_cast<std::uint8_t*>(args.k_cache.data),
      static_cast<const std::int64_t*>(args.slot_mapping.data), plan, device_fault());
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv
