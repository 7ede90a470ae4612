// The one contract of build_flashinfer_mixed_sparse_indices (vLLM
// vllm/models/deepseek_v4/common/ops/cache_utils.py @03dc564: build_flashinfer_mixed_sparse_indices;
// caller vllm/models/deepseek_v4/nvidia/flashinfer_sparse.py @055e47c), shared by the CPU
// reference, the naive and the optimized CUDA kernels. Every rule throws InvalidArgument naming
// the argument, the expected and the actual value, before anything is written.
//
// Upstream asserts the i32 dtypes, the 2-D shapes, decode_swa_indices.size(1) == window_size
// and enough token_to_req_indices, and reads out of bounds on any bad index. This contract also
// rejects:
//   - swa_block_size, compressed_block_size, window_size outside 1 .. 4096, compress_ratio not
//     1, 4 or 128, topk outside 0 .. 65536;
//   - outputs of the wrong shape (Td + Tp rows; window_size + at least max(topk, Kd) columns);
//   - local decode indices without decode_is_valid_token, or a decode_is_valid_token,
//     decode_compressed_topk_lens or token_to_req_indices that is too short;
//   - for synchronous calls, the values: query_start_loc not from 0 or decreasing; a prefill
//     token that is not one of its request's query tokens, or whose request is shorter than
//     its queries; a window position outside the SWA table or on a negative block id; a local
//     index a token uses that is no compressed token of its request (at least seq_len /
//     compress_ratio, past the compressed table, on a negative block id); a decode length
//     outside 0 .. Kd.
// Deferred calls skip the value checks; the kernels then write -1 for every such entry.
#include "pagedkv/ops/build_flashinfer_mixed_sparse_indices.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "block_lookup_checks.h"
#include "pagedkv/checks.h"
#include "pagedkv/error.h"
#include "sparse_index_checks.h"

namespace pagedkv {

namespace {

// A table read back to the host, with the rule that turns a position into a slot.
struct HostTable {
  std::vector<std::int32_t> entries;  // rows × width, packed
  std::int64_t rows = 0, width = 0, block_size = 0;
  const char* name = "";

