// CPU reference of rotary_embedding (vLLM csrc/pos_encoding_kernels.cu @0f5257e:
// rotary_embedding_kernel and apply_rotary_embedding): the specification in code.
//
// For each token t with position p = positions.flat[t], every head of query, then every head of
// key (when given), has its rot_dim / 2 pairs, counted from element rope_dim_offset, rotated in
// place by the angles of cos_sin_cache row p (sines negated when inverse). Elements outside
// [rope_dim_offset, rope_dim_offset + rot_dim) are not touched.
//
// Bit for bit with the kernels: the pair rotation is rope.cpp's, shared with
// concat_and_cache_mla_rope_fused, x' = fma(x, c, -(y * s)) and y' = fma(y, c, x * s) in fp32,
// each rounded once to the activation dtype (rope.cpp is compiled with -ffp-contract=off; the
// chapter "MLA: one latent vector per token" explains why).
#include <cstdint>

#include "pagedkv/ops/rotary_embedding.h"
#include "rope.h"

namespace pagedkv {

namespace {

// Rotates every head of one token of query or key.
void rotate_token(std::uint8_t* token_row, std::int64_t num_heads, std::int64_t head_stride,
                  const std::uint8_t* cos_sin_row, const RotaryEmbeddingPlan& plan) {
  const std::int64_t bytes = dtype_size(plan.dtype);
  for (std::int64_t head = 0; head < num_heads; ++head) {
    std::uint8_t* rotated = token_row + (head * head_stride + plan.rope_dim_offset) * bytes;
    cpu::rotate_head(rotated, cos_sin_row, plan.rot_dim / 2, plan.is_neox, plan.inverse,
                     plan.dtype, plan.cache_dtype);
  }
}

}  // namespace

void RotaryEmbedding::cpu(const Plan& plan, const Args& args) {
  const auto* positions = static_cast<const std::int64_t*>(args.positions.data);  // [T]
  auto* query = static_cast<std::uint8_t*>(args.query.data);  // [T, H, head_size], in place
  auto* key = static_cast<std::uint8_t*>(args.key.data);      // [T, KVH, head_size] or none
  const auto* cos_sin = static_cast<const std::uint8_t*>(args.cos_sin_cache.data);  // [P, rot]
  const std::int64_t bytes = dtype_size(plan.dtype);
  const std::int64_t row_bytes = plan.rot_dim * dtype_size(plan.cache_dtype);

  for (std::int64_t token = 0; token < plan.num_tokens; ++token) {
    const std::uint8_t* cos_sin_row = cos_sin + positions[token] * row_bytes;
    rotate_token(query + token * plan.query_token_stride * bytes, plan.num_heads,
                 plan.query_head_stride, cos_sin_row, plan);
    if (plan.num_kv_heads > 0) {  // a key was given
      rotate_token(key + token * plan.key_token_stride * bytes, plan.num_kv_heads,
                   plan.key_head_stride, cos_sin_row, plan);
    }
  }
}

}  // namespace pagedkv
