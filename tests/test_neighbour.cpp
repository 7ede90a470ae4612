// The comparison tool's beside_compute timing (tools/compare/neighbour.cu): it refuses the
// legacy default stream (the transfer would wait for the neighbour), and on a GPU every transfer
// it is given runs, back to back, beside the neighbour, with sane medians.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>

#include "neighbour.h"
#include "pagedkv/buffers.h"
#include "pagedkv/cuda_runtime.h"
#include "support.h"

using namespace pagedkv;

TEST_CASE("beside_compute: the legacy default stream is refused by name", "[neighbour]") {
  int launched = 0;
  const auto launch = [&](int, cudaStream_t) { ++launched; };
  for (cudaStream_t stream : {cudaStream_t{nullptr}, cudaStreamLegacy}) {
    CHECK_THROWS_WITH(compare::time_beside_compute(launch, 1, 10.0, stream),
                      Catch::Matchers::Contains("beside_compute") &&
                          Catch::Matchers::Contains("legacy default stream"));
  }
  CHECK(launched == 0);  // refused before anything ran
}

TEST_CASE("beside_compute: a host-to-device copy runs beside the neighbour", "[gpu][neighbour]") {
  PAGEDKV_REQUIRE_GPU();
  constexpr std::size_t kBytes = std::size_t{8} << 20;
  Buffer host(Memory::pinned, kBytes), device(Memory::device, kBytes);
  host.fill(0x5A);
  cudaStream_t stream = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess);
  int launches = 0;
  const auto copy = [&](int set, cudaStream_t s) {
    CHECK((set == 0 || set == 1));  // the sets it was given
    ++launches;
    PAGEDKV_CUDA_CHECK(
        cudaMemcpyAsync(device.data(), host.data(), kBytes, cudaMemcpyHostToDevice, s));
  };
  const compare::BesideCompute result = compare::time_beside_compute(copy, 2, 200.0, stream);
  REQUIRE(cudaStreamSynchronize(stream) == cudaSuccess);
  REQUIRE(cudaStreamDestroy(stream) == cudaSuccess);
  // About 5 ms of transfers per repeat: 5000 / 200 = 25 launches, 5 repeats.
  CHECK(result.launches_per_repeat == 25);
  CHECK(result.repeats == 5);
  CHECK(launches == 5 * 25);
  CHECK(result.median_us > 0.0);
  CHECK(std::isfinite(result.neighbour_slowdown_pct));
  CHECK(result.outlasted >= 0);
  CHECK(result.outlasted <= 5);
  // The bytes arrived (the copies really ran).
  std::vector<std::uint8_t> back(kBytes);
  PAGEDKV_CUDA_CHECK(cudaMemcpy(back.data(), device.data(), kBytes, cudaMemcpyDeviceToHost));
  CHECK(back.front() == 0x5A);
  CHECK(back.back() == 0x5A);
}
