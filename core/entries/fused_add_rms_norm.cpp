// Registry entry of fused_add_rms_norm, and its workload points (W9).
//
// One point: hidden states and a residual stream [tokens, hidden] bf16 or f16 and a weight
// [hidden]; the op overwrites both (residual = input + residual, input = the normalized sum).
// NormCase (norm_case.h) runs it.
#include <memory>
#include <string>
#include <vector>

#include "norm_case.h"
#include "pagedkv/ops/fused_add_rms_norm.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<NormCase<FusedAddRmsNorm>>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry FusedAddRmsNorm::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "model ops";
  entry.role =
      "Adds the residual stream to the hidden states, keeps the sum as the new residual and "
      "writes its RMSNorm over the hidden states, in one pass: the pre-norm of every decoder "
      "layer after the first.";
  entry.upstream =
      "vLLM csrc/layernorm_kernels.cu: fused_add_rms_norm (fused_add_rms_norm_kernel)";
  entry.cpu_source = "reference_cpu/fused_add_rms_norm.cpp";
  entry.naive_source = "kernels/norm/fused_add_rms_norm/naive.cu";
  entry.optimized_source = "kernels/norm/fused_add_rms_norm/optimized.cu";
  entry.byte_model =
      "input and residual read once and both written once (4 x tokens x hidden_size x element "
      "bytes), weight read once (hidden_size x element bytes)";
  entry.agreement_rule =
      "norm-wise relative error ||gpu - cpu||_2 / ||cpu||_2 of input (the normalized sum) "
      "against the float64 CPU reference within reduction_tolerance(dtype, hidden_size) = "
      "2 u_dtype + (8 sqrt(hidden_size) + 8) u_f32; residual (input + residual) bit-exact, byte "
      "for byte";
  entry.workloads = {"W9"};
  entry.workload_notes = norm_workload_notes();
  entry.points = &norm_points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
