// The "what a library call gives you" rows: an op step that is a plain scatter of units
// (pagedkv::UnitScatter), run by one Thrust call.
#pragma once

#include <cuda_runtime_api.h>

#include "pagedkv/registry.h"

namespace pagedkv::compare {

/// Runs `scatter` as one thrust::scatter on `stream` (asynchronous: Thrust's par_nosync policy,
/// so that it can be captured in a CUDA graph).
void run_library_scatter(const UnitScatter& scatter, cudaStream_t stream);

}  // namespace pagedkv::compare
