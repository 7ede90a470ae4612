// cp_gather_and_upconvert_fp8_kv_cache, naive CUDA version: the CPU reference's loop in CUDA
// clothing.
//
// One thread per (workspace row, element) over rows [0, row_end), grid-stride. Each thread
// finds its row's request (mla_gather.cuh's request_of_row(), a binary search over the
// requests' row ranges; a row in a gap is left alone), looks up the entry and decodes one
// element (load_ds_mla_element(), shared with gather_and_maybe_dequant_cache). Correct for
// every layout the contract accepts (byte accesses only), and obvious. Not fast: a search and
// a lookup per element, one element per access. A deferred call sizes the grid by dst's rows
// (the host never read the requests) and each thread reads the last request's end once.
// Not yet measured on a GPU.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>

#include "common/fault.cuh"
#include "mla/mla_gather.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/cp_gather_and_upconvert_fp8_kv_cache.h"
#include "pagedkv/ops/gather_and_maybe_dequant_cache.h"

namespace pagedkv::kernels::upconvert_naive {

/// Threads per block: a common choice for simple element-wise kernels.
constexpr int kThreadsPerBlock = 256;

/// \brief One thread per (row, element), grid-stride.
/// \tparam kFormat how the latent bytes read.
/// \param src_cache [num_blocks, block_size, 656] bytes with the plan's strides.
/// \param dst [>= row_end, 576] bf16, rows plan.dst_stride apart.
/// \param seq_lens [batch] i32.
/// \param workspace_starts [batch] i32.
/// \param lookup the block lookup.
/// \param plan sizes and strides.
/// \param fault the device's fault record: set by a deferred check, the kernel writes nothing.
template <KvCacheDtype kFormat>
__global__ void upconvert_kernel(const std::uint8_t* src_cache, __nv_bfloat16* dst,
                                 const std::int32_t* seq_lens, const std::int32_t* workspace_starts,
                                 mla::DeviceCacheLookup lookup,
                                 CpGatherAndUpconvertFp8KvCachePlan plan,
                                 const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred check rejected the call
  const std::int64_t row_end = mla::requests_end(plan.row_end, plan.row_end_on_device, seq_lens,
                                                 workspace_starts, plan.batch);
  const std::int64_t total = row_end * kMlaGatherRow;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += step) {
    const std::int64_t row = i / kMlaGatherRow;
    const int element = static_cast<int>(i % kMlaGatherRow);
    const std::int64_t request = mla::request_of_row(seq_lens, workspace_starts, plan.batch, row);
    if (request < 0) continue;  // a row between two requests: not ours
    const std::int64_t entry = lookup.entry_offset(request, row - workspace_starts[request]);
    dst[row * plan.dst_stride + element] =
        mla::load_ds_mla_element<kFormat>(src_cache + entry, element);
  }
}

}  // namespace pagedkv::kernels::upconvert_naive

namespace pagedkv {

void CpGatherAndUpconvertFp8KvCache::naive(const Plan& plan, const Args& args,
                                           cudaStream_t stream) {
  using namespace pagedkv::kernels;
  if (plan.tokens == 0) return;  // zero requests or zero tokens: nothing to do, no empty grid
  const mla::DeviceCacheLookup lookup{static_cast<const std::int32_t*>(args.block_table.data),
                                      plan.block_table_stride, plan.block_size, plan.block_stride,
                                      plan.entry_stride};
  const std::int64_t needed =
      (plan.row_end * kMlaGatherRow + upconvert_naive::kThreadsPerBlock - 1) /
      upconvert_naive::kThreadsPerBlock;
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>(needed, 1 << 30));
  const auto launch = [&](auto format_tag) {
    upconvert_naive::upconvert_kernel<decltype(format_tag)::value>
        <<<blocks, upconvert_naive::kThreadsPerBlock, 0, stream>>>(
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
