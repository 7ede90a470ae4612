// CPU reference of gather_and_maybe_dequant_cache (vLLM csrc/cache_kernels.cu @9803b00:
// gather_and_maybe_dequant_cache): the specification in code.
//
// Workspace row k (k < rows = min(num_tokens, cu_seq_lens[batch])) belongs to sequence
// b = token_to_seq[k]; it is token k - cu_seq_lens[b] of that sequence's gathered run, which
// starts at position seq_starts[b] (0 without seq_starts) of the sequence's blocks. That
// position's entry (mla_gather.h's CacheLookup) is decoded into row k: copied ("auto"),
// fp8 × scale, or the 656-byte fp8_ds_mla entry with its tile scales. Rows from `rows` on are
// padding and stay untouched.
#include "pagedkv/ops/gather_and_maybe_dequant_cache.h"

#include <cstdint>

#include "mla_gather.h"

namespace pagedkv {

void GatherAndMaybeDequantCache::cpu(const Plan& plan, const Args& args) {
  auto* dst = static_cast<std::uint8_t*>(args.dst.data);  // [>= num_tokens, 576]
  const auto* token_to_seq = static_cast<const std::int32_t*>(args.token_to_seq.data);  // [>= T]
  const auto* cu_seq_lens = static_cast<const std::int32_t*>(args.cu_seq_lens.data);    // [B + 1]
  const auto* seq_starts = static_cast<const std::int32_t*>(args.seq_starts.data);  // [B] or null
  const std::int64_t row_bytes = dtype_size(plan.dst_dtype);
  // The scale is only read by the per-tensor fp8 kinds.
  const float scale =
      is_fp8(plan.cache_kind) && !plan.ds_mla ? *static_cast<const float*>(args.scale.data) : 1.f;
  cpu::CacheLookup lookup;
  lookup.cache = static_cast<const std::uint8_t*>(args.src_cache.data);
  lookup.element_bytes = args.src_cache.element_size();
  lookup.block_stride = plan.block_stride;
  lookup.entry_stride = plan.entry_stride;
  lookup.block_size = plan.block_size;
  lookup.block_table = static_cast<const std::int32_t*>(args.block_table.data);
  lookup.table_stride = plan.block_table_stride;

  for (std::int64_t k = 0; k < plan.rows; ++k) {
    const std::int64_t sequence = token_to_seq[k];
    const std::int64_t position =
        (k - cu_seq_lens[sequence]) + (plan.has_seq_starts ? seq_starts[sequence] : 0);
    const std::uint8_t* entry = lookup.entry(sequence, position);
    std::uint8_t* row = dst + k * plan.dst_stride * row_bytes;
    if (plan.ds_mla) {
      cpu::load_ds_mla_entry(row, entry, KvCacheDtype::kFp8E4m3);
    } else {
      cpu::load_mla_entry(row, entry, plan.dst_dtype, plan.cache_kind, scale);
    }
  }
}

}  // namespace pagedkv
