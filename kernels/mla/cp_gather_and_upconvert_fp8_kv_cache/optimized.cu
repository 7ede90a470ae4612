// cp_gather_and_upconvert_fp8_kv_cache, optimized CUDA version: the same decode as
// gather_and_maybe_dequant_cache's fp8_ds_mla path (a 656-byte entry in, 576 bf16 out), reached
// from requests instead of from tokens.
//
// How the work is split (why a skewed batch keeps the GPU busy): by workspace row, never by
// request. Warp w takes the 8 rows 8w .. 8w + 7 of [0, row_end); lanes 0-7 each find their
// row's request by a binary search over the requests' row ranges (the contract keeps them in
// order and apart), so a 300 K-token request next to hundreds of short ones is spread over
// every SM. Upstream's kernel gives each request a fixed number of CTAs (16, 4 or 2 splits by
// batch size) that walk its tokens one after the other: on a skewed batch a few CTAs carry
// almost all the work while most of the GPU waits.
//
// What this version does differently (not yet measured on a GPU):
//   U1 row-major split, 8 rows per warp, 8 warps per CTA (above); rows in gaps between
//      requests are skipped.
//   U2 the lookups of a group at once: lanes 0-7 each search and resolve one row's entry, and
//      the offsets reach the warp by shuffles (as gather_and_maybe_dequant_cache's G2).
//   U3 one warp per entry, 16-byte accesses, all loads before the stores, one tile scale per
//      lane (mla_gather.cuh's warp_decode_ds_mla_row(), shared with
//      gather_and_maybe_dequant_cache).
//   U4 two fp8 values per conversion instruction (dequantize_pair).
//   U5 a layout that is not 16-byte aligned falls back to the naive kernel.
// A deferred call (a capture, vllm_ops) checks the requests on the device, so the host knows
// only dst's rows: the grid is sized by them and each thread reads the last request's end
// once (two loads shared by the warp). A synchronous call's plan holds the end and skips
// them. Both read the fault record once (common/fault.cuh).
// The full story: chapter "Reading the cache back".
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>

#include "common/fault.cuh"
#include "common/vec.cuh"
#include "mla/mla_gather.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/cp_gather_and_upconvert_fp8_kv_cache.h"
#include "pagedkv/ops/gather_and_maybe_dequant_cache.h"

namespace pagedkv::kernels::upconvert_optimized {

/// Threads per block: 8 warps (trick U1).
constexpr int kThreadsPerBlock = 256;
/// Warps per block.
constexpr int kWarpsPerBlock = kThreadsPerBlock / 32;
/// Rows a warp looks up at once (tricks U1, U2).
constexpr int kRowsPerWarp = 8;
/// All 32 lanes take part in the shuffles.
constexpr unsigned kFullWarp = 0xFFFFFFFFu;

/// \brief One warp per workspace row, 8 rows per lookup round.
/// \tparam kFormat how the latent bytes read.
/// \param src_cache [num_blocks, block_size, 656] bytes with the plan's strides.
/// \param dst [>= row_end, 576] bf16, rows plan.dst_stride apart.
/// \param seq_lens [batch] i32.
/// \param workspace_starts [batch] i32.
/// \param lookup the block lookup.
/// \param plan sizes and strides.
/// \param fault the device's fault record: set by a deferred check, the kernel writes nothing.
template <KvCacheDtype kFormat>
__global__ void __launch_bounds__(kThreadsPerBlock)
    upconvert_kernel(const std::uint8_t* __restrict__ src_cache, __nv_bfloat16* __restrict__ dst,
                     const std::int32_t* __restrict__ seq_lens,
                     const std::int32_t* __restrict__ workspace_starts,
                     mla::DeviceCacheLookup lookup, CpGatherAndUpconvertFp8KvCachePlan plan,
                     const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred check rejected the call
  const std::int64_t row_end = mla::requests_end(plan.row_end, plan.row_end_on_device, seq_lens,
                                                 workspace_starts, plan.batch);
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  for (std::int64_t group = static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
       group * kRowsPerWarp < row_end;
       group += static_cast<std::int64_t>(gridDim.x) * kWarpsPerBlock) {
    const std::int64_t first_row = group * kRowsPerWarp;
    std::int64_t my_entry = -1;  // trick U2: lane j resolves row first_row + j
    if (lane < kRowsPerWarp && first_row + lane < row_end) {
      const std::int64_t row = first_row + lane;
      const std::int64_t request = mla::request_of_row(seq_lens, workspace_starts, plan.batch, row);
      if (request >= 0) my_entry = lookup.entry_offset(request, row - workspace_starts[request]);
    }
    for (int j = 0; j < kRowsPerWarp; ++j) {
      const std::int64_t entry_offset = __shfl_sync(kFullWarp, my_entry, j);
      if (entry_offset < 0) continue;  // a gap row, or past row_end (the same for the warp)
      mla::warp_decode_ds_mla_row<kFormat>(src_cache + entry_offset,
                                           dst + (first_row + j) * plan.dst_stride, lane);  // U3
    }
  }
}

}  // namespace pagedkv::kernels::upconvert_optimized

namespace pagedkv {

void CpGatherAndUpconvertFp8KvCache::optimized(const Plan& plan, const Args& args,
                                               cudaStream_t stream) {
  using namespace pagedkv::kernels;
  using namespace pagedkv::kernels::upconvert_optimized;
  if (plan.tokens == 0) return;  // zero requests or zero tokens: nothing to do, no empty grid
  const bool aligned = is_aligned(args.dst.data, 16) &&
                       stride_allows(plan.dst_stride, plan.row_end, 8) &&
                       is_aligned(args.src_cache.data, 16) &&
                       stride_allows(plan.block_stride, plan.num_blocks, 16) &&
                       stride_allows(plan.entry_stride, plan.block_size, 16);
  if (!aligned) {
    naive(plan, args, stream);  // trick U5
    return;
  }
  const mla::DeviceCacheLookup lookup{static_cast<const std::int32_t*>(args.block_table.data),
                                      plan.block_table_stride, plan.block_size, plan.block_stride,
                                      plan.entry_stride};
  const std::int64_t groups = (plan.row_end + kRowsPerWarp - 1) / kRowsPerWarp;
  const auto blocks = static_cast<unsigned>(
      std::min<std::int64_t>((groups + kWarpsPerBlock - 1) / kWarpsPerBlock, 1 << 30));
  const auto launch = [&](auto format_tag) {
    upconvert_kernel<decltype(format_tag)::value><<<blocks, kThreadsPerBlock, 0, stream>>>(
        static_cast<const std::uint8_t*>(args.src_cache.data),
        static_cast<__nv_bfloat16*>(args.dst.data),
        static_cast<const std::int32_t*>(args.seq_lens.data),
        static_cast<const std::int32_t*>(args.workspace_starts.data), lookup, plan,
        device_fault());
    PAGEDKV_CUDA_CHECK_LAUNCH();
  };
  if (plan.latent_format == KvCacheDtype::kFp8E5m2) {
    launch(std::integral_constant<KvCacheDtype, KvCacheDtype::kFp8E5m2>{});
  } else {
    launch(std::integral_constant<KvCacheDtype, KvCacheDtype::kFp8E4m3>{});
  }
}

}  // namespace pagedkv
