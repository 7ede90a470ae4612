// concat_and_cache_mla, optimized CUDA version: a scatter of whole 576-element entries, so the
// job is to keep enough wide, aligned accesses in flight; nothing is reused (no shared memory).
//
// What this version does differently (M1-M8 measured on an H100, results/h100-2026-12-06c.json;
// M9 is not yet measured on a GPU):
//   M1 16-byte loads, the widest every real address allows (8 bf16 per load and per store).
//   M2 one warp per entry, 8 entries per CTA: 576 bf16 = 72 vectors, 3 per lane.
//   M3 the slot read, and divided into (block, offset), once per entry, not per element.
//   M4 every load of the entry issued before the slot arrives and the padding branch.
//   M5 the concatenation is index arithmetic: vector v comes from kv_c or k_pe, one store path.
//   M6 fp8: two values per conversion instruction (encode_fp8_pair), the scale read once.
//   M7 fp8_ds_mla: a lane holds 16 latent values, 8 lanes are one 128-tile: its amax takes three
//      xor-shuffles, the 4 scales one 16-byte store, the RoPE part 8 lanes × 16 bytes.
//   M8 a layout no vector fits falls back (narrower vectors; fp8_ds_mla: the naive kernel).
//   M9 fp8 caches store 8 bytes per vector, the bytes of one 16-byte bf16 load (mla_entry.cuh,
//      kMaxEntryVector). 16-byte fp8 stores took 86 registers (two blocks per SM) and ran at 37 %
//      of a copy on an H100.
// The full story: chapter "MLA: one latent vector per token".
#include "pagedkv/ops/concat_and_cache_mla.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>

#include "common/convert.cuh"
#include "common/dispatch.cuh"
#include "common/fault.cuh"
#include "common/fp8_pair.cuh"
#include "common/vec.cuh"
#include "mla/mla_entry.cuh"
#include "pagedkv/cuda_runtime.h"

