/// \file
/// \brief What the indexer K cache ops share in the op registry (core/entries/, not public API):
/// the W5 workload (DeepSeek-V3.2's sparse-attention indexer: head 128, quant block 128, block
/// 64), its points and its inputs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cache_write_case.h"
#include "harness.h"
#include "pagedkv/buffers.h"
#include "pagedkv/registry.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv::entries {

/// \brief Workload notes of W5, shared by the indexer ops' cards.
/// \return the text, in words.
inline const char* indexer_workload_notes() {
  return "W5: DeepSeek-V3.2's sparse-attention indexer K cache. Writes: new keys k [tokens, 128] "
         "bf16 (random, never zero) quantized into a cache of 4096 blocks of 64 slots (256 in a "
         "quick run), 132 bytes per slot (128 E4M3 codes, then one fp32 scale per slot, "
         "block-planar), with plain fp32 scales (variant \"fp32 scale\") or power-of-two ones "
         "(\"ue8m0\"); slots random (distinct, over the whole cache) or contiguous (a prefill). "
         "Gathers: a cache of 8192 blocks (256 in a quick run) filled with random bytes, read "
         "back through a random block table into packed [tokens, 128] codes and [tokens, 4] "
         "scale bytes, as one request (variant \"1 request\") or as 16 requests of skewed "
         "lengths (\"16 skewed\": request i holds a share proportional to i + 1, like W3's "
         "batches).";
}

/// \brief Elements per indexer key in W5 (DeepSeek-V3.2's index_head_dim).
constexpr std::int64_t kW5HeadDim = 128;
/// \brief Slots per cache block in W5.
constexpr std::int64_t kW5BlockSize = 64;
/// \brief Bytes per slot: 128 codes and one 4-byte scale.
constexpr std::int64_t kW5SlotBytes = 132;

/// \brief A W5 write point: indexer_k_quant_and_cache.
struct IndexerWriteShape {
  std::int64_t num_tokens = 0;     ///< keys written (the point's size)
  std::int64_t num_blocks = 4096;  ///< blocks in the cache
  bool ue8m0 = false;              ///< power-of-two scales
  bool contiguous_slots = false;   ///< one run of slots, else random slots

  /// \brief Bytes of the whole cache.
  /// \return num_blocks × 64 × 132.
  std::int64_t cache_bytes() const { return num_blocks * kW5BlockSize * kW5SlotBytes; }
  /// \brief The byte model: each key read once (256 bytes), each slot written once (132 bytes),
  /// the slot read once (8 bytes).
  /// \return the bytes.
  std::int64_t write_bytes() const { return num_tokens * (kW5HeadDim * 2 + kW5SlotBytes + 8); }
};

/// \brief Parses a W5 write point: the variant is the scale format ("fp32 scale" or "ue8m0").
/// \param point the workload point.
/// \return its shape.
IndexerWriteShape indexer_write_shape(const WorkloadPoint& point);

/// \brief The W5 write points: {fp32 scale, ue8m0} × {random, contiguous} × token counts.
/// \param quick true for the small sizes only (and a 256-block cache).
/// \return the points.
std::vector<WorkloadPoint> indexer_write_points(bool quick);

/// \brief One buffer set of an indexer write.
using IndexerWriteInputs = KeySlotInputs;

/// \brief Random host inputs of one buffer set.
/// \param shape the point's shape.
/// \param seed the case's seed.
/// \param set buffer set index.
/// \return the inputs, in host memory.
IndexerWriteInputs make_indexer_write_inputs(const IndexerWriteShape& shape, std::uint64_t seed,
                                             int set);

/// \brief The cache view `[num_blocks, 64, 132]` u8 over `cache`.
/// \param num_blocks blocks in the cache.
/// \param cache the allocation, num_blocks × 64 × 132 bytes.
/// \param device where it is.
/// \return the view.
TensorView indexer_cache_view(std::int64_t num_blocks, const Buffer& cache, Device device);

/// \brief A W5 gather point: cp_gather_indexer_k_quant_cache.
struct IndexerGatherShape {
  std::int64_t num_tokens = 0;     ///< tokens gathered, over all sequences (the point's size)
  std::int64_t batch_size = 1;     ///< sequences: 1 ("1 request") or 16 ("16 skewed")
  std::int64_t num_blocks = 8192;  ///< blocks in the cache

  /// \brief Bytes of the whole cache.
  /// \return num_blocks × 64 × 132.
  std::int64_t cache_bytes() const { return num_blocks * kW5BlockSize * kW5SlotBytes; }
  /// \brief Tokens of each sequence: all in one, or sequence i holding a share proportional to
  /// i + 1 (the last one takes the rounding remainder).
  /// \return [batch_size] lengths summing to num_tokens.
  std::vector<std::int64_t> sequence_lengths() const;
  /// \brief The byte model: each gathered slot's 132 bytes read once and written once, each
  /// block id a sequence uses read once (4 bytes), cu_seq_lens read once.
  /// \return the bytes.
  std::int64_t gather_bytes() const;
};

/// \brief Parses a W5 gather point: the variant is the batch ("1 request" or "16 skewed").
/// \param point the workload point.
/// \return its shape.
IndexerGatherShape indexer_gather_shape(const WorkloadPoint& point);

/// \brief The W5 gather points: {1 request, 16 skewed} × token counts (block tables random).
/// \param quick true for the small sizes only (and a 256-block cache).
/// \return the points.
std::vector<WorkloadPoint> indexer_gather_points(bool quick);

/// \brief The index tensors of one gather buffer set.
struct IndexerGatherIndices {
  Buffer table;            ///< [batch_size, max_blocks] i32
  Buffer starts;           ///< [batch_size + 1] i32
  TensorView block_table;  ///< [batch_size, max_blocks] i32
  TensorView cu_seq_lens;  ///< [batch_size + 1] i32
};

/// \brief Random host indices of one buffer set: each sequence gets distinct random blocks
/// (a shuffle of the whole cache, dealt out in order).
/// \param shape the point's shape.
/// \param seed the case's seed.
/// \param set buffer set index.
/// \return the indices, in host memory.
IndexerGatherIndices make_indexer_gather_indices(const IndexerGatherShape& shape,
                                                 std::uint64_t seed, int set);

/// \brief A copy of indices in another kind of memory, with its views.
/// \param indices the indices to copy.
/// \param memory where the copy lives.
/// \return the copy.
IndexerGatherIndices copy_indexer_gather_indices(const IndexerGatherIndices& indices,
                                                 Memory memory);

}  // namespace pagedkv::entries
