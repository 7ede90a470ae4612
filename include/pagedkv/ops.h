/// \file
/// \brief Every op of pagedkv, and the one list of them.
///
/// Adding an op: its header under pagedkv/ops/, one include below and one name in AllOps. The
/// registry, the Python bindings, the `vllm_ops` wrappers and the API pages follow from it.
#pragma once

#include "pagedkv/ops/apply_repetition_penalties.h"
#include "pagedkv/ops/build_flashinfer_mixed_sparse_indices.h"
#include "pagedkv/ops/combine_topk_swa_indices.h"
#include "pagedkv/ops/compute_global_topk_indices_and_lens.h"
#include "pagedkv/ops/concat_and_cache_mla.h"
#include "pagedkv/ops/concat_and_cache_mla_rope_fused.h"
#include "pagedkv/ops/convert_fp8.h"
#include "pagedkv/ops/cp_gather_and_upconvert_fp8_kv_cache.h"
#include "pagedkv/ops/cp_gather_cache.h"
#include "pagedkv/ops/cp_gather_indexer_k_quant_cache.h"
#include "pagedkv/ops/dequantize_and_gather_k_cache.h"
#include "pagedkv/ops/flatten_kv.h"
#include "pagedkv/ops/fused_add_rms_norm.h"
#include "pagedkv/ops/gather_and_maybe_dequant_cache.h"
#include "pagedkv/ops/gelu_and_mul.h"
#include "pagedkv/ops/gelu_tanh_and_mul.h"
#include "pagedkv/ops/indexer_k_quant_and_cache.h"
#include "pagedkv/ops/merge_attn_states.h"
#include "pagedkv/ops/process_kv.h"
#include "pagedkv/ops/paged_attention_rocm.h"
#include "pagedkv/ops/paged_attention_v1.h"
#include "pagedkv/ops/paged_attention_v2.h"
#include "pagedkv/ops/quantize_and_insert_k_cache.h"
#include "pagedkv/ops/reshape_and_cache.h"
#include "pagedkv/ops/reshape_and_cache_flash.h"
#include "pagedkv/ops/rms_norm.h"
#include "pagedkv/ops/rotary_embedding.h"
#include "pagedkv/ops/silu_and_mul.h"
#include "pagedkv/ops/swap_blocks.h"

namespace pagedkv {

/// \brief A list of op structs, to iterate over at compile time.
/// \tparam Op the op structs.
template <class... Op>
struct OpList {};

/// \brief Every op, in catalogue order.
using AllOps = OpList<SwapBlocks, ReshapeAndCache, ReshapeAndCacheFlash, RmsNorm, FusedAddRmsNorm,
                      ConcatAndCacheMla, ConcatAndCacheMlaRopeFused, ConvertFp8, CpGatherCache,
                      GatherAndMaybeDequantCache, CpGatherAndUpconvertFp8KvCache,
                      IndexerKQuantAndCache, CpGatherIndexerKQuantCache, RotaryEmbedding,
                      SiluAndMul, GeluAndMul, GeluTanhAndMul, ApplyRepetitionPenalties,
                      QuantizeAndInsertKCache, DequantizeAndGatherKCache,
                      ComputeGlobalTopkIndicesAndLens, CombineTopkSwaIndices,
                      BuildFlashinferMixedSparseIndices, ProcessKv, FlattenKv,
                      MergeAttnStates, PagedAttentionV1, PagedAttentionV2,
                      PagedAttentionRocm>;

}  // namespace pagedkv
