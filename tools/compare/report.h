// The comparison tool's output: the rows it measured, printed as one table and written as JSON
// (schema: results/README.md).
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace pagedkv::compare {

/// One line of the comparison: one implementation (or baseline) at one workload point.
struct Row {
  std::string op, workload, variant, slots;
  std::string impl;        // cpu, naive, optimized, thrust, copy
  std::int64_t size = 0;   // tokens or blocks
  std::string size_unit;   // "tokens" or "blocks"
  std::int64_t bytes = 0;  // under the op's byte model
  std::optional<double> median_us, gbps, pct_of_copy;
  std::optional<bool> bit_exact;  // vs the CPU reference; none for cpu and copy rows
  std::optional<double> max_abs_err;
  std::int64_t bytes_differing = 0;
  // Reductions only: norm-wise relative error vs the CPU reference and its bound.
  std::optional<double> rel_err, tolerance;
  // Ulp-bounded ops only (the activations): the largest distance of an output element from the
  // CPU reference's, in ulps of the dtype, and its bound.
  std::optional<double> max_ulp, ulp_bound;
  // Agreement::agrees(): the op's rule (bit-exact, or rel_err <= tolerance with any bit-exact
  // part equal); none for cpu and copy rows.
  std::optional<bool> agrees;
  // beside_compute rows only (neighbour.h): how much the compute-bound neighbour lost while
  // the transfers ran (% of their window), and in how many repeats they outlasted it.
  std::optional<double> neighbour_slowdown_pct;
  int outlasted_neighbour = 0;
  std::string method;  // cuda-graph, stream, host-clock, beside-compute
  int repeats = 0, launches_per_repeat = 0, buffer_sets = 0;
  std::string error;  // set when this row could not be measured
};

/// Where and how the rows were measured (the JSON's header).
struct RunInfo {
  std::optional<std::string> gpu;  // device name; none without a GPU
  std::string driver = "none";
  std::string cuda;  // runtime version (and the toolkit the tool was built with)
  std::string commit, date, host;
  std::optional<double> copy_bandwidth_gbps;
  std::optional<std::int64_t> l2_bytes;
  std::string gpu_rows_skipped;  // why, when no GPU rows were run
  std::uint64_t seed = 0;
  bool quick = false;
  std::vector<std::string> notes;
};

/// Prints the rows as one aligned table, then the notes.
void print_table(std::ostream& out, const std::vector<Row>& rows, const RunInfo& info);

/// Writes the rows and the run information as JSON to `path`.
void write_json(const std::string& path, const std::vector<Row>& rows, const RunInfo& info);

/// `text` as a JSON string literal (quotes included).
std::string json_string(const std::string& text);

}  // namespace pagedkv::compare
