/// \file
/// \brief The op registry: each op describes itself once, and the comparison tool, the tests,
/// the bindings and the generated docs table iterate over it.
///
/// An OpEntry is the op's card (name, family, sources, byte model, workloads). Its `make_case`
/// builds an OpCase: the inputs and outputs of one workload point, filled with random data, with
/// everything the comparison tool needs to run the CPU reference, the naive and the optimized
/// kernels, a size-matched copy and (where the op is a plain scatter) a library call.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <cuda_runtime_api.h>

#include "pagedkv/impl.h"

namespace pagedkv {

/// \brief One point of a standard workload (design.md §4): which workload, which variant of it
/// (layout, dtype, direction), and its size.
struct WorkloadPoint {
  std::string workload;   ///< "W1", "W6", ...
  std::string variant;    ///< e.g. "NHD bf16", "HND fp8_e4m3", "H2D"
  std::string slots;      ///< how slots (or block ids) are drawn: "random" or "contiguous"
  std::int64_t size = 0;  ///< number of tokens (cache writes) or blocks (swap_blocks)
  std::string size_unit;  ///< "tokens" or "blocks"
  /// Blocks in the cache the tokens are written to (W1), or blocks in each of the source and
  /// destination pools (W6). Quick points use a smaller cache so that the CPU run stays short.
  std::int64_t num_blocks = 0;
};

/// \brief How a device result compares with the CPU reference.
struct Agreement {
  bool bit_exact = false;            ///< every output byte equal (untouched bytes included)
  double max_abs_err = 0.0;          ///< largest |device - cpu| over differing output elements
  std::int64_t bytes_differing = 0;  ///< output bytes that differ
  std::int64_t bytes_compared = 0;   ///< size of the whole output that was compared
};

/// \brief The copy a size-matched baseline performs (what "% of copy" is relative to).
enum class CopyKind {
  device_to_device,  ///< cudaMemcpyAsync D2D; bytes read + bytes written, like a cache write
  host_to_device,    ///< one bulk cudaMemcpyAsync from pinned host memory
  device_to_host,    ///< one bulk cudaMemcpyAsync into pinned host memory
};

/// \brief "D2D", "H2D" or "D2H".
/// \param kind the copy kind.
/// \return its short name.
constexpr std::string_view copy_kind_name(CopyKind kind) {
  switch (kind) {
    case CopyKind::device_to_device: return "D2D";
    case CopyKind::host_to_device: return "H2D";
    case CopyKind::device_to_host: return "D2H";
  }
  return "?";
}

/// \brief A step of an op that is a plain scatter of fixed-size units, described as data so that
/// a library call (Thrust) can run it: the "what a library call gives you" baseline row.
///
/// Units are grouped in rows of `row_units` units: a row is one (token, head) of a cache write,
/// or one block pair of swap_blocks. Unit j of row r is copied as
/// \code
/// dst_units[dst_row(r) + j * dst_unit_step] = src_units[src_row(r) + j]
/// \endcode
/// with, in units, for Rows::slots (r = token * num_heads + head, slot = slot_mapping[token],
/// no negative slots)
/// \code
/// src_row = token * src_token_stride + head * src_head_stride
/// dst_row = (slot / block_size) * dst_block_stride + (slot mod block_size) * dst_page_stride
///           + head * dst_head_stride
/// \endcode
/// and for Rows::pairs
/// \code
/// src_row = pairs[2 r] * row_units
/// dst_row = pairs[2 r + 1] * row_units
/// \endcode
struct UnitScatter {
  /// \brief How a row finds its source and destination.
  enum class Rows {
    slots,  ///< rows are (token, head) pairs placed by slot_mapping (cache writes)
    pairs,  ///< rows are (src_block, dst_block) pairs (swap_blocks)
  };
  Rows rows = Rows::slots;                     ///< slot-addressed rows or block pairs
  const void* src = nullptr;                   ///< device pointer to unit 0 of the source
  void* dst = nullptr;                         ///< device pointer to unit 0 of the destination
  int unit_bytes = 16;                         ///< 16 or 2
  std::int64_t num_rows = 0;                   ///< rows to copy
  std::int64_t row_units = 0;                  ///< units per row
  const std::int64_t* slot_mapping = nullptr;  ///< device, [num_tokens] (Rows::slots)
  std::int64_t num_heads = 1;                  ///< rows per token (Rows::slots)
  std::int64_t block_size = 1;                 ///< slots per cache block (Rows::slots)
  std::int64_t src_token_stride = 0;           ///< units between two tokens' source rows
  std::int64_t src_head_stride = 0;            ///< units between two heads of one token
  std::int64_t dst_block_stride = 0;           ///< units between two cache blocks
  std::int64_t dst_page_stride = 0;            ///< units between two slots of one block
  std::int64_t dst_head_stride = 0;            ///< units between two heads of one slot
  std::int64_t dst_unit_step = 1;              ///< units between two consecutive units of a row
  const std::int64_t* pairs = nullptr;         ///< device, [num_rows, 2] (Rows::pairs)
};

/// \brief The inputs and outputs of one workload point, allocated once, for one op.
///
/// Life cycle in the comparison tool: make_case (host inputs, random) → run_cpu (the reference,
/// timed on the host) → prepare_device (device inputs, buffer sets, validation) → check(naive),
/// check(optimized) → timed launch() calls. Without a GPU only the first two steps run.
class OpCase {
 public:
  virtual ~OpCase() = default;
  /// \brief Bytes the op must move under its byte model (each input byte read once, each output
  /// byte written once; host↔device copies count the bytes crossing the bus once).
  /// \return the byte count.
  virtual std::int64_t bytes_moved() const = 0;
  /// \brief The copy that the size-matched baseline row performs.
  /// \return the copy kind.
  virtual CopyKind copy_kind() const = 0;
  /// \brief Runs the checked CPU reference on the host inputs (the agreement baseline). Running
  /// it again gives the same output.
  virtual void run_cpu() = 0;
  /// \brief Copies inputs to the GPU and validates them once per buffer set (needs a device).
  /// \param l2_bytes the device's L2 size: enough buffer sets are made that rotating through them
  ///        touches more than twice this (up to kMaxBufferSets).
  virtual void prepare_device(std::int64_t l2_bytes) = 0;
  /// \brief Number of buffer sets prepare_device() made (each with its own inputs).
  /// \return the count (1 before prepare_device()).
  virtual int buffer_sets() const = 0;
  /// \brief Launches `impl` (naive or optimized) on buffer set `set` through its unchecked
  /// `launch_` entry point: an already validated plan, nothing synchronizes. This is what is
  /// timed.
  /// \param impl Impl::naive or Impl::optimized.
  /// \param set buffer set, 0 <= set < buffer_sets().
  /// \param stream the stream to launch on.
  virtual void launch(Impl impl, int set, cudaStream_t stream) = 0;
  /// \brief Sets every output byte of buffer set 0 to the poison byte (kPoisonByte).
  virtual void reset_outputs() = 0;
  /// \brief Compares the whole output of buffer set 0 with the CPU reference, byte for byte.
  /// \return the agreement.
  virtual Agreement compare_outputs() = 0;
  /// \brief The op as plain scatters of units on buffer set `set`, for the library baseline;
  /// empty when the op is not a plain scatter (e.g. it quantizes).
  /// \param set buffer set.
  /// \return the scatters, to run in order.
  virtual std::vector<UnitScatter> library_scatters(int set) const {
    (void)set;
    return {};
  }
  /// \brief Runs `impl` once through its checked entry point (validation included) on poisoned
  /// outputs of buffer set 0 and compares the result with the CPU reference.
  /// \param impl Impl::naive or Impl::optimized.
  /// \return the agreement.
  Agreement check(Impl impl);

 protected:
  /// \brief Runs `impl` through its checked entry point on buffer set 0 (default stream).
  /// \param impl Impl::naive or Impl::optimized.
  virtual void run_checked(Impl impl) = 0;
};

/// \brief The byte every output is filled with before a checked run: all-ones bytes are NaN in
/// every float format (f32, f16, bf16, fp8 E4M3 and E5M2), so no correct write of finite input
/// can leave it in place unnoticed.
inline constexpr std::uint8_t kPoisonByte = 0xFF;

/// \brief Most buffer sets a case rotates through.
inline constexpr int kMaxBufferSets = 64;

/// \brief Buffer sets needed so that rotating through them touches more than 2 × L2.
/// \param bytes_per_launch bytes one launch reads and writes.
/// \param l2_bytes the device's L2 size.
/// \return between 1 and kMaxBufferSets.
int buffer_sets_for(std::int64_t bytes_per_launch, std::int64_t l2_bytes);

/// \brief What an op tells the rest of the project about itself.
struct OpEntry {
  std::string name;                    ///< the upstream name, used everywhere
  std::string family;                  ///< "moving blocks", "cache writes", ...
  std::string role;                    ///< one line: the op's job in an inference engine
  std::string upstream;                ///< upstream reference (file and function)
  std::string cpu_source;              ///< path of the CPU reference, from the repository root
  std::string naive_source;            ///< path of the naive kernel
  std::string optimized_source;        ///< path of the optimized kernel
  std::string byte_model;              ///< how bytes_moved() counts, in words
  std::string agreement_rule;          ///< "bit-exact" for copies and quantization
  std::vector<std::string> workloads;  ///< standard workload ids
  /// \brief The points of `workload`; `quick` keeps the small sizes (CPU-only runs).
  std::vector<WorkloadPoint> (*points)(const std::string& workload, bool quick) = nullptr;
  /// \brief Allocates the host inputs of one point, filled from `seed` (random, never zeros).
  std::unique_ptr<OpCase> (*make_case)(const WorkloadPoint& point, std::uint64_t seed) = nullptr;
};

/// \brief Every op, in catalogue order.
/// \return the registry.
const std::vector<OpEntry>& op_registry();

/// \brief The entry called `name`; throws InvalidArgument naming the known ops otherwise.
/// \param name the op's upstream name.
/// \return the entry.
const OpEntry& find_op(std::string_view name);

}  // namespace pagedkv
