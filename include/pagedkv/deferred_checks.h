/// \file
/// \brief Index checks that run on the device: the error modes, the device fault record that
/// the kernels of an op read before they write, and the call that reports a deferred error.
///
/// A few rules of a contract are about the values of device index tensors (every slot of
/// slot_mapping inside the cache, every position a row of cos_sin_cache). Reading them on the
/// host costs a copy and a synchronization on every call, and a capture forbids it. So a call
/// either checks them synchronously (read back on its stream, InvalidArgument before the
/// launch) or defers: a check kernel on its stream fills the fault record on a bad value, the
/// op's kernels read the record first and write nothing, and the host reports the fault later
/// (the next checked call, or check_errors()). The op map's section on the rules every op
/// shares describes both modes; a fault stays set until it is reported outside a capture.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string_view>

namespace pagedkv {

/// \brief When the checks of device index values report a bad value.
enum class ErrorMode {
  automatic,    ///< synchronous for pagedkv::run and pagedkv.naive/optimized, deferred for
                ///< pagedkv.vllm_ops and for every call on a capturing stream
  synchronous,  ///< always read back and throw before launching (except while capturing)
  deferred,     ///< always check on the device and report later
};

/// \brief The rule a device check found broken (DeviceFault::rule).
enum class FaultRule : std::uint32_t {
  none = 0,
  slot_range = 1,      ///< a slot >= num_blocks × block_size
  position_range = 2,  ///< a position < 0 or >= the rows of cos_sin_cache
};

/// \brief The device's fault record: written by a check kernel that found a bad index, read
/// by every guarded kernel before it writes. Plain data, the same layout on host and device.
struct DeviceFault {
  std::uint32_t rule;       ///< FaultRule; 0 = no fault
  std::uint32_t reserved;   ///< padding (0)
  std::int64_t position;    ///< flat index of the bad element
  std::int64_t value;       ///< its value
  std::int64_t limit;       ///< the bound it broke (num_blocks × block_size, max_position)
  std::int64_t num_blocks;  ///< slot_range: the cache's blocks
  std::int64_t block_size;  ///< slot_range: slots per block
  std::uint64_t op;         ///< the op's name (a `const char*` with static storage)
  std::uint64_t argument;   ///< the argument's name (a `const char*` with static storage)
};

/// \brief "automatic", "synchronous" or "deferred".
/// \param mode the mode.
/// \return its name.
std::string_view error_mode_name(ErrorMode mode);

/// \brief Sets the error mode of the whole process (the first value comes from the
/// environment variable PAGEDKV_ERRORS: "sync", "deferred" or unset for automatic).
/// \param mode the new mode.
void set_error_mode(ErrorMode mode);

/// \brief The error mode of the process.
/// \return the mode set_error_mode() or PAGEDKV_ERRORS chose.
ErrorMode error_mode();

/// \brief The fault record of the current device, in device memory, for the kernels of the
/// guarded ops. Made once per device (never inside a capture: the first call switches this
/// thread to relaxed capture mode for the allocation).
/// \return the record's device address.
const DeviceFault* device_fault();

/// \brief Reports a deferred error: waits for the current device (cudaDeviceSynchronize), and
/// if a check kernel found a bad index since the last report, clears the fault and throws
/// InvalidArgument naming the op, the argument, the element and its value. Does nothing on a
/// device that never ran a deferred check. Must not be called while a stream of the device is
/// being captured.
void check_errors();

/// \brief The fault of a check kernel that has already run, if any, without synchronizing:
/// throws it when the host mirror holds one. When `may_synchronize`, the fault is cleared
/// first (after waiting for the device); inside a capture it stays set until a later report.
/// Every checked call of the registry begins with this.
/// \param may_synchronize false while the caller's stream is capturing.
void raise_pending_fault(bool may_synchronize);

/// \brief The checking context of one checked call on a device: the stream its checks use and
/// whether they defer. Made by the checked entry point (pagedkv::run) around validation; the
/// checks of device index values (checks::slots_fit, the position check, the gathers' reads)
/// look it up. Without one (a plan prepared for a timing loop) they are synchronous on the
/// legacy default stream.
class CheckScope {
 public:
  /// \brief Opens the scope for one call: reports a pending fault of the device first (see
  /// raise_pending_fault()), then decides whether this call defers.
  /// \param op the op's name (static storage).
  /// \param stream the call's stream.
  CheckScope(const char* op, cudaStream_t stream);
  /// \brief Closes the scope: the enclosing one (or none) is current again.
  ~CheckScope();
  CheckScope(const CheckScope&) = delete;             ///< one scope per call
  CheckScope& operator=(const CheckScope&) = delete;  ///< one scope per call

  /// \brief The innermost open scope of this thread, or nullptr.
  /// \return the scope.
  static const CheckScope* current();

  const char* op;       ///< the op's name
  cudaStream_t stream;  ///< the call's stream
  bool capturing;       ///< the stream is being captured into a CUDA graph
  bool deferred;        ///< value checks run on the device and report later

 private:
  const CheckScope* outer_;
};

/// \brief While one lives, checked calls of this thread defer their errors in
/// ErrorMode::automatic (what pagedkv.vllm_ops asks for: vLLM's own ops never synchronize).
class PreferDeferredErrors {
 public:
  /// \brief From now on, this thread's checked calls prefer deferred errors.
  PreferDeferredErrors();
  /// \brief Back to what this thread preferred before.
  ~PreferDeferredErrors();
  PreferDeferredErrors(const PreferDeferredErrors&) = delete;             ///< not copyable
  PreferDeferredErrors& operator=(const PreferDeferredErrors&) = delete;  ///< not copyable

 private:
  bool outer_;
};

/// \brief The stream a synchronous check reads device values on: the current scope's stream,
/// else the legacy default stream. Throws InvalidArgument naming `argument` when the scope's
/// stream is capturing (a host read would break the capture).
/// \param argument the argument whose values are read.
/// \return the stream.
cudaStream_t synchronous_check_stream(const char* argument);

namespace checks {

/// \brief Deferred slot check: queues a kernel on the scope's stream that records a fault for
/// the first slot of `slot_mapping` (i64, contiguous) at or above num_blocks × block_size.
/// \param scope the open scope (deferred).
/// \param slot_mapping the slots.
/// \param count slots to check.
/// \param num_blocks blocks in the cache.
/// \param block_size slots per block.
void enqueue_slot_check(const CheckScope& scope, const void* slot_mapping, std::int64_t count,
                        std::int64_t num_blocks, std::int64_t block_size);

/// \brief Deferred position check: queues a kernel that records a fault for a position (i64,
/// contiguous) outside [0, max_position).
/// \param scope the open scope (deferred).
/// \param positions the positions.
/// \param count positions to check.
/// \param max_position rows of cos_sin_cache.
void enqueue_position_check(const CheckScope& scope, const void* positions, std::int64_t count,
                            std::int64_t max_position);

}  // namespace checks

}  // namespace pagedkv
