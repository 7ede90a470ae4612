/// \file
/// \brief What the naive and optimized kernels of DeepSeek V4's index builders share: the one
/// rule that turns a request's local compressed-token index into a global cache slot, with the
/// hardening that makes an index breaking the contract -1 instead of a read out of bounds.
/// (The CPU references spell the same rule out on their own, so that a bug cannot hide in
/// both.)
#pragma once

#include <cstdint>

namespace pagedkv::kernels::sparse_index {

/// \brief A request's block table row and what bounds it: the view the lookups need.
struct TableRow {
  const std::int32_t* entries;  ///< the request's row, or nullptr when the request is invalid
  std::int64_t width;           ///< columns: blocks the request may use
  std::int64_t block_size;      ///< tokens per block
};

/// \brief Row `request` of a block table, or a row with no entries when the request lies
/// outside [0, rows): every lookup through it then gives -1.
/// \param table [rows, width] i32, rows `stride` apart.
/// \param rows rows of the table.
/// \param stride the row pitch, in elements.
/// \param width columns.
/// \param block_size tokens per block.
/// \param request the row wanted.
/// \return the row view.
__device__ __forceinline__ TableRow table_row(const std::int32_t* table, std::int64_t rows,
                                              std::int64_t stride, std::int64_t width,
                                              std::int64_t block_size, std::int64_t request) {
  const bool inside = request >= 0 && request < rows;
  return {inside ? table + request * stride : nullptr, width, block_size};
}

/// \brief The global slot of position `local` of a request: `row[local / B] × B + local % B`,
/// or -1 when `local` is negative (an empty entry), its block lies past the row's columns, the
/// block id there is negative or the slot does not fit an i32.
/// \param row the request's table row.
/// \param local the local index (a position in the request's paged sequence).
/// \return the slot, or -1.
__device__ __forceinline__ std::int32_t global_slot(const TableRow& row, std::int64_t local) {
  if (row.entries == nullptr || local < 0) return -1;
  const std::int64_t column = local / row.block_size;
  if (column >= row.width) return -1;
  const std::int64_t block = __ldg(row.entries + column);
  const std::int64_t slot = block * row.block_size + local % row.block_size;
  return block < 0 || slot > INT32_MAX ? -1 : static_cast<std::int32_t>(slot);
}

}  // namespace pagedkv::kernels::sparse_index
