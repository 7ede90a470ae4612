// CPU reference of merge_attn_states (vLLM csrc/libtorch_stable/attention/merge_attn_states.cu
// @03f97cc: merge_attn_states_kernel): plain loops over tokens, heads and elements.
//
// Per (token, head), upstream's float32 operations in upstream's order (merge_weights()):
// infinite LSEs to −inf, the max, two exponentials, their sum, two divisions, the log of the sum
// plus the max. Per element, one fma(p, p_scale, s · s_scale) rounded to the output dtype. The
// one place the CPU differs from the GPU on purpose: exp and log are evaluated in float64 and
// rounded once to float, where the GPU's expf goes through the approximate `ex2.approx`
// instruction (2 ulp) and logf is a float32 polynomial (1 ulp). Hence the ulp-bounded agreement
// (MergeAttnStates::ulp_bound()). The copies (tokens without a prefix, two empty key sets) move
// the bytes unchanged unless the output is fp8.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "cache_element.h"
#include "merge_math.h"
#include "norm_row.h"
#include "numerics.h"
#include "pagedkv/ops/merge_attn_states.h"

namespace pagedkv::cpu {

MergeWeights merge_weights(float prefix_lse, float suffix_lse) {
  constexpr float kMinusInf = -std::numeric_limits<float>::infinity();
  // An empty key set: FlashAttention 2 reports +inf, FlashAttention 3 -inf; both mean "no keys".
  const float lp = std::isinf(prefix_lse) ? kMinusInf : prefix_lse;
  const float ls = std::isinf(suffix_lse) ? kMinusInf : suffix_lse;
  const float max_lse = std::fmax(lp, ls);  // fmaxf: a NaN loses to a number
  MergeWeights w;
  if (std::isinf(max_lse)) {  // both -inf: nothing to weigh
    w.merge = false;
    w.lse = max_lse;
    return w;
  }
  const float p_se = static_cast<float>(std::exp(static_cast<double>(lp - max_lse)));
  const float s_se = static_cast<float>(std::exp(static_cast<double>(ls - max_lse)));
  const float out_se = p_se + s_se;  // in [1, 2]: one of the two is exp(0) = 1
  w.p_scale = p_se / out_se;
  w.s_scale = s_se / out_se;
  w.lse = static_cast<float>(std::log(static_cast<double>(out_se))) + max_lse;
  return w;
}

float merge_value(float p, float s, const MergeWeights& weights) {
  return std::fma(p, weights.p_scale, s * weights.s_scale);
}

std::uint8_t fp8_output(float value, float scale_inverse) {
  const float x = value * scale_inverse;
  const float clamped = std::fmax(-kFp8E4m3Max, std::fmin(x, kFp8E4m3Max));
  return numerics::float_to_fp8_e4m3(clamped);
}

}  // namespace pagedkv::cpu

namespace pagedkv {

void MergeAttnStates::cpu(const Plan& plan, const Args& args) {
  const auto* prefix = static_cast<const std::uint8_t*>(args.prefix_output.data);  // [N, H, D]
  const auto* suffix = static_cast<const std::uint8_t*>(args.suffix_output.data);  // [N, H, D]
  const auto* prefix_lse = static_cast<const float*>(args.prefix_lse.data);        // [H, N]
  const auto* suffix_lse = static_cast<const float*>(args.suffix_lse.data);        // [H, N]
  auto* output = static_cast<std::uint8_t*>(args.output.data);                     // [N, H, D]
  auto* output_lse = static_cast<float*>(args.output_lse.data);                    // [H, N]
  const std::int64_t in_bytes = dtype_size(plan.dtype);
  const std::int64_t out_bytes = plan.fp8_output ? 1 : in_bytes;
  const float scale_inverse =
      plan.fp8_output ? 1.0f / *static_cast<const float*>(args.output_scale.data) : 1.0f;

  // One element of row `from` (prefix or suffix) to output, unchanged or as fp8.
  const auto copy_element = [&](const std::uint8_t* from, std::uint8_t* to) {
    if (plan.fp8_output) {
      *to = cpu::fp8_output(cpu::load_activation(from, plan.dtype), scale_inverse);
    } else {
      std::memcpy(to, from, static_cast<std::size_t>(in_bytes));
    }
  };

  for (std::int64_t t = 0; t < plan.num_tokens; ++t) {
    for (std::int64_t h = 0; h < plan.num_heads; ++h) {
      const std::uint8_t* p =
          prefix + (t * plan.prefix_token_stride + h * plan.prefix_head_stride) * in_bytes;
      const std::uint8_t* s =
          suffix + (t * plan.suffix_token_stride + h * plan.suffix_head_stride) * in_bytes;
      std::uint8_t* o =
          output + (t * plan.output_token_stride + h * plan.output_head_stride) * out_bytes;
      const float ls = suffix_lse[h * plan.suffix_lse_head_stride + t * plan.suffix_lse_token_stride];
      float lse = ls;

      if (t >= plan.merged_tokens) {  // no prefix context: the suffix row and its raw LSE
        for (std::int64_t d = 0; d < plan.head_size; ++d) {
          copy_element(s + d * in_bytes, o + d * out_bytes);
        }
      } else {
        const float lp =
            prefix_lse[h * plan.prefix_lse_head_stride + t * plan.prefix_lse_token_stride];
        const cpu::MergeWeights w = cpu::merge_weights(lp, ls);
        lse = w.lse;
        for (std::int64_t d = 0; d < plan.head_size; ++d) {
          if (!w.merge) {  // two empty key sets: the prefix row (zeros, by the producers' rule)
            copy_element(p + d * in_bytes, o + d * out_bytes);
            continue;
          }
          const float value = cpu::merge_value(cpu::load_activation(p + d * in_bytes, plan.dtype),
                                               cpu::load_activation(s + d * in_bytes, plan.dtype),
                                               w);
          if (plan.fp8_output) {
            o[d] = cpu::fp8_output(value, scale_inverse);
          } else {
            cpu::store_activation(o + d * out_bytes, plan.dtype, value);
          }
        }
      }
      if (plan.write_lse) {
        output_lse[h * plan.output_lse_head_stride + t * plan.output_lse_token_stride] = lse;
      }
    }
  }
}

}  // namespace pagedkv
