// concat_and_cache_mla_rope_fused, optimized CUDA version: an in-place rotation of the query
// heads (most of the bytes) and one MLA entry per token, each byte touched once.
//
// What this version does differently (the first version measured on an H100,
// results/h100-2026-12-06c.json; P4 as written now and P7 are not yet measured on a GPU):
//   P1 16-byte vectors of pairs: NeoX loads x[i..i+7] and y[i..i+7] of one head (bf16), GPT-J
//      the 8 interleaved values of 4 pairs; the matching cosines and sines with one load each.
//   P2 the block fits the token: ceil(pairs / vector / 32) warps, up to 8; small CTAs, many per SM.
//   P3 position and slot read once per thread and token; the cos/sin row is read from DRAM once
//      per token and served from L1 to every head.
//   P4 the key pair is rotated in registers and stored from there into k_pe and into the entry's
//      RoPE part. The first version rotated k_pe in place and let warp 0 alone read it back and
//      write the whole entry (concat_and_cache_mla's warp-per-entry code) while the other warps
//      waited: 79 % of a copy for bf16 and 39 % for fp8 on an H100, below the naive kernel's 45 %.
//   P5 the FMA of each rotated value is explicit (rope.cuh), so the kernel, the naive kernel and
//      the CPU reference agree bit for bit however nvcc would have fused.
//   P6 a layout no vector fits (odd strides, misaligned rows) falls back to scalar pairs/entries.
//   P7 the latent part (512 of the entry's 576 values) is spread over every thread of the block,
//      one vector each (16-byte loads; fp8: 8-byte stores, two values per conversion).
// The full story: chapter "MLA: one latent vector per token".
#include "pagedkv/ops/concat_and_cache_mla_rope_fused.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "common/convert.cuh"
#include "common/dispatch.cuh"
#include "common/fault.cuh"
#include "common/vec.cuh"
#include "mla/mla_entry.cuh"
#include "mla/rope.cuh"
#include "pagedkv/cuda_runtime.h"

