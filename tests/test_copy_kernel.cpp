// The comparison tool's size-matched copy kernel (tools/compare/copy_kernel.cu): every byte of
// every size arrives, the bytes past the end stay untouched, for sizes that are and are not a
// multiple of 16 and for a misaligned start (the byte path).
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "copy_kernel.h"
#include "pagedkv/buffers.h"
#include "pagedkv/cuda_runtime.h"
#include "support.h"

using namespace pagedkv;

TEST_CASE("copy kernel: every size and alignment copies exactly its bytes", "[gpu][copy_kernel]") {
  PAGEDKV_REQUIRE_GPU();
  const std::size_t bytes = GENERATE(std::size_t{1}, 15, 16, 17, 31, 4096 + 8, (1u << 20) + 3,
                                     (std::size_t{1} << 26) + 8);
  const std::size_t shift = GENERATE(std::size_t{0}, 1);  // 1: misaligned pointers, byte path
  INFO(bytes << " bytes, start shifted by " << shift);
  const std::size_t total = bytes + 64;
  std::vector<std::uint8_t> src_host(total), dst_host(total, 0xEE);
  for (std::size_t i = 0; i < total; ++i) src_host[i] = static_cast<std::uint8_t>(i * 131 + 7);
  Buffer src(Memory::device, total), dst(Memory::device, total);
  PAGEDKV_CUDA_CHECK(cudaMemcpy(src.data(), src_host.data(), total, cudaMemcpyHostToDevice));
  PAGEDKV_CUDA_CHECK(cudaMemcpy(dst.data(), dst_host.data(), total, cudaMemcpyHostToDevice));
  auto* d = static_cast<std::uint8_t*>(dst.data()) + shift;
  const auto* s = static_cast<const std::uint8_t*>(src.data()) + shift;
  compare::launch_copy_kernel(d, s, bytes, nullptr);
  PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<std::uint8_t> got(total);
  PAGEDKV_CUDA_CHECK(cudaMemcpy(got.data(), dst.data(), total, cudaMemcpyDeviceToHost));
  std::vector<std::uint8_t> want = dst_host;
  for (std::size_t i = 0; i < bytes; ++i) want[shift + i] = src_host[shift + i];
  CHECK(test::first_difference(got.data(), want.data(), total) == -1);
}
