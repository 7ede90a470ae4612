/// \file
/// \brief What the cache-write ops (the legacy and the flash layout) share in the
/// op registry (core/entries/, not public API): their byte model, agreement and workload texts,
/// the W1 points and inputs, and the OpCase they all use (CacheWriteCase); and the case of the
/// ops that quantize one key row per token into one cache by slot (KeySlotWriterCase).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "harness.h"
#include "library_baseline.h"
#include "pagedkv/buffers.h"
#include "pagedkv/dtype.h"
#include "pagedkv/kv_cache_dtype.h"
#include "pagedkv/op.h"
#include "pagedkv/registry.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv::entries {

/// \brief Byte model shared by the cache writers (OpEntry::byte_model).
/// \return the text, in words.
inline const char* cache_write_byte_model() {
  return "key and value rows read once (tokens x heads x head_size x 2 x activation bytes), the "
         "same "
         "elements written once into the caches (x cache element bytes: 2 for bf16, 1 for fp8), "
         "slot_mapping read once (8 bytes per token)";
}
/// \brief Agreement rule shared by the cache writers (OpEntry::agreement_rule).
/// \return the text, in words.
inline const char* cache_write_agreement() {
  return "bit-exact: the whole key and value caches, untouched slots included, equal the CPU "
         "reference byte for byte";
}

/// \brief Workload notes shared by the cache writers (OpEntry::workload_notes).
/// \return the text, in words.
inline const char* cache_write_workload_notes() {
  return "W1: the new tokens' keys and values are views into a fused qkv activation [tokens, 32 "
         "+ 8 + 8 heads, 128] bf16 (Llama-3-8B; only the 8 kv heads are written), random and never "
         "zero; they go into a cache of 16384 blocks of 16 slots (1024 blocks in a quick run), "
         "bf16 "
         "or fp8_e4m3; slots are random (distinct, over the whole cache) or contiguous (one run "
         "from a "
         "random block: a prefill).";
}

/// \brief Slots for new tokens in a cache of num_blocks × block_size slots.
/// \param count number of tokens.
/// \param num_blocks blocks in the cache.
/// \param block_size slots per block.
/// \param contiguous true: one run of consecutive slots from a random block (a prefill of one
///        sequence); false: distinct random slots over the whole cache.
/// \param seed seed of the generator.
/// \return [count] slots.
std::vector<std::int64_t> draw_slots(std::int64_t count, std::int64_t num_blocks,
                                     std::int64_t block_size, bool contiguous, std::uint64_t seed);

/// \brief The W1 cache-write workload: Llama-3-8B, 32 query / 8 kv heads of 128,
/// block 16. The new tokens' keys and values are views into one fused qkv activation
/// [num_tokens, 32 + 8 + 8, 128], as an engine hands them over after the QKV projection; only
/// the 8 kv heads are written.
struct CacheWriteShape {
  std::int64_t num_tokens = 0;           ///< tokens written (the point's size)
  std::int64_t num_q_heads = 32;         ///< query heads in the fused activation (never read)
  std::int64_t num_kv_heads = 8;         ///< kv heads, written to the cache
  std::int64_t head_size = 128;          ///< elements per head
  std::int64_t block_size = 16;          ///< slots per cache block
  std::int64_t num_blocks = 16384;       ///< blocks in the cache
  DType activation_dtype = DType::bf16;  ///< dtype of keys and values
  std::string kv_cache_dtype = "auto";   ///< as vLLM passes it: "auto" or "fp8_e4m3"
  KvCacheDtype cache_kind = KvCacheDtype::kAuto;  ///< kv_cache_dtype parsed
  bool contiguous_slots = false;                  ///< one run of slots, else random slots
  float k_scale = 0.01f;    ///< fp8: |x| < 4 maps below 400, inside E4M3's 448
  float v_scale = 0.0085f;  ///< fp8: |x| > 3.8 saturates, so the saturating path runs too

