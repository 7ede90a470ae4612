// The one contract of indexer_k_quant_and_cache (vLLM csrc/cache_kernels.cu @9803b00:
// indexer_k_quant_and_cache), shared by the CPU reference, the naive and the optimized CUDA
// kernels. Every rule throws InvalidArgument naming the argument, the expected and the actual
// value, before any byte is written.
//
// Upstream checks only that k, kv_cache and slot_mapping share a device and that head_dim is
// divisible by quant_block_size. This contract also rejects what upstream silently gets wrong:
//   - quant_block_size other than 128, head_dim not a multiple of 128: upstream's kernel gives
//     every warp 128 elements and reduces the amax over the whole warp, whatever
//     quant_block_size says (wrong scales, partial warps);
//   - f32 keys: upstream loads 8 bytes (two floats) and reads them as four 16-bit elements;
//   - an int32 slot_mapping (upstream reads it through an int64 pointer), fewer slots than keys
//     (upstream reads past its end) and slots past the cache (upstream writes out of bounds);
//   - a cache that is not [num_blocks, block_size, head_dim + 4 × head_dim / 128] bytes with
//     packed slots (upstream never looks at the cache's shape or strides);
// it accepts f16 keys and computes their scales on the values (upstream takes the amax of the
// raw bit patterns), and it makes zero tokens a no-op (upstream launches an empty grid).
#include "pagedkv/ops/indexer_k_quant_and_cache.h"

#include <cstdint>

#include "cache_write_checks.h"
#include "indexer_checks.h"
#include "pagedkv/checks.h"
#include "pagedkv/error.h"

namespace pagedkv {

IndexerKQuantAndCache::Plan IndexerKQuantAndCache::validate(const Args& args, Impl impl) {
  const TensorView& k = args.k;
  const TensorView& kv_cache = args.kv_cache;
  const TensorView& slot_mapping = args.slot_mapping;

  // 1. Every tensor the op touches lives where the implementation computes.
  const Device device = impl_device(impl);
  checks::device_is(k, "k", device);
  checks::device_is(kv_cache, "kv_cache", device);
  checks::device_is(slot_mapping, "slot_mapping", device);

  // 2. The tile: 128 elements per scale, head_dim a whole number of tiles.
  PAGEDKV_CHECK(args.quant_block_size == kIndexerQuantBlock, "quant_block_size: expected ",
                kIndexerQuantBlock, " (the tile size of the indexer cache), got ",
                args.quant_block_size);

  // 3. k: [T, head_dim] bf16 or f16, elements packed, rows of any pitch.
  checks::ndim_is(k, "k", 2);
  checks::non_negative_layout(k, "k");
  PAGEDKV_CHECK(k.dtype == DType::bf16 || k.dtype == DType::f16, "k: expected dtype bf16 or f16 ",
                "(upstream reads every key as 16-bit elements), got ", dtype_name(k.dtype));
  checks::packed_from(k, "k", 1);
  const std::int64_t num_tokens = k.size(0);
  const std::int64_t head_dim = k.size(1);
  checks::indexer_head_dim(head_dim, "k: head_dim = size(1)");

  // 4. The cache: bytes, [num_blocks, block_size, head_dim + 4 × head_dim / 128], block-planar.
  checks::indexer_cache(kv_cache, "kv_cache", head_dim, "k.size(1)");

  // 5. slot_mapping: contiguous int64, one slot for each of the T keys (more are not read).
  checks::ndim_is(slot_mapping, "slot_mapping", 1);
  checks::dtype_is(slot_mapping, "slot_mapping", DType::i64);
  checks::non_negative_layout(slot_mapping, "slot_mapping");
  PAGEDKV_CHECK(slot_mapping.is_contiguous(), "slot_mapping: expected a contiguous tensor, got ",
                slot_mapping.describe());
  PAGEDKV_CHECK(slot_mapping.size(0) >= num_tokens, "slot_mapping.size(0): expected at least ",
                num_tokens, " (k.size(0), one slot per key), got ", slot_mapping.size(0));

  // 6. Memory behind every tensor that has elements.
  checks::not_null(k, "k");
  checks::not_null(kv_cache, "kv_cache");
  checks::not_null(slot_mapping, "slot_mapping");

  IndexerKQuantAndCachePlan plan;
  plan.num_tokens = num_tokens;
  plan.head_dim = head_dim;
  plan.tiles_per_token = head_dim / kIndexerQuantBlock;
  plan.block_size = kv_cache.size(1);
  plan.num_blocks = kv_cache.size(0);
  plan.k_stride = k.stride(0);
  plan.block_stride = kv_cache.stride(0);
  plan.k_dtype = k.dtype;
  plan.ue8m0 = args.kv_cache_dtype == "ue8m0";

  // 7. Every slot the op reads inside the cache (negative slots are padding and skipped). This
  //    reads slot_mapping: on the GPU one CUB reduction and a synchronization.
  const TensorView read_slots =
      TensorView::contiguous(slot_mapping.data, DType::i64, {num_tokens}, slot_mapping.device);
  checks::slots_fit(read_slots, plan.num_blocks, plan.block_size);
  return plan;
}

}  // namespace pagedkv
