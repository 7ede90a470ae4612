// reshape_and_cache_flash, optimized CUDA version: a scatter of whole head rows, so the job is to
// keep enough wide, aligned accesses in flight. Nothing is reused: no shared memory.
//
// What this version does differently (H100, W1, 65536 tokens; % of a device copy of the bytes):
//   F1 16-byte vectors, the widest every real address allows; fp8: 16 per vector, 84-87 -> 91-95 %.
//   F2 a power-of-two group of threads per token (W1 bf16: 64 threads, 4 tokens per CTA).
//   F3 the slot read, and divided into (block, offset), once per token and thread.
//   F4 64 bytes of loads in flight per thread, issued before the slot arrives.
//   F5 a per-tensor scale read once per thread, a per-head scale once per vector.
//   F6 consecutive threads take consecutive vectors of a head row: whole, coalesced sectors.
//   F7 fp8: convert pairs in the loaded registers: 76 -> 64 registers, 3 -> 4 CTAs per SM.
//   F8 fp8: two values per conversion instruction (encode_fp8_pair), the same bytes.
// fp8 cache: 55 % before F1's 16-element vectors, F7 and F8; a reciprocal instead of the true
// x / scale was slower (88-91 %) and was dropped. Random slots, NHD: bf16 93.8 %, fp8 93.4 %.
// The full story: chapter "Writing the cache", page "reshape_and_cache_flash".
#include "pagedkv/ops/reshape_and_cache_flash.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/convert.cuh"
#include "common/dispatch.cuh"
#include "common/fault.cuh"
#include "common/fp8_pair.cuh"
#include "common/vec.cuh"
#include "pagedkv/cuda_runtime.h"

namespace pagedkv::kernels::flash_optimized {

/// Threads per block (a multiple of every threads_per_token, which are powers of two ≤ it).
constexpr int kThreadsPerBlock = 256;
/// Blocks per SM the register budget must allow (__launch_bounds__): 4 × 256 threads, at most
/// 64 registers per thread.
constexpr int kMinBlocksPerSm = 4;
/// Bytes of activations each thread loads before its first store (trick F4).
constexpr int kLoadBytesInFlight = 64;

/// Most vectors per thread and round: narrow vectors (misaligned layouts) do not get more
/// loads than 16-byte ones (registers).
constexpr int kMaxUnroll = 4;

/// \brief Vectors each thread loads before it stores: kLoadBytesInFlight of activations, at
/// least one vector and at most kMaxUnroll (trick F4).
/// \tparam Activation key/value element type.
/// \tparam kVec elements per vector.
/// \return the number of vectors per thread and round.
template <typename Activation, int kVec>
constexpr int unroll_for() {
  constexpr int vector_bytes = kVec * static_cast<int>(sizeof(Activation));
  constexpr int by_bytes = kLoadBytesInFlight / vector_bytes;
  return by_bytes < 1 ? 1 : (by_bytes > kMaxUnroll ? kMaxUnroll : by_bytes);
}

/// \brief What the kernel needs besides the pointers, derived on the host from the plan and the
/// chosen vector width. Strides in elements.
struct TokenWork {
  std::int64_t num_tokens = 0;    ///< slots to process
  std::int64_t key_stride = 0;    ///< key.stride(0)
  std::int64_t value_stride = 0;  ///< value.stride(0)
  std::int64_t block_size = 0;    ///< slots per block
  std::int64_t block_stride = 0;  ///< cache stride(0)
  std::int64_t page_stride = 0;   ///< cache stride(1)
  std::int64_t head_stride = 0;   ///< cache stride(2)
  int vectors_per_head = 0;       ///< head_size / kVec
  int vectors_per_row = 0;        ///< num_heads × vectors_per_head: one token's key (or value) row
  int vectors_per_token = 0;      ///< 2 × vectors_per_row: the key row, then the value row
  int threads_per_token = 0;      ///< power of two dividing kThreadsPerBlock
  bool per_head_scale = false;    ///< k_scale / v_scale hold num_heads values
};

/// \brief Activations 2p and 2p + 1 of a loaded vector as floats (exact), unpacked from their
/// shared 32-bit register: a bf16 is the top half of an fp32, so the pair costs one shift and
/// one mask. (Copying the vector element by element first would give every 16-bit activation a
/// register of its own: twice the registers.)
/// \tparam Activation float, __half or __nv_bfloat16.
/// \tparam kCount elements of the loaded vector (even).
/// \param loaded one loaded vector.
/// \param first index of the pair's first element (even).
/// \return the two values.
template <typename Activation, int kCount>
__device__ __forceinline__ float2 pair_to_float2(const AlignedVector<Activation, kCount>& loaded,
                                                 int first) {
  if constexpr (std::is_same_v<Activation, __nv_bfloat16>) {
    std::uint32_t bits;  // element `first` in bits 0-15, `first + 1` in bits 16-31
    memcpy(&bits, &loaded.elements[first], sizeof bits);
    return make_float2(__uint_as_float(bits << 16), __uint_as_float(bits & 0xFFFF0000u));
  } else if constexpr (std::is_same_v<Activation, __half>) {
    __half2 pair;
    memcpy(&pair, &loaded.elements[first], sizeof pair);
    return __half22float2(pair);
  } else {
    return make_float2(loaded.elements[first], loaded.elements[first + 1]);
  }
}

/// \brief Converts one vector of activations into cache elements: a bit copy for "auto"; for
/// fp8, fp8(x / scale) two values at a time (tricks F7 and F8).
/// \tparam kKind how the cache stores an element.
/// \tparam kVec elements per vector.
/// \tparam Activation float, __half or __nv_bfloat16.
/// \tparam kLoadVec elements per load (kVec, or 16 bytes of activations when kVec is wider).
/// \tparam kLoads loads per vector: kVec / kLoadVec.
/// \param loaded the vector as loaded: kLoads pieces of kLoadVec elements, in memory order.
/// \param scale the scale of this vector's tensor or head (unused for "auto").
/// \return the kVec cache elements, in memory order.
template <KvCacheDtype kKind, int kVec, typename Activation, int kLoadVec, int kLoads>
__device__ __forceinline__ AlignedVector<typename CacheElement<Activation, kKind>::type, kVec>
convert_vector(const AlignedVector<Activation, kLoadVec> (&loaded)[kLoads], float scale) {
  static_assert(kLoadVec * kLoads == kVec, "a vector is kLoads loads of kLoadVec elements");
  AlignedVector<typename CacheElement<Activation, kKind>::type, kVec> converted;
  if constexpr (kKind == KvCacheDtype::kAuto) {
    (void)scale;
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      converted.elements[e] = loaded[e / kLoadVec].elements[e % kLoadVec];
    }
  } else if constexpr (kVec == 1) {
    converted.elements[0] = static_cast<std::uint8_t>(
        encode_fp8_pair<kKind>(to_float(loaded[0].elements[0]), 0.f, scale));
  } else {
    // Trick F7: each pair is unpacked from its register, divided and encoded (trick F8) before
    // the next one, so that only the packed activations and the packed bytes stay live.
#pragma unroll
    for (int e = 0; e < kVec; e += 2) {
      const float2 pair = pair_to_float2(loaded[e / kLoadVec], e % kLoadVec);
      const std::uint16_t bytes = encode_fp8_pair<kKind>(pair.x, pair.y, scale);
      converted.elements[e] = static_cast<std::uint8_t>(bytes);
      converted.elements[e + 1] = static_cast<std::uint8_t>(bytes >> 8);
    }
  }
  return converted;
}

/// \brief Writes the tokens' key and value rows into their slots, kVec elements per vector.
/// \tparam Activation float, __half or __nv_bfloat16.
/// \tparam kKind how the cache stores an element.
/// \tparam kVec elements per vector; every address the kernel forms is aligned to it (host check).
/// \param key [T_pad, num_heads, head_size], rows work.key_stride apart.
/// \param value [T_pad, num_heads, head_size], rows work.value_stride apart.
/// \param key_cache [num_blocks, block_size, num_heads, head_size] with the work's strides.
/// \param value_cache same strides as key_cache.
/// \param slot_mapping [num_tokens]; negative = padding.
/// \param k_scale [1] or [num_heads]; read only for fp8.
/// \param v_scale [1] or [num_heads]; read only for fp8.
/// \param work sizes and strides.
/// \param fault the device's fault record: set by a deferred index check, it makes the kernel
/// return before writing anything.
template <typename Activation, KvCacheDtype kKind, int kVec>
__global__ void __launch_bounds__(kThreadsPerBlock, kMinBlocksPerSm) reshape_and_cache_flash_kernel(
    const Activation* __restrict__ key, const Activation* __restrict__ value,
    typename CacheElement<Activation, kKind>::type* __restrict__ key_cache,
    typename CacheElement<Activation, kKind>::type* __restrict__ value_cache,
    const std::int64_t* __restrict__ slot_mapping, const float* __restrict__ k_scale,
    const float* __restrict__ v_scale, TokenWork work, const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred index check rejected the call
  using Cache = typename CacheElement<Activation, kKind>::type;
  // Trick F1: a vector is kLoadsPerVector loads of kLoadVec elements (16 bytes at most).
  constexpr int kLoadVec =
      kVec * static_cast<int>(sizeof(Activation)) > 16 ? 16 / static_cast<int>(sizeof(Activation))
                                                       : kVec;
  constexpr int kLoadsPerVector = kVec / kLoadVec;
  constexpr int kUnroll = unroll_for<Activation, kVec>();

  // Trick F2: the block is tokens_per_block groups of threads_per_token threads, one per token.
  const int tokens_per_block = kThreadsPerBlock / work.threads_per_token;
  const int group = static_cast<int>(threadIdx.x) / work.threads_per_token;
  const int lane = static_cast<int>(threadIdx.x) % work.threads_per_token;

  // Trick F5: a per-tensor scale is read once ("auto" never reads a scale).
  float key_scale = 1.f;
  float value_scale = 1.f;
  if constexpr (is_fp8(kKind)) {
    if (!work.per_head_scale) {
      key_scale = k_scale[0];
      value_scale = v_scale[0];
    }
  }

  for (std::int64_t token = static_cast<std::int64_t>(blockIdx.x) * tokens_per_block + group;
       token < work.num_tokens; token += static_cast<std::int64_t>(gridDim.x) * tokens_per_block) {
    const std::int64_t slot = slot_mapping[token];  // trick F3: once per token
    const Activation* key_row = key + token * work.key_stride;      // [num_heads * head_size]
    const Activation* value_row = value + token * work.value_stride;

    for (int first = lane; first < work.vectors_per_token;
         first += work.threads_per_token * kUnroll) {
      // Trick F4: issue all loads first. Vector v of the token is element v * kVec of the key
      // row (v < vectors_per_row) or of the value row; rows are packed, so no head arithmetic
      // is needed on the source side.
      AlignedVector<Activation, kLoadVec> loaded[kUnroll][kLoadsPerVector];
      float head_scale[kUnroll];
#pragma unroll
      for (int k = 0; k < kUnroll; ++k) {
        const int v = first + k * work.threads_per_token;  // trick F6: lane i takes vector i
        if (v < work.vectors_per_token) {
          const bool is_value = v >= work.vectors_per_row;
          const int in_row = is_value ? v - work.vectors_per_row : v;
          const Activation* source = (is_value ? value_row : key_row) + in_row * kVec;
#pragma unroll
          for (int l = 0; l < kLoadsPerVector; ++l) {
            loaded[k][l] = load_vector<kLoadVec>(source + l * kLoadVec);
          }
          head_scale[k] = 1.f;
          if constexpr (is_fp8(kKind)) {
            if (work.per_head_scale) {
              const int head = in_row / work.vectors_per_head;
              head_scale[k] = (is_value ? v_scale : k_scale)[head];
            }
          }
        }
      }

      if (slot < 0) continue;  // padding token: nothing is written
      // Trick F3: one 64-bit division per token and round of kUnroll vectors (usually a single
      // round), not one per element. It comes after the loads so that they do not wait for it.
      const std::int64_t block = slot / work.block_size;
      const std::int64_t offset_in_block = slot - block * work.block_size;
      const std::int64_t slot_element =
          block * work.block_stride + offset_in_block * work.page_stride;

#pragma unroll
      for (int k = 0; k < kUnroll; ++k) {
        const int v = first + k * work.threads_per_token;
        if (v < work.vectors_per_token) {
          const bool is_value = v >= work.vectors_per_row;
          const int in_row = is_value ? v - work.vectors_per_row : v;
          const int head = in_row / work.vectors_per_head;
          const int d = (in_row - head * work.vectors_per_head) * kVec;  // first element
          const float scale = work.per_head_scale ? head_scale[k]
                                                  : (is_value ? value_scale : key_scale);
          const AlignedVector<Cache, kVec> converted =
              convert_vector<kKind, kVec>(loaded[k], scale);
          Cache* cache = is_value ? value_cache : key_cache;
          store_vector<kVec>(cache + slot_element + head * work.head_stride + d, converted);
        }
      }
    }
  }
}

/// \brief The widest vector (in elements) such that every address the kernel forms is aligned
/// for the activation loads (16 bytes at most each) and for the one cache store per vector
/// (trick F1). One element always works.
/// \tparam Activation key/value element type.
/// \tparam Cache cache element type.
/// \param plan the validated plan.
/// \param key the key view (its data pointer).
/// \param value the value view.
/// \param key_cache the key cache view.
/// \param value_cache the value cache view.
/// \return kVec for the launch: 16 bytes of cache per store at most (8, 8, 4 elements for a
///         bf16, f16, f32 cache; 16 for fp8), halved until aligned.
template <typename Activation, typename Cache>
int pick_vector_width(const ReshapeAndCacheFlashPlan& plan, const TensorView& key,
                      const TensorView& value, const TensorView& key_cache,
                      const TensorView& value_cache) {
  for (int count = 16 / static_cast<int>(sizeof(Cache)); count > 1; count /= 2) {
    // A vector is loaded in pieces of at most 16 bytes, and stored at once.
    const std::size_t load_bytes = std::min<std::size_t>(16, count * sizeof(Activation));
    const std::size_t store_bytes = count * sizeof(Cache);
    // Source vector addresses: row start + head * head_size + multiple of count.
    const bool source_ok = plan.head_size % count == 0 &&
                           stride_allows(plan.key_stride, plan.num_tokens, count) &&
                           stride_allows(plan.value_stride, plan.num_tokens, count) &&
                           is_aligned(key.data, load_bytes) && is_aligned(value.data, load_bytes);
    // Destination: block, page and head steps, then a multiple of count within the head row.
    const bool destination_ok = stride_allows(plan.block_stride, plan.num_blocks, count) &&
                                stride_allows(plan.page_stride, plan.block_size, count) &&
                                stride_allows(plan.head_stride, plan.num_heads, count) &&
                                is_aligned(key_cache.data, store_bytes) &&
                                is_aligned(value_cache.data, store_bytes);
    if (source_ok && destination_ok) return count;
  }
  return 1;
}

/// \brief Chooses the thread grouping for vectors of kVec elements and launches the kernel.
/// \tparam Activation key/value element type.
/// \tparam kKind cache kind.
/// \tparam kVec elements per vector (from pick_vector_width()).
/// \param plan the validated plan.
/// \param key key view.
/// \param value value view.
/// \param key_cache key cache view.
/// \param value_cache value cache view.
/// \param slot_mapping slot view.
/// \param k_scale key scale (fp8 only).
/// \param v_scale value scale (fp8 only).
/// \param stream where to launch.
template <typename Activation, KvCacheDtype kKind, int kVec>
void launch_with_vector(const ReshapeAndCacheFlashPlan& plan, const TensorView& key,
                        const TensorView& value, const TensorView& key_cache,
                        const TensorView& value_cache, const TensorView& slot_mapping,
                        const TensorView& k_scale, const TensorView& v_scale,
                        cudaStream_t stream) {
  using Cache = typename CacheElement<Activation, kKind>::type;
  constexpr int kUnroll = unroll_for<Activation, kVec>();
  TokenWork work;
  work.num_tokens = plan.num_tokens;
  work.key_stride = plan.key_stride;
  work.value_stride = plan.value_stride;
  work.block_size = plan.block_size;
  work.block_stride = plan.block_stride;
  work.page_stride = plan.page_stride;
  work.head_stride = plan.head_stride;
  // The contract bounds num_heads × head_size, so these fit in int.
  work.vectors_per_head = static_cast<int>(plan.head_size / kVec);
  work.vectors_per_row = static_cast<int>(plan.num_heads) * work.vectors_per_head;
  work.vectors_per_token = 2 * work.vectors_per_row;
  work.per_head_scale = plan.per_head_scale;

  // Trick F2: the smallest power-of-two group that covers the token in kUnroll vectors per
  // thread, at most the whole block (larger tokens loop).
  const int wanted = (work.vectors_per_token + kUnroll - 1) / kUnroll;
  work.threads_per_token = 1;
  while (work.threads_per_token < wanted && work.threads_per_token < kThreadsPerBlock) {
    work.threads_per_token *= 2;
  }
  const std::int64_t tokens_per_block = kThreadsPerBlock / work.threads_per_token;
  const std::int64_t blocks_needed = (plan.num_tokens + tokens_per_block - 1) / tokens_per_block;
  // The token loop is grid-stride, so any grid is correct; 2^30 is beyond any real size.
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>(blocks_needed, 1 << 30));

  const bool fp8 = is_fp8(kKind);
  reshape_and_cache_flash_kernel<Activation, kKind, kVec><<<blocks, kThreadsPerBlock, 0, stream>>>(
      static_cast<const Activation*>(key.data), static_cast<const Activation*>(value.data),
      static_cast<Cache*>(key_cache.data), static_cast<Cache*>(value_cache.data),
      static_cast<const std::int64_t*>(slot_mapping.data),
      fp8 ? static_cast<const float*>(k_scale.data) : nullptr,
      fp8 ? static_cast<const float*>(v_scale.data) : nullptr, work, device_fault());
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv::kernels::flash_optimized

namespace pagedkv {

void ReshapeAndCacheFlash::optimized(const Plan& plan, const Args& args, cudaStream_t stream) {
  const TensorView& key = args.key;
  const TensorView& value = args.value;
  const TensorView& key_cache = args.key_cache;
  const TensorView& value_cache = args.value_cache;
  const TensorView& slot_mapping = args.slot_mapping;
  const TensorView& k_scale = args.k_scale;
  const TensorView& v_scale = args.v_scale;
  using namespace pagedkv::kernels;
  using namespace pagedkv::kernels::flash_optimized;
  // Zero tokens (or empty rows): nothing to do, and no empty grid (upstream's launch error).
  if (plan.num_tokens == 0 || plan.num_heads == 0 || plan.head_size == 0) return;

  dispatch_activation_and_cache_kind(
      plan.activation_dtype, plan.cache_kind, [&](auto activation_tag, auto kind_tag) {
        using Activation = typename decltype(activation_tag)::type;
        constexpr KvCacheDtype kKind = decltype(kind_tag)::value;
        using Cache = typename CacheElement<Activation, kKind>::type;
        // 16 bytes of cache per store at most: 16 fp8, 8 bf16/f16 or 4 f32 elements.
        constexpr int kMaxVec = 16 / static_cast<int>(sizeof(Cache));
        const int count =
            pick_vector_width<Activation, Cache>(plan, key, value, key_cache, value_cache);
        // One instantiation per width; `if constexpr` skips widths above 16 bytes of cache.
        switch (count) {
          case 16:
            if constexpr (kMaxVec >= 16) {
              launch_with_vector<Activation, kKind, 16>(plan, key, value, key_cache, value_cache,
                                                        slot_mapping, k_scale, v_scale, stream);
            }
            return;
          case 8:
            if constexpr (kMaxVec >= 8) {
              launch_with_vector<Activation, kKind, 8>(plan, key, value, key_cache, value_cache,
                                                       slot_mapping, k_scale, v_scale, stream);
            }
            return;
          case 4:
            launch_with_vector<Activation, kKind, 4>(plan, key, value, key_cache, value_cache,
                                                     slot_mapping, k_scale, v_scale, stream);
            return;
          case 2:
            launch_with_vector<Activation, kKind, 2>(plan, key, value, key_cache, value_cache,
                                                     slot_mapping, k_scale, v_scale, stream);
            return;
          default:
            launch_with_vector<Activation, kKind, 1>(plan, key, value, key_cache, value_cache,
                                                     slot_mapping, k_scale, v_scale, stream);
            return;
        }
      });
}

}  // namespace pagedkv
