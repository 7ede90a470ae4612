// merge_attn_states, naive CUDA version: the CPU reference's loops in CUDA clothing (vLLM
// csrc/libtorch_stable/attention/merge_attn_states.cu: merge_attn_states_kernel).
//
// One thread per output element over a 1-D grid (grid-stride): element e of the [N, H, D]
// output is token e / (H D), head (e / D) % H, element e % D. The thread reads both LSEs of its
// (token, head), computes the scales with merge_weights() and merges its one element with
// merge_value() (merge_math.cuh, the same functions as the optimized kernel: the two are
// bit-identical). The thread of element 0 writes output_lse.
//
// Caveats, numbered as in the chapter (optimized.cu names the trick that removes each):
//   N1 every access moves one element (2-4 bytes), not 16 bytes;
//   N2 the D threads of a head each read the same two LSEs and each compute two expf, two
//      divisions and a logf: D times the special-function work, for one result;
//   N3 every element pays two 64-bit divisions and a modulo for (token, head, element);
//   N4 the LSE loads and the element loads of a thread wait on each other in program order.
#include <algorithm>
#include <cstdint>

#include "attention/merge_attn_states/merge_math.cuh"
#include "common/dispatch.cuh"
#include "norm/norm_math.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/merge_attn_states.h"

namespace pagedkv::kernels::merge_naive {

/// Threads per block.
constexpr int kThreads = 256;

/// \brief One thread per output element (grid-stride).
/// \tparam T float, __half or __nv_bfloat16: the input type.
/// \tparam Out T, or std::uint8_t for an fp8 E4M3 output.
/// \param o the operands.
template <typename T, typename Out>
__global__ void merge_kernel(merge::Operands o) {
  const T* prefix = static_cast<const T*>(o.prefix);
  const T* suffix = static_cast<const T*>(o.suffix);
  Out* output = static_cast<Out*>(o.output);
  const float scale_inverse = o.output_scale != nullptr ? 1.0f / *o.output_scale : 1.0f;
  const std::int64_t total = o.num_tokens * o.num_heads * o.head_size;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += step) {
    const std::int64_t d = e % o.head_size;  // N3
    const std::int64_t row = e / o.head_size;
    const std::int64_t t = row / o.num_heads;
    const std::int64_t h = row % o.num_heads;
    const T p = prefix[t * o.prefix_token_stride + h * o.prefix_head_stride + d];  // N1
    const T s = suffix[t * o.suffix_token_stride + h * o.suffix_head_stride + d];
    Out& out = output[t * o.output_token_stride + h * o.output_head_stride + d];
    const float ls = o.suffix_lse[h * o.suffix_lse_head_stride + t * o.suffix_lse_token_stride];
    float lse = ls;
    if (t >= o.merged_tokens) {  // no prefix context: the suffix element, its raw LSE
      out = merge::copy_value<T, Out>(s, scale_inverse);
    } else {
      const float lp = o.prefix_lse[h * o.prefix_lse_head_stride + t * o.prefix_lse_token_stride];
      const merge::Weights w = merge::merge_weights(lp, ls);  // N2: once per element
      lse = w.lse;
      out = w.merge ? merge::store_value<T, Out>(merge::merge_value(to_float(p), to_float(s), w),
                                                 scale_inverse)
                    : merge::copy_value<T, Out>(p, scale_inverse);
    }
    if (o.output_lse != nullptr && d == 0) {
      o.output_lse[h * o.output_lse_head_stride + t * o.output_lse_token_stride] = lse;
    }
  }
}

}  // namespace pagedkv::kernels::merge_naive

namespace pagedkv {

void MergeAttnStates::naive(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels;
  const std::int64_t total = plan.rows() * plan.head_size;
  if (total == 0) return;  // nothing to do, and no empty grid
  const std::int64_t wanted = (total + merge_naive::kThreads - 1) / merge_naive::kThreads;
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>(wanted, 1 << 30));
  const merge::Operands operands = merge::operands_of(plan, args);
  norm::dispatch_norm_dtype(plan.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (plan.fp8_output) {
      merge_naive::merge_kernel<T, std::uint8_t>
          <<<blocks, merge_naive::kThreads, 0, stream>>>(operands);
    } else {
      merge_naive::merge_kernel<T, T><<<blocks, merge_naive::kThreads, 0, stream>>>(operands);
    }
    PAGEDKV_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace pagedkv
