// The one contract of quantize_and_insert_k_cache (vLLM
// vllm/models/deepseek_v4/common/ops/cache_utils.py @03dc564: quantize_and_insert_k_cache),
// shared by the CPU reference, the naive and the optimized CUDA kernels. Every rule throws
// InvalidArgument naming the argument, the expected and the actual value, before any byte is
// written.
//
// Upstream asserts k's rank, width (512) and dtype (bf16) and is_ue8m0, and checks the
// platform for use_fnuz. It trusts the rest. This contract also rejects:
//   - slots at or past num_blocks × block_size (upstream writes out of bounds); every negative
//     slot is padding (upstream skips only -1 and writes out of bounds for -2 and below);
//   - a slot_mapping that is not contiguous i64, and fewer rows of k than slots;
//   - a cache that is not u8, whose pages are smaller than block_size × 584 bytes or overlap,
//     or a 3-D view whose size(1) is not block_size (upstream never looks at the cache);
//   - block_size < 1, is_ue8m0 = False (upstream's assertion), use_fnuz = True (no FNUZ here);
// it reads k's rows at their stride (upstream assumes 512 elements and misreads any other
// pitch), and it makes zero tokens a no-op.
#include "pagedkv/ops/quantize_and_insert_k_cache.h"

#include <cstdint>

#include "cache_write_checks.h"
#include "deepseek_v4_checks.h"
#include "pagedkv/checks.h"
#include "pagedkv/error.h"

namespace pagedkv {

QuantizeAndInsertKCache::Plan QuantizeAndInsertKCache::validate(const Args& args, Impl impl) {
  const TensorView& k = args.k;
  const TensorView& k_cache = args.k_cache;
  const TensorView& slot_mapping = args.slot_mapping;

  // 1. Every tensor the op touches lives where the implementation computes.
  const Device device = impl_device(impl);
  checks::device_is(k, "k", device);
  checks::device_is(k_cache, "k_cache", device);
  checks::device_is(slot_mapping, "slot_mapping", device);

  // 2. The format flags: UE8M0 exponents over OCP E4M3 codes, the only format there is.
  PAGEDKV_CHECK(args.is_ue8m0, "is_ue8m0: expected True (the scales are UE8M0 exponents; ",
                "upstream has no other scale format and asserts it), got False");
  checks::dsv4_not_fnuz(args.use_fnuz);

  // 3. k: [>= T, 512] bf16, elements packed, rows of any pitch.
  checks::ndim_is(k, "k", 2);
  checks::non_negative_layout(k, "k");
  checks::dtype_is(k, "k", DType::bf16);
  checks::size_is(k, "k", 1, kDsv4HeadDim, "448 NoPE + 64 RoPE dims");
  checks::packed_from(k, "k", 1);

  // 4. The pages: block_size tokens of 584 bytes each.
  checks::dsv4_block_size(args.block_size);
  const checks::Dsv4Pages pages = checks::dsv4_pages(k_cache, "k_cache", args.block_size);

  // 5. slot_mapping: contiguous int64, one slot per token; T = its length (as upstream).
  checks::ndim_is(slot_mapping, "slot_mapping", 1);
  checks::dtype_is(slot_mapping, "slot_mapping", DType::i64);
  checks::non_negative_layout(slot_mapping, "slot_mapping");
  PAGEDKV_CHECK(slot_mapping.is_contiguous(), "slot_mapping: expected a contiguous tensor, got ",
                slot_mapping.describe());
  const std::int64_t num_tokens = slot_mapping.size(0);
  PAGEDKV_CHECK(k.size(0) >= num_tokens, "k.size(0): expected at least ", num_tokens,
                " rows (slot_mapping.size(0), one key per slot), got ", k.size(0));

  // 6. Memory behind every tensor that has elements.
  checks::not_null(k, "k");
  checks::not_null(k_cache, "k_cache");
  checks::not_null(slot_mapping, "slot_mapping");

  Plan plan;
  plan.num_tokens = num_tokens;
  plan.block_size = args.block_size;
  plan.num_blocks = pages.num_blocks;
  plan.k_stride = k.stride(0);
  plan.block_stride = pages.block_stride;

  // 7. Every slot inside the cache (negative slots are padding and skipped): on the GPU one
  //    CUB reduction and a synchronization, or, when the call defers its errors, a check
  //    kernel whose fault record makes the kernels write nothing (pagedkv/deferred_checks.h).
  checks::slots_fit(slot_mapping, plan.num_blocks, plan.block_size);
  return plan;
}

}  // namespace pagedkv
