// process_kv, optimized CUDA version. The row of one token and one head (head_dim values of K,
// the same of V) is the unit of work: its [scale, zero] needs the whole row's range before any
// code can be written, so the job is a small reduction between wide loads and wide stores.
// Nothing is reused across rows except each lane's bias and frequencies (no shared memory).
//
// What this version does differently from the naive one:
//   P1 one group of head_dim / 8 lanes per row (16 lanes for 128, 8 for 64): lane l holds dims
//      8l .. 8l + 7 of K and of V, loaded with one 16-byte load each, so a group reads a whole
//      256-byte row in one instruction. A CTA of 128 threads takes a tile of 64 tokens of one
//      head of one sequence (upstream's grid: cdiv(max_q_len, 64) × head_num × batch).
//   P2 what depends only on the dims is computed once per lane, before the tile: its 8 bias
//      values and the inverse frequencies of its 4 RoPE pairs (2^x, the ramp or the blend);
//      per token only the angle's sin and cos remain.
//   P3 the row's min and max by xor-shuffles inside the group (log2(lanes) steps); a lane whose
//      token is past q_len contributes NaN, which min_of / max_of skip, so every lane of the
//      warp shuffles. min and max are exact in any order (−0 below +0 by rule), so the result
//      equals the CPU's loop.
//   P4 the codes are packed in registers and leave as one store per lane: 16 bytes of K (and
//      of V) for policy 0, 8 bytes of int8 codes, 4 bytes of int4 codes (one 32-bit word, the
//      nibbles in upstream's order); the group's first lane stores [scale, zero] as one 4-byte
//      word.
//   P5 a layout no vector fits (k, v or a bias not 16-byte aligned, a stride not a multiple of
//      8 elements, a layer region not 16-byte aligned in its block) runs the naive kernel.
//
// Expected speed (not yet measured on a GPU): a token and head moves 2 × 256 bytes in and
// 2 × (256, 128 + 4 or 64 + 4) bytes out, in whole 32-byte sectors except the 4-byte
// parameters. The RoPE angles cost about 40 float operations per pair, 4 pairs per lane and
// token, far below what the bytes take at 3 TB/s. So the large points should run at 80-90 % of
// a copy of the same bytes; what is lost is the parameter writes and the shuffle latency
// between the loads and the stores.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "common/dispatch.cuh"
#include "common/vec.cuh"
#include "lmdeploy/turbomind_kv.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/ops/process_kv.h"

