// 64-bit offsets: every op run on a case whose largest tensor (a cache, a workspace, the
// activations) is larger than 2^31 bytes, so that any byte offset or element index computed in
// 32 bits wraps. Driven by the registry (no per-op code): for each op, the first point of its
// first workload, grown until its largest tensor passes 2^31 bytes by 5 % (more blocks for a
// cache op, more tokens / blocks / sequences otherwise), then the naive and the optimized
// kernels are checked against the CPU reference under the op's agreement rule, like the
// comparison tool's correctness column.
//
// For the one-byte caches (fp8) the element count passes 2^31 too; for two-byte activations
// it is 2^30 elements (2^31 elements would double the memory and time for no new index width:
// the kernels' byte offsets are what overflows first).
//
// Upstream's history (issue 14 of pagedkv): int32 offsets overflowing in the DeepSeek V4 cache.
//
// Tagged [large]: not in the default [gpu] run (each op moves several GB between host and
// device); the GPU script runs it as its own step (scripts/gpu_check.sh, step large). Skips,
// saying so, where the device lacks the memory.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <future>
#include <vector>

#include "pagedkv/buffers.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/registry.h"
#include "support.h"

namespace {

constexpr std::int64_t kTargetBytes = (std::int64_t{1} << 31) + (std::int64_t{1} << 31) / 20;

// The largest tensor of a case, in bytes.
std::int64_t largest_tensor_bytes(pagedkv::OpCase& c) {
  std::int64_t largest = 0;
  for (const pagedkv::ArgValue& value : c.cpu_arguments()) {
    if (const auto* t = std::get_if<pagedkv::TensorView>(&value)) {
      if (t->data) largest = std::max(largest, t->numel() * pagedkv::dtype_size(t->dtype));
    }
  }
  return largest;
}

// A case of `op` at `point` grown until its largest tensor passes kTargetBytes: the parameter
// that grows it (num_blocks for a cache op, else size) scaled in proportion from a small case,
// then doubled until it passes. `point` and `bytes` say what was built.
std::unique_ptr<pagedkv::OpCase> grown_case(const pagedkv::OpEntry& op,
                                            pagedkv::WorkloadPoint& point, std::int64_t& bytes) {
  point.size = 64;  // tokens, blocks or sequences: a few, spread over the grown cache
  const std::int64_t base = largest_tensor_bytes(*op.make_case(point, 1));
  bool by_blocks = false;
  if (point.num_blocks > 0) {
    pagedkv::WorkloadPoint twice = point;
    twice.num_blocks *= 2;
    by_blocks = largest_tensor_bytes(*op.make_case(twice, 1)) > base;
  }
  std::int64_t& knob = by_blocks ? point.num_blocks : point.size;
  knob = std::max<std::int64_t>(knob, 1) * (kTargetBytes / std::max<std::int64_t>(base, 1) + 1);
  while (true) {
    std::unique_ptr<pagedkv::OpCase> c = op.make_case(point, 20261207);
    bytes = largest_tensor_bytes(*c);
    if (bytes >= kTargetBytes) return c;
    knob *= 2;
  }
}

}  // namespace

TEST_CASE("64-bit offsets: every op on a tensor larger than 2^31 bytes", "[gpu][large]") {
  PAGEDKV_REQUIRE_GPU();
  std::size_t free_bytes = 0, total_bytes = 0;
  PAGEDKV_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  // A case holds its inputs and outputs on the device (one buffer set), largest tensor up to
  // ~2.3 GB, and a few tensors of that size at most (caches K and V, a workspace).
  constexpr std::size_t kNeeded = std::size_t{12} << 30;
  if (free_bytes < kNeeded) {
    WARN("PAGEDKV_SKIP: no CUDA device with 12 GiB free (" << (free_bytes >> 20)
                                                            << " MiB free): 64-bit offsets not tested");
    return;
  }
  // The CPU side (drawing a case of several GB and running the reference on it) takes most
  // of the time: a few ops at once on threads, the GPU checks one op after the other here.
  struct Prepared {
    const pagedkv::OpEntry* op;
    pagedkv::WorkloadPoint point;
    std::int64_t bytes = 0;
    std::unique_ptr<pagedkv::OpCase> c;
    double seconds = 0;
  };
  auto prepare = [](const pagedkv::OpEntry* op) {
    const auto start = std::chrono::steady_clock::now();
    Prepared p{op, op->points(op->workloads.front(), false).front()};
    p.c = grown_case(*op, p.point, p.bytes);
    p.c->run_cpu();
    p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return p;
  };
  constexpr std::size_t kAtOnce = 4;  // host memory: a case holds up to ~6 GB
  const auto& registry = pagedkv::op_registry();
  int tested = 0;
  for (std::size_t first = 0; first < registry.size(); first += kAtOnce) {
    std::vector<std::future<Prepared>> batch;
    for (std::size_t i = first; i < std::min(registry.size(), first + kAtOnce); ++i)
      batch.push_back(std::async(std::launch::async, prepare, &registry[i]));
    for (std::future<Prepared>& pending : batch) {
      Prepared p = pending.get();
      const auto start = std::chrono::steady_clock::now();
      p.c->prepare_device(0);
      const pagedkv::Agreement naive = p.c->check(pagedkv::Impl::naive);
      const pagedkv::Agreement optimized = p.c->check(pagedkv::Impl::optimized);
      p.c.reset();  // give back its host and device memory before the next
      const double gpu_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const pagedkv::WorkloadPoint& point = p.point;
      std::printf("%-38s %-24s size %8lld, %6lld blocks: largest tensor %.2f GiB, naive %s, "
                  "optimized %s (CPU %.0f s, GPU %.0f s)\n",
                  p.op->name.c_str(), (point.workload + " " + point.variant).c_str(),
                  static_cast<long long>(point.size), static_cast<long long>(point.num_blocks),
                  static_cast<double>(p.bytes) / (1 << 30), naive.agrees() ? "agrees" : "DIFFERS",
                  optimized.agrees() ? "agrees" : "DIFFERS", p.seconds, gpu_seconds);
      std::fflush(stdout);
      INFO(p.op->name << " at " << point.workload << " " << point.variant << ", size "
                      << point.size << ", " << point.num_blocks << " blocks, largest tensor "
                      << p.bytes << " bytes");
      CHECK(p.bytes > (std::int64_t{1} << 31));
      CHECK(naive.agrees());
      CHECK(optimized.agrees());
      ++tested;
    }
  }
  CHECK(tested == static_cast<int>(registry.size()));
}
