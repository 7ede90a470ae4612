// cp_gather_cache, optimized CUDA version: a gather of whole entries (1152 bytes for the bf16
// MLA latent, 656 for fp8_ds_mla), so the job is to keep every SM busy moving wide, aligned
// words, whatever the shape of the batch.
//
// How the work is split (the point of this version). Upstream launches a grid of (batch_size,
// num_splits) CTAs, num_splits 16, 4 or 2: a CTA per piece of a sequence. A skewed batch (one
// 300 K-token request and a hundred short ones) then leaves the long request to 16 CTAs, which
// walk through their 19 K tokens one at a time, while the rest of the GPU finishes the short
// requests and idles. Here the work is cut by dst rows, not by sequences: the num_tokens rows
// are cut into runs of kRowsPerRun (8) consecutive rows, and the runs are dealt to warps in turn
// (O1). A run may cross from one sequence into the next; each of its rows finds its own
// sequence. Every warp gets the same number of rows (± one run), however the tokens are spread
// over the sequences, so no SM waits for a long sequence.
//
//   O1 token-major split: runs of 8 consecutive dst rows, one warp per run, grid-stride over
//      the runs; the work per warp does not depend on the sequence lengths.
//   O2 one warp per entry, its 32 lanes over the entry's words (upstream puts 1024 threads on
//      one entry: 576 bf16 elements leave 448 of them idle, and their CTA slot unused).
//   O3 the run's addresses located in parallel: lane r (r < 8) finds row r's sequence (a binary
//      search of cu_seq_lens), reads its block id and computes its source and destination
//      offsets; the warp gets them by shuffles. One round trip of index loads per 8 rows,
//      not one per row, and the 8 searches overlap.
//   O4 the widest word all addresses allow: 16 bytes when the entry size, both base pointers
//      and every stride that is used are multiples of 16, else 8, 4, 2 or 1 (chosen on the
//      host). A 656-byte entry is 41 words of 16; an entry of 6 bytes falls back to 2-byte
//      words: never a misaligned access, never a byte past an entry.
//   O5 rounds of up to 4 words per lane, all loads of the round issued before its stores.
//   O6 streaming cache hints (__ldcs / __stcs, evict-first): every entry byte is read once and
//      written once, so they should not push the block table and cu_seq_lens out of L1/L2.
//   O7 grid sized to the device (SMs × 4 CTAs of 256 threads), grid-stride over the runs.
// A deferred call (a capture, vllm_ops) checks its sequences on the device, so the host knows
// only dst's rows: the grid is sized by them (at most one wave, O7) and each thread reads the
// true count, cu_seq_lens[batch_size], once. A synchronous call's plan holds the count and
// skips that load; both read the fault record once (common/fault.cuh).
// Not yet measured on a GPU.
#include <algorithm>
#include <cstdint>

#include "cache_read/cp_gather_cache/cp_gather_cache.cuh"
#include "common/device.cuh"
#include "common/fault.cuh"
#include "common/vec.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/cp_gather_cache.h"