namespace pagedkv::kernels::rope_fused_optimized {

/// Most threads per block (trick P2).
constexpr int kMaxThreadsPerBlock = 256;

/// \brief Rotates kPairs pairs of one head in place with vector loads and stores (trick P1).
/// \tparam T float, __half or __nv_bfloat16.
/// \tparam kNeox pairs (i, half + i), else (2i, 2i + 1).
/// \tparam kPairs pairs per vector.
/// \param head the head's first element.
/// \param cos_row the position's cos_sin_cache row.
/// \param half rot_dim / 2.
/// \param first the first pair, a multiple of kPairs.
template <typename T, bool kNeox, int kPairs>
__device__ __forceinline__ void rotate_vector(T* head, const T* cos_row, int half, int first) {
  const AlignedVector<T, kPairs> c = load_vector<kPairs>(cos_row + first);
  const AlignedVector<T, kPairs> s = load_vector<kPairs>(cos_row + half + first);
  if constexpr (kNeox) {
    AlignedVector<T, kPairs> x = load_vector<kPairs>(head + first);
    AlignedVector<T, kPairs> y = load_vector<kPairs>(head + half + first);
#pragma unroll
    for (int p = 0; p < kPairs; ++p) {
      const float2 r = mla::rotate_pair(to_float(x.elements[p]), to_float(y.elements[p]),
                                        to_float(c.elements[p]), to_float(s.elements[p]));
      x.elements[p] = mla::from_float<T>(r.x);
      y.elements[p] = mla::from_float<T>(r.y);
    }
    store_vector<kPairs>(head + first, x);
    store_vector<kPairs>(head + half + first, y);
  } else if constexpr (kPairs == 1) {
    // Trick P6's scalar path: on a misaligned head even a two-element load of one GPT-J pair
    // may not be aligned (the GPU measured cudaErrorMisalignedAddress for bf16 rows shifted by
    // one element), so x and y are loaded and stored one element at a time.
    const float2 r = mla::rotate_pair(to_float(head[2 * first]), to_float(head[2 * first + 1]),
                                      to_float(c.elements[0]), to_float(s.elements[0]));
    head[2 * first] = mla::from_float<T>(r.x);
    head[2 * first + 1] = mla::from_float<T>(r.y);
  } else {
    AlignedVector<T, 2 * kPairs> xy = load_vector<2 * kPairs>(head + 2 * first);
#pragma unroll
    for (int p = 0; p < kPairs; ++p) {
      const float2 r =
          mla::rotate_pair(to_float(xy.elements[2 * p]), to_float(xy.elements[2 * p + 1]),
                           to_float(c.elements[p]), to_float(s.elements[p]));
      xy.elements[2 * p] = mla::from_float<T>(r.x);
      xy.elements[2 * p + 1] = mla::from_float<T>(r.y);
    }
    store_vector<2 * kPairs>(head + 2 * first, xy);
  }
}

/// \brief One block per token (grid-stride): the query heads by vectors of kPairs pairs, then
/// the key pairs and the entry's latent vectors, all spread over the block's threads.
/// \tparam T float, __half or __nv_bfloat16.
/// \tparam kKind how the cache stores an element.
/// \tparam kNeox the pair style.
/// \tparam kPairs pairs per query vector (pick_pairs()).
/// \tparam kVec elements per entry vector (mla::pick_entry_vector()).
/// \param positions [>= T].
/// \param q_pe [T, num_q_heads, rot_dim] with the plan's strides; rotated in place.
/// \param k_pe [T, rot_dim], rows plan.k_pe_stride apart; rotated in place.
/// \param kv_c [T, kv_lora_rank], rows plan.kv_c_stride apart.
/// \param cos_sin_cache [max_position, rot_dim].
/// \param slot_mapping [T]; negative = padding.
/// \param kv_cache [num_blocks, block_size, kv_lora_rank + rot_dim] with the plan's strides.
/// \param scale [1]; read only for fp8.
/// \param plan sizes and strides.
/// \param fault the device's fault record: set by a deferred index check, it makes the kernel
/// return before writing anything.
template <typename T, KvCacheDtype kKind, bool kNeox, int kPairs, int kVec>
__global__ void __launch_bounds__(kMaxThreadsPerBlock)
    rope_fused_kernel(const std::int64_t* __restrict__ positions, T* __restrict__ q_pe, T* k_pe,
                      const T* __restrict__ kv_c, const T* __restrict__ cos_sin_cache,
                      const std::int64_t* __restrict__ slot_mapping,
                      typename CacheElement<T, kKind>::type* __restrict__ kv_cache,
                      const float* __restrict__ scale, ConcatAndCacheMlaRopeFusedPlan plan,
                      const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred index check rejected the call
  const int half = static_cast<int>(plan.rot_dim / 2);
  const int chunks_per_head = half / kPairs;
  const int items = static_cast<int>(plan.num_q_heads) * chunks_per_head;
  const int latent_vectors = static_cast<int>(plan.kv_lora_rank / kVec);
  float cache_scale = 1.f;
  if constexpr (is_fp8(kKind)) cache_scale = scale[0];

  for (std::int64_t token = blockIdx.x; token < plan.num_tokens; token += gridDim.x) {
    const std::int64_t slot = slot_mapping[token];  // trick P3
    const T* cos_row = cos_sin_cache + positions[token] * plan.rot_dim;
    // Every query head, padding tokens included (upstream's behaviour).
    for (int item = threadIdx.x; item < items; item += blockDim.x) {
      const int head = item / chunks_per_head;
      const int first = (item - head * chunks_per_head) * kPairs;
      rotate_vector<T, kNeox, kPairs>(
          q_pe + token * plan.q_token_stride + head * plan.q_head_stride, cos_row, half, first);
    }
    if (slot < 0) continue;  // padding: the key and the cache stay untouched
    const std::int64_t block = slot / plan.block_size;
    auto* entry =
        kv_cache + block * plan.block_stride + (slot - block * plan.block_size) * plan.entry_stride;
    // Trick P4: the key pair is rotated in registers and stored twice from there, back into
    // k_pe and into the entry's RoPE part: no read-back, no synchronisation between warps.
    T* k_row = k_pe + token * plan.k_pe_stride;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
      const int x_at = kNeox ? i : 2 * i;
      const int y_at = kNeox ? half + i : 2 * i + 1;
      const float2 r = mla::rotate_pair(to_float(k_row[x_at]), to_float(k_row[y_at]),
                                        to_float(cos_row[i]), to_float(cos_row[half + i]));
      const T x = mla::from_float<T>(r.x);
      const T y = mla::from_float<T>(r.y);
      k_row[x_at] = x;
      k_row[y_at] = y;
      entry[plan.kv_lora_rank + x_at] = to_cache<kKind>(x, cache_scale);
      entry[plan.kv_lora_rank + y_at] = to_cache<kKind>(y, cache_scale);
    }
    // Trick P7: the latent part needs no rotation: every thread of the block stores kVec-wide
    // vectors of it, with mla_entry.cuh's load and store (16-byte loads, fp8 pairs).
    const T* kv_c_row = kv_c + token * plan.kv_c_stride;
    for (int v = threadIdx.x; v < latent_vectors; v += blockDim.x) {
      mla::EntryVector<T, kVec> vector;
      mla::load_entry_vector(kv_c_row + v * kVec, vector);
      mla::store_entry_vector<kKind>(entry + v * kVec, vector, cache_scale);
    }
  }
}

