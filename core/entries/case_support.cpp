// Helpers shared by the registry entries. See case_support.h.
#include "case_support.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "pagedkv/cuda_runtime.h"
#include "pagedkv/error.h"
#include "pagedkv/numerics.h"

namespace pagedkv::entries {

namespace {

// splitmix64: tiny, fast and good enough for test data (mt19937 would make filling the 805 MB
// qkv activation of a 65,536-token point take seconds).
struct Random {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n).
  std::int64_t below(std::int64_t n) {
    return static_cast<std::int64_t>(next() % static_cast<std::uint64_t>(n));
  }
  // Uniform in [-4, 4], never exactly 0: (u + 0.5) / 2^24 lies strictly inside (0, 1) and is
  // never 1/2, and the double arithmetic is exact.
  float value() {
    const double u = static_cast<double>(next() >> 40) + 0.5;
    return static_cast<float>(u / 16777216.0 * 8.0 - 4.0);
  }
};

// Value of one element for max_abs_err (integers and raw bytes as their numeric value).
double decode(const std::uint8_t* element, DType dtype) {
  switch (dtype) {
    case DType::f32: {
      float v;
      std::memcpy(&v, element, 4);
      return v;
    }
    case DType::f16: {
      std::uint16_t bits;
      std::memcpy(&bits, element, 2);
      return numerics::half_bits_to_float(bits);
    }
    case DType::bf16: {
      std::uint16_t bits;
      std::memcpy(&bits, element, 2);
      return numerics::bf16_bits_to_float(bits);
    }
    case DType::f8_e4m3: return numerics::fp8_e4m3_to_float(*element);
    case DType::f8_e5m2: return numerics::fp8_e5m2_to_float(*element);
    case DType::u8: return *element;
    case DType::i32: {
      std::int32_t v;
      std::memcpy(&v, element, 4);
      return v;
    }
    case DType::i64: {
      std::int64_t v;
      std::memcpy(&v, element, 8);
      return static_cast<double>(v);
    }
  }
  return 0.0;
}

// Adds the differences of one chunk (`bytes` bytes starting at element boundary) to `result`.
void compare_chunk(const std::uint8_t* output, const std::uint8_t* reference, std::size_t bytes,
                   DType element, Agreement& result) {
  if (std::memcmp(output, reference, bytes) == 0) return;
  const std::size_t element_size = static_cast<std::size_t>(dtype_size(element));
  for (std::size_t at = 0; at + element_size <= bytes; at += element_size) {
    if (std::memcmp(output + at, reference + at, element_size) == 0) continue;
    for (std::size_t b = 0; b < element_size; ++b)
      result.bytes_differing += output[at + b] != reference[at + b];
    const double got = decode(output + at, element);
    const double want = decode(reference + at, element);
    const double err = std::isfinite(got) && std::isfinite(want)
                           ? std::fabs(got - want)
                           : std::numeric_limits<double>::infinity();
    result.max_abs_err = std::max(result.max_abs_err, err);
  }
}

// Fills `count` elements of `dtype`, continuing `random`'s sequence.
void fill_with(Random& random, void* dst, DType dtype, std::int64_t count) {
  auto* bytes = static_cast<std::uint8_t*>(dst);
  switch (dtype) {
    case DType::f32:
      for (std::int64_t i = 0; i < count; ++i) {
        const float v = random.value();
        std::memcpy(bytes + 4 * i, &v, 4);
      }
      return;
    case DType::f16:
      for (std::int64_t i = 0; i < count; ++i) {
        const std::uint16_t h = numerics::float_to_half_bits(random.value());
        std::memcpy(bytes + 2 * i, &h, 2);
      }
      return;
    case DType::bf16:
      // Built from bits, four values per draw (a 65,536-token W1 point has 134 M of them):
      // random sign, exponent 2^-14 .. 2^1 and mantissa, so |x| lies in [2^-14, 4): never 0,
      // never NaN or inf, and an fp8 cache with the W1 scales sees subnormals, normals and
      // saturation.
      for (std::int64_t i = 0; i < count; i += 4) {
        std::uint64_t r = random.next();
        for (std::int64_t k = i; k < std::min(count, i + 4); ++k, r >>= 16) {
          const std::uint16_t sign = static_cast<std::uint16_t>(r & 0x8000u);
          const std::uint16_t exponent = static_cast<std::uint16_t>(113 + ((r >> 7) & 0xFu));
          const std::uint16_t mantissa = static_cast<std::uint16_t>(r & 0x7Fu);
          const std::uint16_t b = static_cast<std::uint16_t>(sign | (exponent << 7) | mantissa);
          std::memcpy(bytes + 2 * k, &b, 2);
        }
      }
      return;
    default: {
      const std::int64_t total = count * dtype_size(dtype);
      std::int64_t i = 0;
      for (; i + 8 <= total; i += 8) {
        const std::uint64_t r = random.next();
        std::memcpy(bytes + i, &r, 8);
      }
      for (; i < total; ++i) bytes[i] = static_cast<std::uint8_t>(random.next());
      return;
    }
  }
}

}  // namespace

