// flatten_kv, optimized CUDA version: a gather of TurboMind blocks into contiguous rows, with
// the dequantization in registers.
//
// What this version does differently from the naive one:
//   F1 one group of head_dim / 8 lanes per row, lane l holding dims 8l .. 8l + 7: one load of
//      its codes (16 bytes for policy 0, 8 bytes of int8, 4 bytes of int4) and one 16-byte
//      store of K and of V per lane. A CTA of 128 threads takes a tile of 64 positions of one
//      head of one sequence (upstream's grid: cdiv(max_seq_len, 64) × head_num × batch).
//   F2 the row's [scale, zero] is one 4-byte load, the same address for every lane of the
//      group (one transaction, broadcast).
//   F3 the int4 word is decoded with shifts by the nibble order (e0 e2 e4 e6 e1 e3 e5 e7),
//      two values per byte.
//   F4 a layout no vector fits (k_out or v_out not 16-byte aligned, a stride not a multiple of
//      8 elements, a layer region not 16-byte aligned) runs the naive kernel.
//
// Expected speed (not yet measured on a GPU): like process_kv in the other direction; the large
// points should run at 80-90 % of a copy of the same bytes.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "common/dispatch.cuh"
#include "common/vec.cuh"
#include "lmdeploy/turbomind_kv.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/ops/flatten_kv.h"

namespace pagedkv::kernels::turbomind {

void launch_flatten_kv_naive(const TurbomindKvPlan& plan, const FlattenKv::Args& args,
                             cudaStream_t stream);

namespace {

constexpr int kThreads = 128;
constexpr int kTile = 64;

// The lane's 8 values of one row: codes (or values) at `data`, parameters at `param`.
template <typename T, int kBits>
__device__ __forceinline__ void load_chunk(const std::uint8_t* data, const T* param, int d0,
                                           float* values) {
  if constexpr (kBits == 16) {
    const AlignedVector<T, 8> vector = load_vector<8>(reinterpret_cast<const T*>(data) + d0);
#pragma unroll
    for (int i = 0; i < 8; ++i) values[i] = to_float(vector.elements[i]);
  } else {
    const AlignedVector<T, 2> scale_zero = load_vector<2>(param);  // F2
    const float scale = to_float(scale_zero.elements[0]);
    const float zero = to_float(scale_zero.elements[1]);
    if constexpr (kBits == 8) {
      const uint2 codes = *reinterpret_cast<const uint2*>(data + d0);
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const std::uint32_t word = i < 4 ? codes.x : codes.y;
        values[i] = value_of<T>((word >> (8 * (i % 4))) & 0xFFu, scale, zero);
      }
    } else {
      const std::uint32_t word = *reinterpret_cast<const std::uint32_t*>(data + d0 / 2);
#pragma unroll
      for (int i = 0; i < 8; ++i)  // F3
        values[i] = value_of<T>((word >> tm::int4_shift(i)) & 0xFu, scale, zero);
    }
  }
}

template <typename T, int kBits>
__global__ void __launch_bounds__(kThreads) flatten_kv_optimized(KvParams p) {
  if (call_rejected(p.fault)) return;  // a deferred check rejected the call
  const TurbomindKvPlan& plan = p.plan;
  const int dim = plan.layout.head_dim;
  const int lanes = dim / 8;  // F1
  const int lane = static_cast<int>(threadIdx.x) % lanes;
  const int group = static_cast<int>(threadIdx.x) / lanes;
  const int groups = kThreads / lanes;
  const std::int64_t b = blockIdx.z;
  const int h = static_cast<int>(blockIdx.y);
  const std::int64_t tile = static_cast<std::int64_t>(blockIdx.x) * kTile;
  const std::int64_t first_row = static_cast<std::int64_t>(p.cu_k_len[b]) - p.cu_k_len[0];
  const std::int64_t k_len = static_cast<std::int64_t>(p.cu_k_len[b + 1]) - p.cu_k_len[b];
  if (tile >= k_len) return;
  const int d0 = lane * 8;
  const TurbomindRope& rope = plan.rope;
  const bool rotates = rope.type != static_cast<int>(TurbomindRopeType::none) && d0 < rope.dim;
  float inv_freq[4] = {0.f, 0.f, 0.f, 0.f};
  if (rotates) {
    const float scale_factor = scale_factor_of(rope, b);
#pragma unroll
    for (int j = 0; j < 4; ++j) inv_freq[j] = tm::rope_inv_freq(rope, scale_factor, d0 + 2 * j);
  }
  const TurbomindLayout& layout = plan.layout;
  T* k_out = const_cast<T*>(static_cast<const T*>(p.k));
  T* v_out = const_cast<T*>(static_cast<const T*>(p.v));

  for (std::int64_t si = tile + group; si < tile + kTile && si < k_len; si += groups) {
    if (si % plan.cp_size != plan.cp_rank) continue;  // another rank's position
    const std::int64_t local = si / plan.cp_size;
    const std::uint8_t* block =
        p.pool + p.blocks[p.cu_block_num[b] + local / plan.block_seq_len] + plan.layer_offset;
    const int row = static_cast<int>(local % plan.block_seq_len);
    float key[8], value[8];
    load_chunk<T, kBits>(block + layout.k_data(h, row),
                         reinterpret_cast<const T*>(block + layout.k_param(h, row)), d0, key);
    load_chunk<T, kBits>(block + layout.v_data(h, row),
                         reinterpret_cast<const T*>(block + layout.v_param(h, row)), d0, value);
    if (rotates) {
#pragma unroll
      for (int j = 0; j < 4; ++j) rotate_pair<T>(rope, inv_freq[j], si, key[2 * j], key[2 * j + 1]);
    }
    AlignedVector<T, 8> k_vec, v_vec;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      k_vec.elements[i] = to_t<T>(key[i]);
      v_vec.elements[i] = to_t<T>(value[i]);
    }
    const std::int64_t out_row = first_row + local;
    store_vector(k_out + out_row * plan.token_stride + h * plan.head_stride + d0, k_vec);
    store_vector(v_out + out_row * plan.v_token_stride + h * plan.v_head_stride + d0, v_vec);
  }
}

