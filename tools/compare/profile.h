// `pagedkv compare <op> --profile`: one launch of each implementation inside an NVTX range,
// and, where Nsight Compute (ncu) is installed, the few metrics a learner should read first,
// printed as one table. This file holds the part that needs no GPU: the metrics asked for, the
// parsing of ncu's CSV, and the table.
#pragma once

#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace pagedkv::compare {

/// \brief The ncu metrics the profile collects (names as Nsight Compute spells them on sm_80
/// and later): time, DRAM throughput and bytes, registers, achieved occupancy, sectors per
/// global load and store request, warp instructions executed, and the stall reasons.
/// \return the metric names.
const std::vector<std::string>& profile_metrics();

/// \brief One kernel's metrics from ncu's CSV: the kernel name and each metric's value text.
struct KernelProfile {
  std::string kernel;                          ///< the demangled name, as ncu prints it
  std::map<std::string, std::string> metrics;  ///< metric name -> value (base units)
  /// \brief A metric as a number (thousands separators removed); none when absent or "n/a".
  /// \param name the metric's name.
  /// \return the value.
  std::optional<double> number(const std::string& name) const;
};

/// \brief The kernels of `ncu --csv --page raw --print-units base` output, in launch order.
/// Lines before the header (ncu's "==PROF==" messages, the program's own output) are skipped.
/// \param text ncu's standard output.
/// \return one entry per profiled kernel.
std::vector<KernelProfile> parse_ncu_csv(const std::string& text);

/// \brief One line of the profile table: which launch, and what ncu measured for one kernel.
struct ProfileLine {
  std::string point;   ///< "op workload variant slots size"
  std::string impl;    ///< naive, optimized, copy_kernel
  KernelProfile kernel;
};

/// \brief The largest stall reason of a kernel: its name (e.g. "long_scoreboard") and the
/// cycles per issued instruction it accounts for.
/// \param kernel the kernel.
/// \return the reason and its value, or none when ncu gave no stall metrics.
std::optional<std::pair<std::string, double>> top_stall(const KernelProfile& kernel);

/// \brief Prints the profile table and a legend of its columns.
/// \param out the stream.
/// \param lines the kernels, in launch order.
void print_profile(std::ostream& out, const std::vector<ProfileLine>& lines);

}  // namespace pagedkv::compare
