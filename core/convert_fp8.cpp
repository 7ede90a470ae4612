// The one contract of convert_fp8 (vLLM csrc/cache_kernels.cu @9803b00: convert_fp8), shared by
// the CPU reference, the naive and the optimized CUDA kernels. Every rule throws InvalidArgument
// naming the argument, the expected and the actual value, before any byte is written.
//
// Upstream checks only that both tensors are on the same GPU and that the format string is known.
// Where it is undefined or silent, this contract decides:
//   - kv_dtype "auto" (upstream: a conversion that is not defined, a device assert at best) is
//     rejected: convert_fp8 exists to convert to and from fp8, and "auto" names no fp8 format;
//     a plain f32/f16/bf16 cast is another op's job. "bfloat16", "float16", "fp8_ds_mla" and
//     any other string are rejected too.
//   - byte → byte (upstream: silently nothing) and wide → wide are rejected, naming output: one
//     side must be f32 / f16 / bf16 and the other one byte per element, or nothing is converted.
//   - "fp8_e5m2" (rejected by the pinned upstream, supported by older versions) is accepted:
//     the cache writers store E5M2, so reading it back must work.
//   - strided views are converted correctly, element by element in row-major order of the
//     shape (upstream indexes both tensors as flat arrays of size(0) × stride(0) elements:
//     right only when both are contiguous, out of bounds or wrong otherwise). The two tensors
//     must have the same shape (upstream: any shapes with enough elements); the kernels get
//     the layout with mergeable dimensions merged, so contiguous tensors take the vector path.
//   - an output whose strides map two elements to one address (the writes would race), and
//     input and output sharing memory (the op reads what it overwrites), are rejected.
//   - a typed fp8 tensor (f8_e4m3 / f8_e5m2) must be the format kv_dtype names; u8 holds either.
//   - scale must be finite and > 0 once rounded to fp32 (upstream takes any double: 0 gives
//     inf / NaN, a negative one flips signs, 1e-50 becomes 0 in fp32).
//   - zero elements is a no-op, null pointers included (upstream launches an empty grid).
#include "pagedkv/ops/convert_fp8.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "norm_checks.h"
#include "pagedkv/checks.h"
#include "pagedkv/error.h"

