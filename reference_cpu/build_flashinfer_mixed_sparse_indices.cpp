// CPU reference of build_flashinfer_mixed_sparse_indices (vLLM
// vllm/models/deepseek_v4/common/ops/cache_utils.py @03dc564): the specification in code.
//
// The batch is decode-first: rows 0 .. Td - 1 are decode tokens, rows Td .. Td + Tp - 1 prefill
// tokens. Every row has window_size SWA columns, then P compressed columns.
//   - A decode row copies its precomputed SWA slots. Its compressed columns are its
//     decode_compressed_indices: copied when they are global slots (length: the given
//     decode_compressed_topk_lens, else Kd), translated when they are local (length: the slots
//     found; a padding token, is_valid false, gets none).
//   - A prefill row belongs to request r at position pos = seq_len - query_len + (its index in
//     the request's queries). Its window is positions pos - sl + 1 .. pos with sl = min(pos + 1,
//     window_size), each the slot block × swa_block_size + offset of the SWA table; its first
//     kl = min((pos + 1) / compress_ratio, topk) local top-k indices become compressed slots.
//     Its length is window_size + kl: upstream counts the whole window and every kl entry,
//     -1 ones included (FlashInfer masks -1).
// A local index is a compressed token of the request when 0 <= l < seq_len / compress_ratio
// and block_table[r, l / B] is a block id >= 0 (its slot an i32); anything else gives -1. A
// prefill row whose token is not one of its request's queries is all -1 with length 0 (only a
// deferred call can pass one).
#include <algorithm>
#include <cstdint>
#include <limits>

#include "pagedkv/ops/build_flashinfer_mixed_sparse_indices.h"

namespace pagedkv {

namespace {

// Position p of a request whose table row is `row` (nullptr when the request has none): its
// slot, or -1.
std::int32_t slot_of(const std::int32_t* row, std::int64_t width, std::int64_t block_size,
                     std::int64_t p) {
  if (row == nullptr || p < 0 || p / block_size >= width) return -1;
  const std::int64_t block = row[p / block_size];
  const std::int64_t slot = block * block_size + p % block_size;
  return block < 0 || slot > std::numeric_limits<std::int32_t>::max()
             ? -1
             : static_cast<std::int32_t>(slot);
}

}  // namespace

void BuildFlashinferMixedSparseIndices::cpu(const Plan& plan, const Args& args) {
  const auto* decode_swa = static_cast<const std::int32_t*>(args.decode_swa_indices.data);
  const auto* decode_topk = static_cast<const std::int32_t*>(args.decode_compressed_indices.data);
  const auto* decode_lens = static_cast<const std::int32_t*>(args.decode_compressed_topk_lens.data);
  const auto* decode_valid = static_cast<const std::uint8_t*>(args.decode_is_valid_token.data);
  const auto* prefill_topk = static_cast<const std::int32_t*>(args.prefill_topk_indices.data);
  const auto* qsl = static_cast<const std::int32_t*>(args.query_start_loc.data);      // [R + 1]
  const auto* seq_lens = static_cast<const std::int32_t*>(args.seq_lens.data);        // [R]
  const auto* req = static_cast<const std::int32_t*>(args.token_to_req_indices.data);  // [>= T]
  const auto* swa_table = static_cast<const std::int32_t*>(args.swa_block_table.data);
  const auto* ctable = static_cast<const std::int32_t*>(
      plan.same_table ? args.swa_block_table.data : args.compressed_block_table.data);
  auto* out = static_cast<std::int32_t*>(args.sparse_indices.data);  // [T, W + P]
  auto* lens = static_cast<std::int32_t*>(args.sparse_topk_lens.data);  // [T]
  const std::int64_t W = plan.window;
  const std::int64_t P = plan.compressed_columns;

  // The compressed table row of request r, when r has one and compressed tokens at all.
  const auto compressed_row = [&](std::int64_t r) -> const std::int32_t* {
    if (r < 0 || r >= plan.num_requests || r >= plan.compressed_rows) return nullptr;
    return ctable + r * plan.compressed_stride;
  };
  // Local index l of request r as a compressed slot, or -1.
  const auto compressed_slot = [&](std::int64_t r, std::int64_t l) -> std::int32_t {
    const std::int32_t* row = compressed_row(r);
    if (row == nullptr || l >= seq_lens[r] / plan.compress_ratio) return -1;
    return slot_of(row, plan.compressed_width, plan.compressed_block_size, l);
  };

  for (std::int64_t u = 0; u < plan.num_decode; ++u) {
    std::int32_t* row = out + u * plan.output_stride;
    for (std::int64_t o = 0; o < W; ++o) row[o] = decode_swa[u * plan.decode_swa_stride + o];
    const bool valid = !plan.has_decode_valid || decode_valid[u] != 0;
    std::int64_t count = 0;
    for (std::int64_t o = 0; o < P; ++o) {
      const std::int32_t v = o < plan.decode_topk ? decode_topk[u * plan.decode_topk_stride + o] : -1;
      if (!plan.decode_local) {
        row[W + o] = v;  // global slots, copied
      } else {
        row[W + o] = valid ? compressed_slot(req[u], v) : -1;
        count += row[W + o] >= 0;
      }
    }
    std::int64_t compressed = 0;
    if (plan.decode_local) {
      compressed = count;
    } else if (plan.decode_topk > 0) {
      compressed = plan.has_decode_lens
                       ? std::clamp<std::int64_t>(decode_lens[u], 0, plan.decode_topk)
                       : plan.decode_topk;
    }
    lens[u] = static_cast<std::int32_t>(W + compressed);
  }

  for (std::int64_t pi = 0; pi < plan.num_prefill; ++pi) {
    const std::int64_t u = plan.num_decode + pi;
    std::int32_t* row = out + u * plan.output_stride;
    std::fill(row, row + W + P, -1);
    lens[u] = 0;
    const std::int64_t r = req[u];
    if (r < 0 || r >= plan.num_requests || u < qsl[r] || u >= qsl[r + 1]) continue;
    const std::int64_t pos = seq_lens[r] - (qsl[r + 1] - qsl[r]) + (u - qsl[r]);
    if (pos < 0) continue;
    const std::int64_t sl = std::min(pos + 1, W);
    const std::int64_t kl = std::min((pos + 1) / plan.compress_ratio, plan.topk);
    const std::int32_t* swa_row =
        r < plan.swa_rows ? swa_table + r * plan.swa_stride : nullptr;
    for (std::int64_t o = 0; o < sl; ++o) {
      row[o] = slot_of(swa_row, plan.swa_width, plan.swa_block_size, pos - sl + 1 + o);
    }
    for (std::int64_t o = 0; o < kl; ++o) {
      const std::int64_t l = o < plan.prefill_topk ? prefill_topk[pi * plan.prefill_topk_stride + o] : -1;
      row[W + o] = l < 0 ? -1 : compressed_slot(r, l);
    }
    lens[u] = static_cast<std::int32_t>(W + kl);
  }
}

}  // namespace pagedkv
