// CPU reference of fused_add_rms_norm (vLLM csrc/layernorm_kernels.cu: fused_add_rms_norm):
// plain loops over the rows. Per row:
//   1. z[i] = round_T(float(input[i]) + float(residual[i])): one float32 addition, one rounding
//      to T, exactly as the kernels do it, so residual is bit-identical across the three
//      implementations;
//   2. residual[i] = z[i];
//   3. input = rms_norm of the ROUNDED z (rms_norm_row() in norm_row.cpp: float64, one rounding
//      to float), as the kernels normalize the stored sum. (vLLM's Python forward_native
//      normalizes the unrounded float32 sum instead: a tiny, expected difference.)
// Row r of input starts where the plan's RowLayout says; row r of residual at r × hidden_size.
#include <cstdint>

#include "cache_element.h"
#include "norm_row.h"
#include "pagedkv/ops/fused_add_rms_norm.h"

namespace pagedkv {

void FusedAddRmsNorm::cpu(const Plan& plan, const Args& args) {
  auto* input = static_cast<std::uint8_t*>(args.input.data);        // [..., hidden] strided
  auto* residual = static_cast<std::uint8_t*>(args.residual.data);  // [rows, hidden]
  const auto* weight = static_cast<const std::uint8_t*>(args.weight.data);  // [hidden]
  const std::int64_t element_bytes = dtype_size(plan.dtype);

  for (std::int64_t row = 0; row < plan.rows.num_rows; ++row) {
    std::uint8_t* x = input + plan.rows.row_start(row) * element_bytes;
    std::uint8_t* r = residual + row * plan.hidden_size * element_bytes;

    // 1-2. The sum, added in float32 and rounded once, becomes the new residual.
    for (std::int64_t i = 0; i < plan.hidden_size; ++i) {
      const float sum = cpu::load_activation(x + i * element_bytes, plan.dtype) +
                        cpu::load_activation(r + i * element_bytes, plan.dtype);
      cpu::store_activation(r + i * element_bytes, plan.dtype, sum);
    }
    // 3. The normalized rounded sum overwrites input.
    cpu::rms_norm_row(r, weight, x, plan.dtype, plan.hidden_size, plan.epsilon);
  }
}

}  // namespace pagedkv