namespace pagedkv {

namespace {

// kv_dtype → the fp8 format. Only the fp8 names: convert_fp8 always converts.
KvCacheDtype parse_format(const std::string& kv_dtype) {
  if (kv_dtype == "fp8" || kv_dtype == "fp8_e4m3") return KvCacheDtype::kFp8E4m3;
  if (kv_dtype == "fp8_e5m2") return KvCacheDtype::kFp8E5m2;
  if (kv_dtype == "auto") {
    reject("kv_dtype: \"auto\" names no fp8 format, and convert_fp8 only converts to and from "
           "fp8 (vLLM leaves it undefined); expected \"fp8\", \"fp8_e4m3\" or \"fp8_e5m2\"");
  }
  reject("kv_dtype: expected \"fp8\", \"fp8_e4m3\" or \"fp8_e5m2\", got \"", kv_dtype, "\"");
}

// A one-byte tensor may hold the format's bytes: u8 always, a typed f8 tensor only its own.
void bytes_fit(const TensorView& tensor, const char* name, KvCacheDtype format,
               const std::string& kv_dtype) {
  const DType own = format == KvCacheDtype::kFp8E4m3 ? DType::f8_e4m3 : DType::f8_e5m2;
  PAGEDKV_CHECK(tensor.dtype == DType::u8 || tensor.dtype == own, name, ": a ",
                dtype_name(tensor.dtype), " tensor cannot hold kv_dtype \"", kv_dtype,
                "\" bytes; expected u8 or ", dtype_name(own));
}


// The common shape with size-1 dimensions dropped, and dimension d merged into the one inside it
// when both tensors step over it exactly as far as the inner dimension spans.
void merge_layout(const TensorView& input, const TensorView& output, ConvertFp8Plan& plan) {
  plan.ndim = 0;
  for (int d = 0; d < input.ndim; ++d) {
    const std::int64_t size = input.shape[d];
    if (size == 1) continue;
    const int last = plan.ndim - 1;
    if (last >= 0 && plan.input_strides[last] == size * input.strides[d] &&
        plan.output_strides[last] == size * output.strides[d]) {
      plan.shape[last] *= size;  // the outer dimension becomes part of this one
      plan.input_strides[last] = input.strides[d];
      plan.output_strides[last] = output.strides[d];
      continue;
    }
    plan.shape[plan.ndim] = size;
    plan.input_strides[plan.ndim] = input.strides[d];
    plan.output_strides[plan.ndim] = output.strides[d];
    ++plan.ndim;
  }
  plan.contiguous = plan.ndim == 0 ||
                    (plan.ndim == 1 && plan.input_strides[0] == 1 && plan.output_strides[0] == 1);
  if (plan.contiguous) {  // one packed run (a single element counts as one)
    plan.ndim = plan.numel > 0 ? 1 : 0;
    plan.shape[0] = plan.numel;
    plan.input_strides[0] = 1;
    plan.output_strides[0] = 1;
  }
}

}  // namespace

ConvertFp8::Plan ConvertFp8::validate(const Args& args, Impl impl) {
  const TensorView& output = args.output;
  const TensorView& input = args.input;

  // 1. Both tensors live where the implementation computes.
  const Device device = impl_device(impl);
  checks::device_is(output, "output", device);
  checks::device_is(input, "input", device);

  // 2. The format, then the direction from the dtypes: one side f32/f16/bf16, the other bytes.
  const KvCacheDtype format = parse_format(args.kv_dtype);
  PAGEDKV_CHECK(is_activation_dtype(input.dtype) || is_byte_dtype(input.dtype),
                "input: expected f32, f16 or bf16 (to quantize) or one byte per element: u8, "
                "f8_e4m3 or f8_e5m2 (to dequantize), got ",
                dtype_name(input.dtype));
  const bool quantize = is_activation_dtype(input.dtype);
  if (quantize) {
    PAGEDKV_CHECK(is_byte_dtype(output.dtype), "output: input is ", dtype_name(input.dtype),
                  ", so output must hold one fp8 byte per element (u8, f8_e4m3 or f8_e5m2), got ",
                  dtype_name(output.dtype));
    bytes_fit(output, "output", format, args.kv_dtype);
  } else {
    PAGEDKV_CHECK(is_activation_dtype(output.dtype), "output: input is ",
                  dtype_name(input.dtype), " (fp8 bytes), so output must be f32, f16 or bf16 to "
                  "dequantize into, got ", dtype_name(output.dtype),
                  is_byte_dtype(output.dtype) ? " (byte to byte converts nothing)" : "");
    bytes_fit(input, "input", format, args.kv_dtype);
  }

  // 3. The same shape; non-negative strides; output gives every element its own memory.
  bool same_shape = output.ndim == input.ndim;
  for (int d = 0; same_shape && d < input.ndim; ++d) same_shape = output.shape[d] == input.shape[d];
  PAGEDKV_CHECK(same_shape, "output: expected the shape of input ", input.shape_string(),
                ", got ", output.shape_string());
  checks::non_negative_layout(input, "input");
  checks::non_negative_layout(output, "output");
  PAGEDKV_CHECK(output.numel() == 0 || checks::elements_are_distinct(output), "output: strides must give every element its own ",
                "memory, but ", output.describe(), " maps several elements to one address");

  // 4. The scale, as the kernels will use it: an fp32, finite and positive.
  const auto scale = static_cast<float>(args.scale);
  PAGEDKV_CHECK(std::isfinite(scale) && scale > 0.f, "scale: expected a finite number > 0 (as "
                "fp32), got ", args.scale);

  // 5. Memory behind every tensor that has elements, and output apart from input.
  checks::not_null(output, "output");
  checks::not_null(input, "input");
  checks::memory_apart(output, "output", input, "input");

  ConvertFp8Plan plan;
  plan.numel = input.numel();
  plan.quantize = quantize;
  plan.wide_dtype = quantize ? input.dtype : output.dtype;
  plan.format = format;
  plan.scale = scale;
  merge_layout(input, output, plan);
  return plan;
}

}  // namespace pagedkv
