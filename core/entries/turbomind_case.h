/// \file
/// \brief What TurboMind's KV ops share in the op registry (core/entries/, not public API): the
/// W14 workload (Llama-3-8B: 8 KV heads × 128, blocks of 64 tokens, quant policy 0 / 8 / 4, a
/// batch of 4 sequences), its points and its inputs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "harness.h"
#include "pagedkv/buffers.h"
#include "pagedkv/registry.h"
#include "pagedkv/tensor_view.h"
#include "pagedkv/turbomind_kv.h"

namespace pagedkv::entries {

/// \brief W14's KV heads, head size, block length, layers per block and the layer written.
constexpr std::int64_t kW14Heads = 8;
constexpr std::int64_t kW14HeadDim = 128;       ///< elements per head
constexpr std::int64_t kW14BlockSeqLen = 64;    ///< tokens per block
constexpr std::int64_t kW14Layers = 2;          ///< layer regions per block
constexpr std::int64_t kW14Layer = 1;           ///< the layer the calls write and read
constexpr std::int64_t kW14Sequences = 4;       ///< sequences per batch
constexpr std::int64_t kW14Prefix = 100;        ///< cached tokens before process_kv's new ones

/// \brief Workload notes of W14, shared by the two ops' cards.
/// \return the text.
const char* turbomind_workload_notes();

/// \brief One W14 point.
struct TurbomindShape {
  std::int64_t tokens = 0;  ///< new tokens written (process_kv) or tokens read (flatten_kv)
  QuantPolicy policy = QuantPolicy::none;  ///< 0, 8 or 4
  bool writes = true;                      ///< process_kv (true) or flatten_kv

  /// \brief Each sequence's tokens of the point (shares proportional to i + 1).
  /// \return one count per sequence.
  std::vector<std::int64_t> shares() const;
  /// \brief Each sequence's k_len: the prefix plus its share (process_kv), its share (flatten).
  /// \return one length per sequence.
  std::vector<std::int64_t> lengths() const;
  /// \brief Blocks the sequences use.
  /// \return the count.
  std::int64_t blocks_used() const;
  /// \brief Blocks in the pool: twice those used, so that each buffer set draws other ones.
  /// \return the count.
  std::int64_t pool_blocks() const { return 2 * blocks_used() + 1; }
  /// \brief The layout of one layer region.
  /// \return it.
  TurbomindLayout layout() const;
  /// \brief Bytes of one block (kW14Layers regions).
  /// \return get_cache_block_size() of the point.
  std::int64_t block_bytes() const;
  /// \brief The byte model: per token and head, K and V read once as bf16 and their codes and
  /// parameters written once (or the reverse), plus the index tensors.
  /// \return the bytes.
  std::int64_t bytes() const;
};

/// \brief Parses a W14 point.
/// \param point the point.
/// \param writes process_kv (true) or flatten_kv.
/// \return its shape.
TurbomindShape turbomind_shape(const WorkloadPoint& point, bool writes);

/// \brief The W14 points.
/// \param quick small sizes only.
/// \return the points.
std::vector<WorkloadPoint> turbomind_points(bool quick);

/// \brief One buffer set of index tensors: cu_q_len, cu_k_len, cu_block_num (i32), blocks (i64).
struct TurbomindIndices {
  Buffer cu;                ///< cu_q_len, cu_k_len, cu_block_num: 3 × (batch + 1) i32
  Buffer offsets;           ///< [blocks_used] i64
  TensorView cu_q_len;      ///< view
  TensorView cu_k_len;      ///< view
  TensorView cu_block_num;  ///< view
  TensorView blocks;        ///< view
};

/// \brief Random distinct blocks of the pool for buffer set `set`, dealt to the sequences.
/// \param shape the point.
/// \param seed the case's seed.
/// \param set the buffer set.
/// \return the indices, in host memory.
TurbomindIndices make_turbomind_indices(const TurbomindShape& shape, std::uint64_t seed, int set);

/// \brief A copy of indices in `memory`.
/// \param shape the point.
/// \param indices the indices.
/// \param memory where the copy goes.
/// \return the copy.
TurbomindIndices copy_turbomind_indices(const TurbomindShape& shape,
                                        const TurbomindIndices& indices, Memory memory);

/// \brief The pool as the view [pool_blocks, block_bytes] u8.
/// \param shape the point.
/// \param pool the buffer.
/// \param device where it lives.
/// \return the view.
TensorView turbomind_pool_view(const TurbomindShape& shape, const Buffer& pool, Device device);

/// \brief K and V of `rows` tokens as views into one buffer [rows, 2 × 8, 128] bf16: K the
/// first 8 heads, V the last 8 (a token stride of 2048 elements, as in a fused activation).
/// \param rows tokens.
/// \param buffer the buffer (rows × 4096 bytes).
/// \param device where it lives.
/// \param value false for K, true for V.
/// \return the view.
TensorView turbomind_rows_view(std::int64_t rows, const Buffer& buffer, Device device, bool value);

/// \brief Fills a pool for flatten_kv: random codes, and in layer kW14Layer's parameter region
/// [scale, zero] pairs a writer could produce (scale in [1/256, 1/16], zero in [-4, 0]).
/// \param shape the point.
/// \param pool the host buffer.
/// \param seed the seed.
void fill_turbomind_pool(const TurbomindShape& shape, Buffer& pool, std::uint64_t seed);

}  // namespace pagedkv::entries
