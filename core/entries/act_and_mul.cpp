// Registry entries of the three gated activations (silu_and_mul, gelu_and_mul,
// gelu_tanh_and_mul): one card, filled once by act_and_mul_card(), differing only in the role and
// the upstream function. Their W10 points, comparison and case live in act_and_mul_case.h.
#include <memory>

#include "act_and_mul_case.h"
#include "pagedkv/ops/gelu_and_mul.h"
#include "pagedkv/ops/gelu_tanh_and_mul.h"
#include "pagedkv/ops/silu_and_mul.h"
#include "pagedkv/registry.h"

namespace pagedkv {

namespace {

// The card every gated activation shares: the same sources, byte model, agreement rule and W10
// points; ActAndMulCase<Op> runs each.
template <class Op>
OpEntry act_and_mul_card(const char* role, const char* upstream) {
  using namespace entries;
  OpEntry entry;
  entry.family = "model ops";
  entry.role = role;
  entry.upstream = upstream;
  entry.cpu_source = "reference_cpu/act_and_mul.cpp";
  entry.naive_source = "kernels/activation/act_and_mul/naive.cu";
  entry.optimized_source = "kernels/activation/act_and_mul/optimized.cu";
  entry.byte_model =
      "input read once (tokens x 2 d x element bytes) and out written once (tokens x d x "
      "element bytes)";
  entry.agreement_rule = act_and_mul_agreement_rule();
  entry.workloads = {"W10"};
  entry.workload_notes = act_and_mul_workload_notes();
  entry.points = &act_and_mul_points;
  entry.make_case = [](const WorkloadPoint& point, std::uint64_t seed) -> std::unique_ptr<OpCase> {
    return std::make_unique<ActAndMulCase<Op>>(point, seed);
  };
  return entry;
}

}  // namespace

OpEntry SiluAndMul::card() {
  return act_and_mul_card<SiluAndMul>(
      "SwiGLU (Llama, Mistral, Qwen): silu of the gate half times the up half of the MLP's fused "
      "gate_up projection, in one pass; its output feeds the down projection.",
      "vLLM csrc/activation_kernels.cu: silu_and_mul (act_and_mul_kernel with silu_kernel)");
}

OpEntry GeluAndMul::card() {
  return act_and_mul_card<GeluAndMul>(
      "GeGLU with the exact GELU (approximate \"none\"): gelu of the gate half times the up half "
      "of the MLP's fused gate_up projection, in one pass.",
      "vLLM csrc/activation_kernels.cu: gelu_and_mul (act_and_mul_kernel with gelu_kernel)");
}

OpEntry GeluTanhAndMul::card() {
  return act_and_mul_card<GeluTanhAndMul>(
      "GeGLU with GELU's tanh approximation (approximate \"tanh\", as in Gemma): gelu_tanh of the "
      "gate half times the up half, in one pass.",
      "vLLM csrc/activation_kernels.cu: gelu_tanh_and_mul (act_and_mul_kernel with "
      "gelu_tanh_kernel)");
}

}  // namespace pagedkv
