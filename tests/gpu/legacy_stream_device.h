/// \file
/// \brief A kernel that keeps the legacy default stream busy, for the test that no op uses it:
/// an op that queued work on the legacy stream (or waited for it) could not finish while this
/// kernel runs.
///
/// Plain C++ (no CUDA syntax), so that the host-only test files can call it.
#pragma once

namespace pagedkv::test {

/// \brief Launches one thread on the legacy default stream that spins until `*release` (host
/// memory mapped into the device, from cudaHostAlloc with cudaHostAllocMapped) becomes
/// non-zero, or until about `max_seconds` have passed (so that a failing test ends).
/// \param release_on_device the device address of the flag.
/// \param max_seconds the longest it spins.
void block_legacy_stream(const volatile int* release_on_device, double max_seconds);

}  // namespace pagedkv::test
