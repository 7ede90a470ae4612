// What the cache-write entries share. See cache_write_case.h.
#include "cache_write_case.h"

#include <cstring>
#include <numeric>

#include "pagedkv/error.h"

namespace pagedkv::entries {

std::vector<std::int64_t> draw_slots(std::int64_t count, std::int64_t num_blocks,
                                     std::int64_t block_size, bool contiguous, std::uint64_t seed) {
  const std::int64_t total_slots = num_blocks * block_size;
  PAGEDKV_CHECK(count <= total_slots, "draw_slots: ", count, " tokens do not fit ", total_slots,
                " slots");
  if (!contiguous) return draw_unique(count, total_slots, seed);
  const std::int64_t blocks_needed = (count + block_size - 1) / block_size;
  Random random{seed};
  const std::int64_t first_block = random.below(num_blocks - blocks_needed + 1);
  std::vector<std::int64_t> slots(static_cast<std::size_t>(count));
  std::iota(slots.begin(), slots.end(), first_block * block_size);
  return slots;
}

std::int64_t CacheWriteShape::cache_element_size() const {
  return is_fp8(cache_kind) ? 1 : dtype_size(activation_dtype);
}

DType CacheWriteShape::cache_element_dtype() const {
  switch (cache_kind) {
    case KvCacheDtype::kAuto: return activation_dtype;
    case KvCacheDtype::kFp8E4m3: return DType::f8_e4m3;
    case KvCacheDtype::kFp8E5m2: return DType::f8_e5m2;
  }
  return DType::u8;
}

std::int64_t CacheWriteShape::cache_bytes() const {
  return num_blocks * block_size * num_kv_heads * head_size * cache_element_size();
}

std::int64_t CacheWriteShape::bytes_moved() const {
  const std::int64_t elements = num_tokens * num_kv_heads * head_size;  // per tensor
  return 2 * elements * dtype_size(activation_dtype)                    // key and value read
         + 2 * elements * cache_element_size()  // key and value cache written
         + num_tokens * static_cast<std::int64_t>(sizeof(std::int64_t));  // slot_mapping read
}

CacheWriteShape cache_write_shape(const WorkloadPoint& point) {
  PAGEDKV_CHECK(point.workload == "W1", "cache writes run workload W1, got ", point.workload);
  CacheWriteShape shape;
  shape.num_tokens = point.size;
  if (point.num_blocks > 0) shape.num_blocks = point.num_blocks;
  shape.contiguous_slots = point.slots == "contiguous";
  PAGEDKV_CHECK(point.slots == "random" || point.slots == "contiguous",
                "W1 slots: expected \"random\" or \"contiguous\", got \"", point.slots, "\"");
  const std::string& v = point.variant;
  const std::string dtype =
      v.size() > 4 && (v.rfind("NHD ", 0) == 0 || v.rfind("HND ", 0) == 0) ? v.substr(4) : v;
  if (dtype == "bf16") {
    shape.kv_cache_dtype = "auto";
  } else if (dtype == "fp8_e4m3") {
    shape.kv_cache_dtype = "fp8_e4m3";
  } else {
    reject("W1 variant: expected the cache dtype bf16 or fp8_e4m3, got \"", v, "\"");
  }
  shape.cache_kind = parse_kv_cache_dtype(shape.kv_cache_dtype, shape.activation_dtype);
  return shape;
}

TokenInputs make_token_inputs(const CacheWriteShape& shape, std::uint64_t seed, int set) {
  const std::uint64_t s = set_seed(seed, set);
  const std::int64_t element = dtype_size(shape.activation_dtype);
  const std::int64_t kv_elements = shape.num_kv_heads * shape.head_size;  // per token and tensor
  TokenInputs inputs;
  inputs.qkv =
      Buffer(Memory::host, static_cast<std::size_t>(shape.num_tokens * shape.qkv_row() * element));
  // The query part is never read by a cache write: a cheap non-zero pattern is enough there.
  // Keys and values get random values.
  if (inputs.qkv.size() > 0) std::memset(inputs.qkv.data(), 0x3C, inputs.qkv.size());
  Random random{s};
  for (std::int64_t t = 0; t < shape.num_tokens; ++t) {
    std::uint8_t* row = inputs.qkv.data() + t * shape.qkv_row() * element;
    fill_random(random, row + shape.num_q_heads * shape.head_size * element, shape.activation_dtype,
              2 * kv_elements);
  }
  const std::vector<std::int64_t> slots =
      draw_slots(shape.num_tokens, shape.num_blocks, shape.block_size, shape.contiguous_slots,
                 s ^ 0x51075EEDull);
  inputs.slot_buffer = Buffer(Memory::host, slots.size() * sizeof(std::int64_t));
  // Zero tokens: an empty buffer has no memory, and memcpy must not see its null pointer.
  if (!slots.empty())
    std::memcpy(inputs.slot_buffer.data(), slots.data(), inputs.slot_buffer.size());
  set_token_views(shape, inputs, Device::cpu);
  return inputs;
}

TokenInputs copy_token_inputs(const CacheWriteShape& shape, const TokenInputs& inputs,
                              Memory memory) {
  TokenInputs copy;
  copy.qkv = copy_to(memory, inputs.qkv);
  copy.slot_buffer = copy_to(memory, inputs.slot_buffer);
  set_token_views(shape, copy, memory == Memory::device ? Device::cuda : Device::cpu);
  return copy;
}

void set_token_views(const CacheWriteShape& shape, TokenInputs& inputs, Device device) {
  const std::int64_t element = dtype_size(shape.activation_dtype);
  const std::int64_t key_offset = shape.num_q_heads * shape.head_size;  // elements into a row
  const std::int64_t value_offset = key_offset + shape.num_kv_heads * shape.head_size;
  const std::int64_t row = shape.qkv_row();
  std::uint8_t* base = inputs.qkv.data();
  inputs.key = TensorView::strided(base + key_offset * element, shape.activation_dtype,
                                   {shape.num_tokens, shape.num_kv_heads, shape.head_size},
                                   {row, shape.head_size, 1}, device);
  inputs.value = TensorView::strided(base + value_offset * element, shape.activation_dtype,
                                     {shape.num_tokens, shape.num_kv_heads, shape.head_size},
                                     {row, shape.head_size, 1}, device);
  inputs.slot_mapping =
      TensorView::contiguous(inputs.slot_buffer.data(), DType::i64, {shape.num_tokens}, device);
}

std::vector<WorkloadPoint> cache_write_points(const std::vector<std::string>& variants,
                                              bool quick) {
  const std::vector<std::int64_t> sizes =
      quick ? std::vector<std::int64_t>{1, 16, 256}
            : std::vector<std::int64_t>{1, 16, 256, 4096, 16384, 65536};
  std::vector<WorkloadPoint> points;
  for (const std::string& variant : variants)
    for (const char* slots : {"random", "contiguous"})
      for (std::int64_t tokens : sizes)
        points.push_back({"W1", variant, slots, tokens, "tokens", quick ? 1024 : 16384});
  return points;
}

namespace {

void set_key_slot_views(KeySlotInputs& inputs, std::int64_t num_tokens, std::int64_t head_dim,
                        Device device) {
  inputs.k = TensorView::contiguous(inputs.keys.data(), DType::bf16, {num_tokens, head_dim},
                                    device);
  inputs.slot_mapping =
      TensorView::contiguous(inputs.slot_buffer.data(), DType::i64, {num_tokens}, device);
}

}  // namespace

KeySlotInputs make_key_slot_inputs(std::int64_t num_tokens, std::int64_t head_dim,
                                   std::int64_t num_blocks, std::int64_t block_size,
                                   bool contiguous_slots, std::uint64_t key_seed,
                                   std::uint64_t slot_seed) {
  KeySlotInputs inputs;
  inputs.keys = Buffer(Memory::host, static_cast<std::size_t>(num_tokens * head_dim * 2));
  Random random{key_seed};
  fill_random(random, inputs.keys.data(), DType::bf16, num_tokens * head_dim);
  const std::vector<std::int64_t> slots =
      draw_slots(num_tokens, num_blocks, block_size, contiguous_slots, slot_seed);
  inputs.slot_buffer = Buffer(Memory::host, slots.size() * sizeof(std::int64_t));
  // Zero tokens: an empty buffer has no memory, and memcpy must not see its null pointer.
  if (!slots.empty())
    std::memcpy(inputs.slot_buffer.data(), slots.data(), inputs.slot_buffer.size());
  set_key_slot_views(inputs, num_tokens, head_dim, Device::cpu);
  return inputs;
}

KeySlotInputs copy_key_slot_inputs(const KeySlotInputs& inputs, Memory memory) {
  KeySlotInputs copy;
  copy.keys = copy_to(memory, inputs.keys);
  copy.slot_buffer = copy_to(memory, inputs.slot_buffer);
  set_key_slot_views(copy, inputs.k.size(0), inputs.k.size(1),
                     memory == Memory::device ? Device::cuda : Device::cpu);
  return copy;
}

}  // namespace pagedkv::entries
