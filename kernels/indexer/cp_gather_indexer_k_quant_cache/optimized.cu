// cp_gather_indexer_k_quant_cache, optimized CUDA version: a gather of 132-byte slots (128 code
// bytes, one 4-byte scale) into packed rows. A pure copy, so the job is wide, aligned accesses
// and a cheap way from an output row to its sequence; nothing is reused (no shared memory).
//
// What this version does differently from the naive one (not yet measured on a GPU):
//   G1 eight lanes (a quarter warp) per 128-byte tile of codes: a warp copies 4 rows' codes (for
//      head_dim 128) at once, a 256-thread block 32.
//   G2 16-byte vectors: each lane moves 16 code bytes with one load and one store; the 8 lanes
//      of a tile read one 128-byte run of the code plane and write one 128-byte run of dst_k.
//   G3 the row's sequence by binary search over cu_seq_lens (log2(batch) steps; the naive
//      kernel scans linearly, upstream tests batch / 8 candidates per lane).
//   G4 the 8 lanes of a tile read the same cu_seq_lens and block_table words: each step is one
//      broadcast transaction, not eight.
//   G5 only rows below cu_seq_lens[-1] are visited: the plan carries that count (validation read
//      it), so rows past it are never touched and no thread looks for a sequence it lacks
//      (upstream reads an unwritten shared-memory slot for them). A deferred call's host never
//      read it: its plan holds the destinations' rows, which size the grid, and each thread
//      reads cu_seq_lens[-1] once (one load shared by the warp).
//   G6 a layout no 16-byte vector fits (misaligned cache blocks or dst_k rows) falls back to
//      the naive kernel.
#include <algorithm>
#include <cstdint>

#include "common/fault.cuh"
#include "common/vec.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/cp_gather_indexer_k_quant_cache.h"

