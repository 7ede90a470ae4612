// The "what a library call gives you" rows: an op step that is a plain scatter of units
// (UnitScatter, core/entries/library_baseline.h: the cases that offer one derive from
// LibraryBaseline), run by one Thrust call.
#pragma once

#include <cuda_runtime_api.h>

#include "entries/library_baseline.h"

namespace pagedkv::compare {

using entries::LibraryBaseline;
using entries::UnitScatter;

/// Runs `scatter` as one thrust::scatter on `stream` (asynchronous: Thrust's par_nosync policy,
/// so that it can be captured in a CUDA graph).
void run_library_scatter(const UnitScatter& scatter, cudaStream_t stream);

}  // namespace pagedkv::compare
