// The op registry: one OpEntry per op, in catalogue order (design.md §9). Each entry lives in
// core/entries/<op>.cpp next to the OpCase that builds its workload points.
#include "pagedkv/registry.h"

#include <algorithm>
#include <string>

#include "entries/case_support.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/error.h"

namespace pagedkv {

const std::vector<OpEntry>& op_registry() {
  // Built on first use (never at static-initialisation time), and never touches CUDA.
  static const std::vector<OpEntry> registry = {
      entries::swap_blocks_entry(),
      entries::reshape_and_cache_entry(),
      entries::reshape_and_cache_flash_entry(),
  };
  return registry;
}

const OpEntry& find_op(std::string_view name) {
  std::string known;
  for (const OpEntry& entry : op_registry()) {
    if (entry.name == name) return entry;
    known += (known.empty() ? "" : ", ") + entry.name;
  }
  reject("op: expected one of {", known, "}, got \"", name, "\"");
}

int buffer_sets_for(std::int64_t bytes_per_launch, std::int64_t l2_bytes) {
  if (bytes_per_launch <= 0) return 1;
  const std::int64_t wanted = (2 * l2_bytes) / bytes_per_launch + 1;  // strictly more than 2 × L2
  return static_cast<int>(std::clamp<std::int64_t>(wanted, 1, kMaxBufferSets));
}

Agreement OpCase::check(Impl impl) {
  PAGEDKV_CHECK(impl != Impl::cpu, "OpCase::check: impl must be naive or optimized, got cpu");
  reset_outputs();
  run_checked(impl);
  PAGEDKV_CUDA_CHECK(cudaGetLastError());
  PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  return compare_outputs();
}

}  // namespace pagedkv
