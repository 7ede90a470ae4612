// Timing a transfer beside a running model: the comparison tool's beside_compute rows.
//
// An engine swaps blocks between host and device while the model keeps computing on the GPU.
// A strategy that moves the bytes with the GPU's own cores (the zero-copy kernel) competes with
// the model for SMs; one that hands them to the copy engines (cudaMemcpyAsync and its batched
// form) does not. A table of times measured on an idle GPU cannot show this, so these rows run
// the transfer while a compute-bound kernel keeps every SM busy on another stream, and report
// both the transfer's time and how much the neighbour lost.
#pragma once

#include <functional>

#include <cuda_runtime_api.h>

namespace pagedkv::compare {

/// One beside_compute measurement (medians over the repeats).
struct BesideCompute {
  double median_us = 0.0;  ///< the transfer's time per launch while the neighbour runs
  /// The neighbour's lost time as a share of the window the transfers ran in:
  /// 100 × (neighbour time beside the transfers − neighbour time alone) / transfer window.
  /// 0: the neighbour did not notice; 100: it stood still while the transfers ran.
  double neighbour_slowdown_pct = 0.0;
  int repeats = 0;               ///< timed repeats
  int launches_per_repeat = 0;   ///< transfers issued back to back in one repeat
  /// Repeats in which the transfers ended after the neighbour: they waited for SMs the
  /// neighbour held, and their time includes running alone after it.
  int outlasted = 0;
};

/// \brief Times `launch(set, stream)` while a compute-bound kernel runs on a second stream.
///
/// The neighbour is a grid of many short CTAs doing fused multiply-adds in registers (no memory
/// traffic), so that, like a model's kernels, it occupies every SM and hands SMs back CTA by CTA.
/// One repeat: the neighbour starts on its stream; `launch` is issued back to back on `stream`
/// (which waits for the neighbour's start) for about 5 ms, or three launches; the neighbour
/// runs four times that long alone, so the transfers run beside it from start to end. The
/// transfer's time is its window over its launches; the neighbour's slowdown compares its time
/// with its time alone, measured in the same call.
/// \param launch the transfer, as the timing rows launch it.
/// \param sets buffer sets to rotate through.
/// \param alone_us the transfer's time per launch on an idle GPU (sizes the window).
/// \param stream the transfer's stream (not the legacy default stream).
/// \return the medians, and in how many repeats the transfers outlasted the neighbour.
BesideCompute time_beside_compute(const std::function<void(int set, cudaStream_t stream)>& launch,
                                  int sets, double alone_us, cudaStream_t stream);

}  // namespace pagedkv::compare
