// Helpers shared by the registry entries (not public API): random inputs that are never zeros,
// slot and block-id drawing, the W1 cache-write inputs, and the byte-for-byte comparison of a
// whole output with the CPU reference.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pagedkv/buffers.h"
#include "pagedkv/dtype.h"
#include "pagedkv/kv_cache_dtype.h"
#include "pagedkv/registry.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv::entries {

/// Fills `count` elements of `dtype` with random values, deterministic in `seed`: f32 and f16
/// uniform in [-4, 4] (never 0); bf16 with a random sign, exponent and mantissa, |x| in
/// [2^-14, 4) (never 0, fast: the W1 points need up to 134 M values); other types random bytes.
void fill_random(void* dst, DType dtype, std::int64_t count, std::uint64_t seed);

/// `count` distinct ids in [0, range), in random order (partial Fisher-Yates).
std::vector<std::int64_t> draw_unique(std::int64_t count, std::int64_t range, std::uint64_t seed);

/// Slots for `count` tokens in a cache of `num_blocks` × `block_size` slots: distinct and random,
/// or one contiguous run starting at a random block (a prefill of one sequence).
std::vector<std::int64_t> draw_slots(std::int64_t count, std::int64_t num_blocks,
                                     std::int64_t block_size, bool contiguous, std::uint64_t seed);

/// A seed for buffer set `set` of a case seeded with `seed` (set 0 keeps `seed`).
std::uint64_t set_seed(std::uint64_t seed, int set);

/// Compares the whole `output` (device, pinned or host memory) with `reference` (host, same size)
/// byte for byte. Differing elements are decoded as `element` for max_abs_err (NaN or inf
/// against a number counts as infinite error).
Agreement compare_with_reference(const Buffer& output, const void* reference, DType element);

/// Copies `src` into a new buffer in `memory`.
Buffer copy_to(Memory memory, const Buffer& src);

/// The W1 cache-write workload (design.md §4): Llama-3-8B, 32 query / 8 kv heads of 128, block 16.
/// The new tokens' keys and values are views into one fused qkv activation
/// [num_tokens, 32 + 8 + 8, 128], as an engine hands them over after the QKV projection; only
/// the 8 kv heads are written.
struct CacheWriteShape {
  std::int64_t num_tokens = 0;
  std::int64_t num_q_heads = 32;
  std::int64_t num_kv_heads = 8;
  std::int64_t head_size = 128;
  std::int64_t block_size = 16;
  std::int64_t num_blocks = 16384;
  DType activation_dtype = DType::bf16;
  std::string kv_cache_dtype = "auto";  // as vLLM passes it
  KvCacheDtype cache_kind = KvCacheDtype::kAuto;
  bool contiguous_slots = false;
  float k_scale = 0.01f;    // fp8: |x| <= 4 maps to <= 400, inside E4M3's 448
  float v_scale = 0.0085f;  // fp8: |x| > 3.8 saturates, so the saturating path runs too

  /// Row pitch of the fused qkv activation, in elements.
  std::int64_t qkv_row() const { return (num_q_heads + 2 * num_kv_heads) * head_size; }
  /// Bytes of one cache element (the activation's for "auto", 1 for fp8).
  std::int64_t cache_element_size() const;
  /// DType of cache elements for the comparison (the activation's, or the fp8 kind).
  DType cache_element_dtype() const;
  /// Bytes of one cache (key or value): num_blocks × block_size × kv heads × head_size elements.
  std::int64_t cache_bytes() const;
  /// Byte model: key and value rows read once, their cache elements written once, the slot
  /// mapping read once.
  std::int64_t bytes_moved() const;
};

/// Parses a W1 point: the activation is bf16; the variant names the cache dtype ("bf16" or
/// "fp8_e4m3", optionally after the layout "NHD " / "HND ").
CacheWriteShape cache_write_shape(const WorkloadPoint& point);

/// One buffer set of a cache write: the fused qkv activation, the key and value views into it,
/// the slot mapping.
struct TokenInputs {
  Buffer qkv;               // [num_tokens, q + 2 kv heads, head_size]
  Buffer slot_buffer;       // [num_tokens] i64
  TensorView key;           // [num_tokens, num_kv_heads, head_size], row pitch qkv_row()
  TensorView value;         // [num_tokens, num_kv_heads, head_size], row pitch qkv_row()
  TensorView slot_mapping;  // [num_tokens] i64
};

/// Random host inputs of buffer set `set`.
TokenInputs make_token_inputs(const CacheWriteShape& shape, std::uint64_t seed, int set);
/// A copy of `inputs` in `memory`, with its views.
TokenInputs copy_token_inputs(const CacheWriteShape& shape, const TokenInputs& inputs,
                              Memory memory);
/// Points the views of `inputs` at its buffers.
void set_token_views(const CacheWriteShape& shape, TokenInputs& inputs, Device device);

/// The W1 points of a cache write: `variants` × {random, contiguous} × token counts.
std::vector<WorkloadPoint> cache_write_points(const std::vector<std::string>& variants, bool quick);

/// A one-element f32 scale tensor in `memory`.
struct ScaleTensor {
  Buffer storage;
  TensorView view;  // f32 [1]
};
ScaleTensor make_scale(float value, Memory memory);

/// Byte offset (in units of `unit_bytes`) of a view's stride; rejects strides that are not a
/// whole number of units (the library row only handles unit-aligned layouts).
std::int64_t stride_in_units(std::int64_t stride_elements, DType dtype, int unit_bytes);

// The registry entries, one per file in this folder.
OpEntry swap_blocks_entry();
OpEntry reshape_and_cache_entry();
OpEntry reshape_and_cache_flash_entry();

}  // namespace pagedkv::entries
