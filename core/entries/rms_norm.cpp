// Registry entry of rms_norm, and its workload points (W9).
//
// One point: hidden states [tokens, hidden] bf16 or f16 and a weight [hidden]; the output is a
// separate [tokens, hidden] tensor. NormCase (norm_case.h) runs it.
#include <memory>
#include <string>
#include <vector>

#include "norm_case.h"
#include "pagedkv/ops/rms_norm.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<NormCase<RmsNorm>>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry RmsNorm::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "model ops";
  entry.role =
      "Normalizes each token's hidden state by its root mean square and scales it by a learned "
      "weight: the RMSNorm before attention, before the MLP and after the last layer of "
      "Llama-style models.";
  entry.upstream = "vLLM csrc/layernorm_kernels.cu: rms_norm (rms_norm_kernel)";
  entry.cpu_source = "reference_cpu/rms_norm.cpp";
  entry.naive_source = "kernels/norm/rms_norm/naive.cu";
  entry.optimized_source = "kernels/norm/rms_norm/optimized.cu";
  entry.byte_model =
      "input read once and out written once (tokens x hidden_size x element bytes each), weight "
      "read once (hidden_size x element bytes)";
  entry.agreement_rule =
      "norm-wise relative error ||gpu - cpu||_2 / ||cpu||_2 of the whole output against the "
      "float64 CPU reference within reduction_tolerance(dtype, hidden_size) = 2 u_dtype + "
      "(8 sqrt(hidden_size) + 8) u_f32";
  entry.workloads = {"W9"};
  entry.workload_notes = norm_workload_notes();
  entry.points = &norm_points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
