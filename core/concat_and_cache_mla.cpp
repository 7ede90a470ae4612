// The one contract of concat_and_cache_mla (vLLM csrc/cache_kernels.cu @9803b00:
// concat_and_cache_mla), shared by the CPU reference, the naive and the optimized CUDA kernels.
// Every rule throws InvalidArgument naming the argument, the expected and the actual value,
// before any byte is written.
//
// Beyond what upstream checks (entry size, and for fp8_ds_mla kv_lora_rank 512, rope_dim 64,
// a 656-byte entry and 16-bit input), this contract also rejects what upstream silently gets
// wrong:
//   - an int32 slot_mapping (upstream reads it through an int64 pointer: garbage slots);
//   - slots >= num_blocks * block_size (upstream writes out of bounds);
//   - an "auto" cache whose dtype differs from kv_c's (upstream reinterprets the bits);
//   - fp16 input for fp8_ds_mla: upstream carries fp16 as raw uint16 and takes the tile amax
//     of the bit patterns, not of the values. We reject it rather than compute it right,
//     because the entry's RoPE part is read as bf16 by FlashMLA: fp16 bits there would be
//     garbage whatever the scales;
//   - an fp8 scale that is not exactly one f32 (upstream reads element 0 of anything);
//   - entry or block strides under which two entries overlap (the writes would race);
// and it makes zero tokens a no-op (upstream launches an empty grid, a launch error).
#include "pagedkv/ops/concat_and_cache_mla.h"

#include <cstdint>
#include <string>
#include <string_view>

#include "cache_write_checks.h"
#include "mla_checks.h"
#include "pagedkv/checks.h"
#include "pagedkv/error.h"

namespace pagedkv {

ConcatAndCacheMla::Plan ConcatAndCacheMla::validate(const Args& args, Impl impl) {
  const TensorView& kv_c = args.kv_c;
  const TensorView& k_pe = args.k_pe;
  const TensorView& kv_cache = args.kv_cache;
  const TensorView& slot_mapping = args.slot_mapping;
  const std::string_view kv_cache_dtype = args.kv_cache_dtype;

  // 1. Every tensor the op touches lives where the implementation computes.
  const Device device = impl_device(impl);
  checks::device_is(kv_c, "kv_c", device);
  checks::device_is(k_pe, "k_pe", device);
  checks::device_is(kv_cache, "kv_cache", device);
  checks::device_is(slot_mapping, "slot_mapping", device);

  // 2. Rows: [T_pad, kv_lora_rank] and [T_pad, rope_dim] of one activation dtype, packed rows.
  checks::mla_rows(kv_c, "kv_c");
  checks::mla_rows(k_pe, "k_pe");
  checks::dtype_in(kv_c, "kv_c", {DType::f32, DType::f16, DType::bf16});
  checks::dtype_is(k_pe, "k_pe", kv_c.dtype);
  const std::int64_t kv_lora_rank = kv_c.size(1);
  const std::int64_t rope_dim = k_pe.size(1);
  PAGEDKV_CHECK(kv_lora_rank + rope_dim <= checks::kMaxMlaEntryElements,
                "kv_c: kv_lora_rank + rope_dim = ", kv_lora_rank + rope_dim,
                " elements per entry, expected at most ", checks::kMaxMlaEntryElements);

  // 3. The cache kind, and the cache: one entry per slot, packed.
  const bool ds_mla = kv_cache_dtype == "fp8_ds_mla";
  KvCacheDtype cache_kind = KvCacheDtype::kFp8E4m3;  // the ds_mla latent is E4M3
  if (ds_mla) {
    PAGEDKV_CHECK(kv_c.dtype == DType::bf16, "kv_c: kv_cache_dtype \"fp8_ds_mla\" needs bf16 ",
                  "input (the entry stores the RoPE part as bf16), got ", dtype_name(kv_c.dtype));
    PAGEDKV_CHECK(kv_lora_rank == kDsMlaLatent, "kv_c: kv_lora_rank = size(1) must be ",
                  kDsMlaLatent, " for kv_cache_dtype \"fp8_ds_mla\", got ", kv_lora_rank);
    PAGEDKV_CHECK(rope_dim == kDsMlaRope, "k_pe: rope_dim = size(1) must be ", kDsMlaRope,
                  " for kv_cache_dtype \"fp8_ds_mla\", got ", rope_dim);
    checks::ndim_is(kv_cache, "kv_cache", 3);
    checks::non_negative_layout(kv_cache, "kv_cache");
    PAGEDKV_CHECK(kv_cache.dtype == DType::u8 || kv_cache.dtype == DType::f8_e4m3,
                  "kv_cache: kv_cache_dtype \"fp8_ds_mla\" stores bytes, expected dtype u8 or "
                  "f8_e4m3, got ", dtype_name(kv_cache.dtype));
    PAGEDKV_CHECK(kv_cache.size(2) == kDsMlaEntryBytes, "kv_cache: entry size, size(2), must be ",
                  kDsMlaEntryBytes, " bytes for kv_cache_dtype \"fp8_ds_mla\", got ",
                  kv_cache.size(2), " (shape ", kv_cache.shape_string(), ")");
    checks::packed_from(kv_cache, "kv_cache", 2);
    checks::mla_entries_distinct(kv_cache, "kv_cache", kDsMlaEntryBytes);
  } else {
    cache_kind = parse_kv_cache_dtype(kv_cache_dtype, kv_c.dtype);
    checks::mla_cache(kv_cache, "kv_cache", kv_lora_rank + rope_dim, cache_kind, kv_cache_dtype,
                      kv_c.dtype);
  }

  // 4. slot_mapping: [T] contiguous int64; kv_c and k_pe may have more rows (CUDA-graph
  //    padding), never fewer.
  checks::ndim_is(slot_mapping, "slot_mapping", 1);
  checks::dtype_is(slot_mapping, "slot_mapping", DType::i64);
  checks::non_negative_layout(slot_mapping, "slot_mapping");
  PAGEDKV_CHECK(slot_mapping.is_contiguous(), "slot_mapping: expected a contiguous [num_tokens] ",
                "tensor, got ", slot_mapping.describe());
  const std::int64_t num_tokens = slot_mapping.size(0);
  PAGEDKV_CHECK(num_tokens <= kv_c.size(0), "slot_mapping.size(0) (num_tokens): expected at most ",
                kv_c.size(0), " (kv_c.size(0)), got ", num_tokens);
  PAGEDKV_CHECK(num_tokens <= k_pe.size(0), "slot_mapping.size(0) (num_tokens): expected at most ",
                k_pe.size(0), " (k_pe.size(0)), got ", num_tokens);

  // 5. The scale: read only by the per-tensor fp8 kinds; "auto" and "fp8_ds_mla" ignore it.
  if (is_fp8(cache_kind) && !ds_mla) checks::one_f32_scale(args.scale, "scale", device);

  // 6. Memory behind every tensor that has elements.
  checks::not_null(kv_c, "kv_c");
  checks::not_null(k_pe, "k_pe");
  checks::not_null(kv_cache, "kv_cache");
  checks::not_null(slot_mapping, "slot_mapping");

  ConcatAndCacheMlaPlan plan;
  plan.num_tokens = num_tokens;
  plan.kv_lora_rank = kv_lora_rank;
  plan.rope_dim = rope_dim;
  plan.block_size = kv_cache.size(1);
  plan.num_blocks = kv_cache.size(0);
  plan.kv_c_stride = kv_c.stride(0);
  plan.k_pe_stride = k_pe.stride(0);
  plan.block_stride = kv_cache.stride(0);
  plan.entry_stride = kv_cache.stride(1);
  plan.activation_dtype = kv_c.dtype;
  plan.cache_kind = cache_kind;
  plan.ds_mla = ds_mla;

  // 7. Every slot inside the cache (negative slots are padding and skipped). This reads
  //    slot_mapping: on the GPU one CUB reduction and a synchronization.
  checks::slots_fit(slot_mapping, plan.num_blocks, plan.block_size);
  return plan;
}

}  // namespace pagedkv
