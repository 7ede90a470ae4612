/// \file
/// \brief Launch decisions shared by the two optimized norm kernels: the vector width, the
/// block shape (threads and vectors per thread) and the row addressing. Trick labels: R1-R7 of
/// kernels/norm/rms_norm/optimized.cu and A1-A7 of fused_add_rms_norm/optimized.cu share numbers.
///
/// Upstream: vLLM csrc/layernorm_kernels.cu (the vectorized rms_norm / fused_add_rms_norm
/// launchers). Chapter "Normalizing hidden states".
#pragma once

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "common/dispatch.cuh"
#include "common/vec.cuh"
#include "pagedkv/row_layout.h"

namespace pagedkv::kernels::norm {

/// Most threads per block (and the size CUB's BlockReduce is instantiated for).
constexpr int kMaxThreads = 1024;
/// Most vectors a thread keeps in registers (R2/A2): 4 × 16 bytes, 16 registers of row (the fused
/// kernel holds x and r while loading: 32). With 8, the fused kernels spilled under the 64
/// registers that 1024-thread blocks allow, and 4 × 1024 vectors already cover 32768 bf16.
constexpr int kMaxVectorsPerThread = 4;

/// \brief What the optimized kernels need besides the pointers, derived on the host.
struct RowWork {
  RowLayout rows;             ///< where input rows start (leading dims merged where possible)
  bool rows_evenly_spaced = false;  ///< row r starts at r · rows.stride2 (R6/A6: no divisions)
  int hidden_size = 0;        ///< elements per row (<= 2^24, from the contract)
  int vectors_per_row = 0;    ///< hidden_size / kVec
  float epsilon = 0.f;        ///< added to the mean square
};

/// \brief First element of input row `row` (R6/A6: evenly spaced rows skip the divisions).
/// \param work the launch's RowWork.
/// \param row 0 <= row < num_rows.
/// \return the offset in elements.
__device__ __forceinline__ std::int64_t input_row_start(const RowWork& work, std::int64_t row) {
  return work.rows_evenly_spaced ? row * work.rows.stride2 : work.rows.row_start(row);
}

/// \brief Merges leading dimensions of `rows` that step exactly over the next inner one
/// ([2, 3, H] packed becomes [6, H]), so that most layouts end up evenly spaced (R6/A6).
/// \param rows the plan's layout.
/// \return the same rows, with as few dimensions as possible.
inline RowLayout merge_row_dims(RowLayout rows) {
  if (rows.num_rows == 0) return rows;
  std::int64_t size0 = rows.num_rows / (rows.size1 * rows.size2);
  // Merges (outer_size, outer_stride) into (inner_size, inner_stride) when that keeps every
  // address: an outer dimension of size 1, an inner one of size 1, or outer = inner's span.
  const auto merge = [](std::int64_t& outer_size, std::int64_t& outer_stride,
                        std::int64_t& inner_size, std::int64_t& inner_stride) {
    if (outer_size == 1) return true;
    if (inner_size == 1) {
      inner_stride = outer_stride;
    } else if (outer_stride != inner_size * inner_stride) {
      return false;
    }
    inner_size *= outer_size;
    outer_size = 1;
    outer_stride = 0;
    return true;
  };
  if (merge(rows.size1, rows.stride1, rows.size2, rows.stride2)) {
    merge(size0, rows.stride0, rows.size2, rows.stride2);
  } else {
    merge(size0, rows.stride0, rows.size1, rows.stride1);
  }
  return rows;
}

/// \brief The widest vector (in elements, at most 16 bytes) such that every address a kernel
/// forms is aligned (R1/A1): the row length and every stride a multiple of it, every base pointer
/// aligned to its bytes. One element always works.
/// \tparam T the element type.
/// \param rows the input rows' layout.
/// \param hidden_size elements per row.
/// \param pointers every base pointer the kernel reads or writes.
/// \return 16 / sizeof(T), halved until aligned, down to 1.
template <typename T>
int pick_vector_width(const RowLayout& rows, std::int64_t hidden_size,
                      std::initializer_list<const void*> pointers) {
  const std::int64_t size0 = rows.num_rows / std::max<std::int64_t>(rows.size1 * rows.size2, 1);
  for (int count = 16 / static_cast<int>(sizeof(T)); count > 1; count /= 2) {
    bool ok = hidden_size % count == 0 && stride_allows(rows.stride0, size0, count) &&
              stride_allows(rows.stride1, rows.size1, count) &&
              stride_allows(rows.stride2, rows.size2, count);
    for (const void* pointer : pointers) ok = ok && is_aligned(pointer, count * sizeof(T));
    if (ok) return count;
  }
  return 1;
}

/// \brief Threads per block and vectors per thread of one launch.
struct BlockShape {
  int threads = 0;             ///< a multiple of 32, at most kMaxThreads
  int vectors_per_thread = 0;  ///< 1, 2 or 4 (row in registers), 0: re-read kernel
};

/// \brief R4/A4: how a row of `vectors_per_row` vectors is spread over a block. Like upstream, a
/// block gets up to 1024 threads when there are few rows (fewer than 256: more threads per
/// row) and aims at 256 when there are many (more resident blocks per SM to hide latency).
/// The vectors per thread are the fewest of 1, 2, 4 that cover the row at that size, and the
/// threads exactly what the row then needs, rounded up to whole warps (7168 bf16 = 896
/// vectors: 224 threads × 4). Rows that need more than 1024 × 4 vectors use the re-read kernel.
/// \param num_rows rows in the launch.
/// \param vectors_per_row vectors per row.
/// \return the block shape.
inline BlockShape choose_block_shape(std::int64_t num_rows, int vectors_per_row) {
  const int target_threads = num_rows < 256 ? kMaxThreads : 256;
  const auto threads_for = [&](int per_thread) {
    const int threads = (vectors_per_row + per_thread - 1) / per_thread;
    return (threads + 31) / 32 * 32;
  };
  for (int per_thread : {1, 2, kMaxVectorsPerThread}) {
    if (static_cast<std::int64_t>(per_thread) * target_threads >= vectors_per_row) {
      return {threads_for(per_thread), per_thread};
    }
  }
  if (threads_for(kMaxVectorsPerThread) <= kMaxThreads) {
    return {threads_for(kMaxVectorsPerThread), kMaxVectorsPerThread};
  }
  return {kMaxThreads, 0};
}

/// \brief Blocks of a launch: one per row, at most 2^30 (the row loops are grid-stride).
/// \param num_rows rows in the launch (> 0).
/// \return the grid size.
inline unsigned blocks_for(std::int64_t num_rows) {
  return static_cast<unsigned>(std::min<std::int64_t>(num_rows, std::int64_t{1} << 30));
}

/// \brief The RowWork of a launch with vectors of `vector_width` elements.
/// \param rows the plan's row layout.
/// \param hidden_size elements per row (<= 2^24, from the contract).
/// \param vector_width elements per vector, from pick_vector_width().
/// \param epsilon the plan's epsilon.
/// \return the work description.
inline RowWork make_row_work(const RowLayout& rows, std::int64_t hidden_size, int vector_width,
                             float epsilon) {
  RowWork work;
  work.rows = merge_row_dims(rows);  // R6/A6
  work.rows_evenly_spaced = work.rows.size2 == work.rows.num_rows;
  work.hidden_size = static_cast<int>(hidden_size);
  work.vectors_per_row = work.hidden_size / vector_width;
  work.epsilon = epsilon;
  return work;
}

/// \brief Calls `launch` with the vectors per thread of `shape` as a compile-time constant
/// (1, 2 or 4: the row in registers; 0: the re-read kernel).
/// \tparam Launch a generic callable.
/// \param shape what choose_block_shape() returned.
/// \param launch called once.
template <typename Launch>
void with_vectors_per_thread(const BlockShape& shape, Launch&& launch) {
  switch (shape.vectors_per_thread) {
    case 1:
      launch(std::integral_constant<int, 1>{});
      return;
    case 2:
      launch(std::integral_constant<int, 2>{});
      return;
    case 4:
      launch(std::integral_constant<int, 4>{});
      return;
    default:
      launch(std::integral_constant<int, 0>{});
      return;
  }
}

}  // namespace pagedkv::kernels::norm
