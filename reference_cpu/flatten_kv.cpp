// CPU reference of flatten_kv (LMDeploy src/turbomind/kernels/attention/kv_cache_utils_v2.cu:
// flattenKV_v2): the specification in code. For each sequence b, position si < k_len and KV
// head h: the row at si % block_seq_len of block blocks[cu_block_num[b] + si / block_seq_len],
// read as it is (policy 0) or dequantized x = T(T(code × scale) + zero), rotated by si when a
// RoPE type is given, written to row cu_k_len[b] - cu_k_len[0] + si of k_out (and v_out). With
// context parallelism this rank reads only its positions, to rows ... + si / cp_size.
#include "pagedkv/ops/flatten_kv.h"

#include <cstdint>
#include <vector>

#include "turbomind_kv.h"

namespace pagedkv {

void FlattenKv::cpu(const Plan& plan, const Args& args) {
  namespace tm = cpu::turbomind;
  const auto* pool = static_cast<const std::uint8_t*>(args.kv_cache.data);
  const auto* offsets = static_cast<const std::int64_t*>(args.blocks.data);  // [total_blocks]
  const auto* cu_k = static_cast<const std::int32_t*>(args.cu_k_len.data);  // [batch + 1]
  const auto* cu_blocks = static_cast<const std::int32_t*>(args.cu_block_num.data);
  auto* k_out = static_cast<std::uint8_t*>(args.k_out.data);  // [rows, heads, dim]
  auto* v_out = static_cast<std::uint8_t*>(args.v_out.data);
  const DType t = plan.dtype;
  const int dim = plan.layout.head_dim;
  std::vector<float> key(static_cast<std::size_t>(dim)), value(key.size());

  for (std::int64_t b = 0; b < plan.batch; ++b) {
    const std::int64_t first_row = static_cast<std::int64_t>(cu_k[b]) - cu_k[0];  // rebased to the first sequence
    const std::int64_t k_len = static_cast<std::int64_t>(cu_k[b + 1]) - cu_k[b];
    for (std::int64_t si = 0; si < k_len; ++si) {
      if (si % plan.cp_size != plan.cp_rank) continue;  // another rank's token
      const std::int64_t local = si / plan.cp_size;
      const std::uint8_t* block = pool + offsets[cu_blocks[b] + local / plan.block_seq_len];
      const std::int64_t row = local % plan.block_seq_len;
      const std::int64_t out_row = first_row + local;
      for (std::int64_t h = 0; h < plan.layout.head_num; ++h) {
        const tm::TokenPlace place = tm::place_of(plan, h, row);
        tm::dequantize_row(plan, block + place.k_data, block + place.k_param, key.data());
        tm::dequantize_row(plan, block + place.v_data, block + place.v_param, value.data());
        tm::rotate(plan, b, si, key.data());  // only when a RoPE type is given
        std::uint8_t* k_row = k_out + (out_row * plan.token_stride + h * plan.head_stride) * 2;
        std::uint8_t* v_row = v_out + (out_row * plan.v_token_stride + h * plan.v_head_stride) * 2;
        for (int d = 0; d < dim; ++d) {
          tm::store_value(t, key[d], k_row + 2 * d);
          tm::store_value(t, value[d], v_row + 2 * d);
        }
      }
    }
  }
}

}  // namespace pagedkv
