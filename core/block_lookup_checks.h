/// \file
/// \brief Validation rules of the cache readers (the gather ops): the index tensors that lead
/// from a workspace row to a cache entry (row → sequence → block_table row → block and slot),
/// read back to the host and checked value by value, each rule written, and worded, once.
///
/// The index tensors are small next to the data they address (4 bytes per token and per block
/// against 576 to 1152 bytes per entry), so on the GPU they are copied to the host in one
/// `cudaMemcpy` each (which synchronizes) and checked with plain loops. A call that defers its
/// errors checks the same rules on the device instead (checks::enqueue_sequence_check in
/// pagedkv/deferred_checks.h), worded alike.
#pragma once

#include <cstdint>
#include <vector>

#include "pagedkv/tensor_view.h"

namespace pagedkv::checks {

/// \brief Whether an optional tensor argument (`Tensor?`) was given: an absent one is a view
/// without data and without dimensions.
/// \param tensor the argument.
/// \return false for an absent tensor.
inline bool is_given(const TensorView& tensor) {
  return !(tensor.data == nullptr && tensor.ndim == 0);
}

/// \brief A contiguous 1-D i32 index tensor with at least `min_size` elements (on the device
/// where the op computes).
/// \param tensor the tensor.
/// \param name its argument name.
/// \param min_size the fewest elements it may have.
/// \param what where `min_size` comes from, for the message.
void i32_vector(const TensorView& tensor, const char* name, std::int64_t min_size,
                const char* what);

/// \brief `count` i32 elements starting at `data`, copied to the host: a plain copy from host
/// memory, one synchronizing `cudaMemcpy` from a device. What every gather's index checks read.
/// \param data the first element.
/// \param device where `data` lives.
/// \param count elements to read, >= 0.
/// \return the values.
std::vector<std::int32_t> copy_i32(const void* data, Device device, std::int64_t count);

/// \brief The first `count` elements of a contiguous i32 tensor, copied to the host (one
/// `cudaMemcpy` for a device tensor).
/// \param tensor a contiguous i32 tensor with at least `count` elements.
/// \param count elements to read.
/// \return the values.
std::vector<std::int64_t> read_i32(const TensorView& tensor, std::int64_t count);

/// \brief cu_seq_lens: 0 first, never decreasing (upstream reads rows past the workspace or
/// negative positions otherwise).
/// \param cu_seq_lens the values, batch + 1 of them.
/// \param name the argument name.
void cumulative_lengths(const std::vector<std::int64_t>& cu_seq_lens, const char* name);

/// \brief block_table is a 2-D i32 `[>= batch, max_blocks]` tensor, rows of any pitch, columns
/// packed: what blocks_in_cache() checks before it reads the values, and all that is checked
/// on the host when the values are checked on the device (a deferred call).
/// \param block_table the table.
/// \param batch sequences (rows needed).
void block_table_shape(const TensorView& block_table, std::int64_t batch);

/// \brief block_table is a 2-D i32 `[>= batch, max_blocks]` tensor, rows of any pitch, columns
/// packed, and for every sequence b that gathers `lengths[b]` tokens starting at position
/// `starts[b]` of its blocks, every column it needs exists and holds a block of the cache.
/// Reads the rows it needs (one `cudaMemcpy` for a device tensor).
/// \param block_table the table.
/// \param lengths tokens gathered per sequence (batch entries, each >= 0).
/// \param starts first position per sequence (empty: all 0; else batch entries, each >= 0).
/// \param block_size slots per cache block.
/// \param num_blocks blocks in the cache.
void blocks_in_cache(const TensorView& block_table, const std::vector<std::int64_t>& lengths,
                     const std::vector<std::int64_t>& starts, std::int64_t block_size,
                     std::int64_t num_blocks);

/// \brief Workspace rows of `row_elements` packed elements (2-D, non-negative layout) that
/// never overlap: stride(0) steps over a whole row.
/// \param dst the workspace.
/// \param name its argument name.
/// \param row_elements elements per row.
void workspace_rows(const TensorView& dst, const char* name, std::int64_t row_elements);

}  // namespace pagedkv::checks
