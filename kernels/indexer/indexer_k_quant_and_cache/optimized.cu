// indexer_k_quant_and_cache, optimized CUDA version: a quantizing scatter of 256-byte keys
// into 132-byte slots. Each 128-element tile needs its amax before any code can be written,
// so the job is a fast tile reduction next to wide loads and stores; nothing is reused (no
// shared memory).
//
// What this version does differently from the naive one (not yet measured on a GPU):
//   Q1 a quarter warp (8 lanes) per 128-element tile: a warp quantizes 4 tiles (4 tokens for
//      head_dim 128) at once, a 256-thread block 32.
//   Q2 16-byte vectors: a lane loads its 16 keys in two 16-byte loads and stores its 16 codes
//      in one 16-byte store; the 8 lanes of a tile write its 128 codes as one 128-byte run.
//   Q3 the tile's amax by three xor-shuffles inside the 8-lane group (offsets 4, 2, 1). max is
//      exact in any order, so the result equals the CPU reference's sequential fmax.
//   Q4 two codes per conversion instruction (encode_fp8_pair), bit-identical to one at a time.
//   Q5 the key loads are issued before the slot arrives and before the padding branch; the
//      whole warp runs the shuffles (inactive groups with amax 0) and only then skips.
//   Q6 a layout no 16-byte vector fits (misaligned rows or blocks) falls back to the naive kernel.
// The upstream kernel (one warp per tile, 4 elements per lane, 8-byte loads, 4 one-byte stores
// per lane) is the model for Q1-Q3; Q1 and Q2 widen every access to 16 bytes.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "common/fault.cuh"
#include "common/fp8_pair.cuh"
#include "common/vec.cuh"
#include "indexer/indexer_scale.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/indexer_k_quant_and_cache.h"

namespace pagedkv::kernels::indexer_optimized {

/// Threads per block: 8 warps.
constexpr int kThreadsPerBlock = 256;
/// Lanes per 128-element tile (trick Q1): 16 keys per lane.
constexpr int kLanesPerTile = 8;
/// Keys (and codes) per lane.
constexpr int kPerLane = static_cast<int>(kIndexerQuantBlock) / kLanesPerTile;
/// Tiles a warp quantizes at once.
constexpr int kTilesPerWarp = 32 / kLanesPerTile;
/// Warps per block.
constexpr int kWarpsPerBlock = kThreadsPerBlock / 32;
/// All 32 lanes take part in the shuffles.
constexpr unsigned kFullWarp = 0xFFFFFFFFu;

/// \brief A quarter warp per (token, tile), tile_index = token × G + tile; grid-stride over
/// groups of kTilesPerWarp tiles, one group per warp, so every lane runs the same iterations.
/// \tparam Key __nv_bfloat16 or __half.
/// \param k [num_tokens, head_dim], rows plan.k_stride elements apart (16-byte aligned).
/// \param kv_cache [num_blocks, block_size, head_dim + 4 G] bytes, blocks plan.block_stride
///        apart (16-byte aligned).
/// \param slot_mapping [>= num_tokens]; negative = padding.
/// \param plan sizes and strides.
/// \param fault the device's fault record: set by a deferred index check, it makes the kernel
/// return before writing anything.
template <typename Key>
__global__ void __launch_bounds__(kThreadsPerBlock)
    indexer_k_quant_and_cache_kernel(const Key* __restrict__ k, std::uint8_t* __restrict__ kv_cache,
                                     const std::int64_t* __restrict__ slot_mapping,
                                     IndexerKQuantAndCachePlan plan, const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred index check rejected the call
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int group = lane / kLanesPerTile;         // which of the warp's 4 tiles
  const int lane_in_tile = lane % kLanesPerTile;  // which 16 keys of the tile
  const std::int64_t num_tiles = plan.num_tokens * plan.tiles_per_token;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * kWarpsPerBlock;

  for (std::int64_t warp = static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock +
                           static_cast<std::int64_t>(threadIdx.x) / 32;
       warp * kTilesPerWarp < num_tiles; warp += warps) {
    const std::int64_t tile_index = warp * kTilesPerWarp + group;
    const bool has_tile = tile_index < num_tiles;
    const std::int64_t token = has_tile ? tile_index / plan.tiles_per_token : 0;
    const std::int64_t tile = has_tile ? tile_index % plan.tiles_per_token : 0;

    // Tricks Q2, Q5: this lane's 16 keys, two 16-byte loads, issued before the slot is known.
    AlignedVector<Key, 8> low, high;
    std::int64_t slot = -1;
    if (has_tile) {
      const Key* values =
          k + token * plan.k_stride + tile * kIndexerQuantBlock + lane_in_tile * kPerLane;
      low = load_vector<8>(values);
      high = load_vector<8>(values + 8);
      slot = slot_mapping[token];
    }
    const bool active = slot >= 0;  // false for padding and for a group without a tile

    float amax = 0.f;
    if (active) {
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        amax = fmaxf(amax, fabsf(indexer::key_to_float(low.elements[e])));
        amax = fmaxf(amax, fabsf(indexer::key_to_float(high.elements[e])));
      }
    }
    // Trick Q3: the tile's amax over its 8 lanes (the xor partners never leave the group).
#pragma unroll
    for (int offset = kLanesPerTile / 2; offset > 0; offset /= 2) {
      amax = fmaxf(amax, __shfl_xor_sync(kFullWarp, amax, offset));
    }
    if (!active) continue;  // after the shuffles: every lane has taken part in them
    const float scale = indexer::tile_scale(amax, plan.ue8m0);

    const std::int64_t block = slot / plan.block_size;
    const std::int64_t offset_in_block = slot - block * plan.block_size;
    std::uint8_t* block_bytes = kv_cache + block * plan.block_stride;
    AlignedVector<std::uint8_t, 16> codes;
#pragma unroll
    for (int e = 0; e < 8; e += 2) {  // trick Q4: two codes per conversion
      const std::uint16_t low_pair = encode_fp8_pair<KvCacheDtype::kFp8E4m3>(
          indexer::key_to_float(low.elements[e]), indexer::key_to_float(low.elements[e + 1]),
          scale);
      const std::uint16_t high_pair = encode_fp8_pair<KvCacheDtype::kFp8E4m3>(
          indexer::key_to_float(high.elements[e]), indexer::key_to_float(high.elements[e + 1]),
          scale);
      codes.elements[e] = static_cast<std::uint8_t>(low_pair);
      codes.elements[e + 1] = static_cast<std::uint8_t>(low_pair >> 8);
      codes.elements[8 + e] = static_cast<std::uint8_t>(high_pair);
      codes.elements[8 + e + 1] = static_cast<std::uint8_t>(high_pair >> 8);
    }
    store_vector<16>(block_bytes + offset_in_block * plan.head_dim + tile * kIndexerQuantBlock +
                         lane_in_tile * kPerLane,
                     codes);  // trick Q2: one 16-byte store per lane
    if (lane_in_tile == 0) {
      float* scales = reinterpret_cast<float*>(block_bytes + plan.block_size * plan.head_dim);
      scales[offset_in_block * plan.tiles_per_token + tile] = scale;
    }
  }
}

