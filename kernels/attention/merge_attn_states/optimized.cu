// merge_attn_states, optimized CUDA version: per element the same device functions as naive.cu
// (merge_math.cuh), so the two are bit-identical; after vLLM
// csrc/libtorch_stable/attention/merge_attn_states.cu (one thread per 16-byte pack). A pure
// stream: both partial outputs read once, the output written once, the LSEs read once. Each
// trick names the naive note it removes:
//   M1 one thread per 16-byte pack (8 bf16 / f16, 4 f32; the fp8 output's 8 or 4 bytes),
//      where every address and stride allows it, else one element per access (N1).
//   M2 the LSEs read, and expf / division / logf computed, once per (token, head), by the
//      row's first lane; the two scales reach the row's other lanes by warp shuffles (N2).
//      Upstream has every pack's thread read both LSEs and compute the scales again.
//   M3 a row (token, head) is a group of lanes, a power of two >= its packs (16 lanes for
//      D = 128 in bf16, two rows per warp); the lane finds its row with one division per row,
//      in 32 bits when the rows fit (N3).
//   M4 the lane's first pack of both inputs is loaded before the LSEs are read, so the two
//      memory latencies overlap instead of following each other (N4); a token without prefix
//      (t >= prefill_tokens_with_context) loads no prefix at all.
//   M5 256 threads per block and one row group per warp: the grid covers the rows once.
// The full story: chapter "merge_attn_states".
#include <algorithm>
#include <cstdint>

#include "attention/merge_attn_states/merge_math.cuh"
#include "common/dispatch.cuh"
#include "common/vec.cuh"
#include "norm/norm_math.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/merge_attn_states.h"

namespace pagedkv::kernels::merge_optimized {

/// Threads per block (M5).
constexpr int kThreads = 256;

/// \brief How lanes map to rows: `1 << lanes_log2` lanes per (token, head), `packs` packs each.
struct LaneMap {
  int lanes_log2;    ///< log2 of the lanes of one row (0 .. 5)
  int packs;         ///< packs of kVec elements in one head: head_size / kVec
  bool rows_fit_32;  ///< every row index and num_heads fit in 32 bits (M3)
};

/// \brief One group of lanes per (token, head) (M3), one pack per lane and access (M1).
/// \tparam T float, __half or __nv_bfloat16: the input type.
/// \tparam Out T, or std::uint8_t for an fp8 E4M3 output.
/// \tparam kVec elements per pack: 16 / sizeof(T), or 1 where an address or stride forbids it.
/// \param o the operands.
/// \param map how lanes map to rows.
template <typename T, typename Out, int kVec>
__global__ void __launch_bounds__(kThreads) merge_kernel(merge::Operands o, LaneMap map) {
  using InVector = AlignedVector<T, kVec>;
  using OutVector = AlignedVector<Out, kVec>;
  constexpr unsigned kFullWarp = 0xffffffffu;
  const int lane = static_cast<int>(threadIdx.x) & 31;
  const int lanes = 1 << map.lanes_log2;
  const int lane_in_row = lane & (lanes - 1);
  const int leader = lane - lane_in_row;  // the row's first lane
  const int rows_per_warp = 32 >> map.lanes_log2;
  const std::int64_t rows = o.num_tokens * o.num_heads;
  const std::int64_t warp = (blockIdx.x * static_cast<std::int64_t>(kThreads) + threadIdx.x) >> 5;
  const std::int64_t warps = (static_cast<std::int64_t>(gridDim.x) * kThreads) >> 5;
  const float scale_inverse = o.output_scale != nullptr ? 1.0f / *o.output_scale : 1.0f;

  // The loop runs the same number of times on every lane of a warp: the shuffles below see
  // the whole warp.
  for (std::int64_t first = warp * rows_per_warp; first < rows; first += warps * rows_per_warp) {
    const std::int64_t row = first + (lane >> map.lanes_log2);
    const bool valid = row < rows;
    std::int64_t t, h;  // M3: one division per row
    if (map.rows_fit_32) {
      const auto r = static_cast<std::uint32_t>(row);
      const auto heads = static_cast<std::uint32_t>(o.num_heads);
      t = r / heads;
      h = r - static_cast<std::uint32_t>(t) * heads;
    } else {
      t = row / o.num_heads;
      h = row - t * o.num_heads;
    }
    const bool merged = t < o.merged_tokens;
    const T* p = static_cast<const T*>(o.prefix) + t * o.prefix_token_stride +
                 h * o.prefix_head_stride;
    const T* s = static_cast<const T*>(o.suffix) + t * o.suffix_token_stride +
                 h * o.suffix_head_stride;
    Out* out = static_cast<Out*>(o.output) + t * o.output_token_stride + h * o.output_head_stride;

    // M4: the lane's first pack is on its way before the LSEs are known.
    const bool has_pack = valid && lane_in_row < map.packs;
    InVector first_p{}, first_s{};
    if (has_pack) {
      first_s = load_vector<kVec>(s + lane_in_row * kVec);  // M1
      if (merged) first_p = load_vector<kVec>(p + lane_in_row * kVec);
    }

    // M2: the row's first lane reads the LSEs and computes the weights, once.
    merge::Weights w{0.f, 0.f, 0.f, true};
    if (valid && lane_in_row == 0) {
      const float ls = o.suffix_lse[h * o.suffix_lse_head_stride + t * o.suffix_lse_token_stride];
      if (merged) {
        w = merge::merge_weights(
            o.prefix_lse[h * o.prefix_lse_head_stride + t * o.prefix_lse_token_stride], ls);
      } else {
        w.lse = ls;  // no prefix context: the raw suffix LSE
      }
    }
    w.p_scale = __shfl_sync(kFullWarp, w.p_scale, leader);
    w.s_scale = __shfl_sync(kFullWarp, w.s_scale, leader);
    w.merge = __shfl_sync(kFullWarp, static_cast<int>(w.merge), leader) != 0;

    if (has_pack) {
      // One pack: the suffix copied (no prefix context), the prefix copied (two empty key
      // sets), or the two merged.
      const auto merge_pack = [&](const InVector& pv, const InVector& sv, int pack) {
        OutVector ov;
#pragma unroll
        for (int k = 0; k < kVec; ++k) {
          if (!merged) {
            ov.elements[k] = merge::copy_value<T, Out>(sv.elements[k], scale_inverse);
          } else if (!w.merge) {
            ov.elements[k] = merge::copy_value<T, Out>(pv.elements[k], scale_inverse);
          } else {
            ov.elements[k] = merge::store_value<T, Out>(
                merge::merge_value(to_float(pv.elements[k]), to_float(sv.elements[k]), w),
                scale_inverse);
          }
        }
        store_vector<kVec>(out + pack * kVec, ov);
      };
      merge_pack(first_p, first_s, lane_in_row);
      // Heads of more packs than 32 lanes: the lane's further packs.
      for (int pack = lane_in_row + lanes; pack < map.packs; pack += lanes) {
        const InVector sv = load_vector<kVec>(s + pack * kVec);
        const InVector pv = merged ? load_vector<kVec>(p + pack * kVec) : InVector{};
        merge_pack(pv, sv, pack);
      }
    }
    if (valid && lane_in_row == 0 && o.output_lse != nullptr) {
      o.output_lse[h * o.output_lse_head_stride + t * o.output_lse_token_stride] = w.lse;
    }
  }
}

/// \brief Elements per pack for T (M1): 16 / sizeof(T) if every base address and every token
/// and head stride of the three [N, H, D] tensors allow it, else 1.
/// \tparam T float, __half or __nv_bfloat16.
/// \param plan the validated plan.
/// \param args the arguments.
/// \return 16 / sizeof(T) or 1.
template <typename T>
int vector_width(const MergeAttnStates::Plan& plan, const MergeAttnStates::Args& args) {
  constexpr int kWide = static_cast<int>(16 / sizeof(T));
  const std::size_t out_bytes = plan.fp8_output ? kWide : 16;
  const bool fits = plan.head_size % kWide == 0 && is_aligned(args.prefix_output.data, 16) &&
                    is_aligned(args.suffix_output.data, 16) &&
                    is_aligned(args.output.data, out_bytes) &&
                    stride_allows(plan.prefix_token_stride, plan.num_tokens, kWide) &&
                    stride_allows(plan.prefix_head_stride, plan.num_heads, kWide) &&
                    stride_allows(plan.suffix_token_stride, plan.num_tokens, kWide) &&
                    stride_allows(plan.suffix_head_stride, plan.num_heads, kWide) &&
                    stride_allows(plan.output_token_stride, plan.num_tokens, kWide) &&
                    stride_allows(plan.output_head_stride, plan.num_heads, kWide);
  return fits ? kWide : 1;
}

/// \brief Lanes per row (M3): the smallest power of two >= packs, at most 32.
/// \param packs packs in one head.
/// \return log2 of the lanes.
inline int lanes_log2_for(std::int64_t packs) {
  int log2 = 0;
  while (log2 < 5 && (std::int64_t{1} << log2) < packs) ++log2;
  return log2;
}

}  // namespace pagedkv::kernels::merge_optimized

