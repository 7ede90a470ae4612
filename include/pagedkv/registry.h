/// \file
/// \brief The op registry: each op describes itself once, and the comparison tool, the tests,
/// the bindings and the generated docs table iterate over it.
///
/// An OpEntry is the op's card (name, family, sources, byte model, workloads). Its `make_case`
/// builds an OpCase: the inputs and outputs of one workload point, filled with random data, with
/// everything the comparison tool needs to run the CPU reference, the naive and the optimized
/// kernels and a size-matched copy. (Where the op is a plain scatter, its case also offers a
/// library call: core/entries/library_baseline.h, outside the public API.)
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <cuda_runtime_api.h>

#include "pagedkv/impl.h"
#include "pagedkv/op.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief One point of a standard workload: which workload, which variant of it
/// (layout, dtype, direction), and its size.
struct WorkloadPoint {
  std::string workload;   ///< "W1", "W6", ...
  std::string variant;    ///< e.g. "NHD bf16", "HND fp8_e4m3", "H2D"
  std::string slots;      ///< how slots (or block ids) are drawn: "random" or "contiguous"
  std::int64_t size = 0;  ///< number of tokens (cache writes), blocks (swap_blocks) or sequences
  std::string size_unit;  ///< "tokens", "blocks" or "sequences" (W13)
  /// Blocks in the cache the tokens are written to (W1), or blocks in each of the source and
  /// destination pools (W6). Quick points use a smaller cache so that the CPU run stays short.
  std::int64_t num_blocks = 0;
};

/// \brief How a device result compares with the CPU reference.
///
/// Three rules, one per kind of op (the op's card states its rule in OpEntry::agreement_rule):
/// - bit-exact ops (copies, cache writes, quantization, penalties): `tolerance` and `ulp_bound`
///   are 0 and the result agrees when `bit_exact`;
/// - element-wise ops with transcendentals (silu_and_mul, gelu_and_mul): the largest distance
///   `max_ulp` of an output element from the CPU reference's, in ulps of the output dtype
///   (ulp_error() in pagedkv/agreement.h), must stay within `ulp_bound`;
/// - reductions (norms): the GPU sums in float32 in an order of its own, so the result agrees when
///   the norm-wise relative error `rel_err` against the float64 CPU reference is within
///   `tolerance` (reduction_tolerance() in pagedkv/agreement.h) and the part of the output that is
///   element-wise, if any (fused_add_rms_norm's residual), is equal byte for byte
///   (`exact_part_equal`).
///
/// agrees() applies the rule.
struct Agreement {
  bool bit_exact = false;            ///< every output byte equal (untouched bytes included)
  double max_abs_err = 0.0;          ///< largest |device - cpu| over differing output elements
  std::int64_t bytes_differing = 0;  ///< output bytes that differ
  std::int64_t bytes_compared = 0;   ///< size of the whole output that was compared
  /// Reductions: ||device - cpu||_2 / ||cpu||_2 over the reduced output (infinite when a NaN or
  /// infinity is in it); 0 for bit-exact ops.
  double rel_err = 0.0;
  /// Reductions: the largest acceptable rel_err (> 0); 0 for bit-exact ops (not applicable).
  double tolerance = 0.0;
  /// Reductions: the element-wise part of the output that must still be bit-exact is (true when
  /// the op has none).
  bool exact_part_equal = true;
  /// Ulp-bounded ops: the largest ulp_error() of an output element (infinite for a NaN or an
  /// infinity against a number); 0 for the other rules.
  double max_ulp = 0.0;
  /// Ulp-bounded ops: the largest acceptable max_ulp (> 0); 0 for the other rules.
  double ulp_bound = 0.0;

  /// \brief Whether the rule is the reduction rule (rel_err within tolerance).
  /// \return true for reductions, false for bit-exact and ulp-bounded ops.
  bool is_reduction() const { return tolerance > 0.0; }
  /// \brief Whether the rule is the ulp-bounded rule (max_ulp within ulp_bound).
  /// \return true for element-wise ops with transcendentals.
  bool is_ulp_bounded() const { return ulp_bound > 0.0; }
  /// \brief Whether the result agrees with the CPU reference under the op's rule.
  /// \return bit_exact for bit-exact ops; rel_err <= tolerance and exact_part_equal for
  ///         reductions (false for a NaN rel_err); max_ulp <= ulp_bound for ulp-bounded ops.
  bool agrees() const {
    if (is_ulp_bounded()) return max_ulp <= ulp_bound;
    return is_reduction() ? (rel_err <= tolerance && exact_part_equal) : bit_exact;
  }
};

