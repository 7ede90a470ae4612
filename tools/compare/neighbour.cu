// The beside_compute rows: a transfer timed while a compute-bound kernel runs (neighbour.h).
#include "neighbour.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "pagedkv/cuda_runtime.h"
#include "pagedkv/error.h"
#include "timing.h"

namespace pagedkv::compare {

namespace {

constexpr int kNeighbourThreads = 256;
/// CTAs of the neighbour resident per SM in one wave (8 × 256 = 2048 threads, the SM's limit).
constexpr int kNeighbourBlocksPerSm = 8;
/// Fused multiply-adds per thread and iteration (independent chains, so they pipeline).
constexpr int kChains = 8;
/// Iterations per CTA: about 20 µs per wave on an H100 (the calibration measures the real time).
constexpr int kIterations = 256;
/// The transfers of one repeat last about this long (or three launches, if longer).
constexpr double kWindowUs = 5000.0;
/// The neighbour runs this many windows, so that slowed transfers still end beside it.
constexpr double kNeighbourWindows = 4.0;
constexpr int kRepeats = 5;

// A model's stand-in: register-only FMAs, no memory traffic, many short CTAs. The result is
// stored only if it equals a value it never reaches, so the compiler keeps the work.
__global__ void __launch_bounds__(kNeighbourThreads)
    compute_neighbour_kernel(float* sink, int iterations) {
  float chain[kChains];
#pragma unroll
  for (int c = 0; c < kChains; ++c) chain[c] = 1e-3f * static_cast<float>(threadIdx.x + c);
  for (int i = 0; i < iterations; ++i) {
#pragma unroll
    for (int c = 0; c < kChains; ++c) chain[c] = fmaf(chain[c], 0.9999f, 1e-4f);
  }
  float sum = 0.f;
#pragma unroll
  for (int c = 0; c < kChains; ++c) sum += chain[c];
  if (sum == -1.f) *sink = sum;
}

// Milliseconds from `start` to `stop` (both recorded and complete).
double elapsed_ms(cudaEvent_t start, cudaEvent_t stop) {
  float ms = 0.f;
  PAGEDKV_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  return ms;
}

// The stream, events and sink of one measurement, released with the object.
struct Resources {
  cudaStream_t neighbour_stream = nullptr;
  cudaEvent_t events[4] = {};  // neighbour start, neighbour end, transfers start, transfers end
  float* sink = nullptr;
  Resources() {
    PAGEDKV_CUDA_CHECK(cudaStreamCreateWithFlags(&neighbour_stream, cudaStreamNonBlocking));
    for (cudaEvent_t& event : events) PAGEDKV_CUDA_CHECK(cudaEventCreate(&event));
    PAGEDKV_CUDA_CHECK(cudaMalloc(&sink, sizeof(float)));
  }
  ~Resources() {
    cudaFree(sink);
    for (cudaEvent_t event : events) cudaEventDestroy(event);
    cudaStreamDestroy(neighbour_stream);
  }
  Resources(const Resources&) = delete;
  Resources& operator=(const Resources&) = delete;
};

// Runs the neighbour alone on its stream and returns its time in ms.
double neighbour_alone_ms(Resources& r, unsigned blocks) {
  PAGEDKV_CUDA_CHECK(cudaEventRecord(r.events[0], r.neighbour_stream));
  compute_neighbour_kernel<<<blocks, kNeighbourThreads, 0, r.neighbour_stream>>>(r.sink,
                                                                                 kIterations);
  PAGEDKV_CUDA_CHECK_LAUNCH();
  PAGEDKV_CUDA_CHECK(cudaEventRecord(r.events[1], r.neighbour_stream));
  PAGEDKV_CUDA_CHECK(cudaEventSynchronize(r.events[1]));
  return elapsed_ms(r.events[0], r.events[1]);
}

}  // namespace

BesideCompute time_beside_compute(const std::function<void(int set, cudaStream_t stream)>& launch,
                                  int sets, double alone_us, cudaStream_t stream) {
  PAGEDKV_CHECK(stream != nullptr && stream != cudaStreamLegacy,
                "beside_compute: the transfer needs a stream of its own, not the legacy default "
                "stream (it would wait for the neighbour)");
  sets = std::max(sets, 1);
  Resources r;
  int device = 0, sms = 0;
  PAGEDKV_CUDA_CHECK(cudaGetDevice(&device));
  PAGEDKV_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const unsigned wave = static_cast<unsigned>(sms * kNeighbourBlocksPerSm);

  // The transfers of one repeat, and how long the neighbour must run to cover them.
  BesideCompute result;
  result.launches_per_repeat = static_cast<int>(
      std::clamp(std::ceil(kWindowUs / std::max(alone_us, 1.0)), 3.0, 4096.0));
  const double neighbour_target_us =
      kNeighbourWindows * result.launches_per_repeat * std::max(alone_us, 1.0);
  neighbour_alone_ms(r, wave);  // warm-up: module load, clocks up
  const double wave_us = 1e3 * neighbour_alone_ms(r, wave);
  const unsigned blocks = static_cast<unsigned>(
      wave * std::max(1.0, std::ceil(neighbour_target_us / std::max(wave_us, 1.0))));
  std::vector<double> alone_ms;
  for (int i = 0; i < 3; ++i) alone_ms.push_back(neighbour_alone_ms(r, blocks));
  const double neighbour_alone = median(alone_ms);

  std::vector<double> transfer_us, slowdown_pct;
  for (int repeat = 0; repeat < kRepeats; ++repeat) {
    PAGEDKV_CUDA_CHECK(cudaEventRecord(r.events[0], r.neighbour_stream));
    compute_neighbour_kernel<<<blocks, kNeighbourThreads, 0, r.neighbour_stream>>>(r.sink,
                                                                                   kIterations);
    PAGEDKV_CUDA_CHECK_LAUNCH();
    PAGEDKV_CUDA_CHECK(cudaEventRecord(r.events[1], r.neighbour_stream));
    // The transfers start once the neighbour has started (it was issued first).
    PAGEDKV_CUDA_CHECK(cudaStreamWaitEvent(stream, r.events[0], 0));
    PAGEDKV_CUDA_CHECK(cudaEventRecord(r.events[2], stream));
    for (int i = 0; i < result.launches_per_repeat; ++i) launch(i % sets, stream);
    PAGEDKV_CUDA_CHECK(cudaEventRecord(r.events[3], stream));
    PAGEDKV_CUDA_CHECK(cudaEventSynchronize(r.events[3]));
    PAGEDKV_CUDA_CHECK(cudaEventSynchronize(r.events[1]));
    const double window_ms = elapsed_ms(r.events[2], r.events[3]);
    const double neighbour_ms = elapsed_ms(r.events[0], r.events[1]);
    // Both measured from the neighbour's start, so the two ends can be compared.
    if (elapsed_ms(r.events[0], r.events[3]) > neighbour_ms) ++result.outlasted;
    transfer_us.push_back(1e3 * window_ms / result.launches_per_repeat);
    slowdown_pct.push_back(100.0 * (neighbour_ms - neighbour_alone) / window_ms);
  }
  PAGEDKV_CUDA_CHECK(cudaGetLastError());
  result.median_us = median(transfer_us);
  result.neighbour_slowdown_pct = median(slowdown_pct);
  result.repeats = kRepeats;
  return result;
}

}  // namespace pagedkv::compare
