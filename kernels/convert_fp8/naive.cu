// convert_fp8, naive CUDA version: the CPU reference's loop in CUDA clothing.
//
// One thread per element, grid-stride: the thread unfolds its flat index into coordinates of the
// (merged) shape, the last dimension fastest, finds the element in both tensors with their own
// strides, and converts it exactly as the CPU reference does. Correct for every layout the
// contract accepts, and obvious. Not fast: one element per access (2 or 4 bytes read, 1 written
// when quantizing), a division and a modulo per dimension per element.
// Not yet measured on a GPU.
#include "pagedkv/ops/convert_fp8.h"

#include <algorithm>
#include <cstdint>

#include "common/dispatch.cuh"
#include "convert_fp8/convert_fp8.cuh"
#include "pagedkv/cuda_runtime.h"

namespace pagedkv::kernels::convert_fp8 {

/// Threads per block: a common choice for simple element-wise kernels.
constexpr int kNaiveThreadsPerBlock = 256;

/// \brief One thread per element, grid-stride.
/// \tparam Wide float, __half or __nv_bfloat16: the f32/f16/bf16 side.
/// \tparam kFormat the fp8 format of the byte side.
/// \tparam kQuantize true: input is Wide, output bytes; false: the other way round.
/// \param input the input's first element.
/// \param output the output's first element.
/// \param plan numel, scale and the merged layout (shape, both tensors' strides).
template <typename Wide, KvCacheDtype kFormat, bool kQuantize>
__global__ void naive_kernel(const void* input, void* output, ConvertFp8Plan plan) {
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < plan.numel; i += step) {
    // The flat index, unfolded into one coordinate per dimension (the CPU reference's loops).
    std::int64_t rest = i, input_offset = 0, output_offset = 0;
    for (int d = plan.ndim - 1; d >= 0; --d) {
      const std::int64_t coordinate = rest % plan.shape[d];
      rest /= plan.shape[d];
      input_offset += coordinate * plan.input_strides[d];
      output_offset += coordinate * plan.output_strides[d];
    }
    if constexpr (kQuantize) {
      static_cast<std::uint8_t*>(output)[output_offset] = quantize_one<kFormat>(
          static_cast<const Wide*>(input)[input_offset], plan.scale);
    } else {
      static_cast<Wide*>(output)[output_offset] = dequantize_one<kFormat, Wide>(
          static_cast<const std::uint8_t*>(input)[input_offset], plan.scale);
    }
  }
}

}  // namespace pagedkv::kernels::convert_fp8

namespace pagedkv {

void ConvertFp8::naive(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels;
  using namespace pagedkv::kernels::convert_fp8;
  if (plan.numel == 0) return;  // nothing to do, and no empty grid
  const std::int64_t blocks_needed =
      (plan.numel + kNaiveThreadsPerBlock - 1) / kNaiveThreadsPerBlock;
  // The grid-stride loop covers whatever the grid does not; 2^30 blocks is far beyond any
  // realistic size and within the grid's x limit (2^31 - 1).
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>(blocks_needed, 1 << 30));

  dispatch_activation_and_cache_kind(
      plan.wide_dtype, plan.format, [&](auto wide_tag, auto format_tag) {
        using Wide = typename decltype(wide_tag)::type;
        constexpr KvCacheDtype kFormat = decltype(format_tag)::value;
        if constexpr (is_fp8(kFormat)) {  // the contract never passes kAuto
          if (plan.quantize) {
            naive_kernel<Wide, kFormat, true>
                <<<blocks, kNaiveThreadsPerBlock, 0, stream>>>(args.input.data, args.output.data,
                                                               plan);
          } else {
            naive_kernel<Wide, kFormat, false>
                <<<blocks, kNaiveThreadsPerBlock, 0, stream>>>(args.input.data, args.output.data,
                                                               plan);
          }
          PAGEDKV_CUDA_CHECK_LAUNCH();
        }
      });
}

}  // namespace pagedkv
