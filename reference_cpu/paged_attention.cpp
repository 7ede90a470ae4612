// CPU reference of paged_attention_v1, paged_attention_v2 and paged_attention_rocm: the
// specification (vLLM csrc/attention/attention_kernels.cuh: paged_attention_kernel and
// paged_attention_v2_reduce_kernel; csrc/rocm/attention.cu: paged_attention_ll4mi_QKV_mfma*
// and paged_attention_ll4mi_reduce_kernel) as plain loops, evaluated in float64.
//
// For sequence s (L = seq_lens[s] tokens) and query head h, whose kv head is g = h / G
// (G = num_heads / num_kv_heads):
//   logit[t] = scale × q[s, h, :] · K[t, g, :]  (+ alibi_slopes[h] × (t - L + 1))
//   p[t]     = round_T(exp(logit[t] - m) / (Σ exp(logit - m) + 1e-6)),  m = max logit
//   out[s, h, d] = round_T(Σ_t p[t] × V[t, g, d])
// v1 takes the softmax over the whole sequence. v2 takes it over each 512-token partition p
// (writing m_p, S_p = Σ exp(logit - m_p) and tmp_out[p] = round_T(Σ p[t] × V[t]) into its
// workspaces), then merges: out = round_T(Σ_p tmp_out[p] × w_p / (Σ_p w_p + 1e-6)) with
// w_p = S_p × exp(m_p - max_p m_p), or out = tmp_out[0] when there is one partition.
//
// Everything is float64 except where upstream rounds, which the reference follows because it
// changes the result at the dtype's precision: a dequantized fp8 element is
// round_T(float(fp8) × scale), each probability is rounded to T before it weighs a value, and
// v2's partition outputs are rounded to T before the merge. The epsilons 1e-6 of the
// denominators are kept (they matter at f32's precision).
//
// paged_attention_rocm is v2 with partitions of 256 and three differences, all from
// csrc/rocm/attention.cu: its reduce kernel merges a single partition too (out = tmp_out[0] ×
// S_0 / (S_0 + 1e-6), no copy); with query_start_loc, sequence s reads query row
// query_start_loc[s] and writes the same out row, and a sequence with other than one query
// token is skipped (nothing of it written); with fp8_out_scale, out is
// e4m3(clamp(out × (1 / fp8_out_scale), ±448)). Upstream's ROCm kernel applies k_scale to the
// dot product and v_scale to the weighted sum instead of to each element; the reference keeps
// v2's per-element dequantization (the difference is one rounding to T per element, within
// the tolerance's u_T term).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "cache_element.h"
#include "merge_math.h"
#include "norm_row.h"
#include "parallel.h"
#include "pagedkv/ops/paged_attention_v1.h"
#include "pagedkv/ops/paged_attention_rocm.h"
#include "pagedkv/ops/paged_attention_v2.h"
#include "pagedkv/paged_attention.h"

namespace pagedkv {

namespace {

// What the kernels see of one cache element: the element itself ("auto"), or
// round_T(float(fp8) × scale). An fp8 cache has 256 byte values, each decoded once per call.
struct CacheReader {
  DType dtype;
  bool fp8;
  std::array<double, 256> decoded{};  // fp8: byte -> round_T(float(byte) × scale)

