// gather_and_maybe_dequant_cache, optimized CUDA version: a gather of whole 576-element entries
// into a packed workspace, so the job is to keep enough wide, aligned accesses in flight and to
// hide the chain of dependent index loads that leads to each entry. Nothing is reused (no
// shared memory).
//
// How the work is split (why a skewed batch keeps the GPU busy): by workspace row, never by
// sequence. Warp w takes the 8 consecutive rows 8w .. 8w + 7 whatever sequences they belong to
// (grid-stride over such groups), so one request of 300 K tokens next to a thousand requests
// of 20 tokens is 37,500 groups spread over every SM; a grid of one CTA per sequence (upstream's
// older batch-major kernel) would leave all but a few SMs idle on the long request.
//
// What this version does differently (not yet measured on a GPU):
//   G1 token-major split in groups of 8 rows per warp, 8 warps per CTA (above).
//   G2 the lookups of a group at once: lanes 0-7 each resolve one row's chain (token_to_seq
//      coalesced, then cu_seq_lens, seq_starts, block_table), so the four dependent loads are
//      paid once per 8 rows; each entry's offset then reaches the warp by one shuffle.
//   G3 16-byte stores, the widest every address allows (8 bf16 / f16 or 4 f32 per lane per
//      vector); the cache side loads the matching 16 bytes ("auto") or 8 / 4 fp8 bytes.
//   G4 every load of an entry is issued before its first store (the vectors stay in registers).
//   G5 fp8: two values per conversion instruction (dequantize_pair), the scale read once.
//   G6 fp8_ds_mla: lane l holds latent bytes 16 l .. 16 l + 15, all inside tile l / 8, so it
//      needs one tile scale (one 4-byte load, the same 16 bytes for the whole warp); lanes 0-7
//      also move the 128 RoPE bytes, 16 each.
//   G7 a layout no vector fits falls back: scalar accesses in the same warp-per-row kernel
//      ("auto", fp8), the naive kernel (fp8_ds_mla).
// A deferred call (a capture, vllm_ops) checks its index tensors on the device, so the host
// knows only num_tokens: the grid is sized by it and each thread reads the true count,
// cu_seq_lens[batch], once (one shared load per warp). A synchronous call's plan holds the
// count and passes no pointer. Both read the fault record once (common/fault.cuh).
// The full story: chapter "Reading the cache back".
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "common/convert.cuh"
#include "common/dispatch.cuh"
#include "common/fault.cuh"
#include "common/vec.cuh"
#include "mla/mla_gather.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/gather_and_maybe_dequant_cache.h"

