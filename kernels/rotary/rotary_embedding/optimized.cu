// rotary_embedding, optimized CUDA version: a streaming in-place pass over query and key, each
// byte read once and written once, the angles read once per token.
//
// What this version does differently from the naive one (not yet measured on a GPU: no number
// below comes from a run):
//   R1 16-byte vectors of pairs: NeoX loads x[j..j+7] and y[j..j+7] of one head (bf16; f32: 4)
//      with one instruction each, GPT-J the 8 interleaved values of 4 pairs; consecutive
//      threads take consecutive vectors of a head, so a warp reads whole 128-byte lines.
//   R2 the block's cos_sin_cache rows are staged once in shared memory as fp32 (the sines
//      already negated for `inverse`): each row is read from DRAM once per block and
//      converted once, then every head of the token takes its angles from shared memory. The
//      staging (a position, then its row: two dependent loads) runs while the first batch of
//      query / key loads is in flight, so its latency is not added to theirs.
//   R3 several tokens per block when a token has few pairs: a block works on a group of
//      tokens_per_block tokens whose (token, head, vector) items fill ~kRowsPerThread items per
//      thread, so small heads do not leave most threads idle.
//   R4 every thread first loads up to kRowsPerThread vectors of pairs (x and y), then rotates
//      and stores them: kRowsPerThread independent 2 × 16-byte loads in flight per thread,
//      where a load-rotate-store loop would wait for each load in turn.
//   R5 the FMA of each rotated value is explicit (kernels/mla/rope.cuh, shared with
//      concat_and_cache_mla_rope_fused), so this kernel, the naive kernel and the CPU reference
//      agree bit for bit however nvcc would have fused.
//   R6 a layout no vector fits (strides, offset or rot_dim / 2 not multiples of the vector,
//      misaligned pointers) falls back to one pair per item with scalar accesses.
// Registers (nvcc 13.0.88, -Xptxas -v, code=sm_90; no instantiation spills): NeoX 16-byte
// items 110 (bf16), 79 (f16), 80 (f32); GPT-J 16-byte items 80 (bf16), 64 (f16), 64 (f32);
// the scalar fallback (R6) 54. The cos_sin_cache dtype (f32 or the activations') changes none.
// The full story: chapter "rotary_embedding".
#include "pagedkv/ops/rotary_embedding.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "common/convert.cuh"
#include "common/fault.cuh"
#include "common/device.cuh"
#include "common/vec.cuh"
#include "mla/rope.cuh"
#include "pagedkv/cuda_runtime.h"
#include "rotary/rotary_dispatch.cuh"

