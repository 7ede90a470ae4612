// Index checks that run on the device, and the fault record they leave. See
// pagedkv/deferred_checks.h for the contract; this file is the how:
//
// - The record lives twice per device: in device memory (a __device__ variable, so it exists as
//   soon as the module is loaded, with no cudaMalloc that a capture could forbid), where the
//   guarded kernels read it with one load per CTA, and in pinned, mapped host memory, which
//   the check kernel writes as well when (and only when) it finds a bad index. The host reads
//   the mirror at the start of every checked call: a plain memory read, no synchronization, so
//   a fault surfaces at the next call without anyone waiting for the GPU.
// - The check kernel claims the record with an atomicCAS on `rule`, so the first fault found
//   is kept whole; it writes the details before the rule (with a system-wide fence between
//   them for the host mirror), so a host that sees a rule sees its details.
// - Clearing needs the device to be idle (a guarded kernel queued after the faulting check must
//   still see the fault), so only a report outside a capture clears, after
//   cudaDeviceSynchronize, with an asynchronous memset on a private non-blocking stream.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "pagedkv/cuda_runtime.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"

namespace pagedkv {

namespace {

__device__ DeviceFault g_fault;  // zero at module load: no fault

constexpr int kMaxDevices = 64;

struct DeviceState {
  DeviceFault* device = nullptr;       // &g_fault on this device
  DeviceFault* mirror = nullptr;       // pinned host memory, mapped
  DeviceFault* mirror_view = nullptr;  // the mirror's device address
  cudaStream_t clear_stream = nullptr;
};

std::atomic<DeviceState*> g_states[kMaxDevices] = {};
std::atomic<bool> g_any_state{false};  // set once a record exists on any device
std::mutex g_state_mutex;

// Lets this thread make calls a global-mode capture forbids (allocations, symbol lookups)
// while another stream is being captured: what PyTorch's caching allocator does too.
class RelaxedCaptureMode {
 public:
  RelaxedCaptureMode() { cudaThreadExchangeStreamCaptureMode(&mode_); }
  ~RelaxedCaptureMode() { cudaThreadExchangeStreamCaptureMode(&mode_); }

 private:
  cudaStreamCaptureMode mode_ = cudaStreamCaptureModeRelaxed;
};

int current_device() {
  int device = 0;
  PAGEDKV_CUDA_CHECK(cudaGetDevice(&device));
  PAGEDKV_CHECK(device < kMaxDevices, "device ", device, ": pagedkv supports devices 0 to ",
                kMaxDevices - 1);
  return device;
}

void load_check_kernels();  // below, after the kernels

DeviceState& state_of(int device) {
  DeviceState* state = g_states[device].load(std::memory_order_acquire);
  if (state != nullptr) return *state;
  std::lock_guard<std::mutex> lock(g_state_mutex);
  state = g_states[device].load(std::memory_order_acquire);
  if (state != nullptr) return *state;
  RelaxedCaptureMode relaxed;
  auto made = std::make_unique<DeviceState>();
  void* symbol = nullptr;
  PAGEDKV_CUDA_CHECK(cudaGetSymbolAddress(&symbol, g_fault));
  made->device = static_cast<DeviceFault*>(symbol);
  void* host = nullptr;
  PAGEDKV_CUDA_CHECK(
      cudaHostAlloc(&host, sizeof(DeviceFault), cudaHostAllocMapped | cudaHostAllocPortable));
  std::memset(host, 0, sizeof(DeviceFault));
  made->mirror = static_cast<DeviceFault*>(host);
  void* view = nullptr;
  PAGEDKV_CUDA_CHECK(cudaHostGetDevicePointer(&view, host, 0));
  made->mirror_view = static_cast<DeviceFault*>(view);
  PAGEDKV_CUDA_CHECK(cudaStreamCreateWithFlags(&made->clear_stream, cudaStreamNonBlocking));
  // With lazy loading (the default since CUDA 12.2) a kernel is loaded at its first launch,
  // which may wait for the whole device, and that first launch could be inside a capture or
  // behind a busy stream. Load the check kernels now, with the record.
  load_check_kernels();
  state = made.release();  // lives as long as the process
  g_states[device].store(state, std::memory_order_release);
  g_any_state.store(true, std::memory_order_release);
  return *state;
}

ErrorMode mode_from_environment() {
  const char* text = std::getenv("PAGEDKV_ERRORS");
  if (text == nullptr) return ErrorMode::automatic;
  const std::string value(text);
  if (value == "deferred") return ErrorMode::deferred;
  if (value == "sync" || value == "synchronous") return ErrorMode::synchronous;
  return ErrorMode::automatic;
}

std::atomic<ErrorMode>& mode_setting() {
  static std::atomic<ErrorMode> mode{mode_from_environment()};
  return mode;
}

thread_local const CheckScope* t_scope = nullptr;
thread_local bool t_prefer_deferred = false;

// The message of a fault, in the words of the synchronous check of the same rule.
std::string describe(const DeviceFault& fault) {
  const char* op = reinterpret_cast<const char*>(fault.op);
  const char* argument = reinterpret_cast<const char*>(fault.argument);
  std::string rule;
  if (fault.rule == static_cast<std::uint32_t>(FaultRule::slot_range)) {
    rule = detail::concat(argument, "[", fault.position, "] = ", fault.value,
                          ": expected a slot below num_blocks × block_size = ", fault.num_blocks,
                          " × ", fault.block_size, " = ", fault.limit,
                          " (negative slots mark padding)");
  } else {
    rule =
        detail::concat(argument, "[", fault.position, "] = ", fault.value,
                       ": expected a position in [0, ", fault.limit, ") (cos_sin_cache.size(0))");
  }
  return detail::concat(rule, " [deferred: found on the device by a check of ", op,
                        "; that call and every later guarded pagedkv call on the device wrote "
                        "nothing until this report]");
}

// --- the check kernels ----------------------------------------------------------------------

// Writes the details of a fault into one copy of the record (the rule comes last).
__device__ void write_details(volatile DeviceFault* copy, std::int64_t position, std::int64_t value,
                              std::int64_t limit, std::int64_t num_blocks, std::int64_t block_size,
                              std::uint64_t op, std::uint64_t argument) {
  copy->position = position;
  copy->value = value;
  copy->limit = limit;
  copy->num_blocks = num_blocks;
  copy->block_size = block_size;
  copy->op = op;
  copy->argument = argument;
}

// Claims the record for this fault (the first one wins) and fills both copies.
__device__ void record_fault(DeviceFault* fault, DeviceFault* mirror, FaultRule rule,
                             std::int64_t position, std::int64_t value, std::int64_t limit,
                             std::int64_t num_blocks, std::int64_t block_size, std::uint64_t op,
                             std::uint64_t argument) {
  // The claim word (`reserved`) decides who writes; `rule` is set last, so that whoever sees
  // it (a guarded kernel, the host) sees the details too.
  if (atomicCAS(&fault->reserved, 0u, 1u) != 0u) return;
  write_details(fault, position, value, limit, num_blocks, block_size, op, argument);
  write_details(mirror, position, value, limit, num_blocks, block_size, op, argument);
  __threadfence_system();
  static_cast<volatile DeviceFault*>(mirror)->reserved = 1u;
  static_cast<volatile DeviceFault*>(mirror)->rule = static_cast<std::uint32_t>(rule);
  atomicExch(&fault->rule, static_cast<std::uint32_t>(rule));
}

__global__ void check_slots(const std::int64_t* slots, std::int64_t count, std::int64_t num_blocks,
                            std::int64_t block_size, DeviceFault* fault, DeviceFault* mirror,
                            std::uint64_t op, std::uint64_t argument) {
  const std::int64_t limit = num_blocks * block_size;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t slot = slots[i];
    if (slot >= limit) {
      record_fault(fault, mirror, FaultRule::slot_range, i, slot, limit, num_blocks, block_size, op,
                   argument);
    }
  }
}

__global__ void check_positions(const std::int64_t* positions, std::int64_t count,
                                std::int64_t max_position, DeviceFault* fault, DeviceFault* mirror,
                                std::uint64_t op, std::uint64_t argument) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t position = positions[i];
    if (position < 0 || position >= max_position) {
      record_fault(fault, mirror, FaultRule::position_range, i, position, max_position, 0, 0, op,
                   argument);
    }
  }
}

void load_check_kernels() {
  cudaFuncAttributes attributes{};
  PAGEDKV_CUDA_CHECK(cudaFuncGetAttributes(&attributes, check_slots));
  PAGEDKV_CUDA_CHECK(cudaFuncGetAttributes(&attributes, check_positions));
}

// One thread per index up to a few waves; a grid-stride loop beyond (these kernels read 8
// bytes per token: even 65,536 tokens are 512 KiB, a couple of microseconds).
dim3 check_grid(std::int64_t count, int threads) {
  constexpr std::int64_t kMaxCtas = 1024;
  const std::int64_t ctas = (count + threads - 1) / threads;
  return dim3(static_cast<unsigned>(ctas < kMaxCtas ? ctas : kMaxCtas));
}

}  // namespace

std::string_view error_mode_name(ErrorMode mode) {
  switch (mode) {
    case ErrorMode::automatic:
      return "automatic";
    case ErrorMode::synchronous:
      return "synchronous";
    case ErrorMode::deferred:
      return "deferred";
  }
  return "?";
}

void set_error_mode(ErrorMode mode) { mode_setting().store(mode); }

ErrorMode error_mode() { return mode_setting().load(); }

const DeviceFault* device_fault() { return state_of(current_device()).device; }

void raise_pending_fault(bool may_synchronize) {
  if (!g_any_state.load(std::memory_order_acquire)) return;  // no CUDA call on the hot path
  const int device = current_device();
  DeviceState* state = g_states[device].load(std::memory_order_acquire);
  if (state == nullptr) return;  // nothing ever checked on this device
  const volatile DeviceFault* mirror = state->mirror;
  if (mirror->rule == 0) return;
  if (may_synchronize) PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  DeviceFault fault;
  std::memcpy(&fault, const_cast<const DeviceFault*>(state->mirror), sizeof fault);
  if (may_synchronize) {
    // The device is idle: no guarded kernel is left that should still see the fault.
    PAGEDKV_CUDA_CHECK(cudaMemsetAsync(state->device, 0, sizeof(DeviceFault), state->clear_stream));
    PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(state->clear_stream));
    std::memset(state->mirror, 0, sizeof(DeviceFault));
  }
  throw InvalidArgument(describe(fault));
}

void check_errors() {
  if (!g_any_state.load(std::memory_order_acquire)) return;
  const int device = current_device();
  if (g_states[device].load(std::memory_order_acquire) == nullptr) return;
  PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  raise_pending_fault(true);
}

CheckScope::CheckScope(const char* op_name, cudaStream_t call_stream)
    : op(op_name), stream(call_stream), capturing(false), deferred(false), outer_(t_scope) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &status) != cudaSuccess) {
    // No usable device (a call that validation will reject), or the legacy stream queried
    // during another stream's capture: not a capture of this call's stream.
    cudaGetLastError();
    status = cudaStreamCaptureStatusNone;
  }
  capturing = status != cudaStreamCaptureStatusNone;
  const ErrorMode mode = error_mode();
  deferred = capturing || mode == ErrorMode::deferred ||
             (mode == ErrorMode::automatic && t_prefer_deferred);
  // A fault left by an earlier deferred check is this call's error now (cleared unless
  // capturing, where nothing may wait for the device).
  raise_pending_fault(!capturing);
  t_scope = this;
}

CheckScope::~CheckScope() { t_scope = outer_; }

const CheckScope* CheckScope::current() { return t_scope; }

PreferDeferredErrors::PreferDeferredErrors() : outer_(t_prefer_deferred) {
  t_prefer_deferred = true;
}

PreferDeferredErrors::~PreferDeferredErrors() { t_prefer_deferred = outer_; }

cudaStream_t synchronous_check_stream(const char* argument) {
  const CheckScope* scope = CheckScope::current();
  if (scope == nullptr) return nullptr;
  PAGEDKV_CHECK(!scope->capturing, scope->op, ": checks the values of ", argument,
                " on the host, which a CUDA graph capture forbids: run this op outside the "
                "capture (it is not capturable yet)");
  return scope->stream;
}

namespace checks {

void enqueue_slot_check(const CheckScope& scope, const void* slot_mapping, std::int64_t count,
                        std::int64_t num_blocks, std::int64_t block_size) {
  if (count == 0) return;
  DeviceState& state = state_of(current_device());
  constexpr int kThreads = 256;
  check_slots<<<check_grid(count, kThreads), kThreads, 0, scope.stream>>>(
      static_cast<const std::int64_t*>(slot_mapping), count, num_blocks, block_size, state.device,
      state.mirror_view, reinterpret_cast<std::uint64_t>(scope.op),
      reinterpret_cast<std::uint64_t>("slot_mapping"));
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

void enqueue_position_check(const CheckScope& scope, const void* positions, std::int64_t count,
                            std::int64_t max_position) {
  if (count == 0) return;
  DeviceState& state = state_of(current_device());
  constexpr int kThreads = 256;
  check_positions<<<check_grid(count, kThreads), kThreads, 0, scope.stream>>>(
      static_cast<const std::int64_t*>(positions), count, max_position, state.device,
      state.mirror_view, reinterpret_cast<std::uint64_t>(scope.op),
      reinterpret_cast<std::uint64_t>("positions"));
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace checks

}  // namespace pagedkv