/// \brief The pairs per query vector: the widest (16 bytes of loads at most) such that every
/// vector address is aligned, else 1 (trick P6).
/// \tparam T the activation type.
/// \param plan the validated plan.
/// \param args the arguments (pointers).
/// \param widest the widest kPairs instantiated.
/// \return widest or 1.
template <typename T>
int pick_pairs(const ConcatAndCacheMlaRopeFusedPlan& plan,
               const ConcatAndCacheMlaRopeFused::Args& args, int widest) {
  const int q_elements = plan.is_neox ? widest : 2 * widest;  // per query load
  const bool fits = (plan.rot_dim / 2) % widest == 0 &&
                    is_aligned(args.q_pe.data, q_elements * sizeof(T)) &&
                    stride_allows(plan.q_token_stride, plan.num_tokens, q_elements) &&
                    stride_allows(plan.q_head_stride, plan.num_q_heads, q_elements) &&
                    is_aligned(args.cos_sin_cache.data, widest * sizeof(T));
  return fits ? widest : 1;
}

/// \brief Launches one instantiation.
/// \tparam T the activation type.
/// \tparam kKind the cache kind.
/// \tparam kNeox the pair style.
/// \tparam kPairs pairs per query vector.
/// \tparam kVec elements per entry vector.
/// \param plan the validated plan.
/// \param args the arguments.
/// \param stream where to launch.
template <typename T, KvCacheDtype kKind, bool kNeox, int kPairs, int kVec>
void launch(const ConcatAndCacheMlaRopeFusedPlan& plan,
            const ConcatAndCacheMlaRopeFused::Args& args, cudaStream_t stream) {
  using Cache = typename CacheElement<T, kKind>::type;
  // Trick P2: enough whole warps for one vector per thread, at least the entry's warp.
  const std::int64_t items = plan.num_q_heads * (plan.rot_dim / 2 / kPairs);
  const int threads =
      static_cast<int>(std::clamp<std::int64_t>((items + 31) / 32 * 32, 32, kMaxThreadsPerBlock));
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>(plan.num_tokens, 1 << 30));
  rope_fused_kernel<T, kKind, kNeox, kPairs, kVec><<<blocks, threads, 0, stream>>>(
      static_cast<const std::int64_t*>(args.positions.data), static_cast<T*>(args.q_pe.data),
      static_cast<T*>(args.k_pe.data), static_cast<const T*>(args.kv_c.data),
      static_cast<const T*>(args.cos_sin_cache.data),
      static_cast<const std::int64_t*>(args.slot_mapping.data),
      static_cast<Cache*>(args.kv_cache.data),
      is_fp8(kKind) ? static_cast<const float*>(args.kv_cache_scale.data) : nullptr, plan,
      device_fault());
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv::kernels::rope_fused_optimized

namespace pagedkv {

void ConcatAndCacheMlaRopeFused::optimized(const Plan& plan, const Args& args,
                                           cudaStream_t stream) {
  using namespace pagedkv::kernels;
  using namespace pagedkv::kernels::rope_fused_optimized;
  if (plan.num_tokens == 0) return;  // zero tokens: nothing to do, and no empty grid
  dispatch_activation_and_cache_kind(
      plan.activation_dtype, plan.cache_kind, [&](auto activation_tag, auto kind_tag) {
        using T = typename decltype(activation_tag)::type;
        constexpr KvCacheDtype kKind = decltype(kind_tag)::value;
        using Cache = typename CacheElement<T, kKind>::type;
        // The widest vectors, 16 bytes: NeoX 16 / sizeof(T) pairs (x and y loaded apart), GPT-J
        // half as many (x and y interleaved in one load); entry stores of 16 bytes of cache.
        constexpr int kNeoxPairs = 16 / static_cast<int>(sizeof(T));
        constexpr int kGptjPairs = kNeoxPairs / 2;
        constexpr int kMaxVec = mla::kMaxEntryVector<T, kKind>;  // fp8: 8-byte entry stores
        const bool wide_entry =
            mla::pick_entry_vector(plan.kv_lora_rank, plan.rot_dim, plan.num_tokens, args.kv_c,
                                   args.k_pe, args.kv_cache, static_cast<int>(sizeof(T)),
                                   static_cast<int>(sizeof(Cache)), kMaxVec) == kMaxVec;
        const auto with_pairs = [&](auto neox_tag, auto pairs_tag) {
          constexpr bool kNeox = decltype(neox_tag)::value;
          constexpr int kPairs = decltype(pairs_tag)::value;
          if (wide_entry) {
            launch<T, kKind, kNeox, kPairs, kMaxVec>(plan, args, stream);
          } else {
            launch<T, kKind, kNeox, kPairs, 1>(plan, args, stream);
          }
        };
        if (plan.is_neox) {
          if (pick_pairs<T>(plan, args, kNeoxPairs) == kNeoxPairs) {
            with_pairs(std::true_type{}, std::integral_constant<int, kNeoxPairs>{});
          } else {
            with_pairs(std::true_type{}, std::integral_constant<int, 1>{});
          }
        } else {
          if (pick_pairs<T>(plan, args, kGptjPairs) == kGptjPairs) {
            with_pairs(std::false_type{}, std::integral_constant<int, kGptjPairs>{});
          } else {
            with_pairs(std::false_type{}, std::integral_constant<int, 1>{});
          }
        }
      });
}

}  // namespace pagedkv
