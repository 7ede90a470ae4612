/// \file
/// \brief RowLayout: where row r of a `[..., hidden_size]` tensor starts when its leading
/// dimensions (up to three) have arbitrary strides, as vLLM's norm kernels allow.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
/// \brief `__host__ __device__` under nvcc, nothing for the host compiler: RowLayout's
/// methods run on both sides.
#define PAGEDKV_HOST_DEVICE __host__ __device__
#else
#define PAGEDKV_HOST_DEVICE
#endif

namespace pagedkv {

/// \brief The leading dimensions of a `[d0, d1, d2, hidden_size]` tensor (fewer leading
/// dimensions are padded in front with size 1), flattened into `num_rows` rows.
///
/// Row r is (i0, i1, i2) = (r / (d1·d2), (r / d2) mod d1, r mod d2) and starts at element
/// i0·stride0 + i1·stride1 + i2·stride2. A 2-D `[T, hidden_size]` tensor has d0 = d1 = 1,
/// d2 = T and stride2 = its row pitch.
struct RowLayout {
  std::int64_t num_rows = 0;  ///< d0·d1·d2
  std::int64_t size1 = 1;     ///< d1
  std::int64_t size2 = 1;     ///< d2
  std::int64_t stride0 = 0;   ///< elements between two steps of i0
  std::int64_t stride1 = 0;   ///< elements between two steps of i1
  std::int64_t stride2 = 0;   ///< elements between two steps of i2

  /// \brief First element of row `row`.
  /// \param row 0 <= row < num_rows.
  /// \return its offset in elements.
  PAGEDKV_HOST_DEVICE std::int64_t row_start(std::int64_t row) const {
    const std::int64_t i2 = row % size2;
    const std::int64_t i1 = (row / size2) % size1;
    const std::int64_t i0 = row / (size1 * size2);
    return i0 * stride0 + i1 * stride1 + i2 * stride2;
  }
};

}  // namespace pagedkv
