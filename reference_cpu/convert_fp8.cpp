// CPU reference of convert_fp8 (vLLM csrc/cache_kernels.cu @9803b00: convert_fp8_kernel): the
// specification in code. Every element of input, in row-major order of the shape, is converted
// into the element of output at the same index:
//   quantize    output[i] = fp8(float(input[i]) / scale)        (round to nearest even, saturating)
//   dequantize  output[i] = to_output_dtype(float(fp8 input[i]) × scale)  (round to nearest even)
// Both tensors are addressed with their own strides, read from the arguments themselves (not
// from the plan's merged layout, which the kernels use): a bug in one cannot hide in both.
#include <cstdint>
#include <cstring>

#include "cache_element.h"
#include "numerics.h"
#include "pagedkv/ops/convert_fp8.h"

namespace pagedkv {

void ConvertFp8::cpu(const Plan& plan, const Args& args) {
  const TensorView& input = args.input;
  const TensorView& output = args.output;
  if (plan.numel == 0) return;

  // index[d] counts through dimension d like nested loops, the last dimension fastest.
  std::int64_t index[kMaxDims] = {};
  for (std::int64_t i = 0; i < plan.numel; ++i) {
    std::int64_t input_offset = 0, output_offset = 0;  // in elements
    for (int d = 0; d < input.ndim; ++d) {
      input_offset += index[d] * input.strides[d];
      output_offset += index[d] * output.strides[d];
    }
    const std::uint8_t* source =
        static_cast<const std::uint8_t*>(input.data) + input_offset * input.element_size();
    std::uint8_t* destination =
        static_cast<std::uint8_t*>(output.data) + output_offset * output.element_size();

    if (plan.quantize) {
      // fp8(float(x) / scale): exactly what every cache writer stores.
      cpu::store_cache_element(destination, source, plan.wide_dtype, plan.format, plan.scale);
    } else {
      cpu::dequantize_cache_element(destination, plan.wide_dtype, *source, plan.format,
                                    plan.scale);
    }

    for (int d = input.ndim - 1; d >= 0; --d) {  // next index, carrying like an odometer
      if (++index[d] < input.shape[d]) break;
      index[d] = 0;
    }
  }
}

}  // namespace pagedkv