namespace pagedkv::kernels::cp_gather_optimized {

/// Threads per CTA: 8 warps.
constexpr int kThreads = 256;
/// Warps per CTA.
constexpr int kWarpsPerCta = kThreads / 32;
/// CTAs per SM the register budget must allow (__launch_bounds__): at most 64 registers each.
constexpr int kBlocksPerSm = 4;
/// Consecutive dst rows per run, one warp per run (trick O1); at most 32 (one lane per row, O3).
constexpr int kRowsPerRun = 8;
/// Words per lane and round, loads first (trick O5).
constexpr int kWordsInFlight = 4;

/// \brief The unsigned type of a word of `kBytes` bytes, which one instruction moves (O4).
/// \tparam kBytes 1, 2, 4, 8 or 16.
template <int kBytes>
struct Word;
/// \brief 16-byte words: LDG.128 / STG.128.
template <>
struct Word<16> {
  using type = uint4;  ///< four 32-bit lanes
};
/// \brief 8-byte words.
template <>
struct Word<8> {
  using type = uint2;  ///< two 32-bit lanes
};
/// \brief 4-byte words.
template <>
struct Word<4> {
  using type = unsigned int;  ///< one 32-bit word
};
/// \brief 2-byte words.
template <>
struct Word<2> {
  using type = unsigned short;  ///< one 16-bit word
};
/// \brief Single bytes.
template <>
struct Word<1> {
  using type = unsigned char;  ///< one byte
};

/// \brief Runs of kRowsPerRun dst rows, one warp each (O1), entries copied in words of kBytes.
/// \tparam kBytes the word size, dividing the entry size and every address used (O4).
/// \param src_cache [num_blocks, block_size, entry] bytes with the plan's strides.
/// \param dst [num_tokens.., entry] bytes, rows plan.dst_row_stride apart.
/// \param block_table [batch_size, width] i32, rows plan.block_table_stride apart.
/// \param cu_seq_lens [batch_size + 1] i32.
/// \param seq_starts [batch_size] i32, or nullptr.
/// \param plan sizes and strides from CpGatherCache::validate().
/// \param fault the device's fault record: set by a deferred check, the kernel writes nothing.
template <int kBytes>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm)
    cp_gather_cache_kernel(const std::uint8_t* __restrict__ src_cache,
                           std::uint8_t* __restrict__ dst,
                           const std::int32_t* __restrict__ block_table,
                           const std::int32_t* __restrict__ cu_seq_lens,
                           const std::int32_t* __restrict__ seq_starts, CpGatherCachePlan plan,
                           const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred check rejected the call
  using W = typename Word<kBytes>::type;
  constexpr unsigned kFullWarp = 0xFFFFFFFFu;
  const int lane = static_cast<int>(threadIdx.x % 32);
  const std::int64_t words = plan.entry_bytes / kBytes;
  const std::int64_t num_tokens = cp_gather::rows_to_write(plan, cu_seq_lens);
  const std::int64_t num_runs = (num_tokens + kRowsPerRun - 1) / kRowsPerRun;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * kWarpsPerCta;
  // O1 + O7: grid-stride over runs; `run` is the same for the whole warp, so are the branches
  // below, and the shuffles see all 32 lanes.
  for (std::int64_t run = static_cast<std::int64_t>(blockIdx.x) * kWarpsPerCta + threadIdx.x / 32;
       run < num_runs; run += warps) {
    const std::int64_t first_row = run * kRowsPerRun;
    const int rows = static_cast<int>(std::min<std::int64_t>(kRowsPerRun,
                                                             num_tokens - first_row));
    // O3: lane r locates row first_row + r.
    std::int64_t source = 0;       // byte offset of the row's entry in src_cache
    std::int64_t destination = 0;  // byte offset of the row in dst
    if (lane < rows) {
      const std::int64_t row = first_row + lane;
      const std::int64_t b = cp_gather::sequence_of_row(cu_seq_lens, plan.batch_size, row);
      source = cp_gather::entry_offset(plan, block_table, cu_seq_lens, seq_starts, b, row);
      destination = row * plan.dst_row_stride;
    }
    for (int r = 0; r < rows; ++r) {
      const auto* from = reinterpret_cast<const W*>(src_cache + __shfl_sync(kFullWarp, source, r));
      auto* to = reinterpret_cast<W*>(dst + __shfl_sync(kFullWarp, destination, r));
      // O2 + O5: the lanes stride over the entry's words, kWordsInFlight per round.
      for (std::int64_t round = 0; round < words; round += 32 * kWordsInFlight) {
        W word[kWordsInFlight];
#pragma unroll
        for (int k = 0; k < kWordsInFlight; ++k) {
          const std::int64_t w = round + k * 32 + lane;
          if (w < words) word[k] = __ldcs(from + w);  // O6
        }
#pragma unroll
        for (int k = 0; k < kWordsInFlight; ++k) {
          const std::int64_t w = round + k * 32 + lane;
          if (w < words) __stcs(to + w, word[k]);  // O6
        }
      }
    }
  }
}

/// \brief The widest word (16, 8, 4, 2 or 1 bytes) that divides the entry size and keeps every
/// address the kernel forms aligned (trick O4). A stride only matters when its dimension has
/// more than one index.
/// \param plan the validated plan.
/// \param src_cache the cache's first byte.
/// \param dst dst's first byte.
/// \return the word size in bytes.
int word_bytes(const CpGatherCachePlan& plan, const void* src_cache, const void* dst) {
  for (int bytes : {16, 8, 4, 2}) {
    if (plan.entry_bytes % bytes == 0 && is_aligned(src_cache, bytes) && is_aligned(dst, bytes) &&
        stride_allows(plan.cache_block_stride, plan.num_blocks, bytes) &&
        stride_allows(plan.cache_entry_stride, plan.block_size, bytes) &&
        stride_allows(plan.dst_row_stride, plan.num_tokens, bytes)) {
      return bytes;
    }
  }
  return 1;
}

/// \brief Launches the kernel with words of kBytes.
/// \tparam kBytes the word size.
/// \param plan the validated plan.
/// \param args the arguments.
/// \param stream where to launch.
template <int kBytes>
void launch_with(const CpGatherCachePlan& plan, const CpGatherCache::Args& args,
                 cudaStream_t stream) {
  const std::int64_t runs = (plan.num_tokens + kRowsPerRun - 1) / kRowsPerRun;
  const std::int64_t wanted = (runs + kWarpsPerCta - 1) / kWarpsPerCta;
  const std::int64_t wave = static_cast<std::int64_t>(sm_count()) * kBlocksPerSm;  // O7
  const auto grid = static_cast<unsigned>(std::clamp<std::int64_t>(wanted, 1, wave));
  cp_gather_cache_kernel<kBytes><<<grid, kThreads, 0, stream>>>(
      static_cast<const std::uint8_t*>(args.src_cache.data),
      static_cast<std::uint8_t*>(args.dst.data),
      static_cast<const std::int32_t*>(args.block_table.data),
      static_cast<const std::int32_t*>(args.cu_seq_lens.data),
      plan.has_seq_starts ? static_cast<const std::int32_t*>(args.seq_starts.data) : nullptr,
      plan, device_fault());
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv::kernels::cp_gather_optimized

namespace pagedkv {

void CpGatherCache::optimized(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels::cp_gather_optimized;
  if (plan.num_tokens == 0 || plan.entry_bytes == 0) return;  // nothing to copy, no empty grid
  switch (word_bytes(plan, args.src_cache.data, args.dst.data)) {
    case 16: launch_with<16>(plan, args, stream); return;
    case 8: launch_with<8>(plan, args, stream); return;
    case 4: launch_with<4>(plan, args, stream); return;
    case 2: launch_with<2>(plan, args, stream); return;
    default: launch_with<1>(plan, args, stream); return;
  }
}

}  // namespace pagedkv
