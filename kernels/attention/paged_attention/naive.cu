// paged_attention_v1 / paged_attention_v2 / paged_attention_rocm, naive CUDA version: the CPU
// reference's loops in CUDA clothing, for the three ops (rocm: v2 with partitions of 256 from
// the plan, its query rows from query_start_loc, its single partition merged, its optional
// fp8 output; as the reference does).
//
// One thread block of 128 threads per (sequence, query head), and for v2 per partition too.
// The block walks its tokens one at a time, three times:
//   1. every logit, to find the largest;
//   2. every logit again, to sum exp(logit - max);
//   3. every logit a third time, its probability rounded to T, times the token's value row,
//      accumulated per output element.
// A logit is one dot product over the head: each thread multiplies the query and key elements
// d = thread, thread + 128 (head_size <= 256), and a shared-memory tree adds the 128 partial
// sums. Recomputing instead of storing the logits keeps the kernel free of any limit on the
// sequence length (upstream's v1 keeps all of them in shared memory) and makes each pass a
// plain loop. Head size and block size are run-time values, the element types template
// parameters. v2 then merges the partitions with one more block per (sequence, query head).
// Correct for every call the contract accepts, and obvious; slow: each key is read three
// times by each of its query heads, 4 bytes at most per load, seven barriers per token.
// Not yet measured on a GPU.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "common/convert.cuh"
#include "common/dispatch.cuh"
#include "attention/merge_attn_states/merge_math.cuh"
#include "common/fault.cuh"
#include "convert_fp8/convert_fp8.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/paged_attention_v1.h"
#include "pagedkv/ops/paged_attention_rocm.h"
#include "pagedkv/ops/paged_attention_v2.h"
#include "pagedkv/paged_attention.h"

namespace pagedkv::kernels::paged_attention_naive {

/// Threads per block: 128, as upstream.
constexpr int kThreads = 128;
/// The largest head size (the shared query row and each thread's two output elements).
constexpr int kMaxHeadSize = 256;

/// \brief One cache element as the kernels read it: the element ("auto"), or
/// round_T(float(fp8) × scale).
/// \tparam T the query's dtype (float, __half or __nv_bfloat16).
/// \tparam kKind how the cache stores elements.
/// \param cache the cache.
/// \param index the element's index.
/// \param scale k_scale or v_scale (fp8).
/// \return the element as float.
template <typename T, KvCacheDtype kKind>
__device__ float cache_element(const void* cache, std::int64_t index, float scale) {
  if constexpr (kKind == KvCacheDtype::kAuto) {
    return to_float(static_cast<const T*>(cache)[index]);
  } else {
    return to_float(
        convert_fp8::dequantize_one<kKind, T>(static_cast<const std::uint8_t*>(cache)[index],
                                              scale));
  }
}

/// \brief The sum of every thread's `value`, on every thread: a shared-memory tree.
/// \param value this thread's term.
/// \param scratch kThreads floats of shared memory.
/// \return the sum.
__device__ float block_sum(float value, float* scratch) {
  scratch[threadIdx.x] = value;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) scratch[threadIdx.x] += scratch[threadIdx.x + half];
    __syncthreads();
  }
  const float sum = scratch[0];
  __syncthreads();  // scratch is reused by the next call
  return sum;
}

