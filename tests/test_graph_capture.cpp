// CUDA graphs, streams and deferred errors, for every op of the registry (no per-op code: the
// calls are the fuzzer's base calls, tests/fuzz/valid_calls.h, placed on the GPU as the
// fuzzer's device check does).
//
// - capture: each op's checked entry point (OpEntry::run, what Python calls) captured into a
//   graph on a *blocking* stream in cudaStreamCaptureModeGlobal, which turns both kinds of
//   mistake into errors: a host synchronization or allocation during the capture, and work on
//   the legacy default stream (a blocking stream would join it). Replayed once, it must write
//   the bytes an eager call writes.
// - streams: two different ops on two non-blocking streams at once give the bytes of two
//   sequential runs; and no op finishes later because the legacy default stream is busy.
// - deferred errors: a bad slot_mapping / positions value is found on the device, nothing is
//   written, and the error is raised later, naming the op and the argument (the gathers'
//   sequence rules: tests/test_gather_deferred.cpp).
// Only the error-mode API and the CPU side run without a GPU.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "fuzz/device_check.h"
#include "fuzz/valid_calls.h"
#include "gpu/legacy_stream_device.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"
#include "pagedkv/registry.h"
#include "support.h"

namespace {

using namespace pagedkv;
using Catch::Matchers::Contains;

constexpr std::uint64_t kSeed = 20261207;

// A valid call of the op at `index` of the registry (its first registry case, as the fuzzer
// draws it); false when the op has none. With `nonempty` >= 0, a call in which that argument
// has at least one element: the fuzzer draws 0 tokens one time in ten, and the tests that break
// element 0 of an index tensor need an element to break (redrawn with the next seeds).
bool base_call(std::size_t index, fuzz::BaseCall& base, int nonempty = -1) {
  for (std::uint64_t attempt = 0; attempt < 16; ++attempt) {
    fuzz::Rng rng(kSeed + index + 1000 * attempt);
    std::string why;
    if (!fuzz::draw_base_call(op_registry()[index], index, rng, base, why)) return false;
    if (nonempty < 0) return true;
    const fuzz::TensorSpec& t = base.spec.args[static_cast<std::size_t>(nonempty)].tensor;
    if (!t.absent && t.source.numel() > 0) return true;
  }
  return false;
}

using test::Stream;
using test::ModeGuard;

// The index of the argument called `name`, or -1.
int argument_index(const OpEntry& op, const std::string& name) {
  for (std::size_t i = 0; i < op.arguments.size(); ++i) {
    if (op.arguments[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

// One placed call of op `index`, ready to run on the GPU.
struct PlacedOp {
  const OpEntry* op = nullptr;
  fuzz::BaseCall base;
  std::set<std::size_t> kept_on_host;

  fuzz::DeviceCall place(const std::function<void(fuzz::FuzzCall&)>& edit = {}) const {
    return fuzz::place(base.spec, kSeed, kept_on_host, edit);
  }
};

bool placed_op(std::size_t index, PlacedOp& placed, int nonempty = -1) {
  placed.op = &op_registry()[index];
  if (!base_call(index, placed.base, nonempty)) return false;
  placed.kept_on_host = fuzz::arguments_kept_on_host(*placed.op, placed.base.spec, kSeed);
  return true;
}

}  // namespace

TEST_CASE("error modes: names, setting, and the CPU reference stays synchronous", "[deferred]") {
  CHECK(error_mode_name(ErrorMode::automatic) == "automatic");
  CHECK(error_mode_name(ErrorMode::synchronous) == "synchronous");
  CHECK(error_mode_name(ErrorMode::deferred) == "deferred");
  {
    ModeGuard deferred(ErrorMode::deferred);
    CHECK(error_mode() == ErrorMode::deferred);
    // No check ever ran on a device: nothing to report, and no CUDA call is made.
    CHECK_NOTHROW(check_errors());
    CHECK(CheckScope::current() == nullptr);

    // The CPU reference has no stream and nothing to defer: a bad slot throws at once, with
    // the synchronous message.
    const int flash = [] {
      for (std::size_t i = 0; i < op_registry().size(); ++i)
        if (op_registry()[i].name == "reshape_and_cache_flash") return static_cast<int>(i);
      return -1;
    }();
    REQUIRE(flash >= 0);
    fuzz::BaseCall base;
    REQUIRE(base_call(static_cast<std::size_t>(flash), base));
    const OpEntry& op = op_registry()[static_cast<std::size_t>(flash)];
    fuzz::FuzzCall call = fuzz::build(base.spec, kSeed);
    const int slots = argument_index(op, "slot_mapping");
    REQUIRE(slots >= 0);
    *static_cast<std::int64_t*>(std::get<TensorView>(call.values[slots]).data) = 1LL << 40;
    const std::vector<std::uint8_t> before = call.snapshot();
    CHECK_THROWS_WITH(op.run(Impl::cpu, call.values, nullptr),
                      Contains("slot_mapping[0] = 1099511627776: expected a slot below"));
    CHECK(call.snapshot() == before);

    // A CUDA implementation given host tensors is rejected by validation (InvalidArgument
    // naming the argument), also where no GPU exists: the check scope asks CUDA nothing that
    // could fail first.
    CHECK_THROWS_AS(op.run(Impl::optimized, call.values, nullptr), InvalidArgument);
  }
}

TEST_CASE("graph capture: every registered op, captured and replayed, writes what an eager call "
          "writes",
          "[gpu][graph]") {
  PAGEDKV_REQUIRE_GPU();
  Stream stream(cudaStreamDefault);  // blocking: legacy-stream work would join the capture
  for (std::size_t i = 0; i < op_registry().size(); ++i) {
    PlacedOp placed;
    if (!placed_op(i, placed)) continue;
    const OpEntry& op = *placed.op;
    INFO(op.name << " (" << placed.base.point << ")");

    fuzz::DeviceCall eager = placed.place();
    op.run(Impl::optimized, eager.values, stream.handle);
    PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream.handle));
    const std::vector<std::uint8_t> want = eager.snapshot();

    fuzz::DeviceCall captured = placed.place();
    const std::vector<std::uint8_t> initial = captured.snapshot();
    cudaGraph_t graph = nullptr;
    PAGEDKV_CUDA_CHECK(cudaStreamBeginCapture(stream.handle, cudaStreamCaptureModeGlobal));
    std::string error;
    try {
      op.run(Impl::optimized, captured.values, stream.handle);
    } catch (const std::exception& e) {
      error = e.what();
    }
    const cudaError_t ended = cudaStreamEndCapture(stream.handle, &graph);
    cudaGetLastError();
    if (!error.empty()) {
      if (graph != nullptr) cudaGraphDestroy(graph);
      FAIL_CHECK(op.name << " failed inside a capture: " << error);
      continue;
    }
    // cudaSuccess: nothing in the call broke the capture (no synchronization, no allocation
    // outside relaxed mode, no legacy-stream work).
    REQUIRE(ended == cudaSuccess);
    CHECK(captured.snapshot() == initial);  // capturing ran nothing
    cudaGraphExec_t exec = nullptr;
    REQUIRE(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
    PAGEDKV_CUDA_CHECK(cudaGraphLaunch(exec, stream.handle));
    PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream.handle));
    CHECK(captured.snapshot() == want);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
  }
  CHECK_NOTHROW(check_errors());
}

TEST_CASE("graph capture: a bad slot found during a replay writes nothing and is reported "
          "after it",
          "[gpu][graph][deferred]") {
  PAGEDKV_REQUIRE_GPU();
  Stream stream(cudaStreamNonBlocking);
  for (std::size_t i = 0; i < op_registry().size(); ++i) {
    const OpEntry& op = op_registry()[i];
    const int slots = argument_index(op, "slot_mapping");
    if (slots < 0) continue;
    PlacedOp placed;
    if (!placed_op(i, placed, slots)) continue;
    INFO(op.name << " (" << placed.base.point << ")");
    fuzz::DeviceCall call = placed.place();
    // Capture with valid slots, then break slot 0 in device memory before the replay: the
    // graph must check the values it finds at replay time.
    cudaGraph_t graph = nullptr;
    PAGEDKV_CUDA_CHECK(cudaStreamBeginCapture(stream.handle, cudaStreamCaptureModeGlobal));
    op.run(Impl::optimized, call.values, stream.handle);
    PAGEDKV_CUDA_CHECK(cudaStreamEndCapture(stream.handle, &graph));
    const TensorView slot_view = std::get<TensorView>(call.values[slots]);
    const std::int64_t bad = 1LL << 40;
    PAGEDKV_CUDA_CHECK(cudaMemcpy(slot_view.data, &bad, sizeof bad, cudaMemcpyHostToDevice));
    const std::vector<std::uint8_t> before = call.snapshot();
    cudaGraphExec_t exec = nullptr;
    REQUIRE(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess);
    PAGEDKV_CUDA_CHECK(cudaGraphLaunch(exec, stream.handle));
    PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream.handle));
    CHECK(call.snapshot() == before);
    CHECK_THROWS_WITH(check_errors(), Contains("slot_mapping[0] = 1099511627776") &&
                                          Contains(op.name));
    CHECK_NOTHROW(check_errors());  // reported once, then cleared
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
  }
}

TEST_CASE("deferred errors: a bad device index writes nothing, and the next call or "
          "check_errors() reports it",
          "[gpu][deferred]") {
  PAGEDKV_REQUIRE_GPU();
  ModeGuard deferred(ErrorMode::deferred);
  Stream stream(cudaStreamNonBlocking);
  int tested = 0;
  for (std::size_t i = 0; i < op_registry().size(); ++i) {
    const OpEntry& op = op_registry()[i];
    for (const char* name : {"slot_mapping", "positions"}) {
      const int k = argument_index(op, name);
      if (k < 0) continue;
      PlacedOp placed;
      if (!placed_op(i, placed, k)) continue;
      INFO(op.name << " (" << placed.base.point << "): a bad " << name);
      const std::int64_t bad = std::string(name) == "positions" ? -5 : 1LL << 40;
      const auto poke = [&](fuzz::FuzzCall& host) {
        *static_cast<std::int64_t*>(std::get<TensorView>(host.values[k]).data) = bad;
      };
      fuzz::DeviceCall call = placed.place(poke);
      const std::vector<std::uint8_t> before = call.snapshot();
      REQUIRE_NOTHROW(op.run(Impl::optimized, call.values, stream.handle));  // nothing waits
      PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream.handle));
      CHECK(call.snapshot() == before);  // the guarded kernels wrote nothing
      const std::string element = std::string(name) + "[0] = " + std::to_string(bad);
      CHECK_THROWS_WITH(check_errors(), Contains(element) && Contains(op.name) &&
                                            Contains("deferred"));
      CHECK_NOTHROW(check_errors());

      // Reported by the next checked call instead (after the check kernel ran), which then
      // writes nothing either.
      fuzz::DeviceCall again = placed.place(poke);
      REQUIRE_NOTHROW(op.run(Impl::naive, again.values, stream.handle));
      PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream.handle));
      fuzz::DeviceCall valid = placed.place();
      const std::vector<std::uint8_t> valid_before = valid.snapshot();
      CHECK_THROWS_WITH(op.run(Impl::optimized, valid.values, stream.handle), Contains(element));
      PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream.handle));
      CHECK(valid.snapshot() == valid_before);
      // Cleared by that report: the valid call now runs.
      CHECK_NOTHROW(op.run(Impl::optimized, valid.values, stream.handle));
      PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream.handle));
      CHECK_NOTHROW(check_errors());
      ++tested;
    }
  }
  CHECK(tested >= 6);  // five slot writers, and the RoPE-fused writer's positions
}

TEST_CASE("streams: two different ops on two streams at once write what two sequential runs "
          "write",
          "[gpu][streams]") {
  PAGEDKV_REQUIRE_GPU();
  Stream first(cudaStreamNonBlocking), second(cudaStreamNonBlocking);
  const std::size_t n = op_registry().size();
  for (std::size_t i = 0; i < n; ++i) {
    PlacedOp a, b;
    if (!placed_op(i, a) || !placed_op((i + 1) % n, b)) continue;
    INFO(a.op->name << " on one stream, " << b.op->name << " on another");
    for (ErrorMode mode : {ErrorMode::synchronous, ErrorMode::deferred}) {
      ModeGuard guard(mode);
      fuzz::DeviceCall a_seq = a.place(), b_seq = b.place();
      a.op->run(Impl::optimized, a_seq.values, first.handle);
      PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(first.handle));
      b.op->run(Impl::optimized, b_seq.values, second.handle);
      PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(second.handle));

      fuzz::DeviceCall a_par = a.place(), b_par = b.place();
      a.op->run(Impl::optimized, a_par.values, first.handle);
      b.op->run(Impl::optimized, b_par.values, second.handle);
      PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(first.handle));
      PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(second.handle));
      CHECK(a_par.snapshot() == a_seq.snapshot());
      CHECK(b_par.snapshot() == b_seq.snapshot());
    }
  }
  CHECK_NOTHROW(check_errors());
}

TEST_CASE("streams: no op uses or waits for the legacy default stream", "[gpu][streams]") {
  PAGEDKV_REQUIRE_GPU();
  Stream stream(cudaStreamNonBlocking);
  int* release = nullptr;
  PAGEDKV_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&release), sizeof(int),
                                   cudaHostAllocMapped));
  int* release_on_device = nullptr;
  PAGEDKV_CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&release_on_device),
                                              release, 0));
  (void)device_fault();  // the fault record exists before the legacy stream is blocked
  for (std::size_t i = 0; i < op_registry().size(); ++i) {
    PlacedOp placed;
    if (!placed_op(i, placed)) continue;
    INFO(placed.op->name);
    for (ErrorMode mode : {ErrorMode::synchronous, ErrorMode::deferred}) {
      ModeGuard guard(mode);
      {
        // Every kernel this call launches is loaded first: with lazy loading, a kernel's first
        // launch may wait for the whole device, the blocked legacy stream included.
        fuzz::DeviceCall warm_up = placed.place();
        placed.op->run(Impl::optimized, warm_up.values, stream.handle);
        PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream.handle));
      }
      fuzz::DeviceCall call = placed.place();  // uploads use the legacy stream: before blocking
      PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
      *reinterpret_cast<volatile int*>(release) = 0;
      test::block_legacy_stream(release_on_device, 10.0);
      std::string error;
      try {
        placed.op->run(Impl::optimized, call.values, stream.handle);
        PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream.handle));
      } catch (const std::exception& e) {
        error = e.what();
      }
      // The op's work is done while the legacy stream still spins.
      const bool legacy_still_busy = cudaStreamQuery(nullptr) == cudaErrorNotReady;
      *reinterpret_cast<volatile int*>(release) = 1;
      PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
      CHECK(error.empty());
      CHECK(legacy_still_busy);
    }
  }
  cudaFreeHost(release);
}
