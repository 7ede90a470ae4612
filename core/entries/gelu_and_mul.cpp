// Registry entry of gelu_and_mul, and its workload points (W10). ActAndMulCase (act_and_mul_case.h)
// runs it.
#include "pagedkv/ops/gelu_and_mul.h"

#include <memory>

#include "act_and_mul_case.h"
#include "pagedkv/registry.h"

namespace pagedkv {

namespace {

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<entries::ActAndMulCase<GeluAndMul>>(point, seed);
}

}  // namespace

OpEntry GeluAndMul::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "model ops";
  entry.role =
      "GeGLU with the exact GELU (approximate \"none\"): gelu of the gate half times the up half "
      "of the MLP's fused gate_up projection, in one pass.";
  entry.upstream =
      "vLLM csrc/activation_kernels.cu: gelu_and_mul (act_and_mul_kernel with gelu_kernel)";
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
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
