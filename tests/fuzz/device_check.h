// The fuzzer's GPU side: an accepted call run again on the naive and the optimized kernels and
// judged against the CPU reference under the op's agreement rule. Only the [gpu] test uses it.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "fuzz_call.h"
#include "mutations.h"

namespace pagedkv::fuzz {

/// A call on the GPU: a fresh host build of `spec`, every buffer uploaded except those of the
/// arguments kept on the host, and the values that point into the device copies.
struct DeviceCall {
  FuzzCall host;               // fresh host build (the kept tensors point into it)
  std::vector<Buffer> device;  // one per host buffer (empty when kept on the host)
  std::vector<ArgValue> values;

  /// Every byte of every buffer as it is now (device buffers downloaded first).
  std::vector<std::uint8_t> snapshot();
};

/// Builds `spec` from `seed` on the host, lets `edit` change the host bytes (e.g. put a bad
/// index into slot_mapping), and uploads every buffer but those of `kept_on_host`.
DeviceCall place(const CallSpec& spec, std::uint64_t seed, const std::set<std::size_t>& kept_on_host,
                 const std::function<void(FuzzCall&)>& edit = {});

/// The arguments an op wants in host memory even for its CUDA implementations (swap_blocks's
/// block_mapping): found by trial calls on throw-away placements, reading the op's error
/// ("<argument>: ... cpu").
std::set<std::size_t> arguments_kept_on_host(const OpEntry& op, const CallSpec& spec,
                                             std::uint64_t seed);

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
