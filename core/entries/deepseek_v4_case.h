/// \file
/// \brief What DeepSeek V4's K-cache ops share in the op registry (core/entries/, not public
/// API): the W4 workload (the `fp8_ds_mla` pages: 448 fp8 + 64 bf16 + 8 scale bytes per token,
/// block 64), its points and its inputs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cache_write_case.h"
#include "harness.h"
#include "pagedkv/buffers.h"
#include "pagedkv/ops/quantize_and_insert_k_cache.h"
#include "pagedkv/registry.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv::entries {

/// \brief Workload notes of W4's insert and gather, shared by the two ops' cards.
/// \return the text, in words.
inline const char* dsv4_cache_workload_notes() {
  return "W4: DeepSeek V4's fp8_ds_mla K cache, pages of 64 tokens (576 data bytes: 448 E4M3 "
         "codes and 64 bf16, then 8 scale bytes per token), padded to a stride of 37,440 bytes as "
         "upstream's allocator does. Insert: new keys k [tokens, 512] bf16 (random, never zero) "
         "quantized into a cache of 4096 pages (256 in a quick run), slots random (distinct, "
         "over the whole cache) or contiguous (a prefill). Gather: a cache of random bytes "
         "with realistic exponent codes, read back through random block tables into a bf16 "
         "workspace [requests, rows, 512], as one request gathering its whole sequence "
         "(variant \"1 request\") or as a prefill chunk of 4 requests (\"4 requests\": "
         "request i holds a share proportional to i + 1 and gathers its last tokens after a "
         "prefix of 100 tokens, through gather_lens).";
}

/// \brief Tokens per page in W4 (DeepSeek V4's SWA cache).
constexpr std::int64_t kW4BlockSize = 64;
/// \brief Bytes between two pages in W4: 64 × 584 rounded up to a multiple of 576.
constexpr std::int64_t kW4PageStride = 37440;

/// \brief A W4 insert point: quantize_and_insert_k_cache.
struct Dsv4InsertShape {
  std::int64_t num_tokens = 0;     ///< keys written (the point's size)
  std::int64_t num_blocks = 4096;  ///< pages in the cache
  bool contiguous_slots = false;   ///< one run of slots, else random slots

  /// \brief Bytes of the whole cache.
  /// \return num_blocks × 37,440.
  std::int64_t cache_bytes() const { return num_blocks * kW4PageStride; }
  /// \brief The byte model: each key read once (1024 bytes), each token's record and scale
  /// record written once (584 bytes), its slot read once (8 bytes).
  /// \return the bytes.
  std::int64_t bytes() const { return num_tokens * (2 * kDsv4HeadDim + kDsv4TokenBytes + 8); }
};

/// \brief Parses a W4 insert point.
/// \param point the workload point.
/// \return its shape.
Dsv4InsertShape dsv4_insert_shape(const WorkloadPoint& point);

/// \brief The W4 insert points.
/// \param quick small sizes only.
/// \return the points.
std::vector<WorkloadPoint> dsv4_insert_points(bool quick);

/// \brief One buffer set of insert inputs: keys [T, 512] bf16 and their slots.
using Dsv4InsertInputs = KeySlotInputs;

/// \brief Random keys and slots for buffer set `set`, in host memory.
/// \param shape the point.
/// \param seed the case's seed.
/// \param set the buffer set.
/// \return the inputs.
Dsv4InsertInputs make_dsv4_insert_inputs(const Dsv4InsertShape& shape, std::uint64_t seed, int set);

/// \brief The W4 cache as the 2-D view `[num_blocks, 37440]` u8.
/// \param num_blocks pages.
/// \param cache the buffer (num_blocks × 37,440 bytes).
/// \param device where it lives.
/// \return the view.
TensorView dsv4_cache_view(std::int64_t num_blocks, const Buffer& cache, Device device);

/// \brief A W4 gather point: dequantize_and_gather_k_cache.
struct Dsv4GatherShape {
  std::int64_t num_tokens = 0;    ///< tokens gathered, all requests together (the point's size)
  std::int64_t num_requests = 1;  ///< 1 or 4
  std::int64_t prefix = 0;        ///< tokens before each request's gathered tail (0 or 100)

  /// \brief Tokens each request gathers (shares proportional to i + 1, summing to num_tokens).
  /// \return one length per request.
  std::vector<std::int64_t> gather_lengths() const;
  /// \brief Rows of the workspace per request: the longest gather.
  /// \return the rows.
  std::int64_t rows() const;
  /// \brief Block table columns per request: the longest sequence's pages.
  /// \return the columns.
  std::int64_t max_blocks() const;
  /// \brief Pages in the cache: every page a request uses, and as many again.
  /// \return the pages.
  std::int64_t num_blocks() const;
  /// \brief The byte model: each gathered token's 584 cache bytes read and 1024 bytes written,
  /// each block id it uses read once (4 bytes per page touched), seq_lens and gather_lens read.
  /// \return the bytes.
  std::int64_t bytes() const;
};

/// \brief Parses a W4 gather point.
/// \param point the workload point.
/// \return its shape.
Dsv4GatherShape dsv4_gather_shape(const WorkloadPoint& point);

/// \brief The W4 gather points.
/// \param quick small sizes only.
/// \return the points.
std::vector<WorkloadPoint> dsv4_gather_points(bool quick);

/// \brief One buffer set of gather index tensors.
struct Dsv4GatherIndices {
  Buffer table;            ///< [R, max_blocks] i32
  Buffer lengths;          ///< seq_lens [R] i32, then gather_lens [R] i32
  TensorView block_table;  ///< view of table
  TensorView seq_lens;     ///< view of the first half of lengths
  TensorView gather_lens;  ///< view of the second half (absent for "1 request")
};

/// \brief Random block tables (distinct pages, dealt to the requests) for buffer set `set`.
/// \param shape the point.
/// \param seed the case's seed.
/// \param set the buffer set.
/// \return the indices, in host memory.
Dsv4GatherIndices make_dsv4_gather_indices(const Dsv4GatherShape& shape, std::uint64_t seed,
                                           int set);

/// \brief A copy of gather indices in `memory`.
/// \param shape the point.
/// \param indices the indices.
/// \param memory where the copy lives.
/// \return the copy.
Dsv4GatherIndices copy_dsv4_gather_indices(const Dsv4GatherShape& shape,
                                           const Dsv4GatherIndices& indices, Memory memory);

/// \brief Fills a W4 cache with random bytes whose scale records hold codes a writer could
/// produce (105 .. 140, pad byte 0), so that the gathered values are finite.
/// \param cache the buffer (host memory, num_blocks × 37,440 bytes).
/// \param num_blocks pages.
/// \param seed the seed.
void fill_dsv4_cache(Buffer& cache, std::int64_t num_blocks, std::uint64_t seed);

}  // namespace pagedkv::entries
