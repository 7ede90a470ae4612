// indexer_k_quant_and_cache, naive CUDA version: the CPU reference's loop in CUDA clothing.
// One thread per (token, 128-element tile): it reads the slot, takes the tile's amax in a
// plain loop, computes the scale and writes the 128 codes one byte at a time, then the scale.
// Nothing is shared between threads; the memory accesses are as narrow as they come.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "common/convert.cuh"
#include "common/fault.cuh"
#include "indexer/indexer_scale.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/indexer_k_quant_and_cache.h"

namespace pagedkv::kernels::indexer_naive {

/// Threads per block.
constexpr int kThreadsPerBlock = 128;

/// \brief One thread per (token, tile): tile_index = token × G + tile.
/// \tparam Key __nv_bfloat16 or __half.
/// \param k [num_tokens, head_dim], rows plan.k_stride elements apart.
/// \param kv_cache [num_blocks, block_size, head_dim + 4 G] bytes, blocks plan.block_stride apart.
/// \param slot_mapping [>= num_tokens]; negative = padding.
/// \param plan sizes and strides.
/// \param fault the device's fault record: set by a deferred index check, it makes the kernel
/// return before writing anything.
template <typename Key>
__global__ void indexer_k_quant_and_cache_kernel(const Key* __restrict__ k,
                                                 std::uint8_t* __restrict__ kv_cache,
                                                 const std::int64_t* __restrict__ slot_mapping,
                                                 IndexerKQuantAndCachePlan plan,
                                                 const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred index check rejected the call
  const std::int64_t tile_index = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (tile_index >= plan.num_tokens * plan.tiles_per_token) return;
  const std::int64_t token = tile_index / plan.tiles_per_token;
  const std::int64_t tile = tile_index % plan.tiles_per_token;
  const std::int64_t slot = slot_mapping[token];
  if (slot < 0) return;  // padding token: nothing is written
  const std::int64_t block = slot / plan.block_size;
  const std::int64_t offset_in_block = slot % plan.block_size;
  std::uint8_t* block_bytes = kv_cache + block * plan.block_stride;
  std::uint8_t* codes = block_bytes + offset_in_block * plan.head_dim + tile * kIndexerQuantBlock;
  float* scales = reinterpret_cast<float*>(block_bytes + plan.block_size * plan.head_dim);
  const Key* values = k + token * plan.k_stride + tile * kIndexerQuantBlock;

  float amax = 0.f;
  for (int i = 0; i < kIndexerQuantBlock; ++i) {
    amax = fmaxf(amax, fabsf(indexer::key_to_float(values[i])));
  }
  const float scale = indexer::tile_scale(amax, plan.ue8m0);
  for (int i = 0; i < kIndexerQuantBlock; ++i) {
    codes[i] = encode_fp8<KvCacheDtype::kFp8E4m3>(indexer::key_to_float(values[i]), scale);
  }
  scales[offset_in_block * plan.tiles_per_token + tile] = scale;
}

}  // namespace pagedkv::kernels::indexer_naive

namespace pagedkv {

void IndexerKQuantAndCache::naive(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels::indexer_naive;
  const std::int64_t tiles = plan.num_tokens * plan.tiles_per_token;
  if (tiles == 0) return;  // zero tokens: nothing to do, and no empty grid
  const auto blocks = static_cast<unsigned>((tiles + kThreadsPerBlock - 1) / kThreadsPerBlock);
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
