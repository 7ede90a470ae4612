// CPU reference of concat_and_cache_mla (vLLM csrc/cache_kernels.cu @9803b00:
// concat_and_cache_mla_kernel and concat_and_cache_ds_mla_kernel): the specification in code.
// Token t goes to slot s = slot_mapping[t], i.e. block s / block_size, position s % block_size
// inside it; its entry there is kv_c[t] followed by k_pe[t], stored as kv_cache_dtype says
// (mla_entry.cpp). Negative slots are padding.
//
// The offsets are spelled out here on purpose, not shared with the kernels: a bug in one
// formula cannot hide in both.
#include <cstdint>

#include "mla_entry.h"
#include "pagedkv/ops/concat_and_cache_mla.h"

namespace pagedkv {

void ConcatAndCacheMla::cpu(const Plan& plan, const Args& args) {
  const auto* kv_c = static_cast<const std::uint8_t*>(args.kv_c.data);  // [T_pad, kv_lora_rank]
  const auto* k_pe = static_cast<const std::uint8_t*>(args.k_pe.data);  // [T_pad, rope_dim]
  auto* kv_cache = static_cast<std::uint8_t*>(args.kv_cache.data);  // [N, block_size, entry]
  const auto* slots = static_cast<const std::int64_t*>(args.slot_mapping.data);  // [T]
  const std::int64_t activation_bytes = dtype_size(plan.activation_dtype);
  const std::int64_t cache_bytes = args.kv_cache.element_size();  // 1 for fp8 and fp8_ds_mla
  // The scale is only read by the per-tensor fp8 kinds.
  const float scale = is_fp8(plan.cache_kind) && !plan.ds_mla
                          ? *static_cast<const float*>(args.scale.data)
                          : 1.f;

  for (std::int64_t token = 0; token < plan.num_tokens; ++token) {
    const std::int64_t slot = slots[token];
    if (slot < 0) continue;  // padding token: nothing is written
    const std::int64_t block = slot / plan.block_size;
    const std::int64_t offset_in_block = slot % plan.block_size;
    std::uint8_t* entry =
        kv_cache + (block * plan.block_stride + offset_in_block * plan.entry_stride) * cache_bytes;
    const std::uint8_t* kv_c_row = kv_c + token * plan.kv_c_stride * activation_bytes;
    const std::uint8_t* k_pe_row = k_pe + token * plan.k_pe_stride * activation_bytes;
    if (plan.ds_mla) {
      cpu::store_ds_mla_entry(entry, kv_c_row, k_pe_row);
    } else {
      cpu::store_mla_entry(entry, kv_c_row, k_pe_row, plan.kv_lora_rank, plan.rope_dim,
                           plan.activation_dtype, plan.cache_kind, scale);
    }
  }
}

}  // namespace pagedkv