void fill_random(void* dst, DType dtype, std::int64_t count, std::uint64_t seed) {
  Random random{seed};
  fill_with(random, dst, dtype, count);
}

std::vector<std::int64_t> draw_unique(std::int64_t count, std::int64_t range, std::uint64_t seed) {
  PAGEDKV_CHECK(count <= range, "draw_unique: ", count, " distinct ids requested from ", range);
  std::vector<std::int64_t> ids(static_cast<std::size_t>(range));
  std::iota(ids.begin(), ids.end(), std::int64_t{0});
  Random random{seed};
  for (std::int64_t i = 0; i < count; ++i) std::swap(ids[i], ids[i + random.below(range - i)]);
  ids.resize(static_cast<std::size_t>(count));
  return ids;
}

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

std::uint64_t set_seed(std::uint64_t seed, int set) {
  return set == 0 ? seed : seed ^ (0xD1B54A32D192ED03ull * static_cast<std::uint64_t>(set));
}

Agreement compare_with_reference(const Buffer& output, const void* reference, DType element) {
  Agreement result;
  result.bytes_compared = static_cast<std::int64_t>(output.size());
  const auto* want = static_cast<const std::uint8_t*>(reference);
  if (output.memory() != Memory::device) {
    compare_chunk(output.data(), want, output.size(), element, result);
  } else {
    // Bring the device output back through a pinned staging buffer, one chunk at a time: a
    // 1 GiB cache then costs ~40 ms over PCIe instead of a 1 GiB pageable copy.
    constexpr std::size_t kChunk = 32u << 20;  // a multiple of every element size
    Buffer staging(Memory::pinned, std::min(kChunk, output.size()));
    for (std::size_t at = 0; at < output.size(); at += kChunk) {
      const std::size_t n = std::min(kChunk, output.size() - at);
      PAGEDKV_CUDA_CHECK(cudaMemcpy(staging.data(), output.data() + at, n, cudaMemcpyDeviceToHost));
      compare_chunk(staging.data(), want + at, n, element, result);
    }
  }
  result.bit_exact = result.bytes_differing == 0;
  return result;
}

Buffer copy_to(Memory memory, const Buffer& src) {
  Buffer copy(memory, src.size());
  copy.copy_from(src);
  return copy;
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
  std::memset(inputs.qkv.data(), 0x3C, inputs.qkv.size());
  Random random{s};
  for (std::int64_t t = 0; t < shape.num_tokens; ++t) {
    std::uint8_t* row = inputs.qkv.data() + t * shape.qkv_row() * element;
    fill_with(random, row + shape.num_q_heads * shape.head_size * element, shape.activation_dtype,
              2 * kv_elements);
  }
  const std::vector<std::int64_t> slots =
      draw_slots(shape.num_tokens, shape.num_blocks, shape.block_size, shape.contiguous_slots,
                 s ^ 0x51075EEDull);
  inputs.slot_buffer = Buffer(Memory::host, slots.size() * sizeof(std::int64_t));
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

ScaleTensor make_scale(float value, Memory memory) {
  ScaleTensor scale;
  scale.storage = Buffer(memory, sizeof(float));
  scale.storage.upload(&value, sizeof(float));
  scale.view = TensorView::contiguous(scale.storage.data(), DType::f32, {1},
                                      memory == Memory::device ? Device::cuda : Device::cpu);
  return scale;
}

std::int64_t stride_in_units(std::int64_t stride_elements, DType dtype, int unit_bytes) {
  const std::int64_t bytes = stride_elements * dtype_size(dtype);
  PAGEDKV_CHECK(bytes % unit_bytes == 0, "library scatter: stride of ", bytes,
                " bytes is not a multiple of the ", unit_bytes, "-byte unit");
  return bytes / unit_bytes;
}

}  // namespace pagedkv::entries
