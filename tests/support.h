// Shared helpers of the Catch2 tests: the GPU guard, host and device buffers, random data and
// poisoning. Tests compare whole output buffers byte for byte, so untouched bytes are checked too.
#pragma once

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "pagedkv/buffers.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/dtype.h"
#include "pagedkv/tensor_view.h"

/// First statement of every [gpu] test case (before any GENERATE): without a CUDA device the test
/// prints the skip marker, which CTest's SKIP_REGULAR_EXPRESSION reports as "Skipped".
#define PAGEDKV_REQUIRE_GPU()                     \
  do {                                            \
    if (!::pagedkv::cuda_device_available()) {    \
      WARN("PAGEDKV_SKIP: no CUDA device");       \
      return;                                     \
    }                                             \
  } while (0)

/// The rule tests' assertion: `valid_call` (a test's ValidCall, one valid call of an op broken in
/// exactly one way) throws pagedkv::InvalidArgument whose message names `argument`, and its
/// nothing_written() confirms that no output byte changed.
#define CHECK_REJECTED(valid_call, argument)                                      \
  do {                                                                            \
    CHECK_THROWS_AS((valid_call).call(), ::pagedkv::InvalidArgument);             \
    CHECK_THROWS_WITH((valid_call).call(), ::Catch::Matchers::Contains(argument)); \
    CHECK((valid_call).nothing_written());                                        \
  } while (0)

namespace pagedkv::test {

/// Tests hold their bytes in pagedkv::Buffer (include/pagedkv/buffers.h): Memory::host for
/// inputs and expected outputs (256-byte aligned, so offsets into it control alignment exactly),
/// Memory::device for what the kernels read and write; copy_to() and download() move them.
using pagedkv::Buffer;
using pagedkv::Memory;

/// Fills `count` elements of `dtype` at `dst` with random values in [-range, range] (never
/// zeros-only), encoded by the project's CPU numerics.
void fill_random(void* dst, DType dtype, std::int64_t count, std::uint64_t seed, float range = 4.f);
/// The bits of a float, and the float of some bits (no conversion: the same 32 bits).
inline std::uint32_t bits_of(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}
inline float float_of(std::uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}
/// Fills bytes with a recognisable poison pattern (0xA5 0x5A ...).
void poison(void* dst, std::size_t bytes);
/// Index of the first differing byte, or -1 when equal.
std::int64_t first_difference(const void* a, const void* b, std::size_t bytes);
/// The same view moved onto another buffer of the same layout (data pointer rebased).
TensorView rebase(const TensorView& view, const void* old_base, void* new_base, Device device);

/// A host buffer holding `values` as f32 (at least one element's room, so that an empty view
/// still has memory behind it).
Buffer floats(const std::vector<float>& values);
/// A host buffer holding `values` as i64 (at least one element's room).
Buffer int64s(const std::vector<std::int64_t>& values);
/// A host buffer of `bytes` bytes (at least one), poisoned.
Buffer poisoned(std::size_t bytes);
/// Byte-for-byte equality of the first `bytes` bytes; a difference is reported (the first
/// differing byte, both values) with the test's next assertion.
bool same_bytes(const void* actual, const void* expected, std::size_t bytes);
/// same_bytes() over the first `bytes` bytes of two buffers.
inline bool same_bytes(const Buffer& actual, const Buffer& expected, std::size_t bytes) {
  return same_bytes(actual.data(), expected.data(), bytes);
}

/// A created CUDA stream (non-blocking unless told otherwise), destroyed at the end of a test.
struct Stream {
  cudaStream_t handle = nullptr;
  explicit Stream(unsigned flags = cudaStreamNonBlocking) {
    PAGEDKV_CUDA_CHECK(cudaStreamCreateWithFlags(&handle, flags));
  }
  ~Stream() { cudaStreamDestroy(handle); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
};

/// Sets the process's error mode for one test, and restores it.
class ModeGuard {
 public:
  explicit ModeGuard(ErrorMode mode) : old_(error_mode()) { set_error_mode(mode); }
  ~ModeGuard() { set_error_mode(old_); }
  ModeGuard(const ModeGuard&) = delete;
  ModeGuard& operator=(const ModeGuard&) = delete;

 private:
  ErrorMode old_;
};

}  // namespace pagedkv::test