namespace pagedkv::kernels::mla_optimized {

/// Threads per block: 8 warps, one entry each (trick M2).
constexpr int kThreadsPerBlock = 256;
/// Entries a block writes per round.
constexpr int kWarpsPerBlock = kThreadsPerBlock / 32;
/// All 32 lanes take part in the shuffles.
constexpr unsigned kFullWarp = 0xFFFFFFFFu;

/// \brief auto and fp8: one warp per entry, kVec elements per vector.
/// \tparam Activation float, __half or __nv_bfloat16.
/// \tparam kKind how the cache stores an element.
/// \tparam kVec elements per vector (pick_entry_vector()).
/// \param kv_c [T_pad, kv_lora_rank], rows plan.kv_c_stride apart.
/// \param k_pe [T_pad, rope_dim], rows plan.k_pe_stride apart.
/// \param kv_cache [num_blocks, block_size, kv_lora_rank + rope_dim] with the plan's strides.
/// \param slot_mapping [num_tokens]; negative = padding.
/// \param scale [1]; read only for fp8.
/// \param plan sizes and strides.
/// \param fault the device's fault record: set by a deferred index check, it makes the kernel
/// return before writing anything.
template <typename Activation, KvCacheDtype kKind, int kVec>
__global__ void __launch_bounds__(kThreadsPerBlock) concat_and_cache_mla_kernel(
    const Activation* __restrict__ kv_c, const Activation* __restrict__ k_pe,
    typename CacheElement<Activation, kKind>::type* __restrict__ kv_cache,
    const std::int64_t* __restrict__ slot_mapping, const float* __restrict__ scale,
    ConcatAndCacheMlaPlan plan, const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred index check rejected the call
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int latent_vectors = static_cast<int>(plan.kv_lora_rank / kVec);
  const int entry_vectors = latent_vectors + static_cast<int>(plan.rope_dim / kVec);
  float cache_scale = 1.f;
  if constexpr (is_fp8(kKind)) cache_scale = scale[0];  // trick M6: once per thread

  for (std::int64_t token = static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
       token < plan.num_tokens; token += static_cast<std::int64_t>(gridDim.x) * kWarpsPerBlock) {
    const std::int64_t slot = slot_mapping[token];                 // trick M3: once per entry
    const Activation* kv_c_row = kv_c + token * plan.kv_c_stride;  // [kv_lora_rank]
    const Activation* k_pe_row = k_pe + token * plan.k_pe_stride;  // [rope_dim]
    for (int first = lane; first < entry_vectors; first += 32 * mla::kEntryUnroll) {
      mla::EntryVectors<Activation, kVec> vectors;
      mla::load_entry(kv_c_row, k_pe_row, latent_vectors, entry_vectors, first, vectors);  // M4
      if (slot < 0) break;  // padding token: nothing is written (the whole warp leaves)
      const std::int64_t block = slot / plan.block_size;
      const std::int64_t offset_in_block = slot - block * plan.block_size;
      mla::store_entry<kKind>(
          kv_cache + block * plan.block_stride + offset_in_block * plan.entry_stride, entry_vectors,
          first, vectors, cache_scale);
    }
  }
}

/// \brief fp8_ds_mla: one warp per 656-byte entry (trick M7). Lane l holds latent values
/// 16 l .. 16 l + 15, so lanes 8 t .. 8 t + 7 hold tile t; lanes 0-7 also carry the RoPE part.
/// Every address is 16-byte aligned (checked on the host, else the naive kernel runs).
/// \param kv_c [T_pad, 512] bf16, rows plan.kv_c_stride apart.
/// \param k_pe [T_pad, 64] bf16, rows plan.k_pe_stride apart.
/// \param kv_cache [num_blocks, block_size, 656] bytes with the plan's strides.
/// \param slot_mapping [num_tokens]; negative = padding.
/// \param plan sizes and strides.
/// \param fault the device's fault record: set by a deferred index check, it makes the kernel
/// return before writing anything.
__global__ void __launch_bounds__(kThreadsPerBlock)
    concat_and_cache_ds_mla_kernel(const __nv_bfloat16* __restrict__ kv_c,
                                   const __nv_bfloat16* __restrict__ k_pe,
                                   std::uint8_t* __restrict__ kv_cache,
                                   const std::int64_t* __restrict__ slot_mapping,
                                   ConcatAndCacheMlaPlan plan, const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred index check rejected the call
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  constexpr int kLanesPerTile = kDsMlaTile / 16;  // 8
  constexpr int kRopeLanes = kDsMlaRope / 8;      // 8 lanes × 8 bf16
  for (std::int64_t token = static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
       token < plan.num_tokens; token += static_cast<std::int64_t>(gridDim.x) * kWarpsPerBlock) {
    const std::int64_t slot = slot_mapping[token];
    const __nv_bfloat16* kv_c_row = kv_c + token * plan.kv_c_stride;
    // Tricks M1, M4: two 16-byte latent loads per lane, one RoPE load on lanes 0-7, all
    // before the padding branch.
    const AlignedVector<__nv_bfloat16, 8> low = load_vector<8>(kv_c_row + 16 * lane);
    const AlignedVector<__nv_bfloat16, 8> high = load_vector<8>(kv_c_row + 16 * lane + 8);
    AlignedVector<__nv_bfloat16, 8> rope;
    if (lane < kRopeLanes) rope = load_vector<8>(k_pe + token * plan.k_pe_stride + 8 * lane);
    if (slot < 0) continue;  // padding token (the whole warp skips it, so shuffles stay full)

    float amax = 0.f;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      amax = fmaxf(amax, fabsf(__bfloat162float(low.elements[e])));
      amax = fmaxf(amax, fabsf(__bfloat162float(high.elements[e])));
    }
    // Trick M7: the tile's amax over its 8 lanes; max is exact, so the order does not matter
    // and the result equals the CPU reference's sequential fmax.
#pragma unroll
    for (int offset = kLanesPerTile / 2; offset > 0; offset /= 2) {
      amax = fmaxf(amax, __shfl_xor_sync(kFullWarp, amax, offset));
    }
    const float tile_scale = fmaxf(amax / kDsMlaFp8Max, FLT_MIN);

    const std::int64_t block = slot / plan.block_size;
    std::uint8_t* entry =
        kv_cache + block * plan.block_stride + (slot - block * plan.block_size) * plan.entry_stride;
    AlignedVector<std::uint8_t, 16> bytes;
#pragma unroll
    for (int e = 0; e < 8; e += 2) {
      const std::uint16_t low_pair = encode_fp8_pair<KvCacheDtype::kFp8E4m3>(
          __bfloat162float(low.elements[e]), __bfloat162float(low.elements[e + 1]), tile_scale);
      const std::uint16_t high_pair = encode_fp8_pair<KvCacheDtype::kFp8E4m3>(
          __bfloat162float(high.elements[e]), __bfloat162float(high.elements[e + 1]), tile_scale);
      bytes.elements[e] = static_cast<std::uint8_t>(low_pair);
      bytes.elements[e + 1] = static_cast<std::uint8_t>(low_pair >> 8);
      bytes.elements[8 + e] = static_cast<std::uint8_t>(high_pair);
      bytes.elements[8 + e + 1] = static_cast<std::uint8_t>(high_pair >> 8);
    }
    store_vector<16>(entry + 16 * lane, bytes);
    // The four tile scales, gathered on lane 0 and stored at once (bytes 512-527).
    AlignedVector<float, 4> scales;
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      scales.elements[t] = __shfl_sync(kFullWarp, tile_scale, t * kLanesPerTile);
    }
    if (lane == 0) store_vector<4>(reinterpret_cast<float*>(entry + kDsMlaScaleOffset), scales);
    if (lane < kRopeLanes) {
      store_vector<8>(reinterpret_cast<__nv_bfloat16*>(entry + kDsMlaRopeOffset) + 8 * lane, rope);
    }
  }
}

