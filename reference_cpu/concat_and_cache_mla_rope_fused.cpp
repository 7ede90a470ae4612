// CPU reference of concat_and_cache_mla_rope_fused (vLLM csrc/cache_kernels_fused.cu @f401c4b:
// concat_and_cache_mla_rope_fused_kernel): the specification in code.
//
// For each token t with position p: every query head's RoPE pairs are rotated in place; then,
// unless the token is padding (negative slot), the key's pairs too, and the entry
// [kv_c[t], rotated k_pe[t]] is stored (mla_entry.cpp, shared with concat_and_cache_mla).
//
// Bit for bit with the kernels: each rotated value is computed with exactly the kernels' fp32
// operations in the same order, x' = fma(x, c, -(y * s)) and y' = fma(y, c, x * s), each
// product and fma rounded once (std::fma is the one fused multiply-add; the build compiles
// rope.cpp, shared with rotary_embedding, with -ffp-contract=off so that the compiler fuses
// nothing else), then rounded once to the activation dtype. A NaN result is stored as the GPU's
// canonical NaN.
#include <cstdint>

#include "mla_entry.h"
#include "pagedkv/ops/concat_and_cache_mla_rope_fused.h"
#include "rope.h"

namespace pagedkv {

void ConcatAndCacheMlaRopeFused::cpu(const Plan& plan, const Args& args) {
  const auto* positions = static_cast<const std::int64_t*>(args.positions.data);  // [>= T]
  auto* q_pe = static_cast<std::uint8_t*>(args.q_pe.data);         // [T, H, rot_dim], in place
  auto* k_pe = static_cast<std::uint8_t*>(args.k_pe.data);         // [T, rot_dim], in place
  const auto* kv_c = static_cast<const std::uint8_t*>(args.kv_c.data);  // [T, kv_lora_rank]
  const auto* cos_sin = static_cast<const std::uint8_t*>(args.cos_sin_cache.data);  // [P, rot]
  const auto* slots = static_cast<const std::int64_t*>(args.slot_mapping.data);     // [T]
  auto* kv_cache = static_cast<std::uint8_t*>(args.kv_cache.data);  // [N, block_size, entry]
  const DType dtype = plan.activation_dtype;
  const std::int64_t bytes = dtype_size(dtype);
  const std::int64_t cache_bytes = args.kv_cache.element_size();
  const std::int64_t half = plan.rot_dim / 2;
  const float scale =
      is_fp8(plan.cache_kind) ? *static_cast<const float*>(args.kv_cache_scale.data) : 1.f;

  for (std::int64_t token = 0; token < plan.num_tokens; ++token) {
    const std::uint8_t* cos_sin_row = cos_sin + positions[token] * plan.rot_dim * bytes;
    // The query heads are rotated for every token, padding included (upstream does the same).
    for (std::int64_t head = 0; head < plan.num_q_heads; ++head) {
      cpu::rotate_head(q_pe + (token * plan.q_token_stride + head * plan.q_head_stride) * bytes,
                       cos_sin_row, half, plan.is_neox, /*inverse=*/false, dtype, dtype);
    }
    const std::int64_t slot = slots[token];
    if (slot < 0) continue;  // padding token: k_pe and the cache stay untouched
    std::uint8_t* k_pe_row = k_pe + token * plan.k_pe_stride * bytes;
    cpu::rotate_head(k_pe_row, cos_sin_row, half, plan.is_neox, /*inverse=*/false, dtype, dtype);
    const std::int64_t block = slot / plan.block_size;
    const std::int64_t offset_in_block = slot % plan.block_size;
    cpu::store_mla_entry(
        kv_cache + (block * plan.block_stride + offset_in_block * plan.entry_stride) * cache_bytes,
        kv_c + token * plan.kv_c_stride * bytes, k_pe_row, plan.kv_lora_rank, plan.rot_dim, dtype,
        plan.cache_kind, scale);
  }
}

}  // namespace pagedkv
