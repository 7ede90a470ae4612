/// \file
/// \brief What the registry cases of DeepSeek V4's index builders (W4) share: the workload's
/// constants, a batch of requests drawn at random (lengths, positions, block tables, top-k
/// lists), and a set of i32 / bool arrays packed into one buffer so that a buffer set is one
/// copy.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "harness.h"
#include "pagedkv/buffers.h"
#include "pagedkv/registry.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv::entries {

/// \brief W4's index-op constants: DeepSeek V4's C4A layers.
inline constexpr std::int64_t kW4Topk = 2048;           ///< top-k compressed tokens per query
inline constexpr std::int64_t kW4Window = 128;          ///< SWA window
inline constexpr std::int64_t kW4Ratio = 4;             ///< compress ratio (C4A)
inline constexpr std::int64_t kW4SwaBlock = 64;         ///< SWA cache block size
inline constexpr std::int64_t kW4CompressedBlock = 64;  ///< 256-token attention block / 4
/// \brief The byte the index cases poison their outputs with: not 0xFF, whose i32 is -1, the
/// value a correct kernel writes into most of a row (a kernel that forgot those writes would
/// pass).
inline constexpr std::uint8_t kIndexPoisonByte = 0x5A;

/// \brief A batch of requests: decode requests (one query each) first, then prefill requests.
struct SparseBatch {
  std::vector<std::int32_t> seq_lens;         ///< [R]
  std::vector<std::int32_t> query_start_loc;  ///< [R + 1], from 0
  std::vector<std::int32_t> token_to_req;     ///< [T]
  std::vector<std::int32_t> positions;        ///< [T]: each token's position
  std::vector<std::int32_t> swa_table;        ///< [R, swa_width]
  std::vector<std::int32_t> compressed_table; ///< [R, compressed_width]
  std::int64_t swa_width = 0;                 ///< SWA table columns
  std::int64_t compressed_width = 0;          ///< compressed table columns
  std::int64_t num_decode = 0;                ///< decode tokens (= decode requests)
  /// \brief Requests.
  /// \return R.
  std::int64_t requests() const { return static_cast<std::int64_t>(seq_lens.size()); }
  /// \brief Tokens.
  /// \return T.
  std::int64_t tokens() const { return static_cast<std::int64_t>(token_to_req.size()); }
};

/// \brief Draws a batch: `decode` requests of one query each (lengths 16,384 .. 65,536), then
/// `prefill_tokens` query tokens in chunks of at most 2,048 per request, each request with a
/// prefix of 0 .. 30,000 tokens. Block ids are random in [0, 2^20).
/// \param decode decode requests.
/// \param prefill_tokens prefill query tokens.
/// \param seed seed of the generator.
/// \return the batch.
SparseBatch draw_sparse_batch(std::int64_t decode, std::int64_t prefill_tokens,
                              std::uint64_t seed);

/// \brief Fills `row` with a top-k list for a query at `position`: min((position + 1) / 4,
/// width) distinct local indices below (position + 1) / 4 in random order, then -1.
/// \param random the generator.
/// \param position the query's position.
/// \param row the row, `width` entries.
/// \param width its length.
void draw_topk_row(Random& random, std::int64_t position, std::int32_t* row, std::int64_t width);

/// \brief Arrays packed into one buffer, each 256-byte aligned: a buffer set is one copy.
class PackedArrays {
 public:
  /// \brief Adds an array; returns its index.
  /// \param data its bytes.
  /// \param bytes its size.
  /// \return the index to ask at() for.
  int add(const void* data, std::size_t bytes);
  /// \brief Adds an array of i32.
  /// \param values the values.
  /// \return its index.
  int add(const std::vector<std::int32_t>& values) {
    return add(values.data(), values.size() * sizeof(std::int32_t));
  }
  /// \brief The packed host buffer (after the last add()).
  /// \return the buffer.
  const Buffer& host() const { return host_; }
  /// \brief Address of array `index` inside a copy of the packed buffer.
  /// \param copy the host buffer or a copy of it.
  /// \param index the array.
  /// \return its first byte.
  void* at(const Buffer& copy, int index) const {
    return copy.data() + offsets_.at(static_cast<std::size_t>(index));
  }

 private:
  Buffer host_;
  std::vector<std::size_t> offsets_;
};

/// \brief The paragraph that describes W4's index points (OpEntry::workload_notes).
/// \return the text.
std::string sparse_index_workload_notes();

}  // namespace pagedkv::entries
