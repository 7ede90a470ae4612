// compute_global_topk_indices_and_lens, optimized CUDA version. The op reads a [T, K] i32
// matrix and writes one of the same shape plus T lengths: per entry 4 bytes in, 4 bytes out,
// one block-table word that neighbouring entries share. So the job is coalesced 16-byte
// accesses and a way to pack each row's slots to the left without a serial loop.
//
// Byte model: T × K × 4 read (topk_indices) + T × K × 4 written (global_topk_indices) +
// T × 4 written (topk_lens), plus 4 bytes each of token_to_req_indices and is_valid_token per
// token; the block-table words are not counted (mostly L1 hits). At decode sizes (T up to 512,
// K = 2048: at most 8 MiB) the op is one launch: its floor is the launch latency plus one DRAM
// round trip, the same floor a copy kernel of the same bytes has.
//
// What this version does differently from the naive one (not yet measured on a GPU):
//   T1 one CTA of 256 threads per token row, walking the row in tiles of 1,024 entries: a
//      warp's loads and stores cover 512 contiguous bytes instead of 32 rows K entries apart.
//   T2 16-byte vectors: each thread loads 4 entries with one load and writes -1 tails with
//      one store (when both rows are 16-byte aligned and K % 4 == 0; else 4-byte accesses).
//   T3 the left-packing by a block-wide exclusive scan (cub::BlockScan) of each thread's count
//      of slots: every thread knows where its slots go, in one pass, order kept.
//   T4 a masked token, or one whose request is not a row of the table, reads no index: its
//      row is only -1 stores.
//   T5 the request's table row is fetched once per CTA (thread 0, broadcast through shared
//      memory); its words are read through the read-only path, where neighbouring entries of
//      the same block hit in L1.
#include <cub/block/block_scan.cuh>

#include <cstdint>

#include "deepseek_v4/sparse_index.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/compute_global_topk_indices_and_lens.h"

namespace pagedkv::kernels::global_topk_optimized {

/// Threads per CTA (trick T1).
constexpr int kThreads = 256;
/// Entries per thread per tile (trick T2).
constexpr int kPerThread = 4;
/// Entries per tile.
constexpr int kTile = kThreads * kPerThread;

/// \brief Four entries of a row: one 16-byte load when `vector`, else four 4-byte loads;
/// entries at or past `count` read as -1 (empty).
__device__ __forceinline__ void load4(const std::int32_t* row, std::int64_t first,
                                      std::int64_t count, bool vector, std::int32_t (&v)[4]) {
  if (vector && first + 3 < count) {
    const int4 packed = __ldg(reinterpret_cast<const int4*>(row + first));  // T2
    v[0] = packed.x, v[1] = packed.y, v[2] = packed.z, v[3] = packed.w;
    return;
  }
  for (int j = 0; j < 4; ++j) v[j] = first + j < count ? __ldg(row + first + j) : -1;
}

/// \brief -1 into entries [from, count) of a row; whole groups of 4 with one 16-byte store
/// when `vector`.
__device__ __forceinline__ void fill_empty(std::int32_t* row, std::int64_t from, std::int64_t count,
                                           bool vector) {
  if (!vector) {
    for (std::int64_t i = from + threadIdx.x; i < count; i += kThreads) row[i] = -1;
    return;
  }
  const std::int64_t first_group = from / 4;  // the group holding `from`, maybe partly slots
  for (std::int64_t g = first_group + threadIdx.x; g * 4 < count; g += kThreads) {
    if (g * 4 >= from) {
      *reinterpret_cast<int4*>(row + g * 4) = make_int4(-1, -1, -1, -1);  // T2
    } else {
      for (std::int64_t i = from; i < g * 4 + 4; ++i) row[i] = -1;
    }
  }
}

/// \brief One CTA per token `blockIdx.x` (trick T1).
/// \param topk_indices [T, K] i32, rows plan.topk_stride apart: local indices, < 0 empty.
/// \param token_to_req [>= T] i32: each token's request.
/// \param block_table [R, width] i32, rows plan.block_table_stride apart.
/// \param is_valid [>= T] bool: false for padding tokens.
/// \param global [T, K] i32, rows plan.output_stride apart: the slots, then -1.
/// \param lens [T] i32: slots per row.
/// \param plan sizes and strides.
__global__ void __launch_bounds__(kThreads)
    compute_global_topk_kernel(const std::int32_t* __restrict__ topk_indices,
                               const std::int32_t* __restrict__ token_to_req,
                               const std::int32_t* __restrict__ block_table,
                               const bool* __restrict__ is_valid, std::int32_t* __restrict__ global,
                               std::int32_t* __restrict__ lens,
                               ComputeGlobalTopkIndicesAndLensPlan plan) {
  using Scan = cub::BlockScan<int, kThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  __shared__ std::int64_t request;  // T5: looked up once for the CTA
  __shared__ int tile_total;
  const std::int64_t t = blockIdx.x;
  if (threadIdx.x == 0) request = is_valid[t] ? token_to_req[t] : -1;
  __syncthreads();
  const sparse_index::TableRow row =
      sparse_index::table_row(block_table, plan.num_requests, plan.block_table_stride,
                              plan.table_width, plan.block_size, request);
  const std::int32_t* in = topk_indices + t * plan.topk_stride;
  std::int32_t* out = global + t * plan.output_stride;

  std::int64_t packed = 0;  // slots written so far (the same in every thread)
  if (row.entries != nullptr) {  // T4: otherwise no index is read
    for (std::int64_t first = 0; first < plan.topk; first += kTile) {
      std::int32_t local[4];
      load4(in, first + threadIdx.x * kPerThread, plan.topk, plan.vector_rows, local);
      std::int32_t slot[4];
      int mine = 0;
      for (int j = 0; j < 4; ++j) {
        slot[j] = sparse_index::global_slot(row, local[j]);
        mine += slot[j] >= 0;
      }
      int before = 0;  // T3: slots of the lower threads of this tile
      Scan(scan_storage).ExclusiveSum(mine, before);
      if (threadIdx.x == kThreads - 1) tile_total = before + mine;
      for (int j = 0; j < 4; ++j) {
        if (slot[j] >= 0) out[packed + before++] = slot[j];
      }
      __syncthreads();  // tile_total written; scan_storage free for the next tile
      packed += tile_total;
      __syncthreads();  // everyone read tile_total before the next tile overwrites it
    }
  }
  fill_empty(out, packed, plan.topk, plan.vector_rows);
  if (threadIdx.x == 0) lens[t] = static_cast<std::int32_t>(packed);
}

}  // namespace pagedkv::kernels::global_topk_optimized

namespace pagedkv {

void ComputeGlobalTopkIndicesAndLens::optimized(const Plan& plan, const Args& args,
                                                cudaStream_t stream) {
  using namespace pagedkv::kernels::global_topk_optimized;
  if (plan.num_tokens == 0) return;  // nothing to write, and no empty grid
  compute_global_topk_kernel<<<static_cast<unsigned>(plan.num_tokens), kThreads, 0, stream>>>(
      static_cast<const std::int32_t*>(args.topk_indices.data),
      static_cast<const std::int32_t*>(args.token_to_req_indices.data),
      static_cast<const std::int32_t*>(args.block_table.data),
      static_cast<const bool*>(args.is_valid_token.data),
      static_cast<std::int32_t*>(args.global_topk_indices.data),
      static_cast<std::int32_t*>(args.topk_lens.data), plan);
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv
