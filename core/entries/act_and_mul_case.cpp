// What the gated activations' entries share. See act_and_mul_case.h.
#include "act_and_mul_case.h"

#include <algorithm>
#include <cmath>

#include "cache_element.h"
#include "pagedkv/agreement.h"
#include "pagedkv/error.h"

namespace pagedkv::entries {

const char* act_and_mul_workload_notes() {
  return "W10: input [tokens, 2 d] with d 14336 (Llama-3-8B's intermediate size), bf16 or f16, "
         "random (bf16: |x| in [2^-14, 4), f16: uniform in [-4, 4], never zero), out [tokens, d]; "
         "a quick run keeps bf16 at 1, 64 and 1024 tokens.";
}

const char* act_and_mul_agreement_rule() {
  return "ulp-bounded: naive and optimized bit-identical (the same device function); each "
         "output element within ulp_bound(dtype) ulps of the CPU reference's, the ulp of the "
         "dtype taken at |gate x up| (4 for f16 and bf16, 16 for f32; derived, not yet measured "
         "on a GPU)";
}

ActAndMulShape act_and_mul_shape(const WorkloadPoint& point) {
  PAGEDKV_CHECK(point.workload == "W10", "gated activations run workload W10, got ",
                point.workload);
  ActAndMulShape shape;
  shape.num_tokens = point.size;
  if (point.variant == "d 14336 bf16") {
    shape.dtype = DType::bf16;
  } else if (point.variant == "d 14336 f16") {
    shape.dtype = DType::f16;
  } else {
    reject("W10 variant: expected \"d 14336 bf16\" or \"d 14336 f16\", got \"", point.variant,
           "\"");
  }
  shape.d = 14336;
  return shape;
}

std::vector<WorkloadPoint> act_and_mul_points(const std::string& workload, bool quick) {
  if (workload != "W10") return {};
  const std::vector<std::string> variants =
      quick ? std::vector<std::string>{"d 14336 bf16"}
            : std::vector<std::string>{"d 14336 bf16", "d 14336 f16"};
  const std::vector<std::int64_t> sizes =
      quick ? std::vector<std::int64_t>{1, 64, 1024}
            : std::vector<std::int64_t>{1, 16, 64, 256, 1024, 4096, 16384};
  std::vector<WorkloadPoint> points;
  for (const std::string& variant : variants)
    for (std::int64_t tokens : sizes) points.push_back({"W10", variant, "", tokens, "tokens", 0});
  return points;
}

Agreement compare_act_and_mul_output(const Buffer& output, const Buffer& reference,
                                     const Buffer& input, const ActAndMulShape& shape,
                                     double bound) {
  const Buffer copy = output.memory() == Memory::device ? copy_to(Memory::host, output) : Buffer();
  const Buffer& host = output.memory() == Memory::device ? copy : output;
  Agreement agreement = compare_with_reference(host, reference.data(), shape.dtype);
  const std::int64_t size = dtype_size(shape.dtype);
  double worst = 0.0;
  for (std::int64_t row = 0; row < shape.num_tokens; ++row) {
    for (std::int64_t i = 0; i < shape.d; ++i) {
      const std::int64_t at = row * shape.d + i;
      const double x =
          cpu::load_activation(input.data() + (row * 2 * shape.d + i) * size, shape.dtype);
      const double y = cpu::load_activation(input.data() + (row * 2 * shape.d + shape.d + i) * size,
                                            shape.dtype);
      const double actual = cpu::load_activation(host.data() + at * size, shape.dtype);
      const double expected = cpu::load_activation(reference.data() + at * size, shape.dtype);
      worst =
          std::max(worst, ulp_error(actual, expected,
                                    std::max(std::fabs(x * y), std::fabs(expected)), shape.dtype));
    }
  }
  agreement.max_ulp = worst;
  agreement.ulp_bound = bound;
  return agreement;
}

}  // namespace pagedkv::entries
