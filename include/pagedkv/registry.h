/// \file
/// \brief The op registry: each op describes itself once, and the comparison tool, the tests,
/// the bindings and the generated docs table iterate over it.
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
  std::string slots;      ///< how slots are drawn: "random" or "contiguous" ("" where none)
  std::int64_t size = 0;  ///< number of tokens (cache writes) or blocks (swap_blocks)
  std::string size_unit;  ///< "tokens" or "blocks"
};

/// \brief How a device result compares with the CPU reference.
struct Agreement {
  bool bit_exact = false;         ///< every output byte equal (untouched bytes included)
  double max_abs_err = 0.0;       ///< largest |device - cpu| over output elements
  std::int64_t bytes_differing = 0;  ///< output bytes that differ
};

/// \brief The inputs and outputs of one workload point, allocated once, for one op.
class OpCase {
 public:
  virtual ~OpCase() = default;
  /// \brief Bytes the op must move under its byte model (each input byte read once, each output
  /// byte written once).
  virtual std::int64_t bytes_moved() const = 0;
  /// \brief Runs the CPU reference on host copies of the inputs (the agreement baseline).
  virtual void run_cpu() = 0;
  /// \brief Copies inputs to the GPU and validates them once (needs a CUDA device).
  virtual void prepare_device() = 0;
  /// \brief Launches `impl` (naive or optimized) on `stream` without re-validating: the timed
  /// region. Buffer sets may rotate between calls so that timing is not served from L2.
  virtual void launch(Impl impl, cudaStream_t stream) = 0;
  /// \brief Runs `impl` once through its checked entry point on fresh (poisoned) outputs and
  /// compares the result with the CPU reference.
  virtual Agreement check(Impl impl) = 0;
};

/// \brief What an op tells the rest of the project about itself.
struct OpEntry {
  std::string name;              ///< the upstream name, used everywhere
  std::string family;            ///< "moving blocks", "cache writes", ...
  std::string role;              ///< one line: the op's job in an inference engine
  std::string upstream;          ///< upstream reference (file and function)
  std::string cpu_source;        ///< path of the CPU reference, from the repository root
  std::string naive_source;      ///< path of the naive kernel
  std::string optimized_source;  ///< path of the optimized kernel
  std::string byte_model;        ///< how bytes_moved() counts, in words
  std::string agreement_rule;    ///< "bit-exact" for copies and quantization
  std::vector<std::string> workloads;  ///< standard workload ids
  /// \brief The points of `workload`; `quick` keeps the small sizes (CPU-only runs).
  std::vector<WorkloadPoint> (*points)(const std::string& workload, bool quick) = nullptr;
  /// \brief Allocates the inputs of one point, filled from `seed` (random, never zeros).
  std::unique_ptr<OpCase> (*make_case)(const WorkloadPoint& point, std::uint64_t seed) = nullptr;
};

/// \brief Every op, in catalogue order.
const std::vector<OpEntry>& op_registry();

/// \brief The entry called `name`; throws InvalidArgument naming the known ops otherwise.
const OpEntry& find_op(std::string_view name);

}  // namespace pagedkv