namespace pagedkv {

void MergeAttnStates::optimized(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels;
  using namespace pagedkv::kernels::merge_optimized;
  const std::int64_t rows = plan.rows();
  if (rows == 0) return;  // nothing to do, and no empty grid
  const merge::Operands operands = merge::operands_of(plan, args);
  norm::dispatch_norm_dtype(plan.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int kWide = static_cast<int>(16 / sizeof(T));
    const int vec = vector_width<T>(plan, args);
    LaneMap map;
    map.packs = static_cast<int>(plan.head_size / vec);
    map.lanes_log2 = lanes_log2_for(map.packs);
    map.rows_fit_32 = rows < (std::int64_t{1} << 32);
    const std::int64_t rows_per_block = (kThreads / 32) * (32 >> map.lanes_log2);  // M5
    const auto blocks = static_cast<unsigned>(
        std::min<std::int64_t>((rows + rows_per_block - 1) / rows_per_block, 1 << 30));
    const auto launch = [&](auto out_tag, auto vec_tag) {
      using Out = typename decltype(out_tag)::type;
      constexpr int kVec = decltype(vec_tag)::value;
      merge_kernel<T, Out, kVec><<<blocks, kThreads, 0, stream>>>(operands, map);
    };
    const auto with_out = [&](auto vec_tag) {
      if (plan.fp8_output) {
        launch(TypeTag<std::uint8_t>{}, vec_tag);
      } else {
        launch(TypeTag<T>{}, vec_tag);
      }
    };
    if (vec == kWide) {
      with_out(std::integral_constant<int, kWide>{});
    } else {
      with_out(std::integral_constant<int, 1>{});
    }
    PAGEDKV_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace pagedkv
