/// \file
/// \brief The "what a library call gives you" baseline (core/entries/, not public API): an op
/// that is a plain scatter of fixed-size units describes itself as UnitScatter steps, and the
/// comparison tool runs them as Thrust calls (tools/compare/library_rows.cu).
///
/// A case offers the baseline by deriving from LibraryBaseline next to OpCase; the tool asks
/// for it with a dynamic_cast, so the public OpCase knows nothing about it.
#pragma once

#include <cstdint>
#include <vector>

#include "pagedkv/dtype.h"
#include "pagedkv/error.h"

namespace pagedkv::entries {

/// \brief A step of an op that is a plain scatter of fixed-size units, described as data so that
/// a library call (Thrust) can run it: the "what a library call gives you" baseline row.
///
/// Units are grouped in rows of `row_units` units: a row is one (token, head) of a cache write,
/// or one block pair of a block swap. Unit j of row r is copied as
/// \code
/// dst_units[dst_row(r) + j * dst_unit_step] = src_units[src_row(r) + j]
/// \endcode
/// with, in units, for Rows::slots (r = token * num_heads + head, slot = slot_mapping[token],
/// no negative slots)
/// \code
/// src_row = token * src_token_stride + head * src_head_stride
/// dst_row = (slot / block_size) * dst_block_stride + (slot mod block_size) * dst_page_stride
///           + head * dst_head_stride
/// \endcode
/// and for Rows::pairs
/// \code
/// src_row = pairs[2 r] * row_units
/// dst_row = pairs[2 r + 1] * row_units
/// \endcode
struct UnitScatter {
  /// \brief How a row finds its source and destination.
  enum class Rows {
    slots,  ///< rows are (token, head) pairs placed by slot_mapping (cache writes)
    pairs,  ///< rows are (src_block, dst_block) pairs (block swaps)
  };
  Rows rows = Rows::slots;                     ///< slot-addressed rows or block pairs
  const void* src = nullptr;                   ///< device pointer to unit 0 of the source
  void* dst = nullptr;                         ///< device pointer to unit 0 of the destination
  int unit_bytes = 16;                         ///< 16 or 2
  std::int64_t num_rows = 0;                   ///< rows to copy
  std::int64_t row_units = 0;                  ///< units per row
  const std::int64_t* slot_mapping = nullptr;  ///< device, [num_tokens] (Rows::slots)
  std::int64_t num_heads = 1;                  ///< rows per token (Rows::slots)
  std::int64_t block_size = 1;                 ///< slots per cache block (Rows::slots)
  std::int64_t src_token_stride = 0;           ///< units between two tokens' source rows
  std::int64_t src_head_stride = 0;            ///< units between two heads of one token
  std::int64_t dst_block_stride = 0;           ///< units between two cache blocks
  std::int64_t dst_page_stride = 0;            ///< units between two slots of one block
  std::int64_t dst_head_stride = 0;            ///< units between two heads of one slot
  std::int64_t dst_unit_step = 1;              ///< units between two consecutive units of a row
  const std::int64_t* pairs = nullptr;         ///< device, [num_rows, 2] (Rows::pairs)
};

/// \brief An OpCase whose op is (for some points) a plain scatter of units: the library row.
class LibraryBaseline {
 public:
  virtual ~LibraryBaseline() = default;
  /// \brief The op as plain scatters of units on buffer set `set`; empty when this point is not
  /// a plain scatter (e.g. it quantizes, or copies across the bus).
  /// \param set buffer set.
  /// \return the scatters, to run in order.
  virtual std::vector<UnitScatter> library_scatters(int set) const = 0;
};

/// \brief A stride in units of a library scatter.
/// \param stride_elements the stride, in elements.
/// \param dtype the element type.
/// \param unit_bytes the unit size.
/// \return the stride in units; throws InvalidArgument when it is not a whole number of units.
inline std::int64_t stride_in_units(std::int64_t stride_elements, DType dtype, int unit_bytes) {
  const std::int64_t bytes = stride_elements * dtype_size(dtype);
  PAGEDKV_CHECK(bytes % unit_bytes == 0, "library scatter: stride of ", bytes,
                " bytes is not a multiple of the ", unit_bytes, "-byte unit");
  return bytes / unit_bytes;
}

}  // namespace pagedkv::entries
