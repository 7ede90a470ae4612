// The fuzzer's loop over one op: valid calls in random layouts and calls with one thing broken,
// each checked, counted, and described well enough to reproduce when it fails.
//
// The rules (a failure is a bug in the op, never "the fuzzer was unlucky"):
// - A valid call in another layout must be accepted or rejected cleanly; when accepted, it must
//   give the registry call's output element for element, and write nothing but its outputs'
//   elements (inputs, gaps between elements and guard bytes keep their bytes).
// - A broken call must either be rejected with pagedkv::InvalidArgument whose message names one
//   of the op's arguments, with every byte of every buffer (guards included) unchanged, or be
//   accepted, and then it is a valid call: it runs and is checked like one (nothing written
//   outside its outputs, the same bytes when run twice; the same logical output when only the
//   layout changed). Mutations that can never be valid (mutations.h) must be rejected.
// - With a GPU (the [gpu] test), every accepted call also runs on the naive and optimized
//   kernels, which must agree with the CPU reference under the op's agreement rule.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pagedkv/registry.h"

namespace pagedkv::fuzz {

/// How much to fuzz, from the environment: PAGEDKV_FUZZ_CASES (registry calls per op, each
/// tried in a new layout and broken kMutationsPerCase times), PAGEDKV_FUZZ_SEED (the run's seed;
/// default: a fixed one, so CI is reproducible), PAGEDKV_FUZZ_OP (one op's name: only that op),
/// PAGEDKV_FUZZ_VERBOSE=1 (print every call before it runs: what to look at after a crash).
struct FuzzConfig {
  std::uint64_t seed = 0;
  int cases = 0;
  std::string only_op;
  bool verbose = false;
  bool gpu = false;  // also run naive and optimized (needs a CUDA device)
};

/// Mutations tried on each registry call.
inline constexpr int kMutationsPerCase = 4;

/// The configuration from the environment, `default_cases` when PAGEDKV_FUZZ_CASES is unset.
FuzzConfig config_from_environment(int default_cases, bool gpu);

/// What fuzzing one op did.
struct OpReport {
  std::string op;
  int calls = 0;                 // calls tried (valid layouts and mutations)
  int valid = 0;                 // accepted and checked as valid calls
  int invalid = 0;               // rejected, with the message and the bytes checked
  int layouts_rejected = 0;      // valid layouts the op does not take (counted within invalid)
  int mutations_accepted = 0;    // broken calls the op accepted (counted within valid)
  // Rejections whose message names another argument than the one changed (a rule relating
  // two arguments, e.g. kv_c's width checked as kv_cache's entry size): allowed, and counted.
  int other_argument_named = 0;
  int skipped = 0;               // registry calls that could not be made at the shrunk size
  int failures = 0;
  std::vector<std::string> failure_texts;  // the first few, each with what reproduces it
  std::string first_skip_reason;
};

/// Fuzzes `op` (the `op_index`-th registry entry, which keys its seeds) for `config.cases`
/// registry calls.
OpReport fuzz_op(const OpEntry& op, std::size_t op_index, const FuzzConfig& config);

}  // namespace pagedkv::fuzz
