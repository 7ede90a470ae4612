// Validation rules of the gather ops' index tensors. See block_lookup_checks.h.
#include "block_lookup_checks.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "pagedkv/checks.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"

namespace pagedkv::checks {

std::vector<std::int32_t> copy_i32(const void* data, Device device, std::int64_t count) {
  std::vector<std::int32_t> values(static_cast<std::size_t>(count));
  if (count == 0) return values;
  const std::size_t bytes = values.size() * sizeof(std::int32_t);
  if (device == Device::cpu) {
    std::memcpy(values.data(), data, bytes);
  } else {
    // On the checked call's stream, after the work queued before the call (a capture rejects
    // the read: see pagedkv/deferred_checks.h).
    cudaStream_t stream = synchronous_check_stream("its index tensors");
    PAGEDKV_CUDA_CHECK(cudaMemcpyAsync(values.data(), data, bytes, cudaMemcpyDeviceToHost, stream));
    PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  return values;
}

void i32_vector(const TensorView& tensor, const char* name, std::int64_t min_size,
                const char* what) {
  ndim_is(tensor, name, 1);
  dtype_is(tensor, name, DType::i32);
  non_negative_layout(tensor, name);
  PAGEDKV_CHECK(tensor.is_contiguous(), name, ": expected a contiguous tensor, got ",
                tensor.describe());
  PAGEDKV_CHECK(tensor.size(0) >= min_size, name, ": expected at least ", min_size, " elements (",
                what, "), got ", tensor.size(0));
  not_null(tensor, name);
}

std::vector<std::int64_t> read_i32(const TensorView& tensor, std::int64_t count) {
  const std::vector<std::int32_t> values = copy_i32(tensor.data, tensor.device, count);
  return {values.begin(), values.end()};
}

void cumulative_lengths(const std::vector<std::int64_t>& cu_seq_lens, const char* name) {
  PAGEDKV_CHECK(!cu_seq_lens.empty() && cu_seq_lens[0] == 0, name,
                "[0]: expected 0 (the first sequence starts at workspace row 0), got ",
                cu_seq_lens.empty() ? std::string("no element") : std::to_string(cu_seq_lens[0]));
  for (std::size_t b = 1; b < cu_seq_lens.size(); ++b) {
    PAGEDKV_CHECK(cu_seq_lens[b] >= cu_seq_lens[b - 1], name, "[", b, "] = ", cu_seq_lens[b],
                  ": expected a running sum of lengths, at least ", name, "[", b - 1,
                  "] = ", cu_seq_lens[b - 1]);
  }
}

void block_table_shape(const TensorView& block_table, std::int64_t batch) {
  const char* name = "block_table";
  ndim_is(block_table, name, 2);
  dtype_is(block_table, name, DType::i32);
  non_negative_layout(block_table, name);
  PAGEDKV_CHECK(block_table.size(1) <= 1 || block_table.stride(1) == 1, name,
                ": expected packed columns (stride(1) = 1), got ", block_table.describe());
  PAGEDKV_CHECK(block_table.size(0) >= batch, name, ": expected at least ", batch,
                " rows (one per sequence), got ", block_table.describe());
}

void blocks_in_cache(const TensorView& block_table, const std::vector<std::int64_t>& lengths,
                     const std::vector<std::int64_t>& starts, std::int64_t block_size,
                     std::int64_t num_blocks) {
  const char* name = "block_table";
  const auto batch = static_cast<std::int64_t>(lengths.size());
  block_table_shape(block_table, batch);
  if (batch == 0) return;
  // The columns each sequence needs, and the rows' span in memory (what is copied).
  std::int64_t columns_needed = 0;
  std::vector<std::int64_t> first_column(lengths.size()), end_column(lengths.size());
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t start = starts.empty() ? 0 : starts[b];
    first_column[b] = start / block_size;
    end_column[b] = lengths[b] == 0 ? first_column[b] : (start + lengths[b] - 1) / block_size + 1;
    if (lengths[b] == 0) continue;
    PAGEDKV_CHECK(end_column[b] <= block_table.size(1), name, ": sequence ", b, " needs column ",
                  end_column[b] - 1, " (positions ", start, " to ", start + lengths[b] - 1,
                  ", block_size ", block_size, "), but block_table has ", block_table.size(1),
                  " columns");
    columns_needed = std::max(columns_needed, end_column[b]);
  }
  if (columns_needed == 0) return;  // no sequence gathers a token
  not_null(block_table, name);
  const std::int64_t pitch = block_table.stride(0);
  const std::vector<std::int32_t> table =
      copy_i32(block_table.data, block_table.device, (batch - 1) * pitch + columns_needed);
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t column = first_column[b]; column < end_column[b]; ++column) {
      const std::int64_t block = table[static_cast<std::size_t>(b * pitch + column)];
      PAGEDKV_CHECK(block >= 0 && block < num_blocks, name, "[", b, ", ", column, "] = ", block,
                    ": expected a block of the cache, 0 <= block < num_blocks = ", num_blocks);
    }
  }
}

void workspace_rows(const TensorView& dst, const char* name, std::int64_t row_elements) {
  ndim_is(dst, name, 2);
  non_negative_layout(dst, name);
  size_is(dst, name, 1, row_elements, "kv_lora_rank 512 + rope_dim 64");
  packed_from(dst, name, 1);
  PAGEDKV_CHECK(dst.size(0) <= 1 || dst.stride(0) >= row_elements, name,
                ": stride(0) must step over a whole row of ", row_elements,
                " elements (rows must not overlap), got ", dst.describe());
}

}  // namespace pagedkv::checks
