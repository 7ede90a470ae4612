// The fuzzer's GPU side: an accepted call run again on the naive and the optimized kernels and
// judged against the CPU reference under the op's agreement rule. Only the [gpu] test uses it.
#pragma once

#include <cstdint>
#include <string>

#include "fuzz_call.h"
#include "mutations.h"

namespace pagedkv::fuzz {

/// Runs `spec` (built from `seed`, with `mutation`'s poke if any) on the naive and the
/// optimized kernels and compares every byte of every buffer with `cpu_result` (the same call
/// after the CPU reference ran). Bit-exact ops must match byte for byte; an op whose card
/// states the reduction rule (its agreement_rule does not start with "bit-exact") may differ in
/// an f32/f16/bf16 output within reduction_tolerance(dtype, the output's last dimension).
/// Tensors go to the GPU; one that the op wants on the host (its error says "cpu") stays there.
/// \return "" when both agree, else what differs.
std::string device_disagreement(const OpEntry& op, const CallSpec& spec, const Mutation* mutation,
                                const FuzzCall& cpu_result, std::uint64_t seed);

}  // namespace pagedkv::fuzz