  /// \brief Row pitch of the fused qkv activation.
  /// \return elements per token row.
  std::int64_t qkv_row() const { return (num_q_heads + 2 * num_kv_heads) * head_size; }
  /// \brief Bytes of one cache element.
  /// \return the activation's size for "auto", 1 for fp8.
  std::int64_t cache_element_size() const;
  /// \brief The cache element type, for decoding differences.
  /// \return the activation dtype, or the fp8 kind.
  DType cache_element_dtype() const;
  /// \brief Bytes of one cache (key or value).
  /// \return num_blocks × block_size × kv heads × head_size × element bytes.
  std::int64_t cache_bytes() const;
  /// \brief The byte model: key and value rows read once, their cache elements written once,
  /// the slot mapping read once.
  /// \return the bytes.
  std::int64_t bytes_moved() const;
};

/// \brief Parses a W1 point. The activation is bf16; the variant names the cache dtype ("bf16"
/// or "fp8_e4m3"), optionally after the layout ("NHD " / "HND ").
/// \param point the workload point.
/// \return its shape.
CacheWriteShape cache_write_shape(const WorkloadPoint& point);

/// \brief One buffer set of a cache write.
struct TokenInputs {
  Buffer qkv;               ///< [num_tokens, q + 2 kv heads, head_size] activation
  Buffer slot_buffer;       ///< [num_tokens] i64
  TensorView key;           ///< [num_tokens, num_kv_heads, head_size], row pitch qkv_row()
  TensorView value;         ///< [num_tokens, num_kv_heads, head_size], row pitch qkv_row()
  TensorView slot_mapping;  ///< [num_tokens] i64
};

/// \brief Random host inputs of one buffer set.
/// \param shape the workload shape.
/// \param seed the case's seed.
/// \param set buffer set index.
/// \return the inputs, in host memory.
TokenInputs make_token_inputs(const CacheWriteShape& shape, std::uint64_t seed, int set);

/// \brief A copy of inputs in another kind of memory, with its views.
/// \param shape the workload shape.
/// \param inputs the inputs to copy.
/// \param memory where the copy lives.
/// \return the copy.
TokenInputs copy_token_inputs(const CacheWriteShape& shape, const TokenInputs& inputs,
                              Memory memory);

/// \brief Points the views of inputs at their buffers.
/// \param shape the workload shape.
/// \param inputs the inputs whose views are set.
/// \param device the device the buffers are on.
void set_token_views(const CacheWriteShape& shape, TokenInputs& inputs, Device device);

/// \brief The W1 points of a cache write: variants × {random, contiguous} × token counts.
/// \param variants the op's W1 variants.
/// \param quick true for the small sizes only (and a 1024-block cache).
/// \return the points.
std::vector<WorkloadPoint> cache_write_points(const std::vector<std::string>& variants, bool quick);

/// \brief The OpCase of a cache write (either layout), written once:
/// the W1 inputs, the two caches, the buffer sets and the validated plans.
///
/// Everything that differs between the cache-write ops comes in through `Glue`, a small struct
/// that each op's entry file writes (see the cache writers' files in core/entries/). The glue names
/// the op and says how the key and value caches lie in their allocation. It provides:
/// - `Op`: the op's struct, whose Args are (key, value, key_cache, value_cache, slot_mapping,
///   kv_cache_dtype, k_scale, v_scale);
/// - a constructor taking the WorkloadPoint, which rejects a variant the op does not run;
/// - `key_cache(shape, caches, device)` and `value_cache(shape, caches, device)`: views of the
///   two caches in one allocation `caches` of 2 × shape.cache_bytes() (key cache first);
/// - `library_scatters(shape, inputs, caches)`: the op as plain scatters of units (asked only
///   when the cache is not fp8).
///
/// Buffer sets: each set has its own inputs (set 0 holds the CPU reference's inputs) and all
/// sets write the same device caches. prepare_device() validates every set once per
/// implementation, so that launch(), the timed call, only runs a plan.
/// \tparam Glue the op's glue (above).
template <class Glue>
class CacheWriteCase final : public PlannedCase<typename Glue::Op>, public LibraryBaseline {
  using Op = typename Glue::Op;

