// The one contract of merge_attn_states (vLLM csrc/libtorch_stable/attention/merge_attn_states.cu
// @03f97cc: merge_attn_states and merge_attn_states_launcher; the Python dispatcher
// vllm/v1/attention/ops/merge_attn_states.py @15a3fd4), shared by the CPU reference, the naive
// and the optimized CUDA kernels. Every rule throws InvalidArgument naming the argument, the
// expected and the actual value, before any byte is written.
//
// Upstream checks: the head size a multiple of the 16-byte pack of the input dtype (its CUDA
// kernel loads whole packs; the Python dispatcher sends other head sizes to Triton),
// prefill_tokens_with_context <= num_tokens, an fp8 output exactly when output_scale is given,
// the output dtype equal to prefix_output's otherwise, and (in Python) equal head strides of
// prefix_output and suffix_output. It trusts the rest. This contract also rejects:
//   - LSE tensors of another shape than [H, N] (a token-major [N, H] LSE, as FlashAttention
//     returns it, is named as such) or of another dtype than f32 (upstream reads f32 bits);
//   - a suffix_output of another shape or dtype than prefix_output, an output of another shape;
//   - heads whose elements are not packed, tensors of another rank;
//   - an output or output_lse in which two elements share memory (the writes would race), an
//     output_scale that is not one f32 element on the output's device;
//   - head_size 0 (upstream launches an empty grid, a launch error).
// Each tensor keeps its own token and head strides (upstream steps the suffix with the prefix's
// head stride and every token by num_heads × head stride), and zero tokens or heads is a no-op.
#include "pagedkv/ops/merge_attn_states.h"

#include <cstdint>

#include "pagedkv/checks.h"
#include "pagedkv/error.h"

