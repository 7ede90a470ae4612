// Table and JSON output of the comparison tool.
#include "report.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "pagedkv/error.h"

namespace pagedkv::compare {

namespace {

// Columns on screen: UTF-8 aware (µ and — are one column, several bytes).
std::size_t display_width(const std::string& text) {
  std::size_t width = 0;
  for (unsigned char c : text) width += (c & 0xC0) != 0x80;
  return width;
}

std::string format(const char* pattern, double value) {
  char text[64];
  std::snprintf(text, sizeof text, pattern, value);
  return text;
}

std::string format_us(const std::optional<double>& us) {
  if (!us) return "—";
  if (*us < 10) return format("%.2f", *us);
  if (*us < 1000) return format("%.1f", *us);
  return format("%.0f", *us);
}

// 3.1e-4 rather than 3.1e-04; "inf" for an infinite error (a NaN left in the output).
std::string short_exponent(double value) {
  if (!std::isfinite(value)) return "inf";
  if (value == 0) return "0";
  std::string text = format("%.1e", value);
  const auto e = text.find('e');
  std::size_t digits = e + 2;  // after the exponent's sign
  while (digits + 1 < text.size() && text[digits] == '0') text.erase(digits, 1);
  return text;
}

// " blk", " seq" or " tok" after a size in the table.
std::string size_suffix(const std::string& unit) {
  if (unit == "blocks") return " blk";
  if (unit == "sequences") return " seq";
  return " tok";
}

std::string agreement_text(const Row& row) {
  if (!row.error.empty())  // a point beyond the device's memory says "skipped: ..." itself
    return row.error.rfind("skipped:", 0) == 0 ? row.error : "ERROR: " + row.error;
  if (row.impl == "cpu") return "reference";
  if (row.neighbour_slowdown_pct) {
    std::string text = "neighbour slowed " + format("%.1f%%", *row.neighbour_slowdown_pct);
    if (row.outlasted_neighbour)
      text += ", outlasted it " + std::to_string(row.outlasted_neighbour) + "x";
    return text;
  }
  if (!row.bit_exact) return "—";
  if (row.max_ulp && row.ulp_bound) {
    // An element-wise op with transcendentals: its largest ulp distance next to the bound.
    const std::string ulp = format("%.3g", *row.max_ulp) +
                            (*row.max_ulp <= *row.ulp_bound ? " ≤ " : " > ") +
                            format("%.3g", *row.ulp_bound) + " ulp";
    return row.agrees.value_or(false) ? ulp : "DIFFERS: " + ulp;
  }
  if (row.rel_err && row.tolerance) {
    // A reduction: its relative error next to the bound.
    const bool within = *row.rel_err <= *row.tolerance;
    const std::string rel = "rel " + short_exponent(*row.rel_err) + (within ? " ≤ " : " > ") +
                            short_exponent(*row.tolerance);
    if (row.agrees.value_or(false)) return rel;
    if (!within) return "DIFFERS: " + rel;
    return "DIFFERS: " + rel + ", but the bit-exact part differs (" +
           std::to_string(row.bytes_differing) + " bytes differ in all)";
  }
  if (*row.bit_exact) return "bit-exact";
  std::ostringstream text;
  text << "DIFFERS: " << row.bytes_differing << " bytes, max err "
       << (row.max_abs_err ? format("%.3g", *row.max_abs_err) : std::string("inf"));
  return text.str();
}

std::string json_number(const std::optional<double>& value) {
  if (!value || !std::isfinite(*value)) return "null";
  char text[64];
  std::snprintf(text, sizeof text, "%.6g", *value);
  return text;
}

std::string json_bool(const std::optional<bool>& value) {
  if (!value) return "null";
  return *value ? "true" : "false";
}

}  // namespace

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
          out += escaped;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

void print_table(std::ostream& out, const std::vector<Row>& rows, const RunInfo& info) {
  const std::vector<std::string> header = {"op",        "workload", "variant",   "slots",
                                           "size",      "impl",     "median µs", "GB/s",
                                           "% of copy", "agreement"};
  const std::vector<bool> right = {false, false, false, false, true,
                                   false, true,  true,  true,  false};
  std::vector<std::vector<std::string>> cells;
  for (const Row& row : rows) {
    cells.push_back({row.op, row.workload, row.variant, row.slots,
                     std::to_string(row.size) + size_suffix(row.size_unit),
                     row.impl, format_us(row.median_us), row.gbps ? format("%.1f", *row.gbps) : "—",
                     row.pct_of_copy ? format("%.1f%%", *row.pct_of_copy) : "—",
                     agreement_text(row)});
  }
  std::vector<std::size_t> width(header.size());
  for (std::size_t c = 0; c < header.size(); ++c) {
    width[c] = display_width(header[c]);
    for (const auto& line : cells)
      if (c + 1 < header.size()) width[c] = std::max(width[c], display_width(line[c]));
  }
  auto print_line = [&](const std::vector<std::string>& line) {
    std::string text;
    for (std::size_t c = 0; c < line.size(); ++c) {
      const std::size_t pad =
          width[c] > display_width(line[c]) ? width[c] - display_width(line[c]) : 0;
      if (c) text += "  ";
      if (c + 1 == line.size()) {
        text += line[c];  // the last column is not padded
      } else if (right[c]) {
        text += std::string(pad, ' ') + line[c];
      } else {
        text += line[c] + std::string(pad, ' ');
      }
    }
    out << text << "\n";
  };
  print_line(header);
  std::string rule;
  for (std::size_t c = 0; c < header.size(); ++c) {
    rule += std::string(c + 1 == header.size() ? 9 : width[c], '-');
    if (c + 1 < header.size()) rule += "  ";
  }
  out << rule << "\n";
  // A blank line between workload points keeps the table readable when a point has several
  // rows; a CPU-only run has one row per point and a blank line between ops instead.
  bool several_per_point = false;
  for (const Row& row : rows) several_per_point |= row.impl != "cpu";
  std::string previous;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& row = rows[i];
    std::string group = row.op;
    if (several_per_point)
      group +=
          "|" + row.workload + "|" + row.variant + "|" + row.slots + "|" + std::to_string(row.size);
    if (i && group != previous) out << "\n";
    previous = group;
    print_line(cells[i]);
  }
  out << "\n";
  if (info.gpu) {
    out << "GPU: " << *info.gpu << ", driver " << info.driver << ", CUDA " << info.cuda;
    if (info.copy_bandwidth_gbps)
      out << "; device copy (cudaMemcpyAsync D2D, read + write) "
          << format("%.0f", *info.copy_bandwidth_gbps) << " GB/s";
    out << "\n";
  } else {
    out << "GPU rows skipped: " << info.gpu_rows_skipped << "\n";
  }
  for (const std::string& note : info.notes) out << "* " << note << "\n";
}

void write_json(const std::string& path, const std::vector<Row>& rows, const RunInfo& info) {
  std::ostringstream json;
  json << "{\n";
  json << "  \"gpu\": " << (info.gpu ? json_string(*info.gpu) : "null") << ",\n";
  json << "  \"driver\": " << json_string(info.driver) << ",\n";
  json << "  \"cuda\": " << json_string(info.cuda) << ",\n";
  json << "  \"commit\": " << json_string(info.commit) << ",\n";
  json << "  \"date\": " << json_string(info.date) << ",\n";
  json << "  \"host\": " << json_string(info.host) << ",\n";
  json << "  \"copy_bandwidth_gbps\": " << json_number(info.copy_bandwidth_gbps) << ",\n";
  json << "  \"l2_bytes\": "
       << (info.l2_bytes ? std::to_string(*info.l2_bytes) : std::string("null")) << ",\n";
  json << "  \"gpu_rows_skipped\": "
       << (info.gpu ? std::string("null") : json_string(info.gpu_rows_skipped)) << ",\n";
  json << "  \"seed\": " << info.seed << ",\n";
  json << "  \"quick\": " << (info.quick ? "true" : "false") << ",\n";
  json << "  \"notes\": [";
  for (std::size_t i = 0; i < info.notes.size(); ++i)
    json << (i ? ",\n    " : "\n    ") << json_string(info.notes[i]);
  json << (info.notes.empty() ? "],\n" : "\n  ],\n");
  json << "  \"rows\": [";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    json << (i ? ",\n    {" : "\n    {");
    json << "\"op\": " << json_string(r.op) << ", \"workload\": " << json_string(r.workload)
         << ", \"variant\": " << json_string(r.variant) << ", \"slots\": " << json_string(r.slots)
         << ", \"impl\": " << json_string(r.impl) << ", " << json_string(r.size_unit) << ": "
         << r.size << ", \"size\": " << r.size << ", \"size_unit\": " << json_string(r.size_unit)
         << ", \"bytes\": " << r.bytes << ", \"median_us\": " << json_number(r.median_us)
         << ", \"gbps\": " << json_number(r.gbps)
         << ", \"pct_of_copy\": " << json_number(r.pct_of_copy)
         << ", \"bit_exact\": " << json_bool(r.bit_exact)
         << ", \"max_abs_err\": " << json_number(r.max_abs_err)
         << ", \"bytes_differing\": " << r.bytes_differing
         << ", \"rel_err\": " << json_number(r.rel_err)
         << ", \"tolerance\": " << json_number(r.tolerance)
         << ", \"max_ulp\": " << json_number(r.max_ulp)
         << ", \"ulp_bound\": " << json_number(r.ulp_bound)
         << ", \"agrees\": " << json_bool(r.agrees)
         << ", \"neighbour_slowdown_pct\": " << json_number(r.neighbour_slowdown_pct)
         << ", \"outlasted_neighbour\": " << r.outlasted_neighbour
         << ", \"method\": " << json_string(r.method) << ", \"repeats\": " << r.repeats
         << ", \"launches_per_repeat\": " << r.launches_per_repeat
         << ", \"buffer_sets\": " << r.buffer_sets
         << ", \"error\": " << (r.error.empty() ? std::string("null") : json_string(r.error))
         << "}";
  }
  json << (rows.empty() ? "]\n" : "\n  ]\n");
  json << "}\n";
  std::ofstream file(path);
  PAGEDKV_CHECK(file.good(), "--json: cannot write \"", path, "\"");
  file << json.str();
  file.close();
  PAGEDKV_CHECK(!file.fail(), "--json: writing \"", path, "\" failed");
}

}  // namespace pagedkv::compare