  CacheReader(const PagedAttentionPlan& plan, float scale)
      : dtype(plan.dtype), fp8(is_fp8(plan.cache_kind)) {
    if (!fp8) return;
    for (int byte = 0; byte < 256; ++byte) {
      std::uint8_t element[4];
      cpu::dequantize_cache_element(element, dtype, static_cast<std::uint8_t>(byte),
                                    plan.cache_kind, scale);
      decoded[static_cast<std::size_t>(byte)] = cpu::load_activation(element, dtype);
    }
  }
  double operator()(const std::uint8_t* element) const {
    return fp8 ? decoded[*element] : cpu::load_activation(element, dtype);
  }
};

// `value` rounded as the kernels round a float result into T (float64 → float32 → T).
double rounded_to(DType dtype, double value) {
  std::uint8_t element[4];
  cpu::store_activation(element, dtype, static_cast<float>(value));
  return cpu::load_activation(element, dtype);
}

}  // namespace

namespace attention {

void cpu(const PagedAttentionPlan& plan, const PagedAttentionData& data) {
  const std::int64_t D = plan.head_size, B = plan.block_size;
  const std::int64_t G = plan.num_heads / plan.num_kv_heads;  // query heads per kv head
  const std::int64_t x = plan.x;
  const std::int64_t T_bytes = dtype_size(plan.dtype);       // bytes of query, out, tmp_out
  const std::int64_t cache_bytes = is_fp8(plan.cache_kind) ? 1 : T_bytes;
  const float k_scale = data.k_scale != nullptr ? *data.k_scale : 1.f;
  const float v_scale = data.v_scale != nullptr ? *data.v_scale : 1.f;
  const bool v2 = plan.partition_size > 0;
  const CacheReader key_value(plan, k_scale), value_value(plan, v_scale);
  const auto* query = static_cast<const std::uint8_t*>(data.query);
  const auto* key_cache = static_cast<const std::uint8_t*>(data.key_cache);
  const auto* value_cache = static_cast<const std::uint8_t*>(data.value_cache);
  auto* out = static_cast<std::uint8_t*>(data.out);
  auto* tmp_out = static_cast<std::uint8_t*>(data.tmp_out);

  const std::int64_t out_bytes = plan.fp8_output ? 1 : T_bytes;
  const float out_scale_inverse =
      data.fp8_out_scale != nullptr ? 1.0f / *data.fp8_out_scale : 1.0f;
  // One sequence. Sequences share nothing they write (out rows, workspace rows), so they run on
  // several threads (for_each_index); each one's arithmetic is the same as in a plain loop.
  const auto one_sequence = [&](std::int64_t s) {
    std::vector<double> q(static_cast<std::size_t>(G * D)), k(static_cast<std::size_t>(D)),
        v(static_cast<std::size_t>(D)), acc(static_cast<std::size_t>(G * D));
    // The query row and out row (rocm's query_start_loc; -1: a sequence the call skips).
    const std::int64_t row = attention_query_row(data, s);
    if (row < 0) return;
    const std::int64_t L = data.seq_lens[s];
    const std::int32_t* blocks = data.block_tables + s * plan.table_stride;
    // Where token t of this sequence lives: block blocks[t / B], slot t % B, kv head g.
    const auto key_at = [&](std::int64_t t, std::int64_t g, std::int64_t d) {
      const std::int64_t block = blocks[t / B];
      const std::int64_t index = block * plan.block_stride + g * plan.head_stride +
                                 (d / x) * B * x + (t % B) * x + d % x;  // [.., d/x, t%B, d%x]
      return key_cache + index * cache_bytes;
    };
    const auto value_at = [&](std::int64_t t, std::int64_t g, std::int64_t d) {
      const std::int64_t block = blocks[t / B];
      const std::int64_t index =
          block * plan.block_stride + g * plan.head_stride + d * B + t % B;  // [.., d, t%B]
      return value_cache + index * cache_bytes;
    };
    // v1: one partition, the whole sequence; v2: partitions of partition_size tokens.
    const std::int64_t partition = v2 ? plan.partition_size : L;
    const std::int64_t partitions = (L + partition - 1) / partition;

    for (std::int64_t g = 0; g < plan.num_kv_heads; ++g) {
      // The query heads of kv head g, and every token's logit for each of them: the key of a
      // token is dequantized once for all G heads.
      for (std::int64_t j = 0; j < G; ++j) {
        const std::int64_t h = g * G + j;
        for (std::int64_t d = 0; d < D; ++d) {
          q[j * D + d] = cpu::load_activation(
              query + (row * plan.query_stride[0] + h * plan.query_stride[1] + d) * T_bytes,
              plan.dtype);
        }
      }
      std::vector<double> logit(static_cast<std::size_t>(G * L));
      for (std::int64_t t = 0; t < L; ++t) {
        for (std::int64_t d = 0; d < D; ++d) k[d] = key_value(key_at(t, g, d));
        for (std::int64_t j = 0; j < G; ++j) {
          double dot = 0.0;
          for (std::int64_t d = 0; d < D; ++d) dot += q[j * D + d] * k[d];
          double value = static_cast<double>(plan.scale) * dot;
          if (plan.has_alibi) {
            const float slope = data.alibi_slopes[(g * G + j) * plan.alibi_stride];
            value += static_cast<double>(slope) * static_cast<double>(t - L + 1);
          }
          logit[j * L + t] = value;
        }
      }

      // Partition by partition: the softmax, then the values weighted by the rounded
      // probabilities (each value dequantized once for all G heads).
      std::vector<double> max_logit(static_cast<std::size_t>(G * partitions)),
          exp_sum(static_cast<std::size_t>(G * partitions));
      for (std::int64_t p = 0; p < partitions; ++p) {
        const std::int64_t begin = p * partition, end = std::min(L, begin + partition);
        std::vector<double> prob(static_cast<std::size_t>(G * (end - begin)));
        for (std::int64_t j = 0; j < G; ++j) {
          double m = -INFINITY;
          for (std::int64_t t = begin; t < end; ++t) m = std::max(m, logit[j * L + t]);
          double sum = 0.0;
          for (std::int64_t t = begin; t < end; ++t) sum += std::exp(logit[j * L + t] - m);
          for (std::int64_t t = begin; t < end; ++t) {
            prob[j * (end - begin) + t - begin] =
                rounded_to(plan.dtype, std::exp(logit[j * L + t] - m) / (sum + 1e-6));
          }
          max_logit[j * partitions + p] = m;
          exp_sum[j * partitions + p] = sum;
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        for (std::int64_t t = begin; t < end; ++t) {
          for (std::int64_t d = 0; d < D; ++d) v[d] = value_value(value_at(t, g, d));
          for (std::int64_t j = 0; j < G; ++j) {
            const double weight = prob[j * (end - begin) + t - begin];
            for (std::int64_t d = 0; d < D; ++d) acc[j * D + d] += weight * v[d];
          }
        }
        for (std::int64_t j = 0; j < G; ++j) {
          const std::int64_t h = g * G + j;
          for (std::int64_t d = 0; d < D; ++d) {
            const float value = static_cast<float>(acc[j * D + d]);
            if (v2) {
              cpu::store_activation(tmp_out + (s * plan.tmp_out_stride[0] +
                                               h * plan.tmp_out_stride[1] +
                                               p * plan.tmp_out_stride[2] + d) * T_bytes,
                                    plan.dtype, value);
            } else {
              cpu::store_activation(
                  out + (row * plan.out_stride[0] + h * plan.out_stride[1] + d) * T_bytes,
                  plan.dtype, value);
            }
          }
          if (v2) {
            data.max_logits[s * plan.max_logits_stride[0] + h * plan.max_logits_stride[1] +
                            p * plan.max_logits_stride[2]] =
                static_cast<float>(max_logit[j * partitions + p]);
            data.exp_sums[s * plan.exp_sums_stride[0] + h * plan.exp_sums_stride[1] +
                          p * plan.exp_sums_stride[2]] =
                static_cast<float>(exp_sum[j * partitions + p]);
          }
        }
      }
      if (!v2) continue;

      // v2's merge: the partitions' outputs (as stored, rounded to T) weighted by their sums
      // rescaled to the largest maximum.
      for (std::int64_t j = 0; j < G; ++j) {
        const std::int64_t h = g * G + j;
        const auto tmp_at = [&](std::int64_t p, std::int64_t d) {
          return tmp_out + (s * plan.tmp_out_stride[0] + h * plan.tmp_out_stride[1] +
                            p * plan.tmp_out_stride[2] + d) * T_bytes;
        };
        std::uint8_t* out_row =
            out + (row * plan.out_stride[0] + h * plan.out_stride[1]) * out_bytes;
        if (partitions == 1 && !plan.merge_single_partition) {  // v2 copies the one partition
          for (std::int64_t d = 0; d < D; ++d) {
            std::copy(tmp_at(0, d), tmp_at(0, d) + T_bytes, out_row + d * T_bytes);
          }
          continue;
        }
        double M = -INFINITY;
        for (std::int64_t p = 0; p < partitions; ++p) M = std::max(M, max_logit[j * partitions + p]);
        std::vector<double> weight(static_cast<std::size_t>(partitions));
        double total = 0.0;
        for (std::int64_t p = 0; p < partitions; ++p) {
          weight[p] = exp_sum[j * partitions + p] * std::exp(max_logit[j * partitions + p] - M);
          total += weight[p];
        }
        for (std::int64_t d = 0; d < D; ++d) {
          double sum = 0.0;
          for (std::int64_t p = 0; p < partitions; ++p) {
            sum += cpu::load_activation(tmp_at(p, d), plan.dtype) * weight[p];
          }
          const float merged = static_cast<float>(sum / (total + 1e-6));
          if (plan.fp8_output) {  // rocm's fp8 output: out × (1 / fp8_out_scale), clamped
            out_row[d] = cpu::fp8_output(merged, out_scale_inverse);
          } else {
            cpu::store_activation(out_row + d * T_bytes, plan.dtype, merged);
          }
        }
      }
    }
  };
  cpu::for_each_index(plan.num_seqs, one_sequence);
}

}  // namespace attention

void PagedAttentionV1::cpu(const Plan& plan, const Args& args) {
  attention::cpu(plan, paged_attention_data(plan, args));
}

void PagedAttentionV2::cpu(const Plan& plan, const Args& args) {
  attention::cpu(plan, paged_attention_data(plan, args));
}

void PagedAttentionRocm::cpu(const Plan& plan, const Args& args) {
  attention::cpu(plan, paged_attention_data(plan, args));
}

}  // namespace pagedkv