namespace pagedkv::kernels::turbomind {

void launch_process_kv_naive(const TurbomindKvPlan& plan, const ProcessKv::Args& args,
                             cudaStream_t stream);

namespace {

constexpr int kThreads = 128;  // 4 warps
constexpr int kTile = 64;      // tokens per CTA
constexpr unsigned kFullWarp = 0xFFFFFFFFu;

// 8 values of T from a 16-byte vector, as floats.
template <typename T>
__device__ __forceinline__ void unpack(const AlignedVector<T, 8>& vector, float* values) {
#pragma unroll
  for (int i = 0; i < 8; ++i) values[i] = to_float(vector.elements[i]);
}

template <typename T, int kBits>
__global__ void __launch_bounds__(kThreads) process_kv_optimized(KvParams p) {
  if (call_rejected(p.fault)) return;  // a deferred check rejected the call
  const TurbomindKvPlan& plan = p.plan;
  const int dim = plan.layout.head_dim;
  const int lanes = dim / 8;  // P1: lanes per row
  const int lane = static_cast<int>(threadIdx.x) % lanes;
  const int group = static_cast<int>(threadIdx.x) / lanes;
  const int groups = kThreads / lanes;
  const std::int64_t b = blockIdx.z;
  const int h = static_cast<int>(blockIdx.y);
  const std::int64_t tile = static_cast<std::int64_t>(blockIdx.x) * kTile;
  const std::int64_t q_begin = p.cu_q_len[b];
  const std::int64_t q_len = static_cast<std::int64_t>(p.cu_q_len[b + 1]) - q_begin;
  if (tile >= q_len) return;  // the whole CTA: an empty tile
  const std::int64_t history = static_cast<std::int64_t>(p.cu_k_len[b + 1]) - p.cu_k_len[b] - q_len;
  const std::int64_t readonly_len =
      p.readonly_block_num != nullptr ? p.readonly_block_num[b] * plan.block_seq_len * plan.cp_size
                                      : 0;
  const int d0 = lane * 8;

  // P2: the lane's bias values and pair frequencies, once.
  float k_bias[8], v_bias[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) k_bias[i] = v_bias[i] = 0.f;
  if (p.k_bias != nullptr)
    unpack(load_vector<8>(static_cast<const T*>(p.k_bias) + h * dim + d0), k_bias);
  if (p.v_bias != nullptr)
    unpack(load_vector<8>(static_cast<const T*>(p.v_bias) + h * dim + d0), v_bias);
  const TurbomindRope& rope = plan.rope;
  const bool rotates = rope.type != static_cast<int>(TurbomindRopeType::none) && d0 < rope.dim;
  float inv_freq[4] = {0.f, 0.f, 0.f, 0.f};
  if (rotates) {
    const float scale_factor = scale_factor_of(rope, b);
#pragma unroll
    for (int j = 0; j < 4; ++j) inv_freq[j] = tm::rope_inv_freq(rope, scale_factor, d0 + 2 * j);
  }
  const TurbomindLayout& layout = plan.layout;

  for (std::int64_t t = tile + group; t < tile + kTile; t += groups) {
    const bool active = t < q_len;
    float key[8], value[8];
    if (active) {
      const std::int64_t input_row = q_begin + t;
      unpack(load_vector<8>(static_cast<const T*>(p.k) + input_row * plan.token_stride +
                            h * plan.head_stride + d0),
             key);
      unpack(load_vector<8>(static_cast<const T*>(p.v) + input_row * plan.v_token_stride +
                            h * plan.v_head_stride + d0),
             value);
      if (p.k_bias != nullptr) {
#pragma unroll
        for (int i = 0; i < 8; ++i) key[i] = in_t<T>(tm::add(key[i], k_bias[i]));
      }
      if (p.v_bias != nullptr) {
#pragma unroll
        for (int i = 0; i < 8; ++i) value[i] = in_t<T>(tm::add(value[i], v_bias[i]));
      }
      if (rotates) {
#pragma unroll
        for (int j = 0; j < 4; ++j)
          rotate_pair<T>(rope, inv_freq[j], history + t, key[2 * j], key[2 * j + 1]);
      }
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) key[i] = value[i] = tm::float_of(0x7FC00000u);  // P3: skipped
    }
    const std::int64_t ti = history + t;
    const bool stores = active && ti % plan.cp_size == plan.cp_rank && ti >= readonly_len;
    const std::int64_t local = ti / plan.cp_size;
    std::uint8_t* block = nullptr;
    int row = 0;
    if (stores) {
      block = p.pool + p.blocks[p.cu_block_num[b] + local / plan.block_seq_len] + plan.layer_offset;
      row = static_cast<int>(local % plan.block_seq_len);
    }
    if constexpr (kBits == 16) {
      if (stores) {  // P4: one 16-byte store each
        AlignedVector<T, 8> k_vec, v_vec;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          k_vec.elements[i] = to_t<T>(key[i]);
          v_vec.elements[i] = to_t<T>(value[i]);
        }
        store_vector(reinterpret_cast<T*>(block + layout.k_data(h, row)) + d0, k_vec);
        store_vector(reinterpret_cast<T*>(block + layout.v_data(h, row)) + d0, v_vec);
      }
    } else {
      // P3: each row's range, by the lane's 8 values and then the group's shuffles.
      float k_lo = key[0], k_hi = key[0], v_lo = value[0], v_hi = value[0];
#pragma unroll
      for (int i = 1; i < 8; ++i) {
        k_lo = tm::min_of(k_lo, key[i]);
        k_hi = tm::max_of(k_hi, key[i]);
        v_lo = tm::min_of(v_lo, value[i]);
        v_hi = tm::max_of(v_hi, value[i]);
      }
      for (int mask = lanes / 2; mask > 0; mask /= 2) {
        k_lo = tm::min_of(k_lo, __shfl_xor_sync(kFullWarp, k_lo, mask));
        k_hi = tm::max_of(k_hi, __shfl_xor_sync(kFullWarp, k_hi, mask));
        v_lo = tm::min_of(v_lo, __shfl_xor_sync(kFullWarp, v_lo, mask));
        v_hi = tm::max_of(v_hi, __shfl_xor_sync(kFullWarp, v_hi, mask));
      }
      if (stores) {
        const float k_scale = in_t<T>(tm::scale_of(k_lo, k_hi, kBits));
        const float v_scale = in_t<T>(tm::scale_of(v_lo, v_hi, kBits));
        const float k_inv = in_t<T>(tm::div(1.f, k_scale));
        const float v_inv = in_t<T>(tm::div(1.f, v_scale));
        // P4: the codes in registers, one store per lane.
        if constexpr (kBits == 8) {
          uint2 k_codes{0u, 0u}, v_codes{0u, 0u};
#pragma unroll
          for (int i = 0; i < 8; ++i) {
            const std::uint32_t kc = code_of<T>(key[i], k_lo, k_inv, 8);
            const std::uint32_t vc = code_of<T>(value[i], v_lo, v_inv, 8);
            if (i < 4) {
              k_codes.x |= kc << (8 * i);
              v_codes.x |= vc << (8 * i);
            } else {
              k_codes.y |= kc << (8 * (i - 4));
              v_codes.y |= vc << (8 * (i - 4));
            }
          }
          *reinterpret_cast<uint2*>(block + layout.k_data(h, row) + d0) = k_codes;
          *reinterpret_cast<uint2*>(block + layout.v_data(h, row) + d0) = v_codes;
        } else {
          std::uint32_t k_word = 0, v_word = 0;
#pragma unroll
          for (int i = 0; i < 8; ++i) {
            k_word |= code_of<T>(key[i], k_lo, k_inv, 4) << tm::int4_shift(i);
            v_word |= code_of<T>(value[i], v_lo, v_inv, 4) << tm::int4_shift(i);
          }
          *reinterpret_cast<std::uint32_t*>(block + layout.k_data(h, row) + d0 / 2) = k_word;
          *reinterpret_cast<std::uint32_t*>(block + layout.v_data(h, row) + d0 / 2) = v_word;
        }
        if (lane == 0) {  // P4: [scale, zero] as one 4-byte word
          AlignedVector<T, 2> k_param{{to_t<T>(k_scale), to_t<T>(k_lo)}};
          AlignedVector<T, 2> v_param{{to_t<T>(v_scale), to_t<T>(v_lo)}};
          store_vector(reinterpret_cast<T*>(block + layout.k_param(h, row)), k_param);
          store_vector(reinterpret_cast<T*>(block + layout.v_param(h, row)), v_param);
        }
      }
    }
  }
}