 public:
  /// \brief Draws the host inputs of buffer set 0 and allocates the CPU reference's output
  /// caches, filled with the poison byte.
  /// \param point the W1 point; the glue rejects a variant the op does not run.
  /// \param seed seed of the random inputs.
  CacheWriteCase(const WorkloadPoint& point, std::uint64_t seed)
      : shape_(cache_write_shape(point)),
        seed_(seed),
        host_(make_token_inputs(shape_, seed, 0)),
        host_caches_(Memory::host, static_cast<std::size_t>(2 * shape_.cache_bytes())),
        host_k_scale_(make_scale(shape_.k_scale, Memory::host)),
        host_v_scale_(make_scale(shape_.v_scale, Memory::host)),
        glue_(point) {
    host_caches_.fill(kPoisonByte);
  }

  std::int64_t bytes_moved() const override { return shape_.bytes_moved(); }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    device_caches_ = Buffer(Memory::device, host_caches_.size());
    device_caches_.fill(kPoisonByte);
    k_scale_ = make_scale(shape_.k_scale, Memory::device);
    v_scale_ = make_scale(shape_.v_scale, Memory::device);
    const TensorView kc = key_cache(device_caches_, Device::cuda);
    const TensorView vc = value_cache(device_caches_, Device::cuda);
    for (int set = 0; set < sets; ++set) {
      // Set 0 is the CPU reference's input; the others are drawn the same way.
      device_.push_back(set == 0 ? copy_token_inputs(shape_, host_, Memory::device)
                                 : copy_token_inputs(shape_, make_token_inputs(shape_, seed_, set),
                                                     Memory::device));
      const TokenInputs& in = device_.back();
      this->calls_.add({in.key, in.value, kc, vc, in.slot_mapping, shape_.kv_cache_dtype,
                        k_scale_.view, v_scale_.view});
      // Validation (with its synchronizing slot-range check) happens here, once per set and
      // implementation, never inside the timed region.
    }
  }

  void reset_outputs() override { device_caches_.fill(kPoisonByte); }

  Agreement compare_outputs() override {
    return compare_with_reference(device_caches_, host_caches_.data(),
                                  shape_.cache_element_dtype());
  }

  std::vector<UnitScatter> library_scatters(int set) const override {
    if (is_fp8(shape_.cache_kind)) return {};  // quantizing is not a plain scatter
    const TokenInputs& in = device_.at(static_cast<std::size_t>(set));
    return glue_.library_scatters(shape_, in, device_caches_);
  }

 private:
  // The CPU reference's call on the host inputs (what run_cpu() runs and cpu_arguments()
  // lists).
  typename Op::Args cpu_call() override {
    return typename Op::Args{host_.key,
                             host_.value,
                             key_cache(host_caches_, Device::cpu),
                             value_cache(host_caches_, Device::cpu),
                             host_.slot_mapping,
                             shape_.kv_cache_dtype,
                             host_k_scale_.view,
                             host_v_scale_.view};
  }
  TensorView key_cache(const Buffer& caches, Device device) const {
    return glue_.key_cache(shape_, caches, device);
  }
  TensorView value_cache(const Buffer& caches, Device device) const {
    return glue_.value_cache(shape_, caches, device);
  }

  // Initialized in declaration order: the shape, the host inputs, caches and scales, then the
  // glue, whose constructor checks the variant.
  CacheWriteShape shape_;
  std::uint64_t seed_;
  TokenInputs host_;    // set 0, the CPU reference's input
  Buffer host_caches_;  // [2, num_blocks, ...]: the CPU reference's output
  ScaleTensor host_k_scale_, host_v_scale_;
  Glue glue_;
  std::vector<TokenInputs> device_;  // one per buffer set
  Buffer device_caches_;             // shared by all sets
  ScaleTensor k_scale_, v_scale_;
};

