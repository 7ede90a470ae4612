// The one contract of compute_global_topk_indices_and_lens (vLLM
// vllm/models/deepseek_v4/common/ops/cache_utils.py @03dc564: compute_global_topk_indices_and_lens;
// the bounds-hardened revision @4fec5ad), shared by the CPU reference, the naive and the
// optimized CUDA kernels. Every rule throws InvalidArgument naming the argument, the expected
// and the actual value, before anything is written.
//
// Upstream checks nothing. This contract rejects:
//   - dtypes other than i32 for the indices, the table and the outputs (an i64 tensor is
//     refused, not read as pairs of i32) and bool for the mask;
//   - shapes that disagree (outputs [T, K] and [T], the per-token vectors shorter than T);
//   - block_size outside 1 .. 4096;
//   - for a valid token (synchronous checks only): a request outside block_table's rows, a
//     local index whose block lies past block_table's columns, a negative block id there, or a
//     slot that does not fit an i32 (upstream reads out of bounds or wraps).
// Deferred calls skip the value checks: the kernels then give -1 for such an entry and do not
// count it (upstream's hardened revision does the same for requests and columns).
#include "pagedkv/ops/compute_global_topk_indices_and_lens.h"

#include <cstdint>
#include <limits>
#include <vector>

#include "block_lookup_checks.h"
#include "pagedkv/checks.h"
#include "pagedkv/error.h"
#include "sparse_index_checks.h"

namespace pagedkv {

ComputeGlobalTopkIndicesAndLens::Plan ComputeGlobalTopkIndicesAndLens::validate(const Args& args,
                                                                              Impl impl) {
  const Device device = impl_device(impl);

  // 1. The index matrices: topk_indices [T, K], global_topk_indices the same shape.
  checks::index_matrix(args.topk_indices, "topk_indices", device);
  checks::index_matrix(args.global_topk_indices, "global_topk_indices", device);
  const std::int64_t T = args.topk_indices.size(0);
  const std::int64_t K = args.topk_indices.size(1);
  checks::size_is(args.global_topk_indices, "global_topk_indices", 0, T, "T, topk_indices.size(0)");
  checks::size_is(args.global_topk_indices, "global_topk_indices", 1, K, "K, topk_indices.size(1)");
  PAGEDKV_CHECK(T <= 1 || args.global_topk_indices.stride(0) >= K,
                "global_topk_indices: rows overlap: stride(0) = ",
                args.global_topk_indices.stride(0), " elements, a row is ", K);

  // 2. The per-token vectors and the output lengths.
  checks::index_vector(args.token_to_req_indices, "token_to_req_indices", device, T,
                       "T, topk_indices.size(0)");
  checks::bool_vector(args.is_valid_token, "is_valid_token", device, T,
                      "T, topk_indices.size(0)");
  checks::index_vector(args.topk_lens, "topk_lens", device, T, "T, topk_indices.size(0)");
  checks::size_is(args.topk_lens, "topk_lens", 0, T, "T, topk_indices.size(0)");

  // 3. The compressed block table and its block size.
  checks::index_matrix(args.block_table, "block_table", device);
  checks::integer_in(args.block_size, "block_size", 1, 4096);
  const std::int64_t R = args.block_table.size(0);
  const std::int64_t width = args.block_table.size(1);

  Plan plan;
  plan.num_tokens = T;
  plan.topk = K;
  plan.topk_stride = args.topk_indices.stride(0);
  plan.output_stride = args.global_topk_indices.stride(0);
  plan.num_requests = R;
  plan.table_width = width;
  plan.block_table_stride = args.block_table.stride(0);
  plan.block_size = args.block_size;
  const auto aligned = [](const TensorView& t) {
    return reinterpret_cast<std::uintptr_t>(t.data) % 16 == 0 && t.stride(0) % 4 == 0;
  };
  plan.vector_rows = K % 4 == 0 && aligned(args.topk_indices) && aligned(args.global_topk_indices);
  if (T == 0 || K == 0 || !checks::reads_index_values(device)) return plan;

  // 4. The values of every valid token (read back on the GPU: one synchronization each).
  const std::vector<std::int32_t> topk = checks::read_matrix(args.topk_indices);
  const std::vector<std::int32_t> req = checks::copy_i32(args.token_to_req_indices.data, device, T);
  const std::vector<std::uint8_t> valid = checks::read_mask(args.is_valid_token, T);
  const std::vector<std::int32_t> table = checks::read_matrix(args.block_table);
  for (std::int64_t t = 0; t < T; ++t) {
    if (!valid[t]) continue;  // a padding token: its row becomes -1, nothing is looked up
    const std::int64_t r = req[t];
    bool any = false;
    for (std::int64_t i = 0; i < K && !any; ++i) any = topk[t * K + i] >= 0;
    if (!any) continue;  // no entry to translate: the request is never used
    PAGEDKV_CHECK(r >= 0 && r < R, "token_to_req_indices[", t, "] = ", r,
                  ": expected a request in [0, ", R, ") (block_table.size(0)) for a valid token");
    for (std::int64_t i = 0; i < K; ++i) {
      const std::int64_t local = topk[t * K + i];
      if (local < 0) continue;  // an empty entry
      const std::int64_t column = local / args.block_size;
      PAGEDKV_CHECK(column < width, "topk_indices[", t, ", ", i, "] = ", local,
                    ": beyond the request's compressed tokens, expected a local index below ",
                    width * args.block_size, " (block_table.size(1) = ", width,
                    " blocks of block_size = ", args.block_size, ")");
      const std::int64_t block = table[r * width + column];
      PAGEDKV_CHECK(block >= 0, "block_table[", r, ", ", column, "] = ", block,
                    ": expected a block id >= 0 (topk_indices[", t, ", ", i, "] = ", local,
                    " lies in it)");
      const std::int64_t slot = block * args.block_size + local % args.block_size;
      PAGEDKV_CHECK(slot <= std::numeric_limits<std::int32_t>::max(), "block_table[", r, ", ",
                    column, "] = ", block, ": the slot ", slot, " of topk_indices[", t, ", ", i,
                    "] does not fit the i32 output");
    }
  }
  return plan;
}

}  // namespace pagedkv