namespace pagedkv::kernels::gather_optimized {

/// Threads per block: 8 warps (trick G1).
constexpr int kThreadsPerBlock = 256;
/// Warps per block.
constexpr int kWarpsPerBlock = kThreadsPerBlock / 32;
/// Rows a warp looks up at once and then copies one after the other (tricks G1, G2).
constexpr int kRowsPerWarp = 8;
/// All 32 lanes take part in the shuffles.
constexpr unsigned kFullWarp = 0xFFFFFFFFu;

/// \brief Trick G2: lane j < kRowsPerWarp resolves row `first_row + j`; every lane gets back
/// the entry offsets of the group through shuffles later. -1 marks a row past `rows`.
/// \param token_to_seq [>= rows] i32.
/// \param cu_seq_lens [batch + 1] i32.
/// \param seq_starts [batch] i32, or nullptr.
/// \param lookup the block lookup.
/// \param first_row the group's first row.
/// \param rows rows to write.
/// \param lane this lane.
/// \return this lane's row's entry offset (in cache elements), or -1.
__device__ __forceinline__ std::int64_t group_lookup(const std::int32_t* token_to_seq,
                                                     const std::int32_t* cu_seq_lens,
                                                     const std::int32_t* seq_starts,
                                                     const mla::DeviceCacheLookup& lookup,
                                                     std::int64_t first_row, std::int64_t rows,
                                                     int lane) {
  const std::int64_t row = first_row + lane;
  if (lane >= kRowsPerWarp || row >= rows) return -1;
  return mla::row_entry_offset(token_to_seq, cu_seq_lens, seq_starts, lookup, row);
}

/// \brief "auto" and fp8: one warp per row, kVec row elements per vector.
/// \tparam Row float, __half or __nv_bfloat16: the workspace's dtype.
/// \tparam kKind how the cache stores an element.
/// \tparam kVec row elements per vector: 16 bytes of Row, or 1 (fallback, trick G7).
/// \param src_cache [num_blocks, block_size, 576] with the plan's strides.
/// \param dst [>= rows, 576], rows dst_stride apart.
/// \param token_to_seq [>= rows] i32.
/// \param cu_seq_lens [batch + 1] i32.
/// \param seq_starts [batch] i32, or nullptr.
/// \param lookup the block lookup.
/// \param scale [1]; read only for fp8.
/// \param rows workspace rows to write (a bound when `total_rows` is given).
/// \param total_rows cu_seq_lens[batch] for a deferred call, else nullptr.
/// \param dst_stride elements between two rows.
/// \param fault the device's fault record: set by a deferred check, the kernel writes nothing.
template <typename Row, KvCacheDtype kKind, int kVec>
__global__ void __launch_bounds__(kThreadsPerBlock)
    gather_kernel(const typename CacheElement<Row, kKind>::type* __restrict__ src_cache,
                  Row* __restrict__ dst, const std::int32_t* __restrict__ token_to_seq,
                  const std::int32_t* __restrict__ cu_seq_lens,
                  const std::int32_t* __restrict__ seq_starts, mla::DeviceCacheLookup lookup,
                  const float* __restrict__ scale, std::int64_t rows,
                  const std::int32_t* __restrict__ total_rows, std::int64_t dst_stride,
                  const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred check rejected the call
  rows = mla::rows_to_write(rows, total_rows);
  using Cache = typename CacheElement<Row, kKind>::type;
  constexpr int kVectors = static_cast<int>(kMlaGatherRow) / kVec;  // 72 for bf16, 144 for f32
  constexpr int kPerLane = (kVectors + 31) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  float cache_scale = 1.f;
  if constexpr (is_fp8(kKind)) cache_scale = scale[0];  // trick G5: once per thread

  for (std::int64_t group = static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
       group * kRowsPerWarp < rows;
       group += static_cast<std::int64_t>(gridDim.x) * kWarpsPerBlock) {
    const std::int64_t first_row = group * kRowsPerWarp;
    const std::int64_t my_entry =
        group_lookup(token_to_seq, cu_seq_lens, seq_starts, lookup, first_row, rows, lane);
    for (int j = 0; j < kRowsPerWarp; ++j) {
      const std::int64_t entry_offset = __shfl_sync(kFullWarp, my_entry, j);  // trick G2
      if (entry_offset < 0) break;  // past the last row (the same for the whole warp)
      const Cache* entry = src_cache + entry_offset;
      Row* row = dst + (first_row + j) * dst_stride;
      // Trick G4: all of this lane's loads, then all of its stores.
      AlignedVector<Cache, kVec> loaded[kPerLane];
#pragma unroll
      for (int u = 0; u < kPerLane; ++u) {
        const int v = lane + 32 * u;
        if (v < kVectors) loaded[u] = load_vector<kVec>(entry + v * kVec);
      }
#pragma unroll
      for (int u = 0; u < kPerLane; ++u) {
        const int v = lane + 32 * u;
        if (v >= kVectors) continue;
        AlignedVector<Row, kVec> out;
        if constexpr (kKind == KvCacheDtype::kAuto) {
          out = loaded[u];  // the same type: the bits, copied
        } else if constexpr (kVec == 1) {
          out.elements[0] =
              convert_fp8::dequantize_one<kKind, Row>(loaded[u].elements[0], cache_scale);
        } else {
#pragma unroll
          for (int e = 0; e < kVec; e += 2) {  // trick G5
            convert_fp8::dequantize_pair<kKind>(
                static_cast<std::uint16_t>(loaded[u].elements[e] |
                                           (loaded[u].elements[e + 1] << 8)),
                cache_scale, out.elements + e);
          }
        }
        store_vector<kVec>(row + v * kVec, out);  // trick G3
      }
    }
  }
}

/// \brief fp8_ds_mla: one warp per row (trick G6). Every address is 16-byte aligned (checked
/// on the host, else the naive kernel runs).
/// \param src_cache [num_blocks, block_size, 656] bytes with the plan's strides.
/// \param dst [>= rows, 576] bf16, rows dst_stride apart.
/// \param token_to_seq [>= rows] i32.
/// \param cu_seq_lens [batch + 1] i32.
/// \param seq_starts [batch] i32, or nullptr.
/// \param lookup the block lookup.
/// \param rows workspace rows to write (a bound when `total_rows` is given).
/// \param total_rows cu_seq_lens[batch] for a deferred call, else nullptr.
/// \param dst_stride elements between two rows.
/// \param fault the device's fault record: set by a deferred check, the kernel writes nothing.
__global__ void __launch_bounds__(kThreadsPerBlock)
    gather_ds_mla_kernel(const std::uint8_t* __restrict__ src_cache,
                         __nv_bfloat16* __restrict__ dst,
                         const std::int32_t* __restrict__ token_to_seq,
                         const std::int32_t* __restrict__ cu_seq_lens,
                         const std::int32_t* __restrict__ seq_starts, mla::DeviceCacheLookup lookup,
                         std::int64_t rows, const std::int32_t* __restrict__ total_rows,
                         std::int64_t dst_stride, const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred check rejected the call
  rows = mla::rows_to_write(rows, total_rows);
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  for (std::int64_t group = static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
       group * kRowsPerWarp < rows;
       group += static_cast<std::int64_t>(gridDim.x) * kWarpsPerBlock) {
    const std::int64_t first_row = group * kRowsPerWarp;
    const std::int64_t my_entry =
        group_lookup(token_to_seq, cu_seq_lens, seq_starts, lookup, first_row, rows, lane);
    for (int j = 0; j < kRowsPerWarp; ++j) {
      const std::int64_t entry_offset = __shfl_sync(kFullWarp, my_entry, j);
      if (entry_offset < 0) break;
      // Tricks G4, G6 (mla_gather.cuh, shared with cp_gather_and_upconvert_fp8_kv_cache).
      mla::warp_decode_ds_mla_row<KvCacheDtype::kFp8E4m3>(src_cache + entry_offset,
                                                          dst + (first_row + j) * dst_stride, lane);
    }
  }
}

/// \brief Blocks for `rows` rows, kRowsPerWarp per warp (the loops are grid-stride).
/// \param rows rows to write.
/// \return the grid size.
inline unsigned blocks_for(std::int64_t rows) {
  const std::int64_t groups = (rows + kRowsPerWarp - 1) / kRowsPerWarp;
  const std::int64_t needed = (groups + kWarpsPerBlock - 1) / kWarpsPerBlock;
  return static_cast<unsigned>(std::min<std::int64_t>(needed, 1 << 30));
}

/// \brief Whether `count`-element row vectors fit every address: the workspace rows and the
/// cache entries (vectors of `count` cache elements) stay aligned.
/// \param plan the validated plan.
/// \param args the arguments (their data pointers).
/// \param count row elements per vector.
/// \param cache_bytes bytes of one cache element.
/// \return true when the vector kernel may run.
inline bool vectors_fit(const GatherAndMaybeDequantCachePlan& plan,
                        const GatherAndMaybeDequantCache::Args& args, int count, int cache_bytes) {
  return is_aligned(args.dst.data, static_cast<std::size_t>(count) * dtype_size(plan.dst_dtype)) &&
         stride_allows(plan.dst_stride, plan.rows, count) &&
         is_aligned(args.src_cache.data, static_cast<std::size_t>(count) * cache_bytes) &&
         stride_allows(plan.block_stride, plan.num_blocks, count) &&
         stride_allows(plan.entry_stride, plan.block_size, count);
}

/// \brief Whether every address of the fp8_ds_mla kernel is 16-byte aligned: cache entries
/// (656 = 41 × 16 bytes, so the block and entry strides decide) and workspace rows (8 bf16).
/// \param plan the validated plan.
/// \param args the arguments (their data pointers).
/// \return true when the vector kernel may run.
inline bool ds_mla_vectors_fit(const GatherAndMaybeDequantCachePlan& plan,
                               const GatherAndMaybeDequantCache::Args& args) {
  return is_aligned(args.dst.data, 16) && stride_allows(plan.dst_stride, plan.rows, 8) &&
         is_aligned(args.src_cache.data, 16) &&
         stride_allows(plan.block_stride, plan.num_blocks, 16) &&
         stride_allows(plan.entry_stride, plan.block_size, 16);
}

}  // namespace pagedkv::kernels::gather_optimized

