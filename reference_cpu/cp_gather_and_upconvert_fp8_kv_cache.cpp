// CPU reference of cp_gather_and_upconvert_fp8_kv_cache (vLLM csrc/cache_kernels.cu @9803b00:
// cp_gather_and_upconvert_fp8_kv_cache): the specification in code.
//
// Request r's positions 0 .. seq_lens[r] - 1 are looked up in its row of block_table
// (mla_gather.h's CacheLookup) and decoded into workspace rows workspace_starts[r] + p: the
// 656-byte fp8_ds_mla entry, latent bytes times their tile's scale, RoPE bits copied
// (load_ds_mla_entry, shared with gather_and_maybe_dequant_cache).
#include "pagedkv/ops/cp_gather_and_upconvert_fp8_kv_cache.h"

#include <cstdint>

#include "mla_gather.h"

namespace pagedkv {

void CpGatherAndUpconvertFp8KvCache::cpu(const Plan& plan, const Args& args) {
  auto* dst = static_cast<std::uint8_t*>(args.dst.data);  // [>= rows, 576] bf16
  const auto* seq_lens = static_cast<const std::int32_t*>(args.seq_lens.data);  // [batch]
  const auto* workspace_starts =
      static_cast<const std::int32_t*>(args.workspace_starts.data);  // [batch]
  cpu::CacheLookup lookup;
  lookup.cache = static_cast<const std::uint8_t*>(args.src_cache.data);
  lookup.element_bytes = 1;
  lookup.block_stride = plan.block_stride;
  lookup.entry_stride = plan.entry_stride;
  lookup.block_size = plan.block_size;
  lookup.block_table = static_cast<const std::int32_t*>(args.block_table.data);
  lookup.table_stride = plan.block_table_stride;

  for (std::int64_t request = 0; request < plan.batch; ++request) {
    for (std::int64_t position = 0; position < seq_lens[request]; ++position) {
      std::uint8_t* row = dst + (workspace_starts[request] + position) * plan.dst_stride * 2;
      cpu::load_ds_mla_entry(row, lookup.entry(request, position), plan.latent_format);
    }
  }
}

}  // namespace pagedkv