/// \brief Blocks for `num_tiles` tiles, 32 per block (the loop is grid-stride).
/// \param num_tiles tiles to quantize.
/// \return the grid size.
inline unsigned blocks_for(std::int64_t num_tiles) {
  constexpr std::int64_t kTilesPerBlock = kWarpsPerBlock * kTilesPerWarp;
  const std::int64_t needed = (num_tiles + kTilesPerBlock - 1) / kTilesPerBlock;
  return static_cast<unsigned>(std::min<std::int64_t>(needed, 1 << 30));
}

/// \brief Whether every 16-byte vector of the kernel is aligned: the key rows (8 elements per
/// vector) and the cache blocks (codes at multiples of 16 bytes inside a block).
/// \param plan the validated plan.
/// \param args the arguments (their data pointers).
/// \return true when the vector kernel may run.
inline bool vectors_fit(const IndexerKQuantAndCachePlan& plan,
                        const IndexerKQuantAndCache::Args& args) {
  return is_aligned(args.k.data, 16) && is_aligned(args.kv_cache.data, 16) &&
         stride_allows(plan.k_stride, plan.num_tokens, 8) &&
         stride_allows(plan.block_stride, plan.num_blocks, 16);
}

}  // namespace pagedkv::kernels::indexer_optimized

namespace pagedkv {

void IndexerKQuantAndCache::optimized(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels;
  using namespace pagedkv::kernels::indexer_optimized;
  const std::int64_t num_tiles = plan.num_tokens * plan.tiles_per_token;
  if (num_tiles == 0) return;  // zero tokens: nothing to do, and no empty grid
  if (!vectors_fit(plan, args)) {
    naive(plan, args, stream);  // trick Q6: a misaligned layout gets the scalar kernel
    return;
  }
  const unsigned blocks = blocks_for(num_tiles);
  auto* cache = static_cast<std::uint8_t*>(args.kv_cache.data);
  const auto* slots = static_cast<const std::int64_t*>(args.slot_mapping.data);
  if (plan.k_dtype == DType::bf16) {
    indexer_k_quant_and_cache_kernel<<<blocks, kThreadsPerBlock, 0, stream>>>(
        static_cast<const __nv_bfloat16*>(args.k.data), cache, slots, plan, device_fault());
  } else {
    indexer_k_quant_and_cache_kernel<<<blocks, kThreadsPerBlock, 0, stream>>>(
        static_cast<const __half*>(args.k.data), cache, slots, plan, device_fault());
  }
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv
