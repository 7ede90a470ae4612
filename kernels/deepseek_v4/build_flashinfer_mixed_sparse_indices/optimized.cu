// build_flashinfer_mixed_sparse_indices, optimized CUDA version. Each row is W + P i32 columns
// (128 + 2048 for DeepSeek V4's C4A layers): a decode row is mostly a copy of its
// precomputed SWA slots and compressed indices, a prefill row a window computed from its
// position plus kl table lookups. So the job is coalesced 16-byte accesses along the row and
// finding the row's request and position once.
//
// Byte model: T × (W + P) × 4 written (sparse_indices) + T × 4 written (sparse_topk_lens) +
// Td × (W + Kd) × 4 read (the decode rows' precomputed indices) + Tp × min(topk, Kp) × 4 read
// (the prefill top-k entries a full-length query uses) + 4 bytes of token_to_req_indices per
// token; block-table words are not counted (neighbouring columns share them: L1 hits). At a
// decode batch (T up to 512) the op is one launch: its floor is the launch latency and one
// DRAM round trip, as for a copy kernel of the same bytes.
//
// What this version does differently from the naive one (not yet measured on a GPU):
//   M1 one CTA of 128 threads per token row, four adjacent columns per thread: a warp reads
//      and writes 512 contiguous bytes of one row instead of 32 rows W + P entries apart.
//   M2 16-byte accesses: a decode row's SWA slots move with one 16-byte load and store per
//      thread, and every group of four output columns leaves with one store (when the rows
//      are 16-byte aligned and W, P are multiples of 4, as upstream's round_up(., 4) makes
//      them; else 4-byte accesses).
//   M3 the row's request, position, window length sl and top-k count kl are worked out once
//      per CTA by thread 0 and broadcast through shared memory.
//   M4 a window's slots need one table word per block of positions: consecutive columns of
//      one block read the same word, which the read-only path serves from L1.
//   M5 a decode row's count of translated local indices is one shared-memory atomic add per
//      thread, not a serial walk.
#include <cstdint>

#include "deepseek_v4/build_flashinfer_mixed_sparse_indices/pointers.cuh"
#include "deepseek_v4/sparse_index.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/build_flashinfer_mixed_sparse_indices.h"

namespace pagedkv::kernels::mixed_sparse_optimized {

using mixed_sparse::Pointers;

/// Threads per CTA (trick M1).
constexpr int kThreads = 128;

/// \brief What every column of a row needs (trick M3).
struct RowContext {
  std::int64_t request;     ///< the token's request (-1: none, the row is -1)
  std::int64_t pos;         ///< prefill: the token's position
  std::int64_t sl;          ///< prefill: window columns in use
  std::int64_t kl;          ///< prefill: top-k columns in use
  std::int64_t compressed;  ///< the request's compressed tokens (seq_len / compress_ratio)
  bool translate;           ///< decode: translate the local indices (valid token)
};

/// \brief The compressed table's row of the row's request (no row when it has none).
__device__ __forceinline__ sparse_index::TableRow compressed_row(
    const Pointers& p, const BuildFlashinferMixedSparseIndicesPlan& plan, const RowContext& row) {
  const std::int64_t r = row.request < plan.num_requests ? row.request : -1;
  return sparse_index::table_row(p.ctable, plan.compressed_rows, plan.compressed_stride,
                                 plan.compressed_width, plan.compressed_block_size, r);
}

/// \brief Local index `l` as a compressed slot of the row's request, or -1.
__device__ __forceinline__ std::int32_t compressed_slot(const sparse_index::TableRow& table,
                                                        const RowContext& row, std::int64_t l) {
  return l >= row.compressed ? -1 : sparse_index::global_slot(table, l);
}

/// \brief One CTA per token row `blockIdx.x` (trick M1).
/// \param p the call's pointers.
/// \param plan sizes, strides and the integer arguments.
__global__ void __launch_bounds__(kThreads)
    mixed_sparse_kernel(Pointers p, BuildFlashinferMixedSparseIndicesPlan plan) {
  __shared__ RowContext shared_row;
  __shared__ int translated;  // M5: slots found in a decode row
  const std::int64_t u = blockIdx.x;
  const bool decode = u < plan.num_decode;
  const std::int64_t W = plan.window;
  const std::int64_t P = plan.compressed_columns;
  if (threadIdx.x == 0) {  // M3
    RowContext row{-1, 0, 0, 0, 0, false};
    const std::int64_t r = p.req[u];
    const bool known = r >= 0 && r < plan.num_requests;
    if (decode) {
      row.translate = plan.decode_local && (p.decode_valid == nullptr || p.decode_valid[u]);
      if (row.translate && known) {
        row.request = r;
        row.compressed = p.seq_lens[r] / plan.compress_ratio;
      }
    } else if (known && u >= p.qsl[r] && u < p.qsl[r + 1]) {
      const std::int64_t pos = p.seq_lens[r] - (p.qsl[r + 1] - p.qsl[r]) + (u - p.qsl[r]);
      if (pos >= 0) {
        row.request = r;
        row.pos = pos;
        row.sl = min(pos + 1, W);
        row.kl = min((pos + 1) / plan.compress_ratio, plan.topk);
        row.compressed = p.seq_lens[r] / plan.compress_ratio;
      }
    }
    shared_row = row;
    translated = 0;
  }
  __syncthreads();
  const RowContext row = shared_row;
  std::int32_t* out = p.out + u * plan.output_stride;
  const sparse_index::TableRow swa = sparse_index::table_row(
      p.swa_table, plan.swa_rows, plan.swa_stride, plan.swa_width, plan.swa_block_size,
      decode ? -1 : row.request);
  const sparse_index::TableRow ctable = compressed_row(p, plan, row);

  int mine = 0;  // M5: this thread's translated slots
  for (std::int64_t c = threadIdx.x * 4; c < W + P; c += kThreads * 4) {
    std::int32_t v[4];
    if (decode && c < W && plan.vector_rows) {  // M2: the precomputed SWA slots, copied
      const int4 swa_slots =
          __ldg(reinterpret_cast<const int4*>(p.decode_swa + u * plan.decode_swa_stride + c));
      v[0] = swa_slots.x, v[1] = swa_slots.y, v[2] = swa_slots.z, v[3] = swa_slots.w;
    } else {
      for (int j = 0; j < 4; ++j) {
        const std::int64_t col = c + j;
        std::int32_t value = -1;
        if (col >= W + P) {
          value = -1;  // past the row (only without vector_rows)
        } else if (decode && col < W) {
          value = __ldg(p.decode_swa + u * plan.decode_swa_stride + col);
        } else if (decode) {
          const std::int64_t o = col - W;
          value = o < plan.decode_topk ? __ldg(p.decode_topk + u * plan.decode_topk_stride + o)
                                       : -1;
          if (plan.decode_local) {
            value = row.translate ? compressed_slot(ctable, row, value) : -1;
            mine += value >= 0;
          }
        } else if (col < W) {  // M4: a prefill window position
          value = col < row.sl ? sparse_index::global_slot(swa, row.pos - row.sl + 1 + col) : -1;
        } else {
          const std::int64_t o = col - W;
          const std::int64_t l =
              o < row.kl && o < plan.prefill_topk
                  ? __ldg(p.prefill_topk + (u - plan.num_decode) * plan.prefill_topk_stride + o)
                  : -1;
          value = l < 0 ? -1 : compressed_slot(ctable, row, l);
        }
        v[j] = value;
      }
    }
    if (plan.vector_rows) {  // M2: W + P is a multiple of 4
      *reinterpret_cast<int4*>(out + c) = make_int4(v[0], v[1], v[2], v[3]);
    } else {
      for (int j = 0; j < 4 && c + j < W + P; ++j) out[c + j] = v[j];
    }
  }
  if (mine > 0) atomicAdd(&translated, mine);  // M5
  __syncthreads();
  if (threadIdx.x == 0) {
    std::int64_t compressed = 0;
    if (!decode) {
      compressed = row.request >= 0 ? row.kl : -W;  // a row no request owns has length 0
    } else if (plan.decode_local) {
      compressed = translated;
    } else if (plan.decode_topk > 0) {
      compressed = p.decode_lens != nullptr
                       ? min(static_cast<std::int64_t>(max(p.decode_lens[u], 0)), plan.decode_topk)
                       : plan.decode_topk;
    }
    p.lens[u] = static_cast<std::int32_t>(W + compressed);
  }
}

}  // namespace pagedkv::kernels::mixed_sparse_optimized

namespace pagedkv {

void BuildFlashinferMixedSparseIndices::optimized(const Plan& plan, const Args& args,
                                                  cudaStream_t stream) {
  using namespace pagedkv::kernels::mixed_sparse_optimized;
  const std::int64_t T = plan.num_decode + plan.num_prefill;
  if (T == 0) return;  // nothing to write, and no empty grid
  const Pointers p = kernels::mixed_sparse::pointers_of(plan, args);
  mixed_sparse_kernel<<<static_cast<unsigned>(T), kThreads, 0, stream>>>(p, plan);
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv
