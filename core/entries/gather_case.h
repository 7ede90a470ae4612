/// \file
/// \brief What the MLA cache readers share in the op registry (core/entries/, not public API):
/// the W3 workload (DeepSeek-V3 MLA cache read back for chunked prefill), its batch shapes, its
/// points and its inputs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "harness.h"
#include "pagedkv/buffers.h"
#include "pagedkv/dtype.h"
#include "pagedkv/registry.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv::entries {

/// \brief Workload notes of W3, shared by the gather ops' cards.
/// \return the text, in words.
inline const char* gather_workload_notes() {
  return "W3: DeepSeek-V3 MLA cache read back into a workspace. Entries of 576 elements (bf16, "
         "1152 bytes, or fp8_e4m3, 576 bytes) or the 656-byte fp8_ds_mla entry, block size 64. "
         "Batch shapes: \"one\", a single request of 61,440 (60 K) or 307,200 (300 K) tokens; "
         "\"skewed\", 256 short requests of 1 to 128 tokens next to 4 long ones that share the "
         "rest "
         "of 65,536 or 307,200 tokens (a quick run: 256 tokens, 16 short requests of 1 to 8). "
         "Each request's blocks are distinct random blocks of a pool twice the size the batch "
         "needs; "
         "cache bytes are random (never all zero), the workspace poisoned.";
}

/// \brief The W3 shape of one point.
struct GatherShape {
  std::string variant = "bf16";       ///< the cache: "bf16", "fp8_e4m3" or "fp8_ds_mla"
  std::string batch_shape = "one";    ///< "one" request, or "skewed" (many short, 4 long)
  std::int64_t total_tokens = 0;      ///< tokens gathered (the point's size)
  std::int64_t block_size = 64;       ///< slots per cache block
  std::int64_t short_requests = 256;  ///< requests of 1 to short_max tokens in a skewed batch
  std::int64_t short_max = 128;       ///< longest short request
  std::int64_t long_requests = 4;     ///< requests sharing the rest of a skewed batch
  float scale = 0.05f;                ///< fp8_e4m3: the per-tensor scale

  /// \brief Whether the cache holds the 656-byte fp8_ds_mla entry.
  /// \return true for "fp8_ds_mla".
  bool ds_mla() const { return variant == "fp8_ds_mla"; }
  /// \brief Whether the cache holds one byte per element.
  /// \return true for the fp8 variants.
  bool fp8() const { return variant != "bf16"; }
  /// \brief The op's kv_cache_dtype string.
  /// \return "auto", "fp8_e4m3" or "fp8_ds_mla".
  std::string kv_cache_dtype() const { return fp8() ? variant : "auto"; }
  /// \brief size(2) of the cache.
  /// \return 576 or 656.
  std::int64_t entry_elements() const { return ds_mla() ? 656 : 576; }
  /// \brief Bytes of one cache entry.
  /// \return 1152 (bf16), 576 (fp8_e4m3) or 656 (fp8_ds_mla).
  std::int64_t entry_bytes() const { return fp8() ? entry_elements() : 2 * entry_elements(); }
  /// \brief The cache tensor's dtype.
  /// \return bf16 or u8.
  DType cache_dtype() const { return fp8() ? DType::u8 : DType::bf16; }
};

/// \brief Parses a W3 point: the variant is the cache, `slots` the batch shape.
/// \param point the workload point.
/// \return its shape.
GatherShape gather_shape(const WorkloadPoint& point);

/// \brief The W3 points: variants × batch shapes × sizes.
/// \param variants the op's W3 variants.
/// \param quick true for the small sizes only.
/// \return the points.
std::vector<WorkloadPoint> gather_points(const std::vector<std::string>& variants, bool quick);

/// \brief One batch of requests to gather, and a paged cache holding them.
struct GatherInputs {
  std::int64_t batch = 0;          ///< requests
  std::int64_t max_blocks = 0;     ///< block_table columns
  std::int64_t num_blocks = 0;     ///< cache blocks (a pool twice what the batch needs)
  std::int64_t used_blocks = 0;    ///< blocks the batch's tokens occupy
  Buffer cache;                    ///< [num_blocks, block_size, entry], random bytes
  Buffer block_table_buffer;       ///< [batch, max_blocks] i32
  Buffer cu_seq_lens_buffer;       ///< [batch + 1] i32
  Buffer token_to_seq_buffer;      ///< [total_tokens] i32
  Buffer seq_lens_buffer;          ///< [batch] i32
  Buffer workspace_starts_buffer;  ///< [batch] i32: cu_seq_lens without its last element
  TensorView src_cache;            ///< view of cache
  TensorView block_table;          ///< view of block_table_buffer
  TensorView cu_seq_lens;          ///< view of cu_seq_lens_buffer
  TensorView token_to_seq;         ///< view of token_to_seq_buffer
  TensorView seq_lens;             ///< view of seq_lens_buffer
  TensorView workspace_starts;     ///< view of workspace_starts_buffer
};

/// \brief Random host inputs of one buffer set: the batch's lengths, its block table and a
/// random cache.
/// \param shape the workload shape.
/// \param seed the case's seed.
/// \param set buffer set index.
/// \return the inputs, in host memory.
GatherInputs make_gather_inputs(const GatherShape& shape, std::uint64_t seed, int set);

/// \brief A copy of inputs in another kind of memory, with its views.
/// \param shape the workload shape.
/// \param inputs the inputs to copy.
/// \param memory where the copy lives.
/// \return the copy.
GatherInputs copy_gather_inputs(const GatherShape& shape, const GatherInputs& inputs,
                                Memory memory);

}  // namespace pagedkv::entries
