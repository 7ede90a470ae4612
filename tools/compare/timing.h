// How the comparison tool measures time (README: results; the chapters' measurement sections): GPU work with CUDA
// events around CUDA-graph replays of many launches, host work with a steady clock; medians.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

namespace pagedkv::compare {

/// One measured time.
struct Timing {
  double median_us = 0.0;       // median over repeats, per launch (GPU) or per run (host)
  int repeats = 0;              // timed repeats
  int launches_per_repeat = 1;  // launches in one repeat (one graph replay)
  std::string method;           // "cuda-graph", "stream" (capture failed) or "host-clock"
};

/// Settings of GPU timing.
struct GpuTimingOptions {
  int repeats = 20;                  // timed repeats, each one graph replay (>= 10)
  double target_repeat_us = 2000.0;  // launches per replay are chosen to fill about this
  int max_launches = 4096;           // cap on launches per replay
  // false: issue every launch from the host (method "stream"), so that the host's part of a
  // call (validation, the call path) is inside the timed region, as in an eager engine step.
  bool graph = true;
};

/// Times `launch(set, stream)` on the GPU. Warm-up first (every buffer set once), then an
/// estimate of one launch, then `launches_per_repeat` launches (at least one per buffer set,
/// rotating through them) are captured into a CUDA graph and the graph is replayed `repeats`
/// times between two CUDA events; the result is the median per launch. If the launches cannot
/// be captured (e.g. a pageable copy inside), the same launches are issued directly on the
/// stream instead, and the method says "stream".
Timing time_gpu(const std::function<void(int set, cudaStream_t stream)>& launch, int sets,
                cudaStream_t stream, const GpuTimingOptions& options);

/// The median of `values` (the mean of the two middle ones for an even count; 0 when empty).
double median(std::vector<double> values);

/// Times `run()` on the host: the median of up to 9 runs (fewer when one run takes long: 3 above
/// 20 ms, 1 above 0.2 s).
Timing time_host(const std::function<void()>& run);

}  // namespace pagedkv::compare
