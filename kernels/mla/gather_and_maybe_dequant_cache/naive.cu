// gather_and_maybe_dequant_cache, naive CUDA version: the CPU reference's loop in CUDA clothing.
//
// One thread per (workspace row, element), flat index, grid-stride. Each thread repeats the
// whole lookup of its row (token_to_seq, cu_seq_lens, seq_starts, block_table: mla_gather.cuh's
// row_entry_offset()) and decodes one element: copied ("auto"), fp8 × scale, or for
// fp8_ds_mla the latent byte times its tile's scale, or one RoPE value (load_row_element(),
// load_ds_mla_element(), shared with cp_gather_and_upconvert_fp8_kv_cache). Correct for every
// layout the contract accepts (byte and element accesses only), and obvious. Not fast: four
// dependent index loads and two 64-bit divisions per element, one element per access.
// A deferred call sizes the grid by num_tokens (the host never read cu_seq_lens) and each
// thread reads the true count, cu_seq_lens[batch], once.
// Not yet measured on a GPU.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>

#include "common/convert.cuh"
#include "common/dispatch.cuh"
#include "common/fault.cuh"
#include "mla/mla_gather.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/gather_and_maybe_dequant_cache.h"

namespace pagedkv::kernels::gather_naive {

/// Threads per block: a common choice for simple element-wise kernels.
constexpr int kThreadsPerBlock = 256;

/// \brief The block lookup of the plan, for mla_gather.cuh.
/// \param plan the validated plan.
/// \param block_table [batch, max_blocks] i32.
/// \return the lookup.
inline mla::DeviceCacheLookup lookup_of(const GatherAndMaybeDequantCachePlan& plan,
                                        const std::int32_t* block_table) {
  return {block_table, plan.block_table_stride, plan.block_size, plan.block_stride,
          plan.entry_stride};
}

/// \brief "auto" and fp8: one thread per (row, element), grid-stride.
/// \tparam Row float, __half or __nv_bfloat16: the workspace's dtype.
/// \tparam kKind how the cache stores an element.
/// \param src_cache [num_blocks, block_size, 576] with the plan's strides.
/// \param dst [>= rows, 576], rows plan.dst_stride apart.
/// \param token_to_seq [>= rows] i32.
/// \param cu_seq_lens [batch + 1] i32.
/// \param seq_starts [batch] i32, or nullptr.
/// \param lookup the block lookup.
/// \param scale [1]; read only for fp8.
/// \param rows workspace rows to write (a bound when `total_rows` is given).
/// \param total_rows cu_seq_lens[batch] for a deferred call, else nullptr.
/// \param dst_stride elements between two rows.
/// \param fault the device's fault record: set by a deferred check, the kernel writes nothing.
template <typename Row, KvCacheDtype kKind>
__global__ void gather_kernel(const typename CacheElement<Row, kKind>::type* src_cache, Row* dst,
                              const std::int32_t* token_to_seq, const std::int32_t* cu_seq_lens,
                              const std::int32_t* seq_starts, mla::DeviceCacheLookup lookup,
                              const float* scale, std::int64_t rows, const std::int32_t* total_rows,
                              std::int64_t dst_stride, const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred check rejected the call
  const std::int64_t total = mla::rows_to_write(rows, total_rows) * kMlaGatherRow;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += step) {
    const std::int64_t row = i / kMlaGatherRow;
    const int element = static_cast<int>(i % kMlaGatherRow);
    const std::int64_t entry =
        mla::row_entry_offset(token_to_seq, cu_seq_lens, seq_starts, lookup, row);
    const float cache_scale = is_fp8(kKind) ? scale[0] : 1.f;  // "auto" never reads it
    dst[row * dst_stride + element] =
        mla::load_row_element<kKind, Row>(src_cache + entry, element, cache_scale);
  }
}

/// \brief fp8_ds_mla: one thread per (row, element) of a bf16 workspace, grid-stride.
/// \param src_cache [num_blocks, block_size, 656] bytes with the plan's strides.
/// \param dst [>= rows, 576] bf16, rows plan.dst_stride apart.
/// \param token_to_seq [>= rows] i32.
/// \param cu_seq_lens [batch + 1] i32.
/// \param seq_starts [batch] i32, or nullptr.
/// \param lookup the block lookup.
/// \param rows workspace rows to write (a bound when `total_rows` is given).
/// \param total_rows cu_seq_lens[batch] for a deferred call, else nullptr.
/// \param dst_stride elements between two rows.
/// \param fault the device's fault record: set by a deferred check, the kernel writes nothing.
__global__ void gather_ds_mla_kernel(const std::uint8_t* src_cache, __nv_bfloat16* dst,
                                     const std::int32_t* token_to_seq,
                                     const std::int32_t* cu_seq_lens,
                                     const std::int32_t* seq_starts, mla::DeviceCacheLookup lookup,
                                     std::int64_t rows, const std::int32_t* total_rows,
                                     std::int64_t dst_stride, const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred check rejected the call
  const std::int64_t total = mla::rows_to_write(rows, total_rows) * kMlaGatherRow;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += step) {
    const std::int64_t row = i / kMlaGatherRow;
    const int element = static_cast<int>(i % kMlaGatherRow);
    const std::int64_t entry =
        mla::row_entry_offset(token_to_seq, cu_seq_lens, seq_starts, lookup, row);
    dst[row * dst_stride + element] =
        mla::load_ds_mla_element<KvCacheDtype::kFp8E4m3>(src_cache + entry, element);
  }
}

/// \brief Blocks for `total` threads' worth of work (the loops are grid-stride).
/// \param total work items.
/// \return the grid size.
inline unsigned blocks_for(std::int64_t total) {
  const std::int64_t needed = (total + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return static_cast<unsigned>(std::min<std::int64_t>(needed, 1 << 30));
}

}  // namespace pagedkv::kernels::gather_naive

namespace pagedkv {

void GatherAndMaybeDequantCache::naive(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels;
  if (plan.rows == 0) return;  // zero sequences or zero tokens: nothing to do, no empty grid
  const auto* token_to_seq = static_cast<const std::int32_t*>(args.token_to_seq.data);
  const auto* cu_seq_lens = static_cast<const std::int32_t*>(args.cu_seq_lens.data);
  const auto* seq_starts =
      plan.has_seq_starts ? static_cast<const std::int32_t*>(args.seq_starts.data) : nullptr;
  const mla::DeviceCacheLookup lookup =
      gather_naive::lookup_of(plan, static_cast<const std::int32_t*>(args.block_table.data));
  const unsigned blocks = gather_naive::blocks_for(plan.rows * kMlaGatherRow);
  const std::int32_t* total_rows = plan.rows_on_device ? cu_seq_lens + plan.batch : nullptr;
  if (plan.ds_mla) {
    gather_naive::gather_ds_mla_kernel<<<blocks, gather_naive::kThreadsPerBlock, 0, stream>>>(
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
        gather_naive::gather_kernel<Row, kKind>
            <<<blocks, gather_naive::kThreadsPerBlock, 0, stream>>>(
                static_cast<const Cache*>(args.src_cache.data), static_cast<Row*>(args.dst.data),
                token_to_seq, cu_seq_lens, seq_starts, lookup,
                fp8 ? static_cast<const float*>(args.scale.data) : nullptr, plan.rows,
                total_rows, plan.dst_stride, device_fault());
        PAGEDKV_CUDA_CHECK_LAUNCH();
      });
}

}  // namespace pagedkv