// P5: whether every 16-byte vector of the call is aligned.
bool vectors_fit(const TurbomindKvPlan& plan, const ProcessKv::Args& args) {
  const auto fits = [](const TensorView& view) {
    return view.data == nullptr ||
           (is_aligned(view.data, 16) && stride_allows(view.stride(0), view.size(0), 8) &&
            (view.ndim < 3 || stride_allows(view.stride(1), view.size(1), 8)));
  };
  return fits(args.k) && fits(args.v) && fits(args.k_bias) && fits(args.v_bias) &&
         plan.layer_offset % 16 == 0;
}

}  // namespace

}  // namespace pagedkv::kernels::turbomind

namespace pagedkv {

void ProcessKv::optimized(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace kernels::turbomind;
  if (plan.batch == 0 || plan.max_len == 0) return;
  if (!vectors_fit(plan, args)) {
    launch_process_kv_naive(plan, args, stream);  // P5
    return;
  }
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
  const dim3 grid(static_cast<unsigned>((plan.max_len + kTile - 1) / kTile),
                  static_cast<unsigned>(plan.layout.head_num), static_cast<unsigned>(plan.batch));
  const auto launch = [&](auto type_tag) {
    using T = typename decltype(type_tag)::type;
    switch (plan.quant_bits) {
      case 8: process_kv_optimized<T, 8><<<grid, kThreads, 0, stream>>>(p); break;
      case 4: process_kv_optimized<T, 4><<<grid, kThreads, 0, stream>>>(p); break;
      default: process_kv_optimized<T, 16><<<grid, kThreads, 0, stream>>>(p); break;
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
