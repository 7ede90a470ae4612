// Invalid calls for the fuzzer: a valid call with exactly one thing broken, chosen through the
// op's argument list (its reflection), never through per-op code.
//
// What can be broken: a tensor's shape (a dimension +1 or -1, a dimension added or removed),
// its dtype, a stride (negative, or zero so that elements overlap), its device tag, its data
// pointer (null while it has elements), one entry of an integer tensor (an index far out of
// range or negative), an output placed in another tensor's memory, or a scalar (0, -1, a huge
// or a non-finite number, another word for a string).
//
// Some of these are still valid calls (a dtype the op also accepts, a shape some other rule
// allows, a negative slot that means padding): whether validate accepts the call decides, and
// an accepted mutation is run and checked like a valid call. A few can never be valid, and the
// fuzzer fails when the op accepts them: an output with elements that is on the wrong device,
// has no memory, maps two elements to one address, or shares memory with another argument.
#pragma once

#include <cstdint>
#include <string>

#include "fuzz_call.h"
#include "valid_calls.h"

namespace pagedkv::fuzz {

/// One broken thing.
struct Mutation {
  CallSpec spec;              // the call with the change
  std::string what;           // "key_cache: stride(1) = -128 (was 128)"
  std::string argument;       // the argument that was changed
  bool must_reject = false;   // no op may accept it (see the file comment)
  bool same_meaning = false;  // only the layout changed: an accepted call must give the same
                              // logical output as the valid call
  // An entry of an integer tensor to overwrite after the call is built (-1: none).
  int poke_argument = -1;
  std::int64_t poke_element = 0;  // element in row-major logical order
  std::int64_t poke_value = 0;
};

/// A random mutation of `valid`; false when nothing could be changed (no arguments).
bool mutate(const CallSpec& valid, Rng& rng, Mutation& mutation);

/// Writes the mutation's integer entry into the built call, if it has one.
void apply_poke(const Mutation& mutation, FuzzCall& call);

}  // namespace pagedkv::fuzz
