/// \file
/// \brief The device pointers of one build_flashinfer_mixed_sparse_indices call, gathered
/// from its arguments once: what the naive and the optimized kernel both receive, so the two
/// files differ only in how they walk the rows.
#pragma once

#include <cstdint>

#include "pagedkv/ops/build_flashinfer_mixed_sparse_indices.h"

namespace pagedkv::kernels::mixed_sparse {

/// \brief The pointers of one call (device memory); see the op's arguments for the shapes.
struct Pointers {
  const std::int32_t* decode_swa;    ///< [Td, W], rows plan.decode_swa_stride apart
  const std::int32_t* decode_topk;   ///< [Td, Kd], or nullptr
  const std::int32_t* decode_lens;   ///< [>= Td], or nullptr
  const bool* decode_valid;          ///< [>= Td], or nullptr
  const std::int32_t* prefill_topk;  ///< [Tp, Kp]
  const std::int32_t* qsl;           ///< [R + 1]
  const std::int32_t* seq_lens;      ///< [R]
  const std::int32_t* req;           ///< [>= T]
  const std::int32_t* swa_table;     ///< [swa_rows, swa_width]
  const std::int32_t* ctable;        ///< [compressed_rows, compressed_width]
  std::int32_t* out;                 ///< [T, W + P]
  std::int32_t* lens;                ///< [T]
};

/// \brief The call's pointers: the optional tensors as nullptr when absent, and the SWA
/// table standing in for the compressed one when the plan says they are the same.
/// \param plan the validated plan.
/// \param args the call's arguments.
/// \return the pointers.
inline Pointers pointers_of(const BuildFlashinferMixedSparseIndices::Plan& plan,
                            const BuildFlashinferMixedSparseIndices::Args& args) {
  using I32 = const std::int32_t*;
  return {static_cast<I32>(args.decode_swa_indices.data),
          static_cast<I32>(args.decode_compressed_indices.data),
          plan.has_decode_lens ? static_cast<I32>(args.decode_compressed_topk_lens.data)
                               : nullptr,
          plan.has_decode_valid ? static_cast<const bool*>(args.decode_is_valid_token.data)
                                : nullptr,
          static_cast<I32>(args.prefill_topk_indices.data),
          static_cast<I32>(args.query_start_loc.data),
          static_cast<I32>(args.seq_lens.data),
          static_cast<I32>(args.token_to_req_indices.data),
          static_cast<I32>(args.swa_block_table.data),
          static_cast<I32>(plan.same_table ? args.swa_block_table.data
                                           : args.compressed_block_table.data),
          static_cast<std::int32_t*>(args.sparse_indices.data),
          static_cast<std::int32_t*>(args.sparse_topk_lens.data)};
}

}  // namespace pagedkv::kernels::mixed_sparse