namespace pagedkv::kernels::indexer_gather_optimized {

/// Threads per block: 8 warps.
constexpr int kThreadsPerBlock = 256;
/// Lanes per 128-byte tile of codes (trick G1).
constexpr int kLanesPerTile = 8;
/// Tiles per block per round.
constexpr int kTilesPerBlock = kThreadsPerBlock / kLanesPerTile;

/// \brief The sequence b with cu_seq_lens[b] <= row < cu_seq_lens[b + 1] (trick G3): the last
/// b in [0, batch) whose start is <= row. Empty sequences (equal neighbours) are skipped
/// because the last start <= row belongs to the sequence that holds row.
/// \param cu_seq_lens [batch + 1], cu_seq_lens[0] = 0 <= row < cu_seq_lens[batch].
/// \param batch_size sequences.
/// \param row an output row.
/// \return b.
__device__ __forceinline__ std::int64_t sequence_of(const std::int32_t* __restrict__ cu_seq_lens,
                                                    std::int64_t batch_size, std::int64_t row) {
  std::int64_t low = 0, high = batch_size;  // invariant: cu[low] <= row < cu[high]
  while (high - low > 1) {
    const std::int64_t middle = (low + high) / 2;
    if (cu_seq_lens[middle] <= row) {
      low = middle;
    } else {
      high = middle;
    }
  }
  return low;
}

/// \brief A quarter warp per (row, tile), unit = row × G + tile, grid-stride.
/// \param kv_cache [num_blocks, block_size, head_dim + 4 G] bytes (16-byte aligned blocks).
/// \param dst_k [rows, head_dim] bytes (16-byte aligned rows).
/// \param dst_scale [rows, 4 G] bytes (4-byte aligned rows).
/// \param block_table [batch, max_blocks] i32, rows plan.block_table_stride apart.
/// \param cu_seq_lens [batch + 1] i32.
/// \param plan sizes and strides.
/// \param fault the device's fault record: set by a deferred check, the kernel writes nothing.
__global__ void __launch_bounds__(kThreadsPerBlock) cp_gather_indexer_k_quant_cache_kernel(
    const std::uint8_t* __restrict__ kv_cache, std::uint8_t* __restrict__ dst_k,
    std::uint8_t* __restrict__ dst_scale, const std::int32_t* __restrict__ block_table,
    const std::int32_t* __restrict__ cu_seq_lens, CpGatherIndexerKQuantCachePlan plan,
    const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred check rejected the call
  const int lane_in_tile = static_cast<int>(threadIdx.x) % kLanesPerTile;
  std::int64_t gathered = plan.gathered_tokens;  // trick G5
  if (plan.gathered_on_device) {
    const std::int64_t total = cu_seq_lens[plan.batch_size];
    gathered = total < gathered ? total : gathered;
  }
  const std::int64_t units = gathered * plan.tiles_per_token;
  for (std::int64_t unit = static_cast<std::int64_t>(blockIdx.x) * kTilesPerBlock +
                           static_cast<std::int64_t>(threadIdx.x) / kLanesPerTile;
       unit < units; unit += static_cast<std::int64_t>(gridDim.x) * kTilesPerBlock) {
    const std::int64_t row = unit / plan.tiles_per_token;
    const std::int64_t tile = unit % plan.tiles_per_token;
    // Tricks G3, G4: all 8 lanes search together, reading the same words.
    const std::int64_t b = sequence_of(cu_seq_lens, plan.batch_size, row);
    const std::int64_t position = row - cu_seq_lens[b];
    const std::int64_t block =
        block_table[b * plan.block_table_stride + position / plan.block_size];
    const std::int64_t offset_in_block = position % plan.block_size;
    const std::uint8_t* block_bytes = kv_cache + block * plan.block_stride;
    // Trick G2: 16 code bytes per lane, one load and one store.
    const std::int64_t column = tile * kIndexerQuantBlock + lane_in_tile * 16;
    const AlignedVector<std::uint8_t, 16> codes =
        load_vector<16>(block_bytes + offset_in_block * plan.head_dim + column);
    store_vector<16>(dst_k + row * plan.dst_k_stride + column, codes);
    if (lane_in_tile == 0) {  // the tile's fp32 scale, as one 4-byte word
      const auto* scales =
          reinterpret_cast<const float*>(block_bytes + plan.block_size * plan.head_dim);
      reinterpret_cast<float*>(dst_scale + row * plan.dst_scale_stride)[tile] =
          scales[offset_in_block * plan.tiles_per_token + tile];
    }
  }
}

/// \brief Whether every 16-byte vector is aligned: the cache blocks (codes at multiples of 16
/// bytes inside a block, head_dim being a multiple of 128) and dst_k's rows.
/// \param plan the validated plan.
/// \param args the arguments (their data pointers).
/// \return true when the vector kernel may run.
inline bool vectors_fit(const CpGatherIndexerKQuantCachePlan& plan,
                        const CpGatherIndexerKQuantCache::Args& args) {
  return is_aligned(args.kv_cache.data, 16) && is_aligned(args.dst_k.data, 16) &&
         stride_allows(plan.block_stride, plan.num_blocks, 16) &&
         stride_allows(plan.dst_k_stride, plan.gathered_tokens, 16);
}

}  // namespace pagedkv::kernels::indexer_gather_optimized

namespace pagedkv {

void CpGatherIndexerKQuantCache::optimized(const Plan& plan, const Args& args,
                                           cudaStream_t stream) {
  using namespace pagedkv::kernels;
  using namespace pagedkv::kernels::indexer_gather_optimized;
  const std::int64_t units = plan.gathered_tokens * plan.tiles_per_token;
  if (units == 0) return;  // nothing to gather, and no empty grid
  if (!vectors_fit(plan, args)) {
    naive(plan, args, stream);  // trick G6: a misaligned layout gets the scalar kernel
    return;
  }
  const auto blocks = static_cast<unsigned>(
      std::min<std::int64_t>((units + kTilesPerBlock - 1) / kTilesPerBlock, 1 << 30));
  cp_gather_indexer_k_quant_cache_kernel<<<blocks, kThreadsPerBlock, 0, stream>>>(
      static_cast<const std::uint8_t*>(args.kv_cache.data),
      static_cast<std::uint8_t*>(args.dst_k.data), static_cast<std::uint8_t*>(args.dst_scale.data),
      static_cast<const std::int32_t*>(args.block_table.data),
      static_cast<const std::int32_t*>(args.cu_seq_lens.data), plan, device_fault());
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv
