// `pagedkv compare --profile` (tools/compare/profile.h): reading Nsight Compute's CSV and the
// table made from it. The GPU side (ncu itself) runs in the GPU script; this is what can fail
// without one: a CSV that ncu lays out with its messages, a units line and quoted numbers.
#include <catch2/catch.hpp>

#include <algorithm>
#include <sstream>
#include <string>

#include "profile.h"

using namespace pagedkv::compare;

namespace {

// What `ncu --csv --page raw --print-units base` prints for two kernels, with the profiled
// program's own line and ncu's messages around it.
const char* const kNcuOutput =
    "==PROF== Connected to process 123 (/build/pagedkv)\n"
    "[1/1] some line the program printed\n"
    "==PROF== Profiling \"kernel_a\": 0%....50%....100% - 9 passes\n"
    "\"ID\",\"Process ID\",\"Kernel Name\",\"gpu__time_duration.sum\","
    "\"launch__registers_per_thread\",\"dram__bytes_read.sum\",\"dram__bytes_write.sum\","
    "\"smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio\","
    "\"smsp__average_warps_issue_stalled_wait_per_issue_active.ratio\"\n"
    "\"\",\"\",\"\",\"nsecond\",\"register/thread\",\"byte\",\"byte\",\"\",\"\"\n"
    "\"0\",\"123\",\"void ns::kernel_a<float, 8>(Params)\",\"12,345\",\"40\",\"1,000,000\","
    "\"500,000\",\"7.5\",\"1.25\"\n"
    "\"1\",\"123\",\"copy \"\"quoted\"\" kernel\",\"2000\",\"n/a\",\"10\",\"20\",\"0.5\",\"3\"\n"
    "==PROF== Disconnected from process 123\n";

}  // namespace

TEST_CASE("profile: ncu's CSV gives one entry per kernel, numbers without separators",
          "[compare][cpu]") {
  const std::vector<KernelProfile> kernels = parse_ncu_csv(kNcuOutput);
  REQUIRE(kernels.size() == 2);
  CHECK(kernels[0].kernel == "void ns::kernel_a<float, 8>(Params)");
  CHECK(kernels[0].number("gpu__time_duration.sum") == std::optional<double>(12345));
  CHECK(kernels[0].number("dram__bytes_read.sum") == std::optional<double>(1000000));
  CHECK(kernels[1].kernel == "copy \"quoted\" kernel");
  CHECK_FALSE(kernels[1].number("launch__registers_per_thread").has_value());  // "n/a"
  CHECK_FALSE(kernels[1].number("no_such_metric").has_value());

  const auto stall_a = top_stall(kernels[0]);
  REQUIRE(stall_a.has_value());
  CHECK(stall_a->first == "long_scoreboard");
  CHECK(stall_a->second == 7.5);
  CHECK(top_stall(kernels[1])->first == "wait");

  CHECK(parse_ncu_csv("==PROF== ERROR: no kernels were profiled\n").empty());
}

TEST_CASE("profile: the metrics asked for include every column of the table", "[compare][cpu]") {
  const std::vector<std::string>& metrics = profile_metrics();
  for (const char* needed :
       {"gpu__time_duration.sum", "dram__throughput.avg.pct_of_peak_sustained_elapsed",
        "launch__registers_per_thread", "sm__warps_active.avg.pct_of_peak_sustained_active",
        "l1tex__average_t_sectors_per_request_pipe_lsu_mem_global_op_ld.ratio",
        "smsp__inst_executed.sum",
        "smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio"}) {
    INFO(needed);
    CHECK(std::find(metrics.begin(), metrics.end(), needed) != metrics.end());
  }
  std::ostringstream table;
  print_profile(table, {{"op W1 v random 16", "optimized", parse_ncu_csv(kNcuOutput)[0]}});
  CHECK_THAT(table.str(), Catch::Contains("ns::kernel_a<float, 8>"));
  CHECK_THAT(table.str(), Catch::Contains("12.3"));             // µs from 12,345 ns
  CHECK_THAT(table.str(), Catch::Contains("0.002"));            // GB read + written
  CHECK_THAT(table.str(), Catch::Contains("long_scoreboard 7.5"));
}
