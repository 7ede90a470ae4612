// The harness shared by the registry entries. See harness.h.
#include "harness.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "numerics.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/error.h"

namespace pagedkv::entries {

namespace {

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
    case DType::b8: return *element;
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

}  // namespace

void fill_random(Random& random, void* dst, DType dtype, std::int64_t count) {
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

void fill_random(void* dst, DType dtype, std::int64_t count, std::uint64_t seed) {
  Random random{seed};
  fill_random(random, dst, dtype, count);
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

ScaleTensor make_scale(float value, Memory memory) {
  ScaleTensor scale;
  scale.storage = Buffer(memory, sizeof(float));
  scale.storage.upload(&value, sizeof(float));
  scale.view = TensorView::contiguous(scale.storage.data(), DType::f32, {1},
                                      memory == Memory::device ? Device::cuda : Device::cpu);
  return scale;
}

}  // namespace pagedkv::entries
