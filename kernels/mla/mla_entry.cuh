/// \file
/// \brief Device code that both MLA cache writers share (concat_and_cache_mla and
/// concat_and_cache_mla_rope_fused): one entry `[kv_c row, k_pe row]` stored as the cache
/// stores it. The naive kernels store it element by element (store_entry_element()), the
/// optimized ones with one warp and 16-byte vectors (EntryVectors, load_entry(),
/// store_entry()); pick_entry_vector() chooses the widest vector every address allows.
#pragma once

#include <cstdint>

#include "common/convert.cuh"
#include "common/fp8_pair.cuh"
#include "common/vec.cuh"
#include "pagedkv/kv_cache_dtype.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv::kernels::mla {

/// \brief Stores element `i` of one entry: `kv_c_row[i]` for i < kv_lora_rank, else
/// `k_pe_row[i - kv_lora_rank]`, converted as the cache kind says. What one iteration of the CPU
/// reference's entry loop does.
/// \tparam kKind how the cache stores an element.
/// \tparam Activation float, __half or __nv_bfloat16.
/// \param entry the entry's first element, [kv_lora_rank + rope_dim].
/// \param kv_c_row the token's latent row, [kv_lora_rank].
/// \param k_pe_row the token's RoPE row, [rope_dim].
/// \param kv_lora_rank latent elements.
/// \param i the element, 0 <= i < kv_lora_rank + rope_dim.
/// \param scale the fp8 scale (unused for kAuto).
template <KvCacheDtype kKind, typename Activation>
__device__ __forceinline__ void store_entry_element(
    typename CacheElement<Activation, kKind>::type* entry, const Activation* kv_c_row,
    const Activation* k_pe_row, int kv_lora_rank, int i, float scale) {
  const Activation x = i < kv_lora_rank ? kv_c_row[i] : k_pe_row[i - kv_lora_rank];
  entry[i] = to_cache<kKind>(x, scale);
}

/// Vectors each lane of the entry's warp loads before it stores (trick: loads in flight).
constexpr int kEntryUnroll = 3;

/// \brief One lane's share of an entry, loaded and not yet stored: up to kEntryUnroll vectors of
/// kVec activations, each loaded in pieces of at most 16 bytes.
/// \tparam Activation float, __half or __nv_bfloat16.
/// \tparam kVec elements per vector (one cache store each).
template <typename Activation, int kVec>
struct EntryVectors {
  /// Elements per load: kVec, or 16 bytes of activations when kVec is wider (fp8 caches).
  static constexpr int kLoadVec = kVec * static_cast<int>(sizeof(Activation)) > 16
                                      ? 16 / static_cast<int>(sizeof(Activation))
                                      : kVec;
  /// Loads per vector.
  static constexpr int kLoads = kVec / kLoadVec;
  AlignedVector<Activation, kLoadVec> loaded[kEntryUnroll][kLoads];  ///< in memory order
};

/// \brief Loads one vector of kVec activations from `source` in pieces of at most 16 bytes.
/// \tparam Activation float, __half or __nv_bfloat16.
/// \tparam kVec elements per vector.
/// \param source the first element, aligned to a piece.
/// \param pieces where the loads go, in memory order: EntryVectors::kLoads pieces (an array of
///        that length; a pointer parameter, because Doxygen cannot parse a reference to an array).
template <typename Activation, int kVec>
__device__ __forceinline__ void load_entry_vector(
    const Activation* source,
    AlignedVector<Activation, EntryVectors<Activation, kVec>::kLoadVec>* pieces) {
  using Vectors = EntryVectors<Activation, kVec>;
#pragma unroll
  for (int l = 0; l < Vectors::kLoads; ++l) {
    pieces[l] = load_vector<Vectors::kLoadVec>(source + l * Vectors::kLoadVec);
  }
}

/// \brief Stores one loaded vector as the cache stores it, with one store: a bit copy for
/// "auto", fp8(x / scale) two values per conversion instruction for fp8.
/// \tparam kKind how the cache stores an element.
/// \tparam Activation float, __half or __nv_bfloat16.
/// \tparam kVec elements per vector.
/// \param to the vector's first cache element, aligned to the whole vector.
/// \param pieces the vector, as load_entry_vector() loaded it (EntryVectors::kLoads pieces).
/// \param scale the fp8 scale (unused for kAuto).
template <KvCacheDtype kKind, typename Activation, int kVec>
__device__ __forceinline__ void store_entry_vector(
    typename CacheElement<Activation, kKind>::type* to,
    const AlignedVector<Activation, EntryVectors<Activation, kVec>::kLoadVec>* pieces,
    float scale) {
  using Cache = typename CacheElement<Activation, kKind>::type;
  constexpr int kLoadVec = EntryVectors<Activation, kVec>::kLoadVec;
  AlignedVector<Cache, kVec> converted;
  if constexpr (kKind == KvCacheDtype::kAuto) {
    (void)scale;
#pragma unroll
    for (int e = 0; e < kVec; ++e) converted.elements[e] = pieces[e / kLoadVec].elements[e % kLoadVec];
  } else if constexpr (kVec == 1) {
    converted.elements[0] = static_cast<std::uint8_t>(
        encode_fp8_pair<kKind>(to_float(pieces[0].elements[0]), 0.f, scale));
  } else {
#pragma unroll
    for (int e = 0; e < kVec; e += 2) {
      const auto& piece = pieces[e / kLoadVec];
      const int at = e % kLoadVec;
      const std::uint16_t bytes = encode_fp8_pair<kKind>(to_float(piece.elements[at]),
                                                         to_float(piece.elements[at + 1]), scale);
      converted.elements[e] = static_cast<std::uint8_t>(bytes);
      converted.elements[e + 1] = static_cast<std::uint8_t>(bytes >> 8);
    }
  }
  store_vector<kVec>(to, converted);
}

/// \brief Loads one round of this lane's vectors of an entry: its k-th vector is
/// v = `first` + 32·k, which is `kv_c_row[v·kVec ...]` when v < latent_vectors, else
/// `k_pe_row[(v - latent_vectors)·kVec ...]`: the concatenation is index arithmetic.

/// \tparam Activation float, __half or __nv_bfloat16.
/// \tparam kVec elements per vector; divides kv_lora_rank and rope_dim.
/// \param kv_c_row the latent row, [latent_vectors · kVec].
/// \param k_pe_row the RoPE row.
/// \param latent_vectors kv_lora_rank / kVec.
/// \param entry_vectors (kv_lora_rank + rope_dim) / kVec.
/// \param first this lane's first vector of the round.
/// \param vectors where the loads go.
template <typename Activation, int kVec>
__device__ __forceinline__ void load_entry(const Activation* kv_c_row, const Activation* k_pe_row,
                                           int latent_vectors, int entry_vectors, int first,
                                           EntryVectors<Activation, kVec>& vectors) {
#pragma unroll
  for (int k = 0; k < kEntryUnroll; ++k) {
    const int v = first + 32 * k;
    if (v < entry_vectors) {
      load_entry_vector<Activation, kVec>(
          v < latent_vectors ? kv_c_row + v * kVec : k_pe_row + (v - latent_vectors) * kVec,
          vectors.loaded[k]);
    }
  }
}

/// \brief Stores what load_entry() loaded: vector v goes to `entry[v·kVec ...]` with one store
/// (store_entry_vector()).
/// \tparam kKind how the cache stores an element.
/// \tparam Activation float, __half or __nv_bfloat16.
/// \tparam kVec elements per vector.
/// \param entry the entry's first element.
/// \param entry_vectors (kv_lora_rank + rope_dim) / kVec.
/// \param first this lane's first vector of the round (as given to load_entry()).
/// \param vectors the loaded vectors.
/// \param scale the fp8 scale (unused for kAuto).
template <KvCacheDtype kKind, typename Activation, int kVec>
__device__ __forceinline__ void store_entry(typename CacheElement<Activation, kKind>::type* entry,
                                            int entry_vectors, int first,
                                            const EntryVectors<Activation, kVec>& vectors,
                                            float scale) {
#pragma unroll
  for (int k = 0; k < kEntryUnroll; ++k) {
    const int v = first + 32 * k;
    if (v < entry_vectors) {
      store_entry_vector<kKind, Activation, kVec>(entry + v * kVec, vectors.loaded[k], scale);
    }
  }
}

/// \brief The widest entry vector, in elements, for activations `Activation` stored as `kKind`.
///
/// 16 bytes of cache per store for "auto" (8 bf16 / fp16, 4 fp32), but 8 fp8 bytes per store
/// for fp8 caches, so that one store's inputs are one 16-byte load of bf16 / fp16 (two of f32).
/// A 16-byte fp8 store needs two loads and 16 conversions in registers per vector: the bf16
/// kernel needed 86 registers, two blocks per SM, and ran at 37 % of a copy on an H100 (the
/// ledger of the MLA chapter).
/// \tparam Activation float, __half or __nv_bfloat16.
/// \tparam kKind how the cache stores an element.
template <typename Activation, KvCacheDtype kKind>
inline constexpr int kMaxEntryVector =
    kKind == KvCacheDtype::kAuto
        ? 16 / static_cast<int>(sizeof(typename CacheElement<Activation, kKind>::type))
        : 8;

/// \brief The widest vector (in elements, at most `max_count`) such that every
/// address load_entry() and store_entry() form is aligned; one element always works, so a
/// layout that allows no vector falls back to scalar accesses and never to a wrong address.
/// \param kv_lora_rank latent elements.
/// \param rope_dim RoPE elements.
/// \param num_tokens tokens (a single row's stride is never used).
/// \param kv_c latent rows (pointer and stride(0)).
/// \param k_pe RoPE rows.
/// \param kv_cache the cache (pointer, stride(0), stride(1)).
/// \param activation_bytes bytes of one activation.
/// \param cache_bytes bytes of one cache element.
/// \param max_count the widest vector to try (kMaxEntryVector), a power of two.
/// \return elements per vector: max_count, max_count / 2, ..., or 1.
inline int pick_entry_vector(std::int64_t kv_lora_rank, std::int64_t rope_dim,
                             std::int64_t num_tokens, const TensorView& kv_c,
                             const TensorView& k_pe, const TensorView& kv_cache,
                             int activation_bytes, int cache_bytes, int max_count) {
  for (int count = max_count; count > 1; count /= 2) {
    const std::size_t load_bytes = count * activation_bytes > 16 ? 16 : count * activation_bytes;
    const std::size_t store_bytes = static_cast<std::size_t>(count) * cache_bytes;
    // A vector never straddles the kv_c / k_pe boundary: both widths are multiples of it.
    const bool sizes_ok = kv_lora_rank % count == 0 && rope_dim % count == 0;
    const bool source_ok = stride_allows(kv_c.stride(0), num_tokens, count) &&
                           stride_allows(k_pe.stride(0), num_tokens, count) &&
                           is_aligned(kv_c.data, load_bytes) && is_aligned(k_pe.data, load_bytes);
    const bool destination_ok = stride_allows(kv_cache.stride(0), kv_cache.size(0), count) &&
                                stride_allows(kv_cache.stride(1), kv_cache.size(1), count) &&
                                is_aligned(kv_cache.data, store_bytes);
    if (sizes_ok && source_ok && destination_ok) return count;
  }
  return 1;
}

}  // namespace pagedkv::kernels::mla
