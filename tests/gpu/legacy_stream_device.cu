// A kernel that keeps the legacy default stream busy. See legacy_stream_device.h.
#include "legacy_stream_device.h"

#include <cuda_runtime.h>

#include "pagedkv/cuda_runtime.h"

namespace pagedkv::test {

namespace {

__global__ void spin_until_released(const volatile int* release, long long max_ns) {
  unsigned long long begin = 0;  // nanoseconds
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(begin));
  while (*release == 0) {
    unsigned long long now = 0;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    if (static_cast<long long>(now - begin) > max_ns) break;
  }
}

}  // namespace

void block_legacy_stream(const volatile int* release_on_device, double max_seconds) {
  // Stream 0 is the legacy default stream: the point of this kernel (not a mistake).
  spin_until_released<<<1, 1, 0, 0>>>(release_on_device,
                                       static_cast<long long>(max_seconds * 1e9));
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv::test
