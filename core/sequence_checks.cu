// The checks of a gather's sequences. See sequence_checks.h.
//
// cu_seq_lens and seq_starts hold one or two numbers per sequence: they are copied to the host
// and checked there, by the same loop for the CPU and the GPU, so that both give the same
// message. The block ids are more (one per 64 tokens of every sequence, and only the columns a
// sequence uses count), so on the GPU a small kernel looks at them where they are and reports
// the first bad one: the one the CPU loop, which visits (sequence, column) in order, finds too.
#include <cstdint>
#include <cstring>
#include <vector>

#include "block_lookup_checks.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"
#include "sequence_checks.h"

namespace pagedkv::checks {

namespace {

/// No bad block id found.
constexpr unsigned long long kNoFault = ~0ull;

// The first `count` values of a contiguous i32 tensor, on the host.
// One CTA per sequence (grid-stride), its threads over the columns the sequence uses; a bad id
// lowers `first_bad` to its (sequence × width + column), so the smallest, the first in the CPU
// loop's order, wins.
__global__ void find_bad_block_id(const std::int32_t* block_table, std::int64_t table_stride,
                                  std::int64_t width, const std::int32_t* cu_seq_lens,
                                  const std::int32_t* seq_starts, std::int64_t batch_size,
                                  std::int64_t block_size, std::int64_t num_blocks,
                                  unsigned long long* first_bad) {
  for (std::int64_t b = blockIdx.x; b < batch_size; b += gridDim.x) {
    const std::int64_t tokens = cu_seq_lens[b + 1] - cu_seq_lens[b];
    if (tokens == 0) continue;
    const std::int64_t start = seq_starts != nullptr ? seq_starts[b] : 0;
    const std::int64_t first_column = start / block_size;
    const std::int64_t last_column = (start + tokens - 1) / block_size;
    for (std::int64_t column = first_column + threadIdx.x; column <= last_column;
         column += blockDim.x) {
      const std::int32_t id = block_table[b * table_stride + column];
      if (id < 0 || id >= num_blocks) {
        atomicMin(first_bad, static_cast<unsigned long long>(b * width + column));
      }
    }
  }
}

// The first (sequence, column) whose block id is outside [0, num_blocks), on the CPU.
unsigned long long first_bad_block_id_cpu(const TensorView& block_table,
                                          const std::vector<std::int32_t>& cu,
                                          const std::vector<std::int32_t>& starts,
                                          std::int64_t block_size, std::int64_t num_blocks) {
  const auto* table = static_cast<const std::int32_t*>(block_table.data);
  const std::int64_t width = block_table.size(1);
  for (std::size_t b = 0; b + 1 < cu.size(); ++b) {
    const std::int64_t tokens = cu[b + 1] - cu[b];
    if (tokens == 0) continue;
    const std::int64_t start = starts.empty() ? 0 : starts[b];
    for (std::int64_t column = start / block_size; column <= (start + tokens - 1) / block_size;
         ++column) {
      const std::int32_t id = table[static_cast<std::int64_t>(b) * block_table.stride(0) + column];
      if (id < 0 || id >= num_blocks) return static_cast<unsigned long long>(b * width + column);
    }
  }
  return kNoFault;
}

// The same on the GPU: one kernel, one 8-byte answer copied back.
unsigned long long first_bad_block_id_cuda(const TensorView& block_table,
                                           const TensorView& cu_seq_lens,
                                           const TensorView& seq_starts, std::int64_t batch_size,
                                           std::int64_t block_size, std::int64_t num_blocks) {
  // On the checked call's stream (pagedkv/deferred_checks.h), stream-ordered scratch memory.
  cudaStream_t stream = synchronous_check_stream("block_table");
  unsigned long long* d_first_bad = nullptr;
  PAGEDKV_CUDA_CHECK(cudaMallocAsync(&d_first_bad, sizeof *d_first_bad, stream));
  unsigned long long first_bad = kNoFault;
  cudaError_t status = cudaMemsetAsync(d_first_bad, 0xFF, sizeof first_bad, stream);  // kNoFault
  if (status == cudaSuccess) {
    constexpr std::int64_t kMaxBlocks = 4096;  // grid-stride beyond
    const auto grid = static_cast<unsigned>(batch_size < kMaxBlocks ? batch_size : kMaxBlocks);
    find_bad_block_id<<<grid, 256, 0, stream>>>(static_cast<const std::int32_t*>(block_table.data),
                                                block_table.stride(0), block_table.size(1),
                                                static_cast<const std::int32_t*>(cu_seq_lens.data),
                                                static_cast<const std::int32_t*>(seq_starts.data),
                                                batch_size, block_size, num_blocks, d_first_bad);
    status = cudaGetLastError();
  }
  if (status == cudaSuccess) {
    status =
        cudaMemcpyAsync(&first_bad, d_first_bad, sizeof first_bad, cudaMemcpyDeviceToHost, stream);
  }
  cudaFreeAsync(d_first_bad, stream);
  if (status == cudaSuccess) status = cudaStreamSynchronize(stream);
  PAGEDKV_CUDA_CHECK(status);
  return first_bad;
}

}  // namespace

GatheredSequences gathered_sequences(const TensorView& block_table, const TensorView& cu_seq_lens,
                                     const TensorView& seq_starts, std::int64_t batch_size,
                                     std::int64_t block_size, std::int64_t num_blocks) {
  const bool has_starts = seq_starts.data != nullptr;
  const std::vector<std::int32_t> cu =
      copy_i32(cu_seq_lens.data, cu_seq_lens.device, batch_size + 1);
  const std::vector<std::int32_t> starts =
      has_starts ? copy_i32(seq_starts.data, seq_starts.device, batch_size)
                 : std::vector<std::int32_t>{};
  const std::int64_t width = block_table.size(1);

  // 1. The cumulative counts: from 0, never decreasing (a decrease would be a negative length).
  PAGEDKV_CHECK(cu[0] == 0,
                "cu_seq_lens: cu_seq_lens[0] must be 0 (dst rows are counted from "
                "row 0), got ",
                cu[0]);
  for (std::int64_t b = 0; b < batch_size; ++b) {
    PAGEDKV_CHECK(cu[b + 1] >= cu[b], "cu_seq_lens: must never decrease, got cu_seq_lens[", b + 1,
                  "] = ", cu[b + 1], " after cu_seq_lens[", b, "] = ", cu[b]);
  }

  // 2. The start positions, and the last position of every sequence inside the block table.
  for (std::int64_t b = 0; b < batch_size; ++b) {
    const std::int64_t start = has_starts ? starts[b] : 0;
    PAGEDKV_CHECK(start >= 0, "seq_starts: seq_starts[", b, "] must be >= 0, got ", start);
    const std::int64_t tokens = cu[b + 1] - cu[b];
    if (tokens == 0) continue;
    const std::int64_t last_position = start + tokens - 1;
    const std::int64_t last_column = last_position / block_size;
    PAGEDKV_CHECK(last_column < width, has_starts ? "seq_starts" : "cu_seq_lens", ": sequence ", b,
                  " gathers positions ", start, "..", last_position, " (seq_starts[", b,
                  "] = ", start, ", ", tokens, " tokens), up to column ", last_column,
                  " of block_table, which has ", width, " columns of ", block_size, " slots");
  }

  // 3. Every block id a sequence uses points into the cache.
  const std::int64_t num_tokens = cu[batch_size];
  if (num_tokens > 0) {
    const unsigned long long first_bad =
        block_table.device == Device::cpu
            ? first_bad_block_id_cpu(block_table, cu, starts, block_size, num_blocks)
            : first_bad_block_id_cuda(block_table, cu_seq_lens, seq_starts, batch_size, block_size,
                                      num_blocks);
    if (first_bad != kNoFault) {
      const auto b = static_cast<std::int64_t>(first_bad / static_cast<unsigned long long>(width));
      const auto column =
          static_cast<std::int64_t>(first_bad % static_cast<unsigned long long>(width));
      TensorView element = block_table;
      element.data = block_table.byte_ptr(b, column);
      const std::int32_t id = copy_i32(element.data, element.device, 1)[0];
      reject("block_table: block_table[", b, ", ", column, "] = ", id, " is used by sequence ", b,
             " but is not a block of src_cache (expected 0 <= id < ", num_blocks, ")");
    }
  }
  return {num_tokens};
}

}  // namespace pagedkv::checks