/// \brief The logit of token `t`: scale × q · k_t (+ ALiBi), the dot product over the head
/// split across the block (thread i takes d = i, i + 128) and added by block_sum().
/// \tparam T the query's dtype.
/// \tparam kKind how the cache stores elements.
/// \param plan sizes and strides.
/// \param data device pointers.
/// \param q the query row, as floats, in shared memory.
/// \param blocks the sequence's row of block_tables.
/// \param g the kv head.
/// \param h the query head.
/// \param t the token.
/// \param L the sequence's length.
/// \param scratch kThreads floats of shared memory.
/// \return the logit.
template <typename T, KvCacheDtype kKind>
__device__ float logit_of(const PagedAttentionPlan& plan, const PagedAttentionData& data,
                          const float* q, const std::int32_t* blocks, std::int64_t g,
                          std::int64_t h, std::int64_t t, std::int64_t L, float* scratch) {
  const std::int64_t B = plan.block_size, x = plan.x;
  const std::int64_t base = static_cast<std::int64_t>(blocks[t / B]) * plan.block_stride +
                            g * plan.head_stride + (t % B) * x;
  const float k_scale = kKind == KvCacheDtype::kAuto ? 1.f : *data.k_scale;
  float partial = 0.f;
  for (std::int64_t d = threadIdx.x; d < plan.head_size; d += kThreads) {
    // key_cache[block, g, d / x, t % B, d % x]
    partial += q[d] * cache_element<T, kKind>(data.key_cache, base + (d / x) * B * x + d % x,
                                              k_scale);
  }
  float logit = plan.scale * block_sum(partial, scratch);
  if (data.alibi_slopes != nullptr) {
    const float slope = data.alibi_slopes[h * plan.alibi_stride];
    if (slope != 0.f) logit += slope * static_cast<float>(t - L + 1);
  }
  return logit;
}

/// \brief One thread block per (sequence, query head, partition), grid-stride: the three
/// passes of the file's header over the partition's tokens (v1: the whole sequence).
/// \tparam T the query's dtype.
/// \tparam kKind how the cache stores elements.
/// \param plan sizes and strides from the contract.
/// \param data device pointers.
/// \param fault the device's fault record: set by a deferred check, the kernel writes nothing.
template <typename T, KvCacheDtype kKind>
__global__ void __launch_bounds__(kThreads)
    paged_attention_naive_kernel(PagedAttentionPlan plan, PagedAttentionData data,
                                 const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred check rejected the call
  __shared__ float q[kMaxHeadSize];
  __shared__ float scratch[kThreads];
  const std::int64_t H = plan.num_heads, D = plan.head_size, B = plan.block_size;
  const std::int64_t G = plan.num_heads / plan.num_kv_heads;
  const bool v2 = plan.partition_size > 0;
  const std::int64_t P = v2 ? plan.max_partitions : 1;
  const std::int64_t items = plan.num_seqs * H * P;
  for (std::int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const std::int64_t s = item / (H * P), h = item / P % H, part = item % P;
    const std::int64_t g = h / G;
    const std::int64_t row = attention_query_row(data, s);  // rocm: -1 for a skipped sequence
    if (row < 0) continue;
    const std::int64_t L = data.seq_lens[s];
    const std::int64_t begin = v2 ? part * plan.partition_size : 0;
    if (begin >= L) continue;  // a partition past the sequence's end: nothing to write
    const std::int64_t end = v2 ? std::min(L, begin + plan.partition_size) : L;
    const std::int32_t* blocks = data.block_tables + s * plan.table_stride;

    const T* query = static_cast<const T*>(data.query);
    for (std::int64_t d = threadIdx.x; d < D; d += kThreads) {
      q[d] = to_float(query[row * plan.query_stride[0] + h * plan.query_stride[1] + d]);
    }
    __syncthreads();

    // 1. The largest logit.
    float max_logit = -INFINITY;
    for (std::int64_t t = begin; t < end; ++t) {
      max_logit = fmaxf(max_logit, logit_of<T, kKind>(plan, data, q, blocks, g, h, t, L, scratch));
    }
    // 2. The sum of exp(logit - max).
    float exp_sum = 0.f;
    for (std::int64_t t = begin; t < end; ++t) {
      exp_sum += __expf(logit_of<T, kKind>(plan, data, q, blocks, g, h, t, L, scratch) - max_logit);
    }
    const float inv_sum = 1.f / (exp_sum + 1e-6f);
    // 3. Each thread's output elements d = thread, thread + 128: the values weighted by the
    //    probabilities, each rounded to T first (as upstream).
    const float v_scale = kKind == KvCacheDtype::kAuto ? 1.f : *data.v_scale;
    float acc[kMaxHeadSize / kThreads] = {};
    for (std::int64_t t = begin; t < end; ++t) {
      const float e = __expf(logit_of<T, kKind>(plan, data, q, blocks, g, h, t, L, scratch) -
                             max_logit);
      const float p = to_float(convert_fp8::from_float<T>(e * inv_sum));
      const std::int64_t base = static_cast<std::int64_t>(blocks[t / B]) * plan.block_stride +
                                g * plan.head_stride + t % B;
      for (int i = 0; i < kMaxHeadSize / kThreads; ++i) {
        const std::int64_t d = threadIdx.x + i * kThreads;
        // value_cache[block, g, d, t % B]
        if (d < D) acc[i] += p * cache_element<T, kKind>(data.value_cache, base + d * B, v_scale);
      }
    }
    for (int i = 0; i < kMaxHeadSize / kThreads; ++i) {
      const std::int64_t d = threadIdx.x + i * kThreads;
      if (d >= D) continue;
      if (v2) {
        static_cast<T*>(data.tmp_out)[s * plan.tmp_out_stride[0] + h * plan.tmp_out_stride[1] +
                                      part * plan.tmp_out_stride[2] + d] =
            convert_fp8::from_float<T>(acc[i]);
      } else {
        static_cast<T*>(data.out)[row * plan.out_stride[0] + h * plan.out_stride[1] + d] =
            convert_fp8::from_float<T>(acc[i]);
      }
    }
    if (v2 && threadIdx.x == 0) {
      data.max_logits[s * plan.max_logits_stride[0] + h * plan.max_logits_stride[1] +
                      part * plan.max_logits_stride[2]] = max_logit;
      data.exp_sums[s * plan.exp_sums_stride[0] + h * plan.exp_sums_stride[1] +
                    part * plan.exp_sums_stride[2]] = exp_sum;
    }
    __syncthreads();  // q is rewritten by the next item
  }
}

