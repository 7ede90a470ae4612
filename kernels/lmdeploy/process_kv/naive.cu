// process_kv, naive CUDA version: the CPU loop (reference_cpu/process_kv.cpp) in CUDA clothing.
// One thread per (sequence, new token, head): it loads the whole K and V rows into local
// arrays, adds the biases, rotates K, finds each row's range, and stores codes and parameters
// one element at a time. Grid (cdiv(max_q_len, 128), head_num, batch), as upstream's grid.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "lmdeploy/turbomind_kv.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/ops/process_kv.h"

namespace pagedkv::kernels::turbomind {

namespace {

constexpr int kThreads = 128;

// Quantizes `row` (dim values) and stores its codes at `codes` and [scale, zero] at `param`.
template <typename T>
__device__ void store_quantized(const float* row, int dim, int bits, std::uint8_t* codes,
                                T* param) {
  float lo = row[0], hi = row[0];
  for (int d = 1; d < dim; ++d) {
    lo = tm::min_of(lo, row[d]);
    hi = tm::max_of(hi, row[d]);
  }
  const float scale = in_t<T>(tm::scale_of(lo, hi, bits));
  const float inv = in_t<T>(tm::div(1.f, scale));
  param[0] = to_t<T>(scale);
  param[1] = to_t<T>(lo);
  if (bits == 8) {
    for (int d = 0; d < dim; ++d) codes[d] = static_cast<std::uint8_t>(code_of<T>(row[d], lo, inv, 8));
    return;
  }
  for (int group = 0; group < dim / 8; ++group) {
    std::uint32_t word = 0;
    for (int e = 0; e < 8; ++e) word |= code_of<T>(row[group * 8 + e], lo, inv, 4) << tm::int4_shift(e);
    for (int byte = 0; byte < 4; ++byte)
      codes[group * 4 + byte] = static_cast<std::uint8_t>(word >> (8 * byte));
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) process_kv_naive(KvParams p) {
  if (call_rejected(p.fault)) return;  // a deferred check rejected the call
  const TurbomindKvPlan& plan = p.plan;
  const std::int64_t b = blockIdx.z;
  const int h = static_cast<int>(blockIdx.y);
  const std::int64_t qi = static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const std::int64_t q_begin = p.cu_q_len[b];
  const std::int64_t q_len = static_cast<std::int64_t>(p.cu_q_len[b + 1]) - q_begin;
  if (qi >= q_len) return;
  const std::int64_t k_len = static_cast<std::int64_t>(p.cu_k_len[b + 1]) - p.cu_k_len[b];
  const std::int64_t ti = k_len - q_len + qi;
  const std::int64_t readonly_len = p.readonly_block_num != nullptr
                                        ? p.readonly_block_num[b] * plan.block_seq_len * plan.cp_size
                                        : 0;
  if (ti % plan.cp_size != plan.cp_rank || ti < readonly_len) return;
  const std::int64_t local = ti / plan.cp_size;
  std::uint8_t* block =
      p.pool + p.blocks[p.cu_block_num[b] + local / plan.block_seq_len] + plan.layer_offset;
  const int row = static_cast<int>(local % plan.block_seq_len);
  const int dim = plan.layout.head_dim;

  const T* k = static_cast<const T*>(p.k) + (q_begin + qi) * plan.token_stride + h * plan.head_stride;
  const T* v =
      static_cast<const T*>(p.v) + (q_begin + qi) * plan.v_token_stride + h * plan.v_head_stride;
  const T* k_bias = static_cast<const T*>(p.k_bias);
  const T* v_bias = static_cast<const T*>(p.v_bias);
  float key[128], value[128];
  for (int d = 0; d < dim; ++d) {
    key[d] = to_float(k[d]);
    value[d] = to_float(v[d]);
    if (k_bias != nullptr) key[d] = in_t<T>(tm::add(key[d], to_float(k_bias[h * dim + d])));
    if (v_bias != nullptr) value[d] = in_t<T>(tm::add(value[d], to_float(v_bias[h * dim + d])));
  }
  const TurbomindRope& rope = plan.rope;
  if (rope.type != static_cast<int>(TurbomindRopeType::none)) {
    const float scale_factor = scale_factor_of(rope, b);
    for (int d = 0; d < rope.dim; d += 2)
      rotate_pair<T>(rope, tm::rope_inv_freq(rope, scale_factor, d), ti, key[d], key[d + 1]);
  }
  const TurbomindLayout& layout = plan.layout;
  if (plan.quant_bits == 16) {
    T* k_out = reinterpret_cast<T*>(block + layout.k_data(h, row));
    T* v_out = reinterpret_cast<T*>(block + layout.v_data(h, row));
    for (int d = 0; d < dim; ++d) {
      k_out[d] = to_t<T>(key[d]);
      v_out[d] = to_t<T>(value[d]);
    }
    return;
  }
  store_quantized<T>(key, dim, plan.quant_bits, block + layout.k_data(h, row),
                     reinterpret_cast<T*>(block + layout.k_param(h, row)));
  store_quantized<T>(value, dim, plan.quant_bits, block + layout.v_data(h, row),
                     reinterpret_cast<T*>(block + layout.v_param(h, row)));
}

}  // namespace

/// \brief Launches the naive process_kv kernel (what ProcessKv::naive and the optimized
/// kernel's fallback run).
/// \param plan the plan.
/// \param args the arguments.
/// \param stream the stream.
void launch_process_kv_naive(const TurbomindKvPlan& plan, const ProcessKv::Args& args,
                             cudaStream_t stream) {
  if (plan.batch == 0 || plan.max_len == 0) return;
  KvParams p{plan,
             static_cast<std::uint8_t*>(args.kv_cache.data),
             static_cast<const std::int64_t*>(args.blocks.data),
             static_cast<const std::int32_t*>(args.cu_q_len.data),
             static_cast<const std::int32_t*>(args.cu_k_len.data),
             static_cast<const std::int32_t*>(args.cu_block_num.data),
             static_cast<const std::int32_t*>(args.readonly_block_num.data),
             args.k.data,
             args.v.data,
             args.k_bias.data,
             args.v_bias.data};
  p.fault = device_fault();
  const dim3 grid(static_cast<unsigned>((plan.max_len + kThreads - 1) / kThreads),
                  static_cast<unsigned>(plan.layout.head_num), static_cast<unsigned>(plan.batch));
  if (plan.dtype == DType::f16) {
    process_kv_naive<__half><<<grid, kThreads, 0, stream>>>(p);
  } else {
    process_kv_naive<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(p);
  }
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv::kernels::turbomind

namespace pagedkv {

void ProcessKv::naive(const Plan& plan, const Args& args, cudaStream_t stream) {
  kernels::turbomind::launch_process_kv_naive(plan, args, stream);
}

}  // namespace pagedkv
