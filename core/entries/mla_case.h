/// \file
/// \brief What the MLA cache writers share in the op registry (core/entries/, not public API):
/// the W2 workload (DeepSeek-V3 MLA), its points and its inputs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "harness.h"
#include "pagedkv/buffers.h"
#include "pagedkv/dtype.h"
#include "pagedkv/kv_cache_dtype.h"
#include "pagedkv/registry.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv::entries {

/// \brief Workload notes of W2, shared by the MLA writers' cards.
/// \return the text, in words.
inline const char* mla_workload_notes() {
  return "W2: DeepSeek-V3 MLA. Each new token has a latent kv_c [tokens, 512] bf16 (the "
    "kv_a_layernorm output, contiguous) and a RoPE key k_pe [tokens, 64] bf16, a strided view "
    "(row pitch 576) into the kv_a projection's output [tokens, 576], as in the model; both "
    "random and never zero. They go into a cache of 4096 blocks of 64 slots (256 blocks in a "
    "quick run), \"auto\" (bf16, 1152-byte entries), fp8_e4m3 (576 bytes) or fp8_ds_mla (656 "
    "bytes); slots are random (distinct, over the whole cache) or contiguous (one run from a "
    "random block: a prefill).";
}

/// \brief The W2 shape: DeepSeek-V3 MLA, kv_lora_rank 512 + rope 64, block 64.
struct MlaShape {
  std::int64_t num_tokens = 0;           ///< tokens written (the point's size)
  std::int64_t kv_lora_rank = 512;       ///< latent elements per token
  std::int64_t rope_dim = 64;            ///< RoPE elements per token
  std::int64_t block_size = 64;          ///< slots per cache block
  std::int64_t num_blocks = 4096;        ///< blocks in the cache
  DType activation_dtype = DType::bf16;  ///< dtype of kv_c and k_pe
  std::string kv_cache_dtype = "auto";   ///< "auto", "fp8_e4m3" or "fp8_ds_mla"
  bool contiguous_slots = false;         ///< one run of slots, else random slots
  float scale = 0.01f;                   ///< fp8_e4m3: |x| < 4 maps below 400, inside 448

  /// \brief Whether the cache holds the 656-byte fp8_ds_mla entry.
  /// \return true for "fp8_ds_mla".
  bool ds_mla() const { return kv_cache_dtype == "fp8_ds_mla"; }
  /// \brief Whether the cache holds one byte per element.
  /// \return true for the fp8 kinds.
  bool fp8() const { return kv_cache_dtype != "auto"; }
  /// \brief Elements (or bytes, for fp8_ds_mla) of one entry: size(2) of the cache.
  /// \return 576 or 656.
  std::int64_t entry_elements() const { return ds_mla() ? 656 : kv_lora_rank + rope_dim; }
  /// \brief Bytes of one cache entry.
  /// \return 1152 (bf16), 576 (fp8_e4m3) or 656 (fp8_ds_mla).
  std::int64_t entry_bytes() const {
    return fp8() ? entry_elements() : entry_elements() * dtype_size(activation_dtype);
  }
  /// \brief The cache tensor's dtype.
  /// \return bf16 for "auto", u8 for the fp8 kinds.
  DType cache_dtype() const { return fp8() ? DType::u8 : activation_dtype; }
  /// \brief Bytes of the whole cache.
  /// \return num_blocks × block_size × entry_bytes().
  std::int64_t cache_bytes() const { return num_blocks * block_size * entry_bytes(); }
  /// \brief The byte model of concat_and_cache_mla: kv_c and k_pe rows read once, the entry
  /// written once, the slot read once.
  /// \return the bytes.
  std::int64_t write_bytes() const {
    return num_tokens * ((kv_lora_rank + rope_dim) * dtype_size(activation_dtype) +
                         entry_bytes() + static_cast<std::int64_t>(sizeof(std::int64_t)));
  }
};

/// \brief Parses a W2 point: the variant is the cache ("bf16", "fp8_e4m3" or "fp8_ds_mla").
/// \param point the workload point.
/// \return its shape.
MlaShape mla_shape(const WorkloadPoint& point);

/// \brief The W2 points: variants × {random, contiguous} × token counts.
/// \param variants the op's W2 variants.
/// \param quick true for the small sizes only (and a 256-block cache).
/// \return the points.
std::vector<WorkloadPoint> mla_points(const std::vector<std::string>& variants, bool quick);

/// \brief One buffer set of an MLA write.
struct MlaInputs {
  Buffer latent;            ///< [num_tokens, 512] activation (kv_c)
  Buffer projection;        ///< [num_tokens, 576] kv_a projection output; k_pe is its tail
  Buffer slot_buffer;       ///< [num_tokens] i64
  TensorView kv_c;          ///< [num_tokens, 512], contiguous
  TensorView k_pe;          ///< [num_tokens, 64], row pitch 576
  TensorView slot_mapping;  ///< [num_tokens] i64
};

/// \brief Random host inputs of one buffer set.
/// \param shape the workload shape.
/// \param seed the case's seed.
/// \param set buffer set index.
/// \return the inputs, in host memory.
MlaInputs make_mla_inputs(const MlaShape& shape, std::uint64_t seed, int set);

/// \brief A copy of inputs in another kind of memory, with its views.
/// \param shape the workload shape.
/// \param inputs the inputs to copy.
/// \param memory where the copy lives.
/// \return the copy.
MlaInputs copy_mla_inputs(const MlaShape& shape, const MlaInputs& inputs, Memory memory);

/// \brief The cache view `[num_blocks, block_size, entry]` over `cache`.
/// \param shape the workload shape.
/// \param cache the allocation, cache_bytes() bytes.
/// \param device where it is.
/// \return the view.
TensorView mla_cache_view(const MlaShape& shape, const Buffer& cache, Device device);

}  // namespace pagedkv::entries