/// \brief v2's merge, one thread block per (sequence, query head), grid-stride: with one
/// partition, its output copied (rocm's merge, the same kernel: merged all the same); else out = Σ_p tmp_out[p] × w_p / (Σ_p w_p + 1e-6), w_p =
/// exp_sums[p] × exp(max_logits[p] - max_p max_logits[p]). Each thread loops over the
/// partitions itself for the maximum and the sum.
/// \tparam T the query's dtype.
/// \param plan sizes and strides from the contract.
/// \param data device pointers.
/// \param fault the device's fault record: set by a deferred check, the kernel writes nothing.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    paged_attention_naive_merge(PagedAttentionPlan plan, PagedAttentionData data,
                                const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred check rejected the call
  const std::int64_t H = plan.num_heads, D = plan.head_size;
  const T* tmp_out = static_cast<const T*>(data.tmp_out);
  T* out = static_cast<T*>(data.out);
  const float out_scale_inverse =
      data.fp8_out_scale != nullptr ? 1.0f / *data.fp8_out_scale : 1.0f;
  for (std::int64_t item = blockIdx.x; item < plan.num_seqs * H; item += gridDim.x) {
    const std::int64_t s = item / H, h = item % H;
    const std::int64_t out_row = attention_query_row(data, s);
    if (out_row < 0) continue;  // rocm: a sequence the call skips
    const std::int64_t partitions =
        (data.seq_lens[s] + plan.partition_size - 1) / plan.partition_size;
    const float* max_logits = data.max_logits + s * plan.max_logits_stride[0] +
                              h * plan.max_logits_stride[1];
    const float* exp_sums = data.exp_sums + s * plan.exp_sums_stride[0] +
                            h * plan.exp_sums_stride[1];
    const T* tmp = tmp_out + s * plan.tmp_out_stride[0] + h * plan.tmp_out_stride[1];
    const std::int64_t row_offset = out_row * plan.out_stride[0] + h * plan.out_stride[1];
    T* row = out + row_offset;
    if (partitions == 1 && !plan.merge_single_partition) {
      for (std::int64_t d = threadIdx.x; d < D; d += kThreads) row[d] = tmp[d];
      continue;
    }
    float max_logit = -INFINITY;
    for (std::int64_t p = 0; p < partitions; ++p) {
      max_logit = fmaxf(max_logit, max_logits[p * plan.max_logits_stride[2]]);
    }
    float total = 0.f;
    for (std::int64_t p = 0; p < partitions; ++p) {
      total += exp_sums[p * plan.exp_sums_stride[2]] *
               expf(max_logits[p * plan.max_logits_stride[2]] - max_logit);
    }
    const float inv_total = 1.f / (total + 1e-6f);
    for (std::int64_t d = threadIdx.x; d < D; d += kThreads) {
      float acc = 0.f;
      for (std::int64_t p = 0; p < partitions; ++p) {
        const float weight = exp_sums[p * plan.exp_sums_stride[2]] *
                             expf(max_logits[p * plan.max_logits_stride[2]] - max_logit);
        acc += to_float(tmp[p * plan.tmp_out_stride[2] + d]) * weight * inv_total;
      }
      if (plan.fp8_output) {  // rocm: e4m3(clamp(acc × (1 / fp8_out_scale), ±448))
        static_cast<std::uint8_t*>(data.out)[row_offset + d] =
            merge::fp8_output(acc, out_scale_inverse);
      } else {
        row[d] = convert_fp8::from_float<T>(acc);
      }
    }
  }
}

