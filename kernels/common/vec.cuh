/// \file
/// \brief Aligned vectors: move 2, 4, 8 or 16 bytes with one load or store instruction.
///
/// A memory-bound kernel is fastest when each thread moves 16 bytes per instruction (`LDG.128` /
/// `STG.128`): fewer instructions, fewer memory transactions in flight for the same bytes. The
/// hardware only does that at addresses that are multiples of the vector's size, and a misaligned
/// vector access is a fatal "misaligned address" error. So the host checks alignment first
/// (is_aligned(), stride_allows()) and picks the vector width; the device code then reads and
/// writes whole AlignedVector values.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pagedkv::kernels {

/// \brief `kCount` elements stored together, aligned to their total size, so that the compiler
/// moves them with one vector instruction. The total size must be a power of two ≤ 16 bytes.
/// \tparam Element the element type (float, __half, __nv_bfloat16, std::uint8_t, ...).
/// \tparam kCount number of elements.
template <typename Element, int kCount>
struct alignas(sizeof(Element) * kCount) AlignedVector {
  static_assert((sizeof(Element) * kCount & (sizeof(Element) * kCount - 1)) == 0 &&
                    sizeof(Element) * kCount <= 16,
                "an aligned vector spans a power of two of at most 16 bytes");
  Element elements[kCount];  ///< the elements, in memory order
};

/// \brief Loads the `kCount` elements starting at `source` with one instruction.
/// \tparam kCount number of elements.
/// \tparam Element the element type.
/// \param source first element; must be aligned to `kCount * sizeof(Element)` bytes.
/// \return the elements.
template <int kCount, typename Element>
__device__ __forceinline__ AlignedVector<Element, kCount> load_vector(const Element* source) {
  return *reinterpret_cast<const AlignedVector<Element, kCount>*>(source);
}

/// \brief Stores `vector` at `destination` with one instruction.
/// \tparam kCount number of elements.
/// \tparam Element the element type.
/// \param destination first element; must be aligned to `kCount * sizeof(Element)` bytes.
/// \param vector the elements to store.
template <int kCount, typename Element>
__device__ __forceinline__ void store_vector(Element* destination,
                                             const AlignedVector<Element, kCount>& vector) {
  *reinterpret_cast<AlignedVector<Element, kCount>*>(destination) = vector;
}

/// \brief True when `address` is a multiple of `bytes` (a power of two).
/// \param address any pointer.
/// \param bytes the alignment asked for.
/// \return whether a `bytes`-wide vector may be accessed at `address`.
__host__ __device__ inline bool is_aligned(const void* address, std::size_t bytes) {
  return reinterpret_cast<std::uintptr_t>(address) % bytes == 0;
}

/// \brief True when stepping along a dimension keeps `count`-element vectors aligned: its stride
/// (in elements) is a multiple of `count`, or the dimension has a single index so that its stride
/// is never used.
/// \param stride the dimension's stride, in elements.
/// \param size the dimension's size.
/// \param count elements per vector.
/// \return whether the dimension allows vectors of `count` elements.
__host__ __device__ inline bool stride_allows(std::int64_t stride, std::int64_t size, int count) {
  return size <= 1 || stride % count == 0;
}

}  // namespace pagedkv::kernels
