// Valid calls for the fuzzer, drawn from the op registry instead of written per op.
//
// Every op's card lists its workload points and can build a case for one (OpEntry::make_case);
// the case's cpu_arguments() is a valid call. The fuzzer shrinks a point (0, 1, 2 or a few
// tokens or blocks, a small cache) so that thousands of calls fit in a CI budget, and then
// changes only how tensors lie in memory (padded rows, a misaligned first element, another
// order of the dimensions in memory): the logical contents stay the same, so the op must give
// the same output element for element, wherever it accepts the layout.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>

#include "fuzz_call.h"
#include "pagedkv/registry.h"

namespace pagedkv::fuzz {

/// The fuzzer's random numbers (one generator per case, seeded from the run's seed).
using Rng = std::mt19937_64;

/// Uniform in [0, n).
inline std::int64_t below(Rng& rng, std::int64_t n) {
  return static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(n));
}

/// A valid call of an op: the registry case whose host memory the spec's sources view (kept
/// alive with it) and the point it came from.
struct BaseCall {
  std::unique_ptr<OpCase> owner;  // holds the memory the spec's sources point to
  CallSpec spec;
  std::string point;  // "W1 NHD bf16, random slots, 2 tokens, 5 blocks"
};

/// Standard point number `index` of `op` (cycling through all of them, so that a run of as
/// many cases as points sees every dtype, cache kind and layout the registry has), shrunk at
/// random, made into a case. Returns false (with `why`) when the op's case builder rejects the
/// point even at its standard size.
bool draw_base_call(const OpEntry& op, std::size_t index, Rng& rng, BaseCall& base,
                    std::string& why);

/// `base` with every tensor laid out anew at random (groups of tensors that shared a layout
/// keep sharing one): the same logical call in other memory. The op may reject a layout (e.g.
/// rows that must be packed); the fuzzer counts that and moves on.
CallSpec with_random_layouts(const CallSpec& base, Rng& rng);

}  // namespace pagedkv::fuzz
