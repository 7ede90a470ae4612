// The second size-matched baseline for device memory: a plain copy kernel.
//
// cudaMemcpyAsync device-to-device is the first baseline ("copy" rows). On an H100 it ran at
// ~3.0 TB/s for most sizes but at only ~2.4 TB/s for some (e.g. 256 MiB + 4 KiB, or the
// 7168-element rows of W9), which would make an op look faster than a copy. The comparison tool
// therefore also times this kernel on the same buffers ("copy_kernel" rows) and takes the faster
// of the two as the size-matched copy.
#pragma once

#include <cstddef>

#include <cuda_runtime_api.h>

namespace pagedkv::compare {

/// Copies `bytes` bytes from `src` to `dst` (device memory, not overlapping) with one launch on
/// `stream`: 16-byte loads and stores where both pointers are 16-byte aligned (the last bytes
/// of a size that is not a multiple of 16 one by one), else bytes.
void launch_copy_kernel(void* dst, const void* src, std::size_t bytes, cudaStream_t stream);

}  // namespace pagedkv::compare