  // Checks that position `p` of request `r` has a slot; `what` describes the position.
  template <class... What>
  void check_slot(std::int64_t r, std::int64_t p, const What&... what) const {
    PAGEDKV_CHECK(r >= 0 && r < rows, name, ": request ", r, " (", what..., ") is not one of its ",
                  rows, " rows");
    const std::int64_t column = p / block_size;
    PAGEDKV_CHECK(column < width, name, ": position ", p, " (", what..., ") needs column ", column,
                  ", but the table has ", width, " columns");
    const std::int64_t block = entries[static_cast<std::size_t>(r * width + column)];
    PAGEDKV_CHECK(block >= 0, name, "[", r, ", ", column, "] = ", block,
                  ": expected a block id >= 0 (", what..., ")");
    PAGEDKV_CHECK(block * block_size + p % block_size <= std::numeric_limits<std::int32_t>::max(),
                  name, "[", r, ", ", column, "] = ", block, ": the slot does not fit an i32 (",
                  what..., ")");
  }
};

HostTable read_table(const TensorView& table, std::int64_t block_size, const char* name) {
  return {checks::read_matrix(table), table.size(0), table.size(1), block_size, name};
}

}  // namespace

BuildFlashinferMixedSparseIndices::Plan BuildFlashinferMixedSparseIndices::validate(
    const Args& args, Impl impl) {
  const Device device = impl_device(impl);

  // 1. The integer arguments, in their supported ranges.
  checks::integer_in(args.swa_block_size, "swa_block_size", 1, 4096);
  checks::integer_in(args.compressed_block_size, "compressed_block_size", 1, 4096);
  checks::integer_in(args.window_size, "window_size", 1, 4096);
  PAGEDKV_CHECK(args.compress_ratio == 1 || args.compress_ratio == 4 ||
                    args.compress_ratio == 128,
                "compress_ratio: expected 1 (SWA only), 4 (C4A) or 128 (C128A), got ",
                args.compress_ratio);
  checks::integer_in(args.topk, "topk", 0, 65536);

  // 2. The token rows: decode_swa_indices [Td, W], prefill_topk_indices [Tp, Kp], the optional
  //    decode compressed indices [Td, Kd] and what they need.
  checks::index_matrix(args.decode_swa_indices, "decode_swa_indices", device);
  const std::int64_t Td = args.decode_swa_indices.size(0);
  checks::size_is(args.decode_swa_indices, "decode_swa_indices", 1, args.window_size,
                  "window_size");
  checks::index_matrix(args.prefill_topk_indices, "prefill_topk_indices", device);
  const std::int64_t Tp = args.prefill_topk_indices.size(0);
  const std::int64_t T = Td + Tp;
  const bool has_decode_topk = checks::is_given(args.decode_compressed_indices);
  std::int64_t Kd = 0;
  if (has_decode_topk) {
    checks::index_matrix(args.decode_compressed_indices, "decode_compressed_indices", device);
    checks::size_is(args.decode_compressed_indices, "decode_compressed_indices", 0, Td,
                    "Td, decode_swa_indices.size(0)");
    Kd = args.decode_compressed_indices.size(1);
  }
  const bool local = args.decode_compressed_indices_are_local && Kd > 0;
  const bool has_lens = checks::is_given(args.decode_compressed_topk_lens);
  if (has_lens) {
    checks::index_vector(args.decode_compressed_topk_lens, "decode_compressed_topk_lens", device,
                         Td, "Td, decode_swa_indices.size(0)");
  }
  const bool has_valid = checks::is_given(args.decode_is_valid_token);
  if (has_valid) {
    checks::bool_vector(args.decode_is_valid_token, "decode_is_valid_token", device, Td,
                        "Td, decode_swa_indices.size(0)");
  }
  PAGEDKV_CHECK(!local || has_valid, "decode_is_valid_token: required when ",
                "decode_compressed_indices are local (decode_compressed_indices_are_local and ",
                "Kd = ", Kd, " > 0), got None");

  // 3. The per-request vectors and the tables.
  checks::index_vector(args.seq_lens, "seq_lens", device, 0, "R");
  const std::int64_t R = args.seq_lens.size(0);
  checks::index_vector(args.query_start_loc, "query_start_loc", device, R + 1,
                       "R + 1, seq_lens.size(0) + 1");
  checks::size_is(args.query_start_loc, "query_start_loc", 0, R + 1,
                  "R + 1, seq_lens.size(0) + 1");
  checks::index_vector(args.token_to_req_indices, "token_to_req_indices", device, T,
                       "Td + Tp tokens");
  checks::index_matrix(args.swa_block_table, "swa_block_table", device);
  const bool same_table = !checks::is_given(args.compressed_block_table);
  if (!same_table) {
    checks::index_matrix(args.compressed_block_table, "compressed_block_table", device);
  }
  const TensorView& ctable = same_table ? args.swa_block_table : args.compressed_block_table;

  // 4. The outputs: [T, W + P] with P >= max(topk, Kd), and [T].
  checks::index_matrix(args.sparse_indices, "sparse_indices", device);
  checks::size_is(args.sparse_indices, "sparse_indices", 0, T, "Td + Tp tokens");
  const std::int64_t P = args.sparse_indices.size(1) - args.window_size;
  PAGEDKV_CHECK(P >= std::max(args.topk, Kd), "sparse_indices: expected at least window_size + ",
                "max(topk, Kd) = ", args.window_size + std::max(args.topk, Kd), " columns, got ",
                args.sparse_indices.size(1));
  PAGEDKV_CHECK(T <= 1 || args.sparse_indices.stride(0) >= args.sparse_indices.size(1),
                "sparse_indices: rows overlap: stride(0) = ", args.sparse_indices.stride(0),
                " elements, a row is ", args.sparse_indices.size(1));
  checks::index_vector(args.sparse_topk_lens, "sparse_topk_lens", device, T, "Td + Tp tokens");
  checks::size_is(args.sparse_topk_lens, "sparse_topk_lens", 0, T, "Td + Tp tokens");

  Plan plan;
  plan.num_decode = Td;
  plan.num_prefill = Tp;
  plan.window = args.window_size;
  plan.compressed_columns = P;
  plan.output_stride = args.sparse_indices.stride(0);
  plan.decode_swa_stride = args.decode_swa_indices.stride(0);
  plan.decode_topk = Kd;
  plan.decode_topk_stride = has_decode_topk ? args.decode_compressed_indices.stride(0) : 0;
  plan.prefill_topk = args.prefill_topk_indices.size(1);
  plan.prefill_topk_stride = args.prefill_topk_indices.stride(0);
  plan.num_requests = R;
  plan.swa_rows = args.swa_block_table.size(0);
  plan.swa_width = args.swa_block_table.size(1);
  plan.swa_stride = args.swa_block_table.stride(0);
  plan.swa_block_size = args.swa_block_size;
  plan.compressed_rows = ctable.size(0);
  plan.compressed_width = ctable.size(1);
  plan.compressed_stride = ctable.stride(0);
  plan.compressed_block_size = args.compressed_block_size;
  plan.compress_ratio = args.compress_ratio;
  plan.topk = args.topk;
  plan.decode_local = local;
  plan.has_decode_lens = has_lens;
  plan.has_decode_valid = has_valid;
  plan.same_table = same_table;
  const auto aligned = [](const TensorView& t) {
    return reinterpret_cast<std::uintptr_t>(t.data) % 16 == 0 && t.stride(0) % 4 == 0;
  };
  plan.vector_rows = args.window_size % 4 == 0 && P % 4 == 0 && aligned(args.sparse_indices) &&
                     (Td == 0 || aligned(args.decode_swa_indices));
  if (T == 0 || !checks::reads_index_values(device)) return plan;

  // 5. The values (read back on the GPU: one synchronization each).
  const std::vector<std::int32_t> qsl = checks::copy_i32(args.query_start_loc.data, device, R + 1);
  const std::vector<std::int32_t> seq = checks::copy_i32(args.seq_lens.data, device, R);
  const std::vector<std::int32_t> req = checks::copy_i32(args.token_to_req_indices.data, device, T);
  PAGEDKV_CHECK(qsl[0] == 0, "query_start_loc[0]: expected 0 (the batch's first token), got ",
                qsl[0]);
  for (std::int64_t r = 0; r < R; ++r) {
    PAGEDKV_CHECK(qsl[r + 1] >= qsl[r], "query_start_loc[", r + 1, "] = ", qsl[r + 1],
                  ": expected a running sum of query lengths, at least query_start_loc[", r,
                  "] = ", qsl[r]);
  }
  const HostTable swa = read_table(args.swa_block_table, args.swa_block_size, "swa_block_table");
  const HostTable compressed =
      read_table(ctable, args.compressed_block_size,
                 same_table ? "swa_block_table (as the compressed table)" : "compressed_block_table");
  // A local index l of request r must be one of its compressed tokens.
  const auto check_local = [&](std::int64_t r, std::int64_t l, const char* tensor,
                               std::int64_t row, std::int64_t column) {
    PAGEDKV_CHECK(r >= 0 && r < R, "token_to_req_indices: request ", r, " of ", tensor, "[", row,
                  "] is not one of the ", R, " requests (seq_lens.size(0))");
    const std::int64_t length = seq[r] / args.compress_ratio;
    PAGEDKV_CHECK(l < length, tensor, "[", row, ", ", column, "] = ", l, ": beyond request ", r,
                  "'s ", length, " compressed tokens (seq_lens[", r, "] / compress_ratio)");
    compressed.check_slot(r, l, tensor, "[", row, ", ", column, "]");
  };

  if (local) {
    const std::vector<std::int32_t> decode = checks::read_matrix(args.decode_compressed_indices);
    const std::vector<std::uint8_t> valid = checks::read_mask(args.decode_is_valid_token, Td);
    for (std::int64_t u = 0; u < Td; ++u) {
      if (!valid[u]) continue;  // a padding token: its compressed columns become -1
      for (std::int64_t o = 0; o < Kd; ++o) {
        const std::int64_t l = decode[u * Kd + o];
        if (l >= 0) check_local(req[u], l, "decode_compressed_indices", u, o);
      }
    }
  } else if (Kd > 0 && has_lens) {
    const std::vector<std::int32_t> lens =
        checks::copy_i32(args.decode_compressed_topk_lens.data, device, Td);
    for (std::int64_t u = 0; u < Td; ++u) {
      PAGEDKV_CHECK(lens[u] >= 0 && lens[u] <= Kd, "decode_compressed_topk_lens[", u, "] = ",
                    lens[u], ": expected 0 .. Kd = ", Kd, " (decode_compressed_indices.size(1))");
    }
  }

  const std::vector<std::int32_t> prefill = checks::read_matrix(args.prefill_topk_indices);
  const std::int64_t Kp = plan.prefill_topk;
  for (std::int64_t u = Td; u < T; ++u) {
    const std::int64_t r = req[u];
    PAGEDKV_CHECK(r >= 0 && r < R, "token_to_req_indices[", u, "] = ", r,
                  ": expected a request in [0, ", R, ") (seq_lens.size(0))");
    PAGEDKV_CHECK(u >= qsl[r] && u < qsl[r + 1], "token_to_req_indices[", u, "] = ", r,
                  ": prefill token ", u, " is not one of request ", r, "'s query tokens ",
                  qsl[r], " .. ", qsl[r + 1] - 1, " (query_start_loc)");
    const std::int64_t q_len = qsl[r + 1] - qsl[r];
    PAGEDKV_CHECK(seq[r] >= q_len, "seq_lens[", r, "] = ", seq[r],
                  ": expected at least the request's ", q_len, " query tokens");
    const std::int64_t pos = seq[r] - q_len + (u - qsl[r]);
    const std::int64_t sl = std::min(pos + 1, args.window_size);
    for (std::int64_t p = pos - sl + 1; p <= pos; ++p) {
      swa.check_slot(r, p, "window position of prefill token ", u);
    }
    const std::int64_t kl = std::min({(pos + 1) / args.compress_ratio, args.topk, Kp});
    for (std::int64_t o = 0; o < kl; ++o) {
      const std::int64_t l = prefill[(u - Td) * Kp + o];
      if (l >= 0) check_local(r, l, "prefill_topk_indices", u - Td, o);
    }
  }
  return plan;
}

}  // namespace pagedkv
