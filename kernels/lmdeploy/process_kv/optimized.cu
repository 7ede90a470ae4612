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
//   P3 the row's min and max as integer keys (order_key): one integer min / max per value, no
//      branch, then xor-shuffles inside the group. The keys order −0 below +0 and a NaN never
//      wins, the CPU's min_of / max_of rules, so the result is the CPU's in any order.
//   P4 the codes are packed in registers and leave as one store per lane: 16 bytes of K (and
//      of V) for policy 0, 8 bytes of int8 codes, 4 bytes of int4 codes (one 32-bit word, the
//      nibbles in upstream's order); the group's first lane stores [scale, zero] as one 4-byte
//      word. A code is a saturating float-to-unsigned conversion and a min (code_of_fast), and
//      1 / scale the correctly rounded reciprocal, not a division.
//   P5 a layout no vector fits (k, v or a bias not 16-byte aligned, a stride not a multiple of
//      8 elements, a layer region not 16-byte aligned in its block) runs the naive kernel.
//   P6 a two-stage pipeline: the next token's K and V rows and block offset are loaded before
//      this token's arithmetic, and the slot arithmetic is 32-bit (64-bit division is a long
//      subroutine).
//   P7 (in turbomind_math.h) the RoPE quadrant is chosen by selects, not a switch.
//   P8 the loop is uniform across a warp, so the shuffles need no divergence checks.
//
// Measured (H100, W14, 65536 tokens; chapter "LMDeploy TurboMind"): before P3, P4's
// conversion, P6-P8, policy 0 ran at 82 % of a copy, int8 at 24.6 % and int4 at 20.7 %, the same
// time for both: instruction-bound (the NaN-aware min / max compiled to branch chains, three
// 64-bit divisions per token and lane). This version is the ledger's next step.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <climits>
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

// P3: each value widens the row's range as integer keys (turbomind_math.h: order_key), one
// integer min and one max, no branch; a NaN gets the key that never wins.
__device__ __forceinline__ void widen_range(float x, int& lo, int& hi) {
  lo = min(lo, tm::range_min_key(x));
  hi = max(hi, tm::range_max_key(x));
}

// P4: the code of x, tm::code_of's rule in two instructions after the two roundings to T:
// the conversion to an unsigned integer rounds to nearest even and saturates, so negatives
// and NaN give 0, then min() caps it at 2^bits − 1.
template <typename T, int kBits>
__device__ __forceinline__ std::uint32_t code_of_fast(float x, float zero, float inv) {
  const float scaled = in_t<T>(__fmul_rn(in_t<T>(__fsub_rn(x, zero)), inv));
  return min(__float2uint_rn(scaled), (1u << kBits) - 1u);
}

// Where token t of the tile goes: its block's first byte of the layer region and its row, or
// nullptr when another context-parallel rank or a read-only block owns it. 32-bit arithmetic:
// positions are below 2^31 (cu_k_len is int32), and 64-bit division is a long subroutine.
struct Destination {
  std::uint8_t* block = nullptr;
  int row = 0;
};

template <typename T, int kBits>
__global__ void __launch_bounds__(kThreads) process_kv_optimized(KvParams p) {
  if (call_rejected(p.fault)) return;  // a deferred check rejected the call
  const TurbomindKvPlan& plan = p.plan;
  const int dim = plan.layout.head_dim;
  const int lanes = dim / 8;  // P1: lanes per row (8 or 16)
  const int lane = static_cast<int>(threadIdx.x) % lanes;
  const int group = static_cast<int>(threadIdx.x) / lanes;
  const int groups = kThreads / lanes;
  const int b = static_cast<int>(blockIdx.z);
  const int h = static_cast<int>(blockIdx.y);
  const int tile = static_cast<int>(blockIdx.x) * kTile;
  const int q_begin = p.cu_q_len[b];
  const int q_len = p.cu_q_len[b + 1] - q_begin;
  const int t_end = min(tile + kTile, q_len);
  // P8: a warp's groups take consecutive tokens and step together, so the loop and the
  // shuffles are uniform across the warp; a warp with no token left leaves at once, a group
  // past the end of the tile computes on what it last loaded and stores nothing.
  const int warp_first = tile + static_cast<int>(threadIdx.x) / 32 * (32 / lanes);
  if (warp_first >= t_end) return;
  const int history = p.cu_k_len[b + 1] - p.cu_k_len[b] - q_len;
  const int block_seq_len = static_cast<int>(plan.block_seq_len);
  const int cp_size = static_cast<int>(plan.cp_size);
  const int cp_rank = static_cast<int>(plan.cp_rank);
  const std::int64_t readonly_len =
      p.readonly_block_num != nullptr
          ? static_cast<std::int64_t>(p.readonly_block_num[b]) * block_seq_len * cp_size
          : 0;
  const std::int64_t* blocks = p.blocks + p.cu_block_num[b];
  const int d0 = lane * 8;
  const T* k_in = static_cast<const T*>(p.k) + h * plan.head_stride + d0;
  const T* v_in = static_cast<const T*>(p.v) + h * plan.v_head_stride + d0;
  const auto destination = [&](int token) {
    Destination to;
    const int ti = history + token;
    const int local = cp_size == 1 ? ti : ti / cp_size;
    if ((cp_size == 1 || ti % cp_size == cp_rank) && ti >= readonly_len) {
      to.block = p.pool + blocks[local / block_seq_len] + plan.layer_offset;
      to.row = local % block_seq_len;
    }
    return to;
  };

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

  // P6: a two-stage pipeline: the next token's K and V rows and its block offset are loaded
  // before this token's arithmetic, so each lane keeps 16 + 16 bytes in flight through it.
  AlignedVector<T, 8> k_next{}, v_next{};
  Destination to_next;
  const auto prefetch = [&](int token) {
    if (token >= t_end) return;
    const std::int64_t input_row = q_begin + token;
    k_next = load_vector<8>(k_in + input_row * plan.token_stride);
    v_next = load_vector<8>(v_in + input_row * plan.v_token_stride);
    to_next = destination(token);
  };
  int t = tile + group;
  prefetch(t);
  for (int first = warp_first; first < t_end; first += groups, t += groups) {
    const AlignedVector<T, 8> k_now = k_next, v_now = v_next;
    const Destination to = to_next;
    to_next = Destination{};
    prefetch(t + groups);
    float key[8], value[8];
    unpack(k_now, key);
    unpack(v_now, value);
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
    if constexpr (kBits == 16) {
      if (to.block != nullptr) {  // P4: one 16-byte store each
        AlignedVector<T, 8> k_vec, v_vec;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          k_vec.elements[i] = to_t<T>(key[i]);
          v_vec.elements[i] = to_t<T>(value[i]);
        }
        store_vector(reinterpret_cast<T*>(to.block + layout.k_data(h, to.row)) + d0, k_vec);
        store_vector(reinterpret_cast<T*>(to.block + layout.v_data(h, to.row)) + d0, v_vec);
      }
    } else {
      // P3: each row's range as integer keys, the lane's 8 values, then the group's shuffles.
      int k_lo = INT_MAX, k_hi = INT_MIN, v_lo = INT_MAX, v_hi = INT_MIN;
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        widen_range(key[i], k_lo, k_hi);
        widen_range(value[i], v_lo, v_hi);
      }
#pragma unroll
      for (int mask = 8; mask > 0; mask /= 2) {
        if (mask >= lanes) continue;  // 3 steps for 8 lanes, 4 for 16
        k_lo = min(k_lo, __shfl_xor_sync(kFullWarp, k_lo, mask));
        k_hi = max(k_hi, __shfl_xor_sync(kFullWarp, k_hi, mask));
        v_lo = min(v_lo, __shfl_xor_sync(kFullWarp, v_lo, mask));
        v_hi = max(v_hi, __shfl_xor_sync(kFullWarp, v_hi, mask));
      }
      if (to.block != nullptr) {
        const float k_zero = tm::key_float(k_lo), v_zero = tm::key_float(v_lo);
        const float k_scale = in_t<T>(tm::scale_of(k_zero, tm::key_float(k_hi), kBits));
        const float v_scale = in_t<T>(tm::scale_of(v_zero, tm::key_float(v_hi), kBits));
        // P4: 1 / scale correctly rounded (what the CPU's 1.f / scale gives), by the
        // reciprocal instruction sequence rather than a general division.
        const float k_inv = in_t<T>(__frcp_rn(k_scale));
        const float v_inv = in_t<T>(__frcp_rn(v_scale));
        std::uint8_t* k_row = to.block + layout.k_data(h, to.row);
        std::uint8_t* v_row = to.block + layout.v_data(h, to.row);
        // P4: the codes in registers, one store per lane.
        if constexpr (kBits == 8) {
          uint2 k_codes{0u, 0u}, v_codes{0u, 0u};
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            k_codes.x |= code_of_fast<T, 8>(key[i], k_zero, k_inv) << (8 * i);
            k_codes.y |= code_of_fast<T, 8>(key[i + 4], k_zero, k_inv) << (8 * i);
            v_codes.x |= code_of_fast<T, 8>(value[i], v_zero, v_inv) << (8 * i);
            v_codes.y |= code_of_fast<T, 8>(value[i + 4], v_zero, v_inv) << (8 * i);
          }
          *reinterpret_cast<uint2*>(k_row + d0) = k_codes;
          *reinterpret_cast<uint2*>(v_row + d0) = v_codes;
        } else {
          std::uint32_t k_word = 0, v_word = 0;
#pragma unroll
          for (int i = 0; i < 8; ++i) {
            k_word |= code_of_fast<T, 4>(key[i], k_zero, k_inv) << tm::int4_shift(i);
            v_word |= code_of_fast<T, 4>(value[i], v_zero, v_inv) << tm::int4_shift(i);
          }
          *reinterpret_cast<std::uint32_t*>(k_row + d0 / 2) = k_word;
          *reinterpret_cast<std::uint32_t*>(v_row + d0 / 2) = v_word;
        }
        if (lane == 0) {  // P4: [scale, zero] as one 4-byte word
          AlignedVector<T, 2> k_param{{to_t<T>(k_scale), to_t<T>(k_zero)}};
          AlignedVector<T, 2> v_param{{to_t<T>(v_scale), to_t<T>(v_zero)}};
          store_vector(reinterpret_cast<T*>(to.block + layout.k_param(h, to.row)), k_param);
          store_vector(reinterpret_cast<T*>(to.block + layout.v_param(h, to.row)), v_param);
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