/// \brief One argument value of a call whose op is chosen at run time (the Python bindings):
/// a TensorView for every tensor kind (an absent optional tensor has no data), else the
/// scalar's C++ type.
using ArgValue = std::variant<TensorView, std::int64_t, double, bool, std::string>;

/// \cond INTERNAL
// The values of `args`, in the order of Op::arguments (the inverse of what OpEntry::run
// receives): what lets code that knows only the registry hold a call (the fuzzer, tests/fuzz/).
template <class Op>
std::vector<ArgValue> values_of(const typename Op::Args& args) {
  std::vector<ArgValue> values;
  Op::arguments([&](auto member, const char*, ArgKind, const char*) {
    using T = std::remove_cv_t<std::remove_reference_t<decltype(args.*member)>>;
    values.emplace_back(std::in_place_type<T>, args.*member);
  });
  return values;
}
/// \endcond

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
  /// \cond INTERNAL
  // The arguments of the CPU reference's call, in the order of the op's arguments: views of
  // this case's host memory, inputs as drawn (an op that overwrites its inputs gets them back
  // first) and outputs as the reference starts from. The fuzzer (tests/fuzz/) copies them to
  // make its calls; running the op on these very views changes the case's reference output.
  virtual std::vector<ArgValue> cpu_arguments() = 0;
  /// \endcond
  /// \brief Copies inputs to the GPU and validates them once per buffer set (needs a device).
  /// \param l2_bytes the device's L2 size: enough buffer sets are made that rotating through them
  ///        touches more than twice this (up to kMaxBufferSets).
  virtual void prepare_device(std::int64_t l2_bytes) = 0;
  /// \brief Number of buffer sets prepare_device() made (each with its own inputs).
  /// \return the count (1 before prepare_device()).
  virtual int buffer_sets() const = 0;
  /// \brief Launches `impl` (naive or optimized) on buffer set `set` through its unchecked
  /// `launch_` entry point: an already validated plan, nothing synchronizes. This is what is
  /// timed. An op that overwrites its inputs (fused_add_rms_norm) runs on what the previous
  /// launch left in the set: valid input of the same size, so the same work.
  /// \param impl Impl::naive or Impl::optimized.
  /// \param set buffer set, 0 <= set < buffer_sets().
  /// \param stream the stream to launch on.
  virtual void launch(Impl impl, int set, cudaStream_t stream) = 0;
  /// \brief Prepares buffer set 0 for one checked run: every output byte set to the poison byte
  /// (kPoisonByte), and every tensor the op reads and overwrites (ArgKind::inout) given back the
  /// CPU reference's input, so that the next run computes what the CPU reference computed.
  virtual void reset_outputs() = 0;
  /// \brief Compares the whole output of buffer set 0 with the CPU reference under the op's
  /// agreement rule (byte for byte; for reductions, also the norm-wise relative error).
  /// \return the agreement.
  virtual Agreement compare_outputs() = 0;
  /// \brief The arguments of buffer set `set` (device tensors, after prepare_device()) in the
  /// form the registry's checked entry point (OpEntry::run) takes: what the comparison tool's
  /// checked rows call. Empty for a case that does not offer them.
  /// \param set buffer set, 0 <= set < buffer_sets().
  /// \return the values, in the op's argument order.
  virtual std::vector<ArgValue> device_call(int set) {
    (void)set;
    return {};
  }
  /// \brief Other ways of running the op that the comparison tool times beside the optimized
  /// version, each as a row of its own (swap_blocks: each strategy that `automatic` chooses
  /// between, so that a learner sees why it chose). Empty for most ops.
  /// \return the row names, e.g. "strategy:memcpy_batch".
  virtual std::vector<std::string> alternatives() const { return {}; }
  /// \brief Launches alternative `name` on buffer set `set` from its validated plan, like
  /// launch(): no checks, nothing synchronizes; same bytes as the CPU reference.
  /// \param name one of alternatives().
  /// \param set buffer set, 0 <= set < buffer_sets().
  /// \param stream the stream to launch on.
  virtual void launch_alternative(const std::string& name, int set, cudaStream_t stream);
  /// \brief Runs `impl` once through its checked entry point (validation included) on buffer
  /// set 0 after reset_outputs(), and compares the result with the CPU reference.
  /// \param impl Impl::naive or Impl::optimized.
  /// \return the agreement.
  Agreement check(Impl impl);
  /// \brief Runs alternative `name` once on buffer set 0 after reset_outputs() (from the plan
  /// validated in prepare_device()), and compares the result with the CPU reference.
  /// \param name one of alternatives().
  /// \param stream the stream to run on (synchronized before the comparison).
  /// \return the agreement.
  Agreement check_alternative(const std::string& name, cudaStream_t stream);

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
///
/// The op's own card (Op::card(), in `core/entries/<op>.cpp`) fills the descriptive fields and the
/// workloads; entry_of() adds what is derived from the op's struct: the name, the arguments and
/// the two type-erased entry points.
struct OpEntry {
  std::string name;                    ///< the upstream name (Op::name)
  std::vector<ArgInfo> arguments;      ///< Op::arguments, in vLLM's order
  std::string family;                  ///< "moving blocks", "cache writes", ...
  std::string role;                    ///< one line: the op's job in an inference engine
  std::string upstream;                ///< upstream reference (file and function)
  std::string cpu_source;              ///< path of the CPU reference, from the repository root
  std::string naive_source;            ///< path of the naive kernel
  std::string optimized_source;        ///< path of the optimized kernel
  std::string byte_model;              ///< how bytes_moved() counts, in words
  std::string agreement_rule;          ///< "bit-exact ..." or the reduction tolerance rule
  std::vector<std::string> workloads;  ///< standard workload ids
  /// \brief What the op's workload points are (shapes, how inputs are drawn), in one paragraph.
  std::string workload_notes;
  /// \cond INTERNAL
  // True when the op sees its tensors as size(0) rows of stride(0) elements and moves whole
  // rows as bytes (swap_blocks) rather than addressing the view's elements: the memory it may
  // touch is then the rows, gaps between elements included, and a call keeps its meaning only
  // in its own layout (block_size_in_bytes is tied to stride(0)). The fuzzer reads it.
  bool addresses_rows = false;
  // Op::may_share_memory when the op declares it (pagedkv/memory_overlap.h): which output may
  // share memory with which other argument. nullptr: none may. The fuzzer reads it.
  bool (*may_share_memory)(std::string_view output, std::string_view other) = nullptr;
  // Reductions: the largest acceptable relative error of the output `argument` of a call (its
  // values in the op's argument order), where reduction_tolerance(dtype, last dimension) does
  // not fit the op (paged attention: attention_tolerance()). nullptr: that default. The
  // fuzzer's device check reads it.
  double (*output_tolerance)(const std::vector<ArgValue>& values, std::string_view argument) =
      nullptr;
  /// \endcond
  /// \brief The points of `workload`; `quick` keeps the small sizes (CPU-only runs).
  std::vector<WorkloadPoint> (*points)(const std::string& workload, bool quick) = nullptr;
  /// \brief Allocates the host inputs of one point, filled from `seed` (random, never zeros).
  std::unique_ptr<OpCase> (*make_case)(const WorkloadPoint& point, std::uint64_t seed) = nullptr;
  /// \brief run<Op>() on values given in the order of `arguments` (validates, then runs).
  void (*run)(Impl impl, const std::vector<ArgValue>& values, cudaStream_t stream) = nullptr;
  /// \brief Validates once and returns a callable that runs the validated plan on `stream`
  /// (launch<Op>(): no checks, no synchronization). The argument memory must outlive it.
  std::function<void(cudaStream_t)> (*prepare)(Impl impl,
                                               const std::vector<ArgValue>& values) = nullptr;
};

/// \brief Every op, in catalogue order.
/// \return the registry.
const std::vector<OpEntry>& op_registry();

/// \brief The entry called `name`; throws InvalidArgument naming the known ops otherwise.
/// \param name the op's upstream name.
/// \return the entry.
const OpEntry& find_op(std::string_view name);

}  // namespace pagedkv
