// flatten_kv, naive CUDA version: the CPU loop (reference_cpu/flatten_kv.cpp) in CUDA clothing.
// One thread per (sequence, position, head): it reads the row's codes and parameters element by
// element, dequantizes, rotates K when a RoPE type is given, and writes both rows. Grid
// (cdiv(max_seq_len, 128), head_num, batch).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "lmdeploy/turbomind_kv.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/ops/flatten_kv.h"

namespace pagedkv::kernels::turbomind {

namespace {

constexpr int kThreads = 128;

// Reads one row back (dim values) from its codes and [scale, zero].
template <typename T>
__device__ void load_row(const std::uint8_t* codes, const T* param, int dim, int bits, float* row) {
  if (bits == 16) {
    const T* values = reinterpret_cast<const T*>(codes);
    for (int d = 0; d < dim; ++d) row[d] = to_float(values[d]);
    return;
  }
  const float scale = to_float(param[0]);
  const float zero = to_float(param[1]);
  for (int d = 0; d < dim; ++d) {
    std::uint32_t code;
    if (bits == 8) {
      code = codes[d];
    } else {
      const std::uint8_t* word = codes + (d / 8) * 4;
      const std::uint32_t bits32 = word[0] | word[1] << 8 | word[2] << 16 |
                                   static_cast<std::uint32_t>(word[3]) << 24;
      code = (bits32 >> tm::int4_shift(d % 8)) & 0xFu;
    }
    row[d] = value_of<T>(code, scale, zero);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) flatten_kv_naive(KvParams p) {
  if (call_rejected(p.fault)) return;  // a deferred check rejected the call
  const TurbomindKvPlan& plan = p.plan;
  const std::int64_t b = blockIdx.z;
  const int h = static_cast<int>(blockIdx.y);
  const std::int64_t si = static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const std::int64_t first_row = static_cast<std::int64_t>(p.cu_k_len[b]) - p.cu_k_len[0];
  const std::int64_t k_len = static_cast<std::int64_t>(p.cu_k_len[b + 1]) - p.cu_k_len[b];
  if (si >= k_len || si % plan.cp_size != plan.cp_rank) return;
  const std::int64_t local = si / plan.cp_size;
  const std::uint8_t* block =
      p.pool + p.blocks[p.cu_block_num[b] + local / plan.block_seq_len] + plan.layer_offset;
  const int row = static_cast<int>(local % plan.block_seq_len);
  const int dim = plan.layout.head_dim;
  const TurbomindLayout& layout = plan.layout;
  float key[128], value[128];
  load_row<T>(block + layout.k_data(h, row),
              reinterpret_cast<const T*>(block + layout.k_param(h, row)), dim, plan.quant_bits, key);
  load_row<T>(block + layout.v_data(h, row),
              reinterpret_cast<const T*>(block + layout.v_param(h, row)), dim, plan.quant_bits,
              value);
  const TurbomindRope& rope = plan.rope;
  if (rope.type != static_cast<int>(TurbomindRopeType::none)) {
    const float scale_factor = scale_factor_of(rope, b);
    for (int d = 0; d < rope.dim; d += 2)
      rotate_pair<T>(rope, tm::rope_inv_freq(rope, scale_factor, d), si, key[d], key[d + 1]);
  }
  T* k_out = const_cast<T*>(static_cast<const T*>(p.k)) + (first_row + local) * plan.token_stride +
             h * plan.head_stride;
  T* v_out = const_cast<T*>(static_cast<const T*>(p.v)) + (first_row + local) * plan.v_token_stride +
             h * plan.v_head_stride;
  for (int d = 0; d < dim; ++d) {
    k_out[d] = to_t<T>(key[d]);
    v_out[d] = to_t<T>(value[d]);
  }
}

}  // namespace

/// \brief Launches the naive flatten_kv kernel (also the optimized kernel's fallback).
/// \param plan the plan.
/// \param args the arguments.
/// \param stream the stream.
void launch_flatten_kv_naive(const TurbomindKvPlan& plan, const FlattenKv::Args& args,
                             cudaStream_t stream) {
  if (plan.batch == 0 || plan.max_len == 0) return;
  KvParams p{plan,
             static_cast<std::uint8_t*>(args.kv_cache.data),
             static_cast<const std::int64_t*>(args.blocks.data),
             nullptr,
             static_cast<const std::int32_t*>(args.cu_k_len.data),
             static_cast<const std::int32_t*>(args.cu_block_num.data),
             nullptr,
             args.k_out.data,
             args.v_out.data,
             nullptr,
             nullptr};
  p.fault = device_fault();
  const dim3 grid(static_cast<unsigned>((plan.max_len + kThreads - 1) / kThreads),
                  static_cast<unsigned>(plan.layout.head_num), static_cast<unsigned>(plan.batch));
  if (plan.dtype == DType::f16) {
    flatten_kv_naive<__half><<<grid, kThreads, 0, stream>>>(p);
  } else {
    flatten_kv_naive<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(p);
  }
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv::kernels::turbomind

namespace pagedkv {

void FlattenKv::naive(const Plan& plan, const Args& args, cudaStream_t stream) {
  kernels::turbomind::launch_flatten_kv_naive(plan, args, stream);
}

}  // namespace pagedkv