// F4: whether every 16-byte vector of the call is aligned.
bool vectors_fit(const TurbomindKvPlan& plan, const FlattenKv::Args& args) {
  const auto fits = [](const TensorView& view) {
    return is_aligned(view.data, 16) && stride_allows(view.stride(0), view.size(0), 8) &&
           stride_allows(view.stride(1), view.size(1), 8);
  };
  return fits(args.k_out) && fits(args.v_out) && plan.layer_offset % 16 == 0;
}

}  // namespace

}  // namespace pagedkv::kernels::turbomind

namespace pagedkv {

void FlattenKv::optimized(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace kernels::turbomind;
  if (plan.batch == 0 || plan.max_len == 0) return;
  if (!vectors_fit(plan, args)) {
    launch_flatten_kv_naive(plan, args, stream);  // F4
    return;
  }
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
  const dim3 grid(static_cast<unsigned>((plan.max_len + kTile - 1) / kTile),
                  static_cast<unsigned>(plan.layout.head_num), static_cast<unsigned>(plan.batch));
  const auto launch = [&](auto type_tag) {
    using T = typename decltype(type_tag)::type;
    switch (plan.quant_bits) {
      case 8: flatten_kv_optimized<T, 8><<<grid, kThreads, 0, stream>>>(p); break;
      case 4: flatten_kv_optimized<T, 4><<<grid, kThreads, 0, stream>>>(p); break;
      default: flatten_kv_optimized<T, 16><<<grid, kThreads, 0, stream>>>(p); break;
    }
  };
  if (plan.dtype == DType::f16) {
    launch(kernels::TypeTag<__half>{});
  } else {
    launch(kernels::TypeTag<__nv_bfloat16>{});
  }
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv
