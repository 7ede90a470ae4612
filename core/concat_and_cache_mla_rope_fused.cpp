// The one contract of concat_and_cache_mla_rope_fused (vLLM csrc/cache_kernels_fused.cu
// @f401c4b: concat_and_cache_mla_rope_fused), shared by the CPU reference, the naive and the
// optimized CUDA kernels. Every rule throws InvalidArgument naming the argument, the expected
// and the actual value, before any byte is written (q_pe and k_pe included: they are written in
// place).
//
// Upstream checks the shapes and dtypes of every tensor, T = q_pe.size(0) everywhere, an int64
// positions and slot_mapping, the entry size and a one-element f32 scale. Beyond that, this
// contract also rejects:
//   - positions outside [0, cos_sin_cache.size(0)) (upstream reads outside cos_sin_cache);
//   - an odd rot_dim (pairs would straddle the halves);
//   - slots >= num_blocks * block_size (upstream writes out of bounds);
//   - an "auto" cache whose dtype differs from q_pe's (upstream reinterprets the bits);
//   - entry or block strides under which two entries overlap;
// and it makes zero tokens a no-op (upstream launches an empty grid, a launch error).
#include "pagedkv/ops/concat_and_cache_mla_rope_fused.h"

#include <cstdint>
#include <string_view>

#include "cache_write_checks.h"
#include "mla_checks.h"
#include "pagedkv/checks.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"
#include "position_checks.h"

namespace pagedkv {

ConcatAndCacheMlaRopeFused::Plan ConcatAndCacheMlaRopeFused::validate(const Args& args,
                                                                       Impl impl) {
  const TensorView& positions = args.positions;
  const TensorView& q_pe = args.q_pe;
  const TensorView& k_pe = args.k_pe;
  const TensorView& kv_c = args.kv_c;
  const TensorView& cos_sin_cache = args.cos_sin_cache;
  const TensorView& slot_mapping = args.slot_mapping;
  const TensorView& kv_cache = args.kv_cache;
  const std::string_view kv_cache_dtype = args.kv_cache_dtype;

  // 1. Every tensor the op touches lives where the implementation computes.
  const Device device = impl_device(impl);
  checks::device_is(positions, "positions", device);
  checks::device_is(q_pe, "q_pe", device);
  checks::device_is(k_pe, "k_pe", device);
  checks::device_is(kv_c, "kv_c", device);
  checks::device_is(cos_sin_cache, "cos_sin_cache", device);
  checks::device_is(slot_mapping, "slot_mapping", device);
  checks::device_is(kv_cache, "kv_cache", device);

  // 2. q_pe [T, num_q_heads, rot_dim] defines T and rot_dim; the others follow it.
  checks::ndim_is(q_pe, "q_pe", 3);
  checks::non_negative_layout(q_pe, "q_pe");
  checks::packed_from(q_pe, "q_pe", 2);
  checks::dtype_in(q_pe, "q_pe", {DType::f32, DType::f16, DType::bf16});
  const std::int64_t num_tokens = q_pe.size(0);
  const std::int64_t rot_dim = q_pe.size(2);
  checks::mla_rows(k_pe, "k_pe");
  checks::dtype_is(k_pe, "k_pe", q_pe.dtype);
  // q_pe and k_pe are rotated in place: two elements at one address would be rotated twice
  // (or raced for on the GPU). Found by the fuzzer (tests/fuzz/): a stride(0) of 0 passed.
  PAGEDKV_CHECK(checks::elements_are_distinct(q_pe), "q_pe: strides must give every element its ",
                "own memory (it is rotated in place), but ", q_pe.describe(),
                " maps several elements to one address");
  PAGEDKV_CHECK(checks::elements_are_distinct(k_pe), "k_pe: strides must give every element its ",
                "own memory (it is rotated in place), but ", k_pe.describe(),
                " maps several elements to one address");
  checks::size_is(k_pe, "k_pe", 0, num_tokens, "T = q_pe.size(0)");
  checks::size_is(k_pe, "k_pe", 1, rot_dim, "rot_dim = q_pe.size(2)");
  checks::mla_rows(kv_c, "kv_c");
  checks::dtype_is(kv_c, "kv_c", q_pe.dtype);
  checks::size_is(kv_c, "kv_c", 0, num_tokens, "T = q_pe.size(0)");
  const std::int64_t kv_lora_rank = kv_c.size(1);
  PAGEDKV_CHECK(kv_lora_rank + rot_dim <= checks::kMaxMlaEntryElements,
                "kv_c: kv_lora_rank + rot_dim = ", kv_lora_rank + rot_dim,
                " elements per entry, expected at most ", checks::kMaxMlaEntryElements);
  PAGEDKV_CHECK(q_pe.size(1) * rot_dim <= checks::kMaxMlaEntryElements,
                "q_pe: num_q_heads × rot_dim = ", q_pe.size(1) * rot_dim,
                " elements per token, expected at most ", checks::kMaxMlaEntryElements);

  // 3. cos_sin_cache [max_position, rot_dim], contiguous: rot_dim / 2 cosines, then the sines.
  checks::ndim_is(cos_sin_cache, "cos_sin_cache", 2);
  checks::dtype_is(cos_sin_cache, "cos_sin_cache", q_pe.dtype);
  PAGEDKV_CHECK(cos_sin_cache.size(1) % 2 == 0, "cos_sin_cache: rot_dim = size(1) must be even ",
                "(rot_dim / 2 cosines, then as many sines), got ", cos_sin_cache.size(1));
  PAGEDKV_CHECK(cos_sin_cache.size(1) == rot_dim, "cos_sin_cache: rot_dim = size(1) must equal ",
                "the RoPE head q_pe.size(2) = ", rot_dim, " (the whole head is rotated), got ",
                cos_sin_cache.size(1));
  PAGEDKV_CHECK(cos_sin_cache.is_contiguous(), "cos_sin_cache: expected a contiguous tensor, got ",
                cos_sin_cache.describe());

  // 4. The cache: "auto" / fp8 entries of kv_lora_rank + rot_dim elements.
  PAGEDKV_CHECK(kv_cache_dtype != "fp8_ds_mla", "kv_cache_dtype: \"fp8_ds_mla\" is not ",
                "supported by the RoPE-fused writer (use concat_and_cache_mla)");
  const KvCacheDtype cache_kind = parse_kv_cache_dtype(kv_cache_dtype, q_pe.dtype);
  checks::mla_cache(kv_cache, "kv_cache", kv_lora_rank + rot_dim, cache_kind, kv_cache_dtype,
                    q_pe.dtype);

  // 5. positions [>= T] and slot_mapping [T]: contiguous int64.
  checks::ndim_is(positions, "positions", 1);
  checks::dtype_is(positions, "positions", DType::i64);
  PAGEDKV_CHECK(positions.is_contiguous(), "positions: expected a contiguous tensor, got ",
                positions.describe());
  PAGEDKV_CHECK(positions.size(0) >= num_tokens, "positions: expected at least T = q_pe.size(0) ",
                "= ", num_tokens, " elements, got ", positions.size(0));
  checks::ndim_is(slot_mapping, "slot_mapping", 1);
  checks::dtype_is(slot_mapping, "slot_mapping", DType::i64);
  PAGEDKV_CHECK(slot_mapping.is_contiguous(), "slot_mapping: expected a contiguous tensor, got ",
                slot_mapping.describe());
  checks::size_is(slot_mapping, "slot_mapping", 0, num_tokens, "T = q_pe.size(0)");

  // 6. The scale: read only by the fp8 kinds.
  if (is_fp8(cache_kind)) checks::one_f32_scale(args.kv_cache_scale, "kv_cache_scale", device);

  // 7. Memory behind every tensor that has elements.
  checks::not_null(positions, "positions");
  checks::not_null(q_pe, "q_pe");
  checks::not_null(k_pe, "k_pe");
  checks::not_null(kv_c, "kv_c");
  checks::not_null(cos_sin_cache, "cos_sin_cache");
  checks::not_null(slot_mapping, "slot_mapping");
  checks::not_null(kv_cache, "kv_cache");

  ConcatAndCacheMlaRopeFusedPlan plan;
  plan.num_tokens = num_tokens;
  plan.num_q_heads = q_pe.size(1);
  plan.rot_dim = rot_dim;
  plan.kv_lora_rank = kv_lora_rank;
  plan.max_position = cos_sin_cache.size(0);
  plan.q_token_stride = q_pe.stride(0);
  plan.q_head_stride = q_pe.stride(1);
  plan.k_pe_stride = k_pe.stride(0);
  plan.kv_c_stride = kv_c.stride(0);
  plan.block_size = kv_cache.size(1);
  plan.num_blocks = kv_cache.size(0);
  plan.block_stride = kv_cache.stride(0);
  plan.entry_stride = kv_cache.stride(1);
  plan.is_neox = args.is_neox;
  plan.activation_dtype = q_pe.dtype;
  plan.cache_kind = cache_kind;

  // 8. The indices the kernels follow: every slot inside the cache (negative = padding), every
  //    used position a row of cos_sin_cache. Both read device memory: on the GPU, CUB
  //    reductions and synchronizations, or check kernels when the call defers its errors
  //    (pagedkv/deferred_checks.h).
  checks::slots_fit(slot_mapping, plan.num_blocks, plan.block_size);
  const CheckScope* scope = CheckScope::current();
  if (num_tokens > 0 && scope != nullptr && scope->deferred && positions.device == Device::cuda) {
    checks::enqueue_position_check(*scope, positions.data, num_tokens, plan.max_position);
  } else if (num_tokens > 0) {
    TensorView used_positions = positions;  // only the first T are read (the rest is padding)
    used_positions.shape[0] = num_tokens;
    const IndexAt largest = max_unsigned_index(used_positions);
    PAGEDKV_CHECK(largest.value >= 0 && largest.value < plan.max_position, "positions[",
                  largest.position, "] = ", largest.value, ": expected a position in [0, ",
                  plan.max_position, ") (cos_sin_cache.size(0))");
  }
  return plan;
}

}  // namespace pagedkv