/// \brief bf16 key rows and the slot each goes to: the inputs of an op that writes one key row
/// per token into one paged cache (indexer_k_quant_and_cache, quantize_and_insert_k_cache).
struct KeySlotInputs {
  Buffer keys;              ///< [T, head_dim] bf16
  Buffer slot_buffer;       ///< [T] i64
  TensorView k;             ///< view of keys
  TensorView slot_mapping;  ///< view of slot_buffer
};

/// \brief Random keys and distinct slots, in host memory.
/// \param num_tokens T.
/// \param head_dim elements per key row.
/// \param num_blocks blocks of the cache the slots lie in.
/// \param block_size slots per block.
/// \param contiguous_slots one run of slots from a random block (a prefill), else random ones.
/// \param key_seed seed of the keys.
/// \param slot_seed seed of the slots.
/// \return the inputs.
KeySlotInputs make_key_slot_inputs(std::int64_t num_tokens, std::int64_t head_dim,
                                   std::int64_t num_blocks, std::int64_t block_size,
                                   bool contiguous_slots, std::uint64_t key_seed,
                                   std::uint64_t slot_seed);

/// \brief The same inputs in `memory`.
/// \param inputs what make_key_slot_inputs() gave.
/// \param memory where the copy lives.
/// \return the copy, its views on the matching device.
KeySlotInputs copy_key_slot_inputs(const KeySlotInputs& inputs, Memory memory);

/// \brief The OpCase of an op that writes key rows into one paged cache by slot: buffer sets of
/// inputs (set 0 is the CPU reference's), one device cache shared by all sets, plans validated
/// once per set and implementation, the whole cache compared byte for byte.
/// \tparam Op the op struct.
/// \tparam Spec what differs between such ops, as static members: `Shape shape(point)`,
/// `KeySlotInputs inputs(shape, seed, set)`, `std::int64_t cache_bytes(shape)`,
/// `std::int64_t bytes_moved(shape)`, `TensorView cache_view(shape, buffer, device)` and
/// `Op::Args args(shape, inputs, cache)`.
template <class Op, class Spec>
class KeySlotWriterCase final : public PlannedCase<Op> {
 public:
  /// \brief The point's host inputs and the CPU reference's poisoned cache.
  /// \param point the workload point.
  /// \param seed the run's seed.
  KeySlotWriterCase(const WorkloadPoint& point, std::uint64_t seed)
      : shape_(Spec::shape(point)),
        seed_(seed),
        host_(Spec::inputs(shape_, seed, 0)),
        host_cache_(Memory::host, static_cast<std::size_t>(Spec::cache_bytes(shape_))) {
    host_cache_.fill(kPoisonByte);
  }

  /// \cond INTERNAL
  std::int64_t bytes_moved() const override { return Spec::bytes_moved(shape_); }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    device_cache_ = Buffer(Memory::device, host_cache_.size());
    device_cache_.fill(kPoisonByte);
    const TensorView cache = Spec::cache_view(shape_, device_cache_, Device::cuda);
    for (int set = 0; set < sets; ++set) {
      device_.push_back(set == 0 ? copy_key_slot_inputs(host_, Memory::device)
                                 : copy_key_slot_inputs(Spec::inputs(shape_, seed_, set),
                                                        Memory::device));
      // Validation (with its synchronizing slot-range check) happens here, never when timed.
      this->calls_.add(Spec::args(shape_, device_.back(), cache));
    }
  }

  void reset_outputs() override { device_cache_.fill(kPoisonByte); }

  Agreement compare_outputs() override {
    return compare_with_reference(device_cache_, host_cache_.data(), DType::u8);
  }
  /// \endcond

 private:
  typename Op::Args cpu_call() override {
    return Spec::args(shape_, host_, Spec::cache_view(shape_, host_cache_, Device::cpu));
  }

  decltype(Spec::shape(std::declval<const WorkloadPoint&>())) shape_;
  std::uint64_t seed_;
  KeySlotInputs host_;                 // set 0, the CPU reference's input
  Buffer host_cache_;                  // the CPU reference's output
  std::vector<KeySlotInputs> device_;  // one per buffer set
  Buffer device_cache_;                // shared by all sets
};

}  // namespace pagedkv::entries