namespace pagedkv::kernels::rotary_optimized {

/// Threads per block.
constexpr int kThreadsPerBlock = 256;
/// Blocks an SM must hold at once: caps the registers at 65536 / (256 × 2) = 128 per thread.
/// Two blocks keep 512 threads × kRowsPerThread × 32 bytes = 64 KiB of loads in flight per SM
/// (trick R4). A cap of 3 blocks (85 registers) makes the bf16 NeoX kernel spill 112 bytes.
constexpr int kMinBlocksPerSm = 2;
/// Items (vectors of pairs of one head) a thread loads before it rotates any (trick R4).
constexpr int kRowsPerThread = 4;
/// fp32 values of staged cos_sin_cache rows per block (trick R2): 32 KiB, one row of
/// RotaryEmbedding::kMaxRotDim at most.
constexpr int kMaxStagedValues = 8192;
static_assert(kMaxStagedValues >= RotaryEmbedding::kMaxRotDim, "a whole row must fit");

/// \brief The kPairs pairs of one item, kept as loaded (16-bit values stay packed two to a
/// register). NeoX: the x values and the y values, each a vector of kPairs.
/// \tparam T float, __half or __nv_bfloat16.
/// \tparam kNeox the pair style.
/// \tparam kPairs pairs per item.
template <typename T, bool kNeox, int kPairs>
struct Pairs {
  AlignedVector<T, kPairs> x;  ///< the pairs' first values
  AlignedVector<T, kPairs> y;  ///< the pairs' second values
  /// \brief Pair i's first value.
  /// \param i the pair.
  /// \return a reference to it.
  __device__ __forceinline__ T& first(int i) { return x.elements[i]; }
  /// \brief Pair i's second value.
  /// \param i the pair.
  /// \return a reference to it.
  __device__ __forceinline__ T& second(int i) { return y.elements[i]; }
  /// \brief Loads pairs j .. j + kPairs − 1 of one head (trick R1).
  /// \param rotated the head's first rotated element.
  /// \param half rot_dim / 2.
  /// \param j the first pair, a multiple of kPairs.
  __device__ __forceinline__ void load(const T* rotated, int half, int j) {
    x = load_vector<kPairs>(rotated + j);
    y = load_vector<kPairs>(rotated + half + j);
  }
  /// \brief Stores them back where load() found them.
  /// \param rotated the head's first rotated element.
  /// \param half rot_dim / 2.
  /// \param j the first pair.
  __device__ __forceinline__ void store(T* rotated, int half, int j) const {
    store_vector<kPairs>(rotated + j, x);
    store_vector<kPairs>(rotated + half + j, y);
  }
};

/// \brief GPT-J: the kPairs pairs of one item are 2 × kPairs neighbours, one vector.
/// \tparam T float, __half or __nv_bfloat16.
/// \tparam kPairs pairs per item.
template <typename T, int kPairs>
struct Pairs<T, false, kPairs> {
  AlignedVector<T, 2 * kPairs> xy;  ///< x0, y0, x1, y1, ...
  /// \brief Pair i's first value.
  /// \param i the pair.
  /// \return a reference to it.
  __device__ __forceinline__ T& first(int i) { return xy.elements[2 * i]; }
  /// \brief Pair i's second value.
  /// \param i the pair.
  /// \return a reference to it.
  __device__ __forceinline__ T& second(int i) { return xy.elements[2 * i + 1]; }
  /// \brief Loads pairs j .. j + kPairs − 1 of one head (trick R1; R6 when kPairs is 1).
  /// \param rotated the head's first rotated element.
  /// \param half rot_dim / 2 (unused: GPT-J pairs are neighbours).
  /// \param j the first pair, a multiple of kPairs.
  __device__ __forceinline__ void load(const T* rotated, int half, int j) {
    if constexpr (kPairs == 1) {
      // Trick R6: a GPT-J pair of a misaligned head may not be one aligned 2-element vector.
      xy.elements[0] = rotated[2 * j];
      xy.elements[1] = rotated[2 * j + 1];
    } else {
      xy = load_vector<2 * kPairs>(rotated + 2 * j);
    }
  }
  /// \brief Stores them back where load() found them.
  /// \param rotated the head's first rotated element.
  /// \param half rot_dim / 2 (unused).
  /// \param j the first pair.
  __device__ __forceinline__ void store(T* rotated, int half, int j) const {
    if constexpr (kPairs == 1) {
      rotated[2 * j] = xy.elements[0];
      rotated[2 * j + 1] = xy.elements[1];
    } else {
      store_vector<2 * kPairs>(rotated + 2 * j, xy);
    }
  }
};

/// \brief One group of tokens_per_block tokens per block (grid-stride over groups): rotate its
/// (token, head, vector) items, kRowsPerThread at a time per thread (R3, R4), the group's
/// angles staged (R2) while the first items load.
/// \tparam T float, __half or __nv_bfloat16.
/// \tparam Cache float or T: the element type of cos_sin_cache.
/// \tparam kNeox the pair style.
/// \tparam kPairs pairs per item (16 bytes of loads, or 1: trick R6).
/// \param positions [T].
/// \param query [T, num_heads, head_size] with the plan's strides; rotated in place.
/// \param key [T, num_kv_heads, head_size] with the plan's strides (unread when
/// plan.num_kv_heads is 0: no key); rotated in place.
/// \param cos_sin_cache [max_position, rot_dim].
/// \param plan sizes, strides and flags.
/// \param tokens_per_block tokens in a group (trick R3).
/// \param fault the device's fault record: set by a deferred index check, it makes the kernel
/// return before writing anything.
template <typename T, typename Cache, bool kNeox, int kPairs>
__global__ void __launch_bounds__(kThreadsPerBlock, kMinBlocksPerSm)
    rotary_embedding_kernel(const std::int64_t* __restrict__ positions, T* __restrict__ query,
                            T* __restrict__ key, const Cache* __restrict__ cos_sin_cache,
                            RotaryEmbeddingPlan plan, int tokens_per_block,
                            const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred index check rejected the call
  extern __shared__ float angles[];  // [tokens_per_block, rot_dim]: cosines, then ± sines
  const int rot_dim = static_cast<int>(plan.rot_dim);
  const int half = rot_dim / 2;
  const int vectors_per_head = half / kPairs;
  const int num_heads = static_cast<int>(plan.num_heads);
  const int heads_per_token = num_heads + static_cast<int>(plan.num_kv_heads);
  const int items_per_token = heads_per_token * vectors_per_head;

  for (std::int64_t first_token = static_cast<std::int64_t>(blockIdx.x) * tokens_per_block;
       first_token < plan.num_tokens;
       first_token += static_cast<std::int64_t>(gridDim.x) * tokens_per_block) {
    const int tokens =
        static_cast<int>(std::min<std::int64_t>(tokens_per_block, plan.num_tokens - first_token));
    __syncthreads();  // the previous group's items have read their angles

    // Tricks R3 and R4: the group's items, kRowsPerThread per thread: all loads, then the rest.
    const int items = tokens * items_per_token;
    for (int base = 0; base < items; base += kRowsPerThread * blockDim.x) {
      Pairs<T, kNeox, kPairs> pairs[kRowsPerThread];
      T* rotated[kRowsPerThread];
      int angle_row[kRowsPerThread];  // offset of the token's row in `angles`
      int first_pair[kRowsPerThread];
#pragma unroll
      for (int r = 0; r < kRowsPerThread; ++r) {
        const int item = base + r * blockDim.x + threadIdx.x;
        rotated[r] = nullptr;
        if (item >= items) continue;
        const int t = item / items_per_token;
        const int in_token = item - t * items_per_token;
        const int head = in_token / vectors_per_head;
        first_pair[r] = (in_token - head * vectors_per_head) * kPairs;
        angle_row[r] = t * rot_dim;
        const std::int64_t token = first_token + t;
        rotated[r] = head < num_heads ? query + token * plan.query_token_stride +
                                            head * plan.query_head_stride
                                      : key + token * plan.key_token_stride +
                                            (head - num_heads) * plan.key_head_stride;
        rotated[r] += plan.rope_dim_offset;
        pairs[r].load(rotated[r], half, first_pair[r]);
      }
      if (base == 0) {  // the same for every thread of the block: the barrier is safe
        // Trick R2: the group's rows, once, as fp32 (the sine negated for the inverse
        // rotation), read while the first batch's loads are in flight (their values are
        // needed only below).
        for (int e = threadIdx.x; e < tokens * rot_dim; e += blockDim.x) {
          const int t = e / rot_dim;
          const int i = e - t * rot_dim;
          const float value = to_float(cos_sin_cache[positions[first_token + t] * rot_dim + i]);
          angles[e] = plan.inverse && i >= half ? -value : value;
        }
        __syncthreads();
      }
#pragma unroll
      for (int r = 0; r < kRowsPerThread; ++r) {
        if (rotated[r] == nullptr) continue;
        const float* cosines = angles + angle_row[r] + first_pair[r];
        const float* sines = cosines + half;
#pragma unroll
        for (int i = 0; i < kPairs; ++i) {
          // Trick R5: rope.cuh's rotation, the FMA explicit.
          const float2 v = mla::rotate_pair(to_float(pairs[r].first(i)),
                                            to_float(pairs[r].second(i)), cosines[i], sines[i]);
          pairs[r].first(i) = mla::from_float<T>(v.x);
          pairs[r].second(i) = mla::from_float<T>(v.y);
        }
        pairs[r].store(rotated[r], half, first_pair[r]);
      }
    }
  }
}

/// \brief Whether items of kPairs pairs fit the layout: every vector address aligned (R1),
/// else the caller takes kPairs = 1 (R6).
/// \tparam T the activation type.
/// \param plan the validated plan.
/// \param args the arguments (pointers).
/// \param pairs pairs per item.
/// \param neox the pair style.
/// \return true when every load and store of `pairs` pairs is aligned.
template <typename T>
bool vectors_fit(const RotaryEmbeddingPlan& plan, const RotaryEmbedding::Args& args, int pairs,
                 bool neox) {
  const int elements = neox ? pairs : 2 * pairs;  // per load
  const auto fits = [&](const void* data, std::int64_t token_stride, std::int64_t heads,
                        std::int64_t head_stride) {
    return is_aligned(data, elements * sizeof(T)) &&
           stride_allows(token_stride, plan.num_tokens, elements) &&
           stride_allows(head_stride, heads, elements);
  };
  return (plan.rot_dim / 2) % pairs == 0 && plan.rope_dim_offset % elements == 0 &&
         fits(args.query.data, plan.query_token_stride, plan.num_heads, plan.query_head_stride) &&
         (plan.num_kv_heads == 0 ||
          fits(args.key.data, plan.key_token_stride, plan.num_kv_heads, plan.key_head_stride));
}

/// \brief Launches one instantiation: the group size (R3), the grid and the shared memory.
/// \tparam T the activation type.
/// \tparam Cache the cos_sin_cache element type.
/// \tparam kNeox the pair style.
/// \tparam kPairs pairs per item.
/// \param plan the validated plan.
/// \param args the arguments.
/// \param stream where to launch.
template <typename T, typename Cache, bool kNeox, int kPairs>
void launch(const RotaryEmbeddingPlan& plan, const RotaryEmbedding::Args& args,
            cudaStream_t stream) {
  const std::int64_t items_per_token =
      (plan.num_heads + plan.num_kv_heads) * (plan.rot_dim / 2 / kPairs);
  // Trick R3: enough tokens per group for ~kRowsPerThread items per thread, as many as the
  // staged rows allow, and no more than leave a block per SM or two for small calls.
  std::int64_t tokens_per_block = std::max<std::int64_t>(
      1, std::min<std::int64_t>(kThreadsPerBlock * kRowsPerThread / items_per_token,
                                kMaxStagedValues / plan.rot_dim));
  const std::int64_t blocks_wanted = 2 * static_cast<std::int64_t>(sm_count());
  tokens_per_block = std::max<std::int64_t>(
      1, std::min(tokens_per_block, plan.num_tokens / blocks_wanted));
  const std::int64_t items_per_group = tokens_per_block * items_per_token;
  const int threads = static_cast<int>(
      std::clamp<std::int64_t>((items_per_group + 31) / 32 * 32, 32, kThreadsPerBlock));
  const std::int64_t groups = (plan.num_tokens + tokens_per_block - 1) / tokens_per_block;
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>(groups, 1 << 30));
  const auto shared_bytes =
      static_cast<std::size_t>(tokens_per_block * plan.rot_dim) * sizeof(float);
  rotary_embedding_kernel<T, Cache, kNeox, kPairs><<<blocks, threads, shared_bytes, stream>>>(
      static_cast<const std::int64_t*>(args.positions.data), static_cast<T*>(args.query.data),
      static_cast<T*>(args.key.data), static_cast<const Cache*>(args.cos_sin_cache.data), plan,
      static_cast<int>(tokens_per_block), device_fault());
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv::kernels::rotary_optimized

namespace pagedkv {

void RotaryEmbedding::optimized(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels;
  using namespace pagedkv::kernels::rotary_optimized;
  if (plan.num_tokens == 0) return;  // zero tokens: nothing to do, and no empty grid
  dispatch_activation_and_cache(plan.dtype, plan.cache_dtype, [&](auto activation_tag,
                                                                  auto cache_tag) {
    using T = typename decltype(activation_tag)::type;
    using Cache = typename decltype(cache_tag)::type;
    // The widest items, 16 bytes per load: NeoX 16 / sizeof(T) pairs (x and y loaded apart),
    // GPT-J half as many (x and y interleaved in one load).
    constexpr int kNeoxPairs = 16 / static_cast<int>(sizeof(T));
    constexpr int kGptjPairs = kNeoxPairs / 2;
    if (plan.is_neox) {
      if (vectors_fit<T>(plan, args, kNeoxPairs, true)) {
        launch<T, Cache, true, kNeoxPairs>(plan, args, stream);
      } else {
        launch<T, Cache, true, 1>(plan, args, stream);
      }
    } else {
      if (vectors_fit<T>(plan, args, kGptjPairs, false)) {
        launch<T, Cache, false, kGptjPairs>(plan, args, stream);
      } else {
        launch<T, Cache, false, 1>(plan, args, stream);
      }
    }
  });
}

}  // namespace pagedkv
