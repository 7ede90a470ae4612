// The library baseline: an op that is a plain scatter of 16-byte (or 2-byte) units, written as
// one Thrust call. Unit u of the scatter is row r = u / row_units, column j = u % row_units; two
// index functors turn u into a source and a destination unit index (see UnitScatter),
// and thrust::scatter moves
//   dst[destination(u)] = src[source(u)]   for every u.
// This is what a learner gets without writing a kernel: no hand-tuned vector width, no
// per-token blocks, and the index arithmetic (two 64-bit divisions per unit) done per unit.
#include "library_rows.h"

#include <thrust/execution_policy.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/permutation_iterator.h>
#include <thrust/iterator/transform_iterator.h>
#include <thrust/scatter.h>

#include <cstdint>

#include "pagedkv/cuda_runtime.h"
#include "pagedkv/error.h"

namespace pagedkv::compare::library {

/// Source unit index of unit u.
struct SourceUnit {
  UnitScatter s;
  __host__ __device__ std::int64_t operator()(std::int64_t u) const {
    const std::int64_t row = u / s.row_units;
    const std::int64_t column = u % s.row_units;
    if (s.rows == UnitScatter::Rows::pairs) return s.pairs[2 * row] * s.row_units + column;
    const std::int64_t token = row / s.num_heads;
    const std::int64_t head = row % s.num_heads;
    return token * s.src_token_stride + head * s.src_head_stride + column;
  }
};

/// Destination unit index of unit u.
struct DestinationUnit {
  UnitScatter s;
  __host__ __device__ std::int64_t operator()(std::int64_t u) const {
    const std::int64_t row = u / s.row_units;
    const std::int64_t column = u % s.row_units;
    if (s.rows == UnitScatter::Rows::pairs)
      return s.pairs[2 * row + 1] * s.row_units + column * s.dst_unit_step;
    const std::int64_t token = row / s.num_heads;
    const std::int64_t head = row % s.num_heads;
    const std::int64_t slot = s.slot_mapping[token];
    return (slot / s.block_size) * s.dst_block_stride + (slot % s.block_size) * s.dst_page_stride +
           head * s.dst_head_stride + column * s.dst_unit_step;
  }
};

template <typename Unit>
void scatter_units(const UnitScatter& s, cudaStream_t stream) {
  const std::int64_t count = s.num_rows * s.row_units;
  if (count == 0) return;
  const thrust::counting_iterator<std::int64_t> first(0);
  const auto values = thrust::make_permutation_iterator(
      static_cast<const Unit*>(s.src), thrust::make_transform_iterator(first, SourceUnit{s}));
  const auto destinations = thrust::make_transform_iterator(first, DestinationUnit{s});
  thrust::scatter(thrust::cuda::par_nosync.on(stream), values, values + count, destinations,
                  static_cast<Unit*>(s.dst));
}

}  // namespace pagedkv::compare::library

namespace pagedkv::compare {

void run_library_scatter(const UnitScatter& scatter, cudaStream_t stream) {
  switch (scatter.unit_bytes) {
    case 16: library::scatter_units<uint4>(scatter, stream); break;
    case 2: library::scatter_units<std::uint16_t>(scatter, stream); break;
    default: reject("library scatter: unit_bytes must be 16 or 2, got ", scatter.unit_bytes);
  }
  PAGEDKV_CUDA_CHECK(cudaGetLastError());
}

}  // namespace pagedkv::compare
