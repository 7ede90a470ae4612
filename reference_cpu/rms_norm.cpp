// CPU reference of rms_norm (vLLM csrc/layernorm_kernels.cu: rms_norm): plain loops over the
// rows; each row is normalized by rms_norm_row() (norm_row.cpp: float64, one rounding to float).
// Row r of input starts where the plan's RowLayout says (leading dimensions with any strides);
// row r of out starts at r × hidden_size (out is contiguous).
#include <cstdint>

#include "norm_row.h"
#include "pagedkv/ops/rms_norm.h"

namespace pagedkv {

void RmsNorm::cpu(const Plan& plan, const Args& args) {
  const auto* input = static_cast<const std::uint8_t*>(args.input.data);  // [..., hidden] strided
  const auto* weight = static_cast<const std::uint8_t*>(args.weight.data);  // [hidden]
  auto* out = static_cast<std::uint8_t*>(args.out.data);                    // [rows, hidden]
  const std::int64_t element_bytes = dtype_size(plan.dtype);

  for (std::int64_t row = 0; row < plan.rows.num_rows; ++row) {
    const std::uint8_t* x = input + plan.rows.row_start(row) * element_bytes;
    std::uint8_t* y = out + row * plan.hidden_size * element_bytes;
    cpu::rms_norm_row(x, weight, y, plan.dtype, plan.hidden_size, plan.epsilon);
  }
}

}  // namespace pagedkv
