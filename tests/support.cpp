#include "support.h"

#include <algorithm>
#include <random>
#include <utility>

#include "numerics.h"

namespace pagedkv::test {

void fill_random(void* dst, DType dtype, std::int64_t count, std::uint64_t seed, float range) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(-range, range);
  auto* bytes = static_cast<std::uint8_t*>(dst);
  for (std::int64_t i = 0; i < count; ++i) {
    const float v = dist(rng);
    switch (dtype) {
      case DType::f32: std::memcpy(bytes + 4 * i, &v, 4); break;
      case DType::f16: {
        const std::uint16_t h = numerics::float_to_half_bits(v);
        std::memcpy(bytes + 2 * i, &h, 2);
        break;
      }
      case DType::bf16: {
        const std::uint16_t b = numerics::float_to_bf16_bits(v);
        std::memcpy(bytes + 2 * i, &b, 2);
        break;
      }
      default: bytes[i * dtype_size(dtype)] = static_cast<std::uint8_t>(rng()); break;
    }
  }
}

void poison(void* dst, std::size_t bytes) {
  auto* p = static_cast<std::uint8_t*>(dst);
  for (std::size_t i = 0; i < bytes; ++i) p[i] = (i & 1) ? 0x5A : 0xA5;
}

std::int64_t first_difference(const void* a, const void* b, std::size_t bytes) {
  const auto* pa = static_cast<const std::uint8_t*>(a);
  const auto* pb = static_cast<const std::uint8_t*>(b);
  for (std::size_t i = 0; i < bytes; ++i)
    if (pa[i] != pb[i]) return static_cast<std::int64_t>(i);
  return -1;
}

Buffer floats(const std::vector<float>& values) {
  Buffer buffer(Memory::host, std::max<std::size_t>(values.size(), 1) * sizeof(float));
  std::memcpy(buffer.data(), values.data(), values.size() * sizeof(float));
  return buffer;
}

Buffer int64s(const std::vector<std::int64_t>& values) {
  Buffer buffer(Memory::host, std::max<std::size_t>(values.size(), 1) * sizeof(std::int64_t));
  std::memcpy(buffer.data(), values.data(), values.size() * sizeof(std::int64_t));
  return buffer;
}

Buffer poisoned(std::size_t bytes) {
  Buffer buffer(Memory::host, std::max<std::size_t>(bytes, 1));
  poison(buffer.data(), buffer.size());
  return buffer;
}

bool same_bytes(const void* actual, const void* expected, std::size_t bytes) {
  const std::int64_t at = first_difference(actual, expected, bytes);
  if (at >= 0) {
    const auto* a = static_cast<const std::uint8_t*>(actual);
    const auto* e = static_cast<const std::uint8_t*>(expected);
    UNSCOPED_INFO("first differing byte " << at << ": got " << int(a[at]) << ", expected "
                                           << int(e[at]));
  }
  return at < 0;
}

TensorView rebase(const TensorView& view, const void* old_base, void* new_base, Device device) {
  TensorView moved = view;
  const auto offset = static_cast<const std::uint8_t*>(view.data) -
                      static_cast<const std::uint8_t*>(old_base);
  moved.data = static_cast<std::uint8_t*>(new_base) + offset;
  moved.device = device;
  return moved;
}

}  // namespace pagedkv::test