/// \brief Blocks for `num_tokens` entries, one warp each (the loops are grid-stride).
/// \param num_tokens entries to write.
/// \return the grid size.
inline unsigned blocks_for(std::int64_t num_tokens) {
  const std::int64_t needed = (num_tokens + kWarpsPerBlock - 1) / kWarpsPerBlock;
  return static_cast<unsigned>(std::min<std::int64_t>(needed, 1 << 30));
}

/// \brief Whether every address of the fp8_ds_mla kernel is 16-byte aligned: kv_c and k_pe rows
/// (8 bf16 steps), entries (656 = 41 × 16 bytes) and blocks.
/// \param plan the validated plan.
/// \param args the arguments (their data pointers).
/// \return true when the vector kernel may run.
inline bool ds_mla_vectors_fit(const ConcatAndCacheMlaPlan& plan,
                               const ConcatAndCacheMla::Args& args) {
  return is_aligned(args.kv_c.data, 16) && is_aligned(args.k_pe.data, 16) &&
         is_aligned(args.kv_cache.data, 16) &&
         stride_allows(plan.kv_c_stride, plan.num_tokens, 8) &&
         stride_allows(plan.k_pe_stride, plan.num_tokens, 8) &&
         stride_allows(plan.block_stride, plan.num_blocks, 16) &&
         stride_allows(plan.entry_stride, plan.block_size, 16);
}

}  // namespace pagedkv::kernels::mla_optimized

namespace pagedkv {

void ConcatAndCacheMla::optimized(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels;
  using namespace pagedkv::kernels::mla_optimized;
  if (plan.num_tokens == 0) return;  // zero tokens: nothing to do, and no empty grid
  const auto* slots = static_cast<const std::int64_t*>(args.slot_mapping.data);
  const unsigned blocks = blocks_for(plan.num_tokens);
  if (plan.ds_mla) {
    if (!ds_mla_vectors_fit(plan, args)) {
      naive(plan, args, stream);  // trick M8: a misaligned layout gets the scalar kernel
      return;
    }
    concat_and_cache_ds_mla_kernel<<<blocks, kThreadsPerBlock, 0, stream>>>(
        static_cast<const __nv_bfloat16*>(args.kv_c.data),
        static_cast<const __nv_bfloat16*>(args.k_pe.data),
        static_cast<std::uint8_t*>(args.kv_cache.data), slots, plan, device_fault());
    PAGEDKV_CUDA_CHECK_LAUNCH();
    return;
  }
  if (plan.kv_lora_rank + plan.rope_dim == 0) return;
  const bool fp8 = is_fp8(plan.cache_kind);
  dispatch_activation_and_cache_kind(
      plan.activation_dtype, plan.cache_kind, [&](auto activation_tag, auto kind_tag) {
        using Activation = typename decltype(activation_tag)::type;
        constexpr KvCacheDtype kKind = decltype(kind_tag)::value;
        using Cache = typename CacheElement<Activation, kKind>::type;
        constexpr int kMaxVec = mla::kMaxEntryVector<Activation, kKind>;  // trick M9
        const int count = mla::pick_entry_vector(
            plan.kv_lora_rank, plan.rope_dim, plan.num_tokens, args.kv_c, args.k_pe, args.kv_cache,
            static_cast<int>(sizeof(Activation)), static_cast<int>(sizeof(Cache)), kMaxVec);
        const auto launch = [&](auto vec_tag) {
          constexpr int kVec = decltype(vec_tag)::value;
          concat_and_cache_mla_kernel<Activation, kKind, kVec>
              <<<blocks, kThreadsPerBlock, 0, stream>>>(
                  static_cast<const Activation*>(args.kv_c.data),
                  static_cast<const Activation*>(args.k_pe.data),
                  static_cast<Cache*>(args.kv_cache.data), slots,
                  fp8 ? static_cast<const float*>(args.scale.data) : nullptr, plan, device_fault());
          PAGEDKV_CUDA_CHECK_LAUNCH();
        };
        with_vector_width<kMaxVec>(count, launch);
      });
}

}  // namespace pagedkv