namespace pagedkv {

void GatherAndMaybeDequantCache::optimized(const Plan& plan, const Args& args,
                                           cudaStream_t stream) {
  using namespace pagedkv::kernels;
  using namespace pagedkv::kernels::gather_optimized;
  if (plan.rows == 0) return;  // zero sequences or zero tokens: nothing to do, no empty grid
  const auto* token_to_seq = static_cast<const std::int32_t*>(args.token_to_seq.data);
  const auto* cu_seq_lens = static_cast<const std::int32_t*>(args.cu_seq_lens.data);
  const auto* seq_starts =
      plan.has_seq_starts ? static_cast<const std::int32_t*>(args.seq_starts.data) : nullptr;
  const mla::DeviceCacheLookup lookup{static_cast<const std::int32_t*>(args.block_table.data),
                                      plan.block_table_stride, plan.block_size, plan.block_stride,
                                      plan.entry_stride};
  const unsigned blocks = blocks_for(plan.rows);
  const std::int32_t* total_rows = plan.rows_on_device ? cu_seq_lens + plan.batch : nullptr;
  if (plan.ds_mla) {
    if (!ds_mla_vectors_fit(plan, args)) {
      naive(plan, args, stream);  // trick G7: a misaligned layout gets the scalar kernel
      return;
    }
    gather_ds_mla_kernel<<<blocks, kThreadsPerBlock, 0, stream>>>(
        static_cast<const std::uint8_t*>(args.src_cache.data),
        static_cast<__nv_bfloat16*>(args.dst.data), token_to_seq, cu_seq_lens, seq_starts, lookup,
        plan.rows, total_rows, plan.dst_stride, device_fault());
    PAGEDKV_CUDA_CHECK_LAUNCH();
    return;
  }
  const bool fp8 = is_fp8(plan.cache_kind);
  dispatch_activation_and_cache_kind(
      plan.dst_dtype, plan.cache_kind, [&](auto row_tag, auto kind_tag) {
        using Row = typename decltype(row_tag)::type;
        constexpr KvCacheDtype kKind = decltype(kind_tag)::value;
        using Cache = typename CacheElement<Row, kKind>::type;
        constexpr int kVec = 16 / static_cast<int>(sizeof(Row));
        const auto launch = [&](auto vec_tag) {
          constexpr int kCount = decltype(vec_tag)::value;
          gather_kernel<Row, kKind, kCount><<<blocks, kThreadsPerBlock, 0, stream>>>(
              static_cast<const Cache*>(args.src_cache.data), static_cast<Row*>(args.dst.data),
              token_to_seq, cu_seq_lens, seq_starts, lookup,
              fp8 ? static_cast<const float*>(args.scale.data) : nullptr, plan.rows,
              total_rows, plan.dst_stride, device_fault());
          PAGEDKV_CUDA_CHECK_LAUNCH();
        };
        if (vectors_fit(plan, args, kVec, static_cast<int>(sizeof(Cache)))) {
          launch(std::integral_constant<int, kVec>{});  // trick G3
        } else {
          launch(std::integral_constant<int, 1>{});  // trick G7
        }
      });
}

}  // namespace pagedkv
