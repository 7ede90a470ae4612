// CPU reference of process_kv (LMDeploy src/turbomind/kernels/attention/kv_cache_utils_v2.cu:
// ProcessKV_v2): the specification in code. For each sequence b, new token qi and KV head h:
// the row k[cu_q_len[b] + qi, h] plus k_bias[h] (rounded to the activation type T), rotated by
// its position ti = k_len - q_len + qi, then stored at row ti % block_seq_len of block
// blocks[cu_block_num[b] + ti / block_seq_len] as it is (policy 0) or as int8 / int4 codes
// with its [scale, zero]; the same for v, which is never rotated. With context parallelism this
// rank stores only the positions ti ≡ cp_rank (mod cp_size), at ti / cp_size; positions in the
// first readonly_block_num[b] blocks are not stored.
#include "pagedkv/ops/process_kv.h"

#include <cstdint>
#include <cstring>
#include <vector>

#include "cache_element.h"
#include "turbomind_kv.h"

namespace pagedkv {

void ProcessKv::cpu(const Plan& plan, const Args& args) {
  namespace tm = cpu::turbomind;
  auto* pool = static_cast<std::uint8_t*>(args.kv_cache.data);             // [num_blocks, bytes]
  const auto* offsets = static_cast<const std::int64_t*>(args.blocks.data);  // [total_blocks]
  const auto* cu_q = static_cast<const std::int32_t*>(args.cu_q_len.data);  // [batch + 1]
  const auto* cu_k = static_cast<const std::int32_t*>(args.cu_k_len.data);  // [batch + 1]
  const auto* cu_blocks = static_cast<const std::int32_t*>(args.cu_block_num.data);
  const auto* readonly = static_cast<const std::int32_t*>(args.readonly_block_num.data);
  const auto* k = static_cast<const std::uint8_t*>(args.k.data);  // [rows, heads, dim]
  const auto* v = static_cast<const std::uint8_t*>(args.v.data);
  const auto* k_bias = static_cast<const std::uint8_t*>(args.k_bias.data);  // [heads, dim]
  const auto* v_bias = static_cast<const std::uint8_t*>(args.v_bias.data);
  const DType t = plan.dtype;
  const int dim = plan.layout.head_dim;
  std::vector<float> key(static_cast<std::size_t>(dim)), value(key.size());

  for (std::int64_t b = 0; b < plan.batch; ++b) {
    const std::int64_t q_len = static_cast<std::int64_t>(cu_q[b + 1]) - cu_q[b];
    const std::int64_t k_len = static_cast<std::int64_t>(cu_k[b + 1]) - cu_k[b];
    const std::int64_t history = k_len - q_len;
    const std::int64_t readonly_len =
        readonly != nullptr ? readonly[b] * plan.block_seq_len * plan.cp_size : 0;
    for (std::int64_t qi = 0; qi < q_len; ++qi) {
      const std::int64_t ti = history + qi;  // the token's position in its sequence
      if (ti % plan.cp_size != plan.cp_rank || ti < readonly_len) continue;
      const std::int64_t local = ti / plan.cp_size;
      std::uint8_t* block = pool + offsets[cu_blocks[b] + local / plan.block_seq_len];
      const std::int64_t row = local % plan.block_seq_len;
      const std::int64_t input_row = cu_q[b] + qi;
      for (std::int64_t h = 0; h < plan.layout.head_num; ++h) {
        const std::uint8_t* k_row = k + (input_row * plan.token_stride + h * plan.head_stride) * 2;
        const std::uint8_t* v_row =
            v + (input_row * plan.v_token_stride + h * plan.v_head_stride) * 2;
        for (int d = 0; d < dim; ++d) {
          key[d] = cpu::load_activation(k_row + 2 * d, t);
          value[d] = cpu::load_activation(v_row + 2 * d, t);
          if (k_bias != nullptr)  // the bias is added in T
            key[d] = tm::round_to(t, key[d] + cpu::load_activation(k_bias + (h * dim + d) * 2, t));
          if (v_bias != nullptr)
            value[d] =
                tm::round_to(t, value[d] + cpu::load_activation(v_bias + (h * dim + d) * 2, t));
        }
        tm::rotate(plan, b, ti, key.data());  // K only, before quantization
        const tm::TokenPlace place = tm::place_of(plan, h, row);
        if (plan.quant_bits == 16) {
          for (int d = 0; d < dim; ++d) {
            tm::store_value(t, key[d], block + place.k_data + 2 * d);
            tm::store_value(t, value[d], block + place.v_data + 2 * d);
          }
        } else {
          tm::quantize_row(plan, key.data(), block + place.k_data, block + place.k_param);
          tm::quantize_row(plan, value.data(), block + place.v_data, block + place.v_param);
        }
      }
    }
  }
}

}  // namespace pagedkv
