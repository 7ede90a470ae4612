// The fuzzer over every registered op (tests/fuzz/): a CPU run in every CI run (a bounded
// budget, also under ASan + UBSan) and a [gpu] run that adds the naive and optimized kernels.
//
// Budget and seed come from the environment (tests/fuzz/fuzz_op.h): PAGEDKV_FUZZ_CASES,
// PAGEDKV_FUZZ_SEED, PAGEDKV_FUZZ_OP. The test prints, per op, what it tried and found, and on
// a failure the case and the variables that reproduce it.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>

#include "fuzz/fuzz_op.h"
#include "pagedkv/registry.h"
#include "support.h"

namespace {

// Registry calls per op in CI. Sanitizer builds (Debug, instrumented) run several times
// slower, so they try fewer; both stay well under a minute on two cores.
#if defined(__SANITIZE_ADDRESS__)
constexpr int kDefaultCases = 50;
#else
constexpr int kDefaultCases = 400;
#endif

void fuzz_every_op(bool gpu) {
  const pagedkv::fuzz::FuzzConfig config =
      pagedkv::fuzz::config_from_environment(kDefaultCases, gpu);
  std::printf("fuzzer: seed %llu, %d registry calls per op (x %d mutations)%s\n",
              static_cast<unsigned long long>(config.seed), config.cases,
              pagedkv::fuzz::kMutationsPerCase, gpu ? ", CPU + naive + optimized" : ", CPU");
  std::printf("%-38s %6s %6s %8s %8s %8s %8s %7s %8s\n", "op", "calls", "valid", "invalid",
              "(layout)", "(other)", "(mut ok)", "skipped", "failures");
  const auto& registry = pagedkv::op_registry();
  int covered = 0;
  for (std::size_t i = 0; i < registry.size(); ++i) {
    const pagedkv::OpEntry& op = registry[i];
    if (!config.only_op.empty() && op.name != config.only_op) continue;
    const auto start = std::chrono::steady_clock::now();
    const pagedkv::fuzz::OpReport report = pagedkv::fuzz::fuzz_op(op, i, config);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%-38s %6d %6d %8d %8d %8d %8d %7d %8d  %.1f s\n", report.op.c_str(), report.calls,
                report.valid, report.invalid, report.layouts_rejected, report.other_argument_named,
                report.mutations_accepted, report.skipped, report.failures, seconds);
    if (!report.first_skip_reason.empty())
      std::printf("    first skip: %s\n", report.first_skip_reason.c_str());
    for (const std::string& text : report.failure_texts)
      std::printf("  FAILURE %s\n", text.c_str());
    std::fflush(stdout);
    INFO(report.op << ": " << report.failures << " failures (seed " << config.seed << ")");
    CHECK(report.failures == 0);
    // Every op must be exercised: a call that was made and checked, valid and invalid.
    if (config.cases > 0) {
      CHECK(report.valid > 0);
      CHECK(report.invalid > 0);
    }
    ++covered;
  }
  CHECK(covered > 0);
}

}  // namespace

TEST_CASE("fuzz: every registered op, CPU reference", "[fuzz]") { fuzz_every_op(false); }

TEST_CASE("fuzz: every registered op, CPU, naive and optimized", "[fuzz][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  fuzz_every_op(true);
}