/// \brief Blocks for `items` work items (the kernels are grid-stride).
/// \param items (sequence, head[, partition]) triples.
/// \return the grid size.
inline unsigned grid_for(std::int64_t items) {
  return static_cast<unsigned>(std::min<std::int64_t>(items, std::int64_t{1} << 30));
}

}  // namespace pagedkv::kernels::paged_attention_naive

namespace pagedkv {

namespace attention {

void naive(const PagedAttentionPlan& plan, const PagedAttentionData& data, cudaStream_t stream) {
  using namespace pagedkv::kernels;
  using namespace pagedkv::kernels::paged_attention_naive;
  if (plan.num_seqs == 0) return;  // an empty batch: nothing to write
  const bool v2 = plan.partition_size > 0;
  const std::int64_t items = plan.num_seqs * plan.num_heads * (v2 ? plan.max_partitions : 1);
  const DeviceFault* fault = device_fault();
  dispatch_activation_and_cache_kind(plan.dtype, plan.cache_kind, [&](auto t_tag, auto kind_tag) {
    using T = typename decltype(t_tag)::type;
    constexpr KvCacheDtype kKind = decltype(kind_tag)::value;
    paged_attention_naive_kernel<T, kKind><<<grid_for(items), kThreads, 0, stream>>>(plan, data,
                                                                                      fault);
    PAGEDKV_CUDA_CHECK_LAUNCH();
    if (v2) {
      paged_attention_naive_merge<T><<<grid_for(plan.num_seqs * plan.num_heads), kThreads, 0,
                                       stream>>>(plan, data, fault);
      PAGEDKV_CUDA_CHECK_LAUNCH();
    }
  });
}

}  // namespace attention

void PagedAttentionV1::naive(const Plan& plan, const Args& args, cudaStream_t stream) {
  attention::naive(plan, paged_attention_data(plan, args), stream);
}

void PagedAttentionV2::naive(const Plan& plan, const Args& args, cudaStream_t stream) {
  attention::naive(plan, paged_attention_data(plan, args), stream);
}

void PagedAttentionRocm::naive(const Plan& plan, const Args& args, cudaStream_t stream) {
  attention::naive(plan, paged_attention_data(plan, args), stream);
}

}  // namespace pagedkv