namespace pagedkv {

namespace {

// output, prefix_output, suffix_output: [N, H, D], elements packed, non-negative strides.
void check_heads(const TensorView& tensor, const char* name) {
  PAGEDKV_CHECK(tensor.ndim == 3, name, ": expected 3 dimensions [num_tokens, num_heads, ",
                "head_size], got ", tensor.ndim, " (shape ", tensor.shape_string(), ")");
  checks::non_negative_layout(tensor, name);
  PAGEDKV_CHECK(tensor.size(2) <= 1 || tensor.stride(2) == 1, name,
                ": expected the elements of a head packed (stride(2) = 1), got ",
                tensor.describe());
  checks::not_null(tensor, name);
}

// prefix_lse, suffix_lse, output_lse: f32 [H, N], head-major.
void check_lse(const TensorView& lse, const char* name, std::int64_t num_heads,
               std::int64_t num_tokens) {
  checks::dtype_is(lse, name, DType::f32);
  PAGEDKV_CHECK(lse.ndim == 2, name, ": expected 2 dimensions [num_heads, num_tokens] = [",
                num_heads, ", ", num_tokens, "], got ", lse.ndim, " (shape ", lse.shape_string(),
                ")");
  const bool token_major = lse.size(0) == num_tokens && lse.size(1) == num_heads;
  PAGEDKV_CHECK(lse.size(0) == num_heads && lse.size(1) == num_tokens, name,
                ": expected [num_heads, num_tokens] = [", num_heads, ", ", num_tokens,
                "] (head-major), got ", lse.shape_string(),
                token_major ? ": a token-major [num_tokens, num_heads] LSE; pass its transpose "
                              "(lse.transpose(0, 1): any strides are accepted)"
                            : "");
  checks::non_negative_layout(lse, name);
  checks::not_null(lse, name);
}

}  // namespace

MergeAttnStates::Plan MergeAttnStates::validate(const Args& args, Impl impl) {
  const TensorView& output = args.output;
  const TensorView& prefix = args.prefix_output;
  const TensorView& suffix = args.suffix_output;
  const bool has_lse_out = args.output_lse.data != nullptr || args.output_lse.ndim > 0;
  const bool has_scale = args.output_scale.data != nullptr || args.output_scale.ndim > 0;

  // 1. Every tensor lives where the implementation computes.
  const Device device = impl_device(impl);
  checks::device_is(output, "output", device);
  checks::device_is(prefix, "prefix_output", device);
  checks::device_is(args.prefix_lse, "prefix_lse", device);
  checks::device_is(suffix, "suffix_output", device);
  checks::device_is(args.suffix_lse, "suffix_lse", device);
  if (has_lse_out) checks::device_is(args.output_lse, "output_lse", device);
  if (has_scale) checks::device_is(args.output_scale, "output_scale", device);

  // 2. prefix_output [N, H, D] in f32, f16 or bf16 decides the shape and the input dtype.
  check_heads(prefix, "prefix_output");
  checks::dtype_in(prefix, "prefix_output", {DType::f32, DType::f16, DType::bf16});
  const std::int64_t num_tokens = prefix.size(0);
  const std::int64_t num_heads = prefix.size(1);
  const std::int64_t head_size = prefix.size(2);
  const std::int64_t pack = pack_elements(prefix.dtype);
  PAGEDKV_CHECK(head_size > 0, "prefix_output: expected head_size = size(2) > 0, got 0");
  PAGEDKV_CHECK(head_size % pack == 0, "prefix_output: head_size = size(2) = ", head_size,
                " is not a multiple of ", pack, ", the elements of one 16-byte pack of ",
                dtype_name(prefix.dtype), ": upstream's CUDA kernel loads whole packs, so the "
                "head sizes it accepts are the multiples of 4 for f32 and of 8 for f16 and bf16 "
                "(vLLM sends the others to a Triton kernel, which pagedkv does not reproduce)");

  // 3. suffix_output: the shape and dtype of prefix_output, its own strides.
  check_heads(suffix, "suffix_output");
  PAGEDKV_CHECK(suffix.size(0) == num_tokens && suffix.size(1) == num_heads &&
                    suffix.size(2) == head_size,
                "suffix_output: expected the shape of prefix_output ", prefix.shape_string(),
                ", got ", suffix.shape_string());
  checks::dtype_is(suffix, "suffix_output", prefix.dtype);

  // 4. output: the same shape; prefix_output's dtype, or fp8 E4M3 exactly when output_scale is
  //    given; every element its own memory.
  check_heads(output, "output");
  PAGEDKV_CHECK(output.size(0) == num_tokens && output.size(1) == num_heads &&
                    output.size(2) == head_size,
                "output: expected the shape of prefix_output ", prefix.shape_string(), ", got ",
                output.shape_string());
  if (has_scale) {
    PAGEDKV_CHECK(output.dtype == DType::f8_e4m3, "output: expected dtype f8_e4m3 (fp8 E4M3) ",
                  "because output_scale is given, got ", dtype_name(output.dtype));
  } else {
    PAGEDKV_CHECK(output.dtype == prefix.dtype, "output: expected dtype ",
                  dtype_name(prefix.dtype), " (prefix_output's), got ", dtype_name(output.dtype),
                  output.dtype == DType::f8_e4m3 || output.dtype == DType::u8
                      ? ": an fp8 output needs output_scale"
                      : "");
  }
  PAGEDKV_CHECK(output.numel() == 0 || checks::elements_are_distinct(output), "output: expected every element to have ",
                "memory of its own (the writes would race), got ", output.describe());

  // 5. The LSE tensors: f32 [H, N], head-major, any strides.
  check_lse(args.prefix_lse, "prefix_lse", num_heads, num_tokens);
  check_lse(args.suffix_lse, "suffix_lse", num_heads, num_tokens);
  if (has_lse_out) {
    check_lse(args.output_lse, "output_lse", num_heads, num_tokens);
    PAGEDKV_CHECK(args.output_lse.numel() == 0 ||
                      checks::elements_are_distinct(args.output_lse), "output_lse: expected every ",
                  "element to have memory of its own (the writes would race), got ",
                  args.output_lse.describe());
  }

  // 6. output_scale: one f32 element (a 0-d or [1] tensor), read on the device.
  if (has_scale) {
    checks::dtype_is(args.output_scale, "output_scale", DType::f32);
    PAGEDKV_CHECK(args.output_scale.numel() == 1, "output_scale: expected one element (a 0-d or ",
                  "[1] tensor: a per-tensor scale), got ", args.output_scale.numel(), " (shape ",
                  args.output_scale.shape_string(), ")");
    PAGEDKV_CHECK(args.output_scale.data != nullptr, "output_scale: data pointer is null");
  }

  // 7. prefill_tokens_with_context: -1 (None) for every token, else 0 <= P <= N.
  const std::int64_t p = args.prefill_tokens_with_context;
  PAGEDKV_CHECK(p >= -1 && p <= num_tokens, "prefill_tokens_with_context: expected None (-1) or ",
                "0 <= P <= num_tokens = ", num_tokens, ", got ", p);

  Plan plan;
  plan.num_tokens = num_tokens;
  plan.num_heads = num_heads;
  plan.head_size = head_size;
  plan.merged_tokens = p < 0 ? num_tokens : p;
  plan.dtype = prefix.dtype;
  plan.fp8_output = has_scale;
  plan.write_lse = has_lse_out;
  plan.output_token_stride = output.stride(0);
  plan.output_head_stride = output.stride(1);
  plan.prefix_token_stride = prefix.stride(0);
  plan.prefix_head_stride = prefix.stride(1);
  plan.suffix_token_stride = suffix.stride(0);
  plan.suffix_head_stride = suffix.stride(1);
  plan.prefix_lse_head_stride = args.prefix_lse.stride(0);
  plan.prefix_lse_token_stride = args.prefix_lse.stride(1);
  plan.suffix_lse_head_stride = args.suffix_lse.stride(0);
  plan.suffix_lse_token_stride = args.suffix_lse.stride(1);
  if (has_lse_out) {
    plan.output_lse_head_stride = args.output_lse.stride(0);
    plan.output_lse_token_stride = args.output_lse.stride(1);
  }
  return plan;
}

}  // namespace pagedkv
