// The fuzzer's loop over one op (fuzz_op.h).
#include "fuzz_op.h"

#include <cctype>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <exception>
#include <sstream>

#include "device_check.h"
#include "fuzz_call.h"
#include "mutations.h"
#include "pagedkv/error.h"
#include "valid_calls.h"

namespace pagedkv::fuzz {

namespace {

constexpr std::size_t kFailuresKept = 5;

// splitmix64: one well-mixed seed per (run seed, op, case), so that any case of any op can be
// rerun alone from the printed numbers.
std::uint64_t mix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Whether `text` holds `word` as a whole identifier (so "k_scale" is not found in "k_scale_2"
// nor "key" in "key_cache").
bool names(const std::string& text, const std::string& word) {
  auto is_ident = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  for (std::size_t at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) {
    const bool start_ok = at == 0 || !is_ident(text[at - 1]);
    const std::size_t end = at + word.size();
    const bool end_ok = end == text.size() || !is_ident(text[end]);
    if (start_ok && end_ok) return true;
  }
  return false;
}

// One call of the op on the CPU through its checked entry point.
struct Outcome {
  bool accepted = false;
  bool other_exception = false;
  std::string message;  // the error, when rejected
};

Outcome run_cpu(const OpEntry& op, const FuzzCall& call) {
  Outcome outcome;
  try {
    op.run(Impl::cpu, call.values, nullptr);
    outcome.accepted = true;
  } catch (const InvalidArgument& error) {
    outcome.message = error.what();
  } catch (const std::exception& error) {
    outcome.other_exception = true;
    outcome.message = error.what();
  }
  return outcome;
}

// The first byte that an accepted run changed outside its outputs' elements, as text ("" when
// none).
std::string stray_write(const CallSpec& spec, const FuzzCall& call,
                        const std::vector<std::uint8_t>& before) {
  const std::vector<std::vector<std::uint8_t>> writable = writable_bytes(spec, call);
  std::size_t at = 0;
  for (std::size_t b = 0; b < call.buffers.size(); ++b) {
    const Buffer& buffer = call.buffers[b];
    if (std::memcmp(buffer.data(), before.data() + at, buffer.size()) == 0) {
      at += buffer.size();  // untouched: nothing to look at byte by byte
      continue;
    }
    for (std::size_t k = 0; k < buffer.size(); ++k, ++at) {
      if (writable[b][k] || buffer.data()[k] == before[at]) continue;
      std::string owner = "?";
      for (std::size_t i = 0; i < call.buffer_of.size(); ++i) {
        if (call.buffer_of[i] == static_cast<int>(b)) owner = spec.op->arguments[i].name;
      }
      return "byte " + std::to_string(k) + " of the buffer of " + owner +
             " changed outside the outputs' elements (a guard, a gap or an input)";
    }
  }
  return "";
}

// Everything about one op's run that a failure report needs.
class OpFuzzer {
 public:
  OpFuzzer(const OpEntry& op, std::size_t op_index, const FuzzConfig& config)
      : op_(op), op_index_(op_index), config_(config) {
    report_.op = op.name;
  }

  OpReport run() {
    for (int k = 0; k < config_.cases; ++k) run_case(k);
    return report_;
  }

 private:
  void run_case(int k) {
    case_ = k;
    const std::uint64_t seed = mix(config_.seed ^ mix(op_index_ * 1000003ull + k));
    Rng rng(seed);
    BaseCall base;
    std::string why;
    if (!draw_base_call(op_, static_cast<std::size_t>(k), rng, base, why)) return skip(why);
    point_ = base.point;
    // The registry's own call, in its own layout: the reference output of this case.
    FuzzCall reference_call = build(base.spec, seed);
    const Outcome reference = run_cpu(op_, reference_call);
    if (!reference.accepted)
      return skip("the registry call (" + point_ + ") was rejected: " + reference.message);
    reference_ = logical_outputs(base.spec, reference_call);

    // A valid call in another layout.
    const CallSpec relaid = with_random_layouts(base.spec, rng);
    const bool relaid_ok = check(relaid, nullptr, "valid call, new layout", seed);
    // The call that is broken: the new layout when the op took it.
    const CallSpec& valid = relaid_ok ? relaid : base.spec;
    for (int m = 0; m < kMutationsPerCase; ++m) {
      Mutation mutation;
      if (!mutate(valid, rng, mutation)) break;
      check(mutation.spec, &mutation, mutation.argument + ": " + mutation.what, seed + 1 + m);
    }
  }

  // Runs one call and applies the rules; returns whether the op accepted it.
  bool check(const CallSpec& spec, const Mutation* mutation, const std::string& what,
             std::uint64_t seed) {
    ++report_.calls;
    FuzzCall call = build(spec, seed);
    if (mutation) apply_poke(*mutation, call);
    const std::vector<std::uint8_t> before = call.snapshot();
    if (config_.verbose) {
      std::printf("%s, case %d (%s): %s\n%s", op_.name.c_str(), case_, point_.c_str(), what.c_str(),
                  describe(spec).c_str());
      std::fflush(stdout);
    }
    const Outcome outcome = run_cpu(op_, call);
    if (outcome.other_exception) {
      fail(spec, what,
           "threw an exception other than pagedkv::InvalidArgument: " + outcome.message);
      return false;
    }
    if (!outcome.accepted) {
      ++report_.invalid;
      if (!mutation) ++report_.layouts_rejected;
      if (call.snapshot() != before)
        fail(spec, what, "rejected, but bytes changed: " + outcome.message);
      bool named = false;
      for (const ArgInfo& arg : op_.arguments) named = named || names(outcome.message, arg.name);
      if (!named)
        fail(spec, what, "the message names none of the op's arguments: " + outcome.message);
      if (mutation && named && !names(outcome.message, mutation->argument)) {
        ++report_.other_argument_named;
        if (config_.verbose) std::printf("  OTHER ARGUMENT NAMED: %s\n", outcome.message.c_str());
      }
      return false;
    }
    ++report_.valid;
    if (mutation) {
      ++report_.mutations_accepted;
      if (mutation->must_reject) {
        fail(spec, what, "accepted a call that can never be valid");
        return true;
      }
    }
    const std::string stray = stray_write(spec, call, before);
    if (!stray.empty()) fail(spec, what, stray);
    if (!mutation || mutation->same_meaning) {
      // Only the layout changed: the same logical output as the registry's call.
      if (logical_outputs(spec, call) != reference_)
        fail(spec, what, "the output differs from the registry call's (same values, other layout)");
    } else {
      // Another call the op accepts: at least it must be deterministic.
      FuzzCall again = build(spec, seed);
      if (mutation) apply_poke(*mutation, again);
      run_cpu(op_, again);
      if (again.snapshot() != call.snapshot()) fail(spec, what, "two runs of the call differ");
    }
    if (config_.gpu) {
      const std::string disagreement = device_disagreement(op_, spec, mutation, call, seed);
      if (!disagreement.empty()) fail(spec, what, disagreement);
    }
    return true;
  }

  void skip(const std::string& why) {
    ++report_.skipped;
    if (report_.first_skip_reason.empty()) report_.first_skip_reason = why;
  }

  void fail(const CallSpec& spec, const std::string& what, const std::string& problem) {
    ++report_.failures;
    if (report_.failure_texts.size() >= kFailuresKept) return;
    std::ostringstream text;
    text << op_.name << ", case " << case_ << " (" << point_ << "): " << what << "\n  " << problem
         << "\n  reproduce: PAGEDKV_FUZZ_SEED=" << config_.seed << " PAGEDKV_FUZZ_OP=" << op_.name
         << " PAGEDKV_FUZZ_CASES=" << case_ + 1 << "\n  call:\n"
         << describe(spec);
    report_.failure_texts.push_back(text.str());
  }

  const OpEntry& op_;
  std::size_t op_index_;
  const FuzzConfig& config_;
  OpReport report_;
  int case_ = 0;
  std::string point_;
  std::vector<std::uint8_t> reference_;
};

}  // namespace

FuzzConfig config_from_environment(int default_cases, bool gpu) {
  FuzzConfig config;
  config.gpu = gpu;
  config.cases = default_cases;
  config.seed = 20261206;
  if (const char* cases = std::getenv("PAGEDKV_FUZZ_CASES")) config.cases = std::atoi(cases);
  if (const char* seed = std::getenv("PAGEDKV_FUZZ_SEED"))
    config.seed = std::strtoull(seed, nullptr, 0);
  if (const char* op = std::getenv("PAGEDKV_FUZZ_OP")) config.only_op = op;
  if (const char* verbose = std::getenv("PAGEDKV_FUZZ_VERBOSE")) config.verbose = *verbose == '1';
  return config;
}

OpReport fuzz_op(const OpEntry& op, std::size_t op_index, const FuzzConfig& config) {
  return OpFuzzer(op, op_index, config).run();
}

}  // namespace pagedkv::fuzz
