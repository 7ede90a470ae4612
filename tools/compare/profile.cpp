// The profile table: which metrics, how ncu's CSV is read, how the table is printed.
#include "profile.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace pagedkv::compare {

namespace {

const char* const kStallPrefix = "smsp__average_warps_issue_stalled_";
const char* const kStallSuffix = "_per_issue_active.ratio";

// The stall reasons worth naming for memory-bound kernels, as ncu spells them.
const std::vector<std::string>& stall_reasons() {
  static const std::vector<std::string> reasons = {
      "long_scoreboard", "short_scoreboard", "lg_throttle",      "mio_throttle",
      "math_pipe_throttle", "wait",          "barrier",          "not_selected",
      "branch_resolving", "no_instruction",  "dispatch_stall",   "drain",
      "membar",           "tex_throttle"};
  return reasons;
}

// One CSV line split into fields: ncu quotes every field and doubles a quote inside one.
std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> fields;
  std::string field;
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.push_back(field);
      field.clear();
    } else if (c != '\r') {
      field += c;
    }
  }
  fields.push_back(field);
  return fields;
}

std::string fixed(std::optional<double> value, const char* format) {
  if (!value) return "—";
  char text[64];
  std::snprintf(text, sizeof text, format, *value);
  return text;
}

}  // namespace

const std::vector<std::string>& profile_metrics() {
  static const std::vector<std::string> metrics = [] {
    std::vector<std::string> names = {
        "gpu__time_duration.sum",
        "dram__throughput.avg.pct_of_peak_sustained_elapsed",
        "dram__bytes_read.sum",
        "dram__bytes_write.sum",
        "launch__registers_per_thread",
        "sm__warps_active.avg.pct_of_peak_sustained_active",
        "l1tex__average_t_sectors_per_request_pipe_lsu_mem_global_op_ld.ratio",
        "l1tex__average_t_sectors_per_request_pipe_lsu_mem_global_op_st.ratio",
        "smsp__inst_executed.sum"};
    for (const std::string& reason : stall_reasons())
      names.push_back(kStallPrefix + reason + kStallSuffix);
    return names;
  }();
  return metrics;
}

std::optional<double> KernelProfile::number(const std::string& name) const {
  const auto it = metrics.find(name);
  if (it == metrics.end()) return std::nullopt;
  std::string digits;
  for (const char c : it->second)
    if (c != ',') digits += c;
  char* end = nullptr;
  const double value = std::strtod(digits.c_str(), &end);
  if (digits.empty() || end != digits.c_str() + digits.size()) return std::nullopt;
  return value;
}

std::vector<KernelProfile> parse_ncu_csv(const std::string& text) {
  std::vector<KernelProfile> kernels;
  std::istringstream lines(text);
  std::string line;
  std::vector<std::string> header;
  while (std::getline(lines, line)) {
    if (header.empty()) {
      if (line.rfind("\"ID\"", 0) == 0) header = csv_fields(line);
      continue;
    }
    if (line.empty() || line[0] != '"') continue;
    const std::vector<std::string> fields = csv_fields(line);
    // The line after the header gives units (its ID is empty); data lines have a numeric ID.
    if (fields.size() != header.size() || fields[0].empty() ||
        fields[0].find_first_not_of("0123456789") != std::string::npos)
      continue;
    KernelProfile kernel;
    for (std::size_t i = 0; i < header.size(); ++i) {
      if (header[i] == "Kernel Name") kernel.kernel = fields[i];
      kernel.metrics[header[i]] = fields[i];
    }
    kernels.push_back(kernel);
  }
  return kernels;
}

std::optional<std::pair<std::string, double>> top_stall(const KernelProfile& kernel) {
  std::optional<std::pair<std::string, double>> top;
  for (const std::string& reason : stall_reasons()) {
    const std::optional<double> value = kernel.number(kStallPrefix + reason + kStallSuffix);
    if (value && (!top || *value > top->second)) top = std::make_pair(reason, *value);
  }
  return top;
}

void print_profile(std::ostream& out, const std::vector<ProfileLine>& lines) {
  const std::vector<std::string> header = {"point",  "impl",   "kernel",   "µs",
                                           "DRAM %", "GB r+w", "regs",     "occup. %",
                                           "ld sect/req", "st sect/req", "warp insts",
                                           "top stall (cycles/inst)"};
  std::vector<std::vector<std::string>> cells;
  for (const ProfileLine& line : lines) {
    const KernelProfile& k = line.kernel;
    std::string name = k.kernel.substr(0, k.kernel.find('('));
    if (name.size() > 40) name = name.substr(0, 37) + "...";
    const std::optional<double> ns = k.number("gpu__time_duration.sum");
    const std::optional<double> read = k.number("dram__bytes_read.sum");
    const std::optional<double> write = k.number("dram__bytes_write.sum");
    const auto stall = top_stall(k);
    cells.push_back(
        {line.point, line.impl, name, fixed(ns ? std::optional<double>(*ns / 1e3) : ns, "%.1f"),
         fixed(k.number("dram__throughput.avg.pct_of_peak_sustained_elapsed"), "%.1f"),
         read && write ? fixed((*read + *write) / 1e9, "%.3f") : "—",
         fixed(k.number("launch__registers_per_thread"), "%.0f"),
         fixed(k.number("sm__warps_active.avg.pct_of_peak_sustained_active"), "%.1f"),
         fixed(k.number("l1tex__average_t_sectors_per_request_pipe_lsu_mem_global_op_ld.ratio"),
               "%.2f"),
         fixed(k.number("l1tex__average_t_sectors_per_request_pipe_lsu_mem_global_op_st.ratio"),
               "%.2f"),
         fixed(k.number("smsp__inst_executed.sum"), "%.0f"),
         stall ? stall->first + " " + fixed(stall->second, "%.1f") : "—"});
  }
  // Display width: UTF-8 continuation bytes take no column ("µs", "—").
  const auto columns = [](const std::string& text) {
    std::size_t n = 0;
    for (const char c : text) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    return n;
  };
  std::vector<std::size_t> width(header.size());
  for (std::size_t c = 0; c < header.size(); ++c) {
    width[c] = columns(header[c]);
    for (const auto& row : cells) width[c] = std::max(width[c], columns(row[c]));
  }
  const auto print_row = [&](const std::vector<std::string>& row) {
    std::string text;
    for (std::size_t c = 0; c < row.size(); ++c) {
      if (c) text += "  ";
      text += row[c];
      if (c + 1 < row.size()) text += std::string(width[c] - columns(row[c]), ' ');
    }
    out << text << "\n";
  };
  print_row(header);
  for (const auto& row : cells) print_row(row);
  out << "\nColumns (Nsight Compute metrics, one launch each, clocks locked by ncu to base):\n"
         "  µs            gpu__time_duration.sum\n"
         "  DRAM %        dram__throughput.avg.pct_of_peak_sustained_elapsed\n"
         "  GB r+w        dram__bytes_read.sum + dram__bytes_write.sum\n"
         "  regs          launch__registers_per_thread\n"
         "  occup. %      sm__warps_active.avg.pct_of_peak_sustained_active (achieved occupancy)\n"
         "  sect/req      l1tex__average_t_sectors_per_request_pipe_lsu_mem_global_op_{ld,st}:"
         " 32-byte sectors per warp instruction; contiguous lanes give 4 for 4-byte accesses,"
         " 16 for 16-byte ones\n"
         "  warp insts    smsp__inst_executed.sum\n"
         "  top stall     the largest smsp__average_warps_issue_stalled_<reason>_per_issue_active"
         " (long_scoreboard: waiting for memory)\n";
}

}  // namespace pagedkv::compare
