// CPU reference of concat_and_cache_mla_rope_fused (vLLM csrc/cache_kernels_fused.cu @f401c4b:
// concat_and_cache_mla_rope_fused_kernel): the specification in code.
//
// For each token t with position p: every query head's RoPE pairs are rotated in place; then,
// unless the token is padding (negative slot), the key's pairs too, and the entry
// [kv_c[t], rotated k_pe[t]] is stored (mla_entry.cpp, shared with concat_and_cache_mla).
//
// Bit for bit with the kernels: each rotated value is computed with exactly the kernels' fp32
// operations in the same order, x' = fma(x, c, -(y * s)) and y' = fma(y, c, x * s), each
// product and fma rounded once (std::fma is the one fused multiply-add; the build compiles this
// file with -ffp-contract=off so that the compiler fuses nothing else), then rounded once to
// the activation dtype. A NaN result is stored as the GPU's canonical NaN.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "cache_element.h"
#include "mla_entry.h"
#include "numerics.h"
#include "pagedkv/ops/concat_and_cache_mla_rope_fused.h"

namespace pagedkv {

namespace {

// Stores `value` rounded to nearest even into one activation element.
void store_activation(std::uint8_t* element, DType dtype, float value) {
  if (dtype == DType::f32) {
    // x86 keeps a NaN's payload; the GPU's arithmetic gives the canonical 0x7FFFFFFF.
    const std::uint32_t bits = std::isnan(value) ? 0x7FFFFFFFu : 0;
    if (bits != 0) {
      std::memcpy(element, &bits, 4);
    } else {
      std::memcpy(element, &value, 4);
    }
    return;
  }
  const std::uint16_t bits = dtype == DType::f16 ? numerics::float_to_half_bits(value)
                                                 : numerics::float_to_bf16_bits(value);
  std::memcpy(element, &bits, 2);
}

// Rotates the `half` pairs of one RoPE head in place by the angles of one cos_sin_cache row.
void rotate_head(std::uint8_t* head, const std::uint8_t* cos_sin_row, std::int64_t half,
                 bool is_neox, DType dtype) {
  const std::int64_t bytes = dtype_size(dtype);
  for (std::int64_t i = 0; i < half; ++i) {
    // NeoX pairs element i with element half + i; GPT-J pairs neighbours 2i, 2i + 1.
    std::uint8_t* x_at = head + (is_neox ? i : 2 * i) * bytes;
    std::uint8_t* y_at = head + (is_neox ? half + i : 2 * i + 1) * bytes;
    const float x = cpu::load_activation(x_at, dtype);
    const float y = cpu::load_activation(y_at, dtype);
    const float c = cpu::load_activation(cos_sin_row + i * bytes, dtype);
    const float s = cpu::load_activation(cos_sin_row + (half + i) * bytes, dtype);
    const float y_sin = y * s;  // rounded to fp32, as the kernels' __fmul_rn
    const float x_sin = x * s;
    store_activation(x_at, dtype, std::fma(x, c, -y_sin));
    store_activation(y_at, dtype, std::fma(y, c, x_sin));
  }
}

}  // namespace

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
      rotate_head(q_pe + (token * plan.q_token_stride + head * plan.q_head_stride) * bytes,
                  cos_sin_row, half, plan.is_neox, dtype);
    }
    const std::int64_t slot = slots[token];
    if (slot < 0) continue;  // padding token: k_pe and the cache stay untouched
    std::uint8_t* k_pe_row = k_pe + token * plan.k_pe_stride * bytes;
    rotate_head(k_pe_row, cos_sin_row, half, plan.is_neox, dtype);
    const std::int64_t block = slot / plan.block_size;
    const std::int64_t offset_in_block = slot % plan.block_size;
    cpu::store_mla_entry(
        kv_cache + (block * plan.block_stride + offset_in_block * plan.entry_stride) * cache_bytes,
        kv_c + token * plan.kv_c_stride * bytes, k_pe_row, plan.kv_lora_rank, plan.rot_dim, dtype,
        plan.cache_kind, scale);
  }
}

}  // namespace pagedkv
