// GPU and host timing for the comparison tool. See timing.h for the method.
#include "timing.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include "pagedkv/cuda_runtime.h"
#include "pagedkv/error.h"

namespace pagedkv::compare {

namespace {

// Two CUDA events, destroyed with the object.
struct EventPair {
  cudaEvent_t start = nullptr, stop = nullptr;
  EventPair() {
    PAGEDKV_CUDA_CHECK(cudaEventCreate(&start));
    PAGEDKV_CUDA_CHECK(cudaEventCreate(&stop));
  }
  ~EventPair() {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  EventPair(const EventPair&) = delete;
  EventPair& operator=(const EventPair&) = delete;
  float elapsed_ms() const {
    float ms = 0.f;
    PAGEDKV_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    return ms;
  }
};

// A captured and instantiated graph, destroyed with the object.
struct Graph {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ~Graph() {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
  }
};

// Captures `count` launches into `graph`; false (with the stream out of capture mode and the
// error cleared) when something in them cannot be captured.
bool capture(const std::function<void(int, cudaStream_t)>& launch, int sets, int count,
             cudaStream_t stream, Graph& graph) {
  if (cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  bool launched = true;
  try {
    for (int i = 0; i < count; ++i) launch(i % sets, stream);
  } catch (const std::exception&) {
    // Something a capturing stream does not allow (a pageable copy, a synchronization): the
    // caller falls back to plain launches, where a real error shows up again.
    launched = false;
  }
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph.graph);
  if (!launched || ended != cudaSuccess || graph.graph == nullptr) {
    cudaGetLastError();
    return false;
  }
  if (cudaGraphInstantiate(&graph.exec, graph.graph, 0) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return true;
}

}  // namespace

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  if (n == 0) return 0.0;
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

Timing time_gpu(const std::function<void(int set, cudaStream_t stream)>& launch, int sets,
                cudaStream_t stream, const GpuTimingOptions& options) {
  sets = std::max(sets, 1);
  EventPair events;

  // Warm-up: module load, first-touch of every buffer set, clocks up.
  const int warmup = std::max(sets, 3);
  for (int i = 0; i < warmup; ++i) launch(i % sets, stream);
  PAGEDKV_CUDA_CHECK(cudaGetLastError());
  PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream));

  // Estimate one launch, to choose how many launches one repeat holds.
  const int probe = std::max(sets, 3);
  PAGEDKV_CUDA_CHECK(cudaEventRecord(events.start, stream));
  for (int i = 0; i < probe; ++i) launch(i % sets, stream);
  PAGEDKV_CUDA_CHECK(cudaEventRecord(events.stop, stream));
  PAGEDKV_CUDA_CHECK(cudaEventSynchronize(events.stop));
  const double estimate_us = std::max(1e3 * events.elapsed_ms() / probe, 0.5);
  int launches = static_cast<int>(std::ceil(options.target_repeat_us / estimate_us));
  launches = std::clamp(launches, 1, options.max_launches);
  launches = std::max(launches, sets);  // every buffer set at least once per repeat

  Timing timing;
  timing.repeats = std::max(options.repeats, 1);
  timing.launches_per_repeat = launches;
  std::vector<double> per_launch_us;
  per_launch_us.reserve(static_cast<std::size_t>(timing.repeats));

  Graph graph;
  if (options.graph && capture(launch, sets, launches, stream, graph)) {
    timing.method = "cuda-graph";
    PAGEDKV_CUDA_CHECK(cudaGraphUpload(graph.exec, stream));
    PAGEDKV_CUDA_CHECK(cudaGraphLaunch(graph.exec, stream));  // warm-up replay
    PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream));
    for (int r = 0; r < timing.repeats; ++r) {
      PAGEDKV_CUDA_CHECK(cudaEventRecord(events.start, stream));
      PAGEDKV_CUDA_CHECK(cudaGraphLaunch(graph.exec, stream));
      PAGEDKV_CUDA_CHECK(cudaEventRecord(events.stop, stream));
      PAGEDKV_CUDA_CHECK(cudaEventSynchronize(events.stop));
      per_launch_us.push_back(1e3 * events.elapsed_ms() / launches);
    }
  } else {
    timing.method = "stream";
    for (int r = 0; r < timing.repeats; ++r) {
      PAGEDKV_CUDA_CHECK(cudaEventRecord(events.start, stream));
      for (int i = 0; i < launches; ++i) launch(i % sets, stream);
      PAGEDKV_CUDA_CHECK(cudaEventRecord(events.stop, stream));
      PAGEDKV_CUDA_CHECK(cudaEventSynchronize(events.stop));
      per_launch_us.push_back(1e3 * events.elapsed_ms() / launches);
    }
  }
  PAGEDKV_CUDA_CHECK(cudaGetLastError());
  timing.median_us = median(per_launch_us);
  return timing;
}

Timing time_host(const std::function<void()>& run) {
  using Clock = std::chrono::steady_clock;
  std::vector<double> runs_us;
  auto once = [&] {
    const auto start = Clock::now();
    run();
    runs_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  };
  once();
  const int total = runs_us[0] > 2e5 ? 1 : runs_us[0] > 2e4 ? 3 : 9;
  while (static_cast<int>(runs_us.size()) < total) once();
  Timing timing;
  timing.median_us = median(runs_us);
  timing.repeats = total;
  timing.method = "host-clock";
  return timing;
}

}  // namespace pagedkv::compare
