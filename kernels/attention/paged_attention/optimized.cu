// paged_attention_v1 / paged_attention_v2, optimized CUDA version: decode attention streamed
// from the legacy paged cache, after vLLM csrc/attention/attention_kernels.cuh
// (paged_attention_kernel) with what its design leaves on the table. Each trick names the
// naive note it removes:
//   A1 one thread block per (sequence, kv head): each key and value is read once for all the
//      query heads of its kv head (GQA; up to kMaxGroup heads per block), where upstream and
//      naive.cu read it once per query head (and naive three times).
//   A2 16-byte key loads matched to the [D / x, B, x] layout: lane l of a warp reads chunk
//      l / B of token l % B, so one load instruction of the warp covers 32 / B whole chunks of
//      the block's B tokens, 512 contiguous bytes; a lane's chunks are loaded before any
//      multiply (naive: 2-byte loads, one per element, strided).
//   A3 the query heads in shared memory as fp32, read as float4 broadcasts.
//   A4 the logits of one partition (512 tokens) in shared memory; the softmax takes one warp
//      per head and warp shuffles, no block-wide barrier per reduction (naive: 7 barriers per
//      token, three passes over the keys).
//   A5 values: each warp owns a quarter of the head's rows and reads, per block, 16-byte runs
//      of consecutive tokens of each row (the [D, B] layout), the next block's loads issued
//      before the current block's multiplies.
//   A6 split-K: partitions of 512 tokens. v2: one thread block per partition, merged as
//      upstream. v1: a thread block takes a run of partitions, merged in registers; where the
//      batch cannot fill the GPU the runs are spread over several thread blocks, whose fp32
//      partial results (max, sum, unnormalized output) meet in a stream-ordered scratch buffer
//      and are merged by their log-sum-exp, exactly as v2's partitions.
//   A7 fp8 dequantized in registers right after the load, two bytes per conversion, rounded to
//      the query's dtype as upstream.
//   A8 block ids widened to 64 bits before the strides multiply them; the tail of the last
//      block masked (its values forced to 0: the cache may hold NaN there).
//   A9 the merges: one warp per (sequence, query head), lanes over the partitions for the
//      maximum and the sum, then over the head's elements.
// The probabilities are rounded to T per partition, as v2 does; for v1 this differs from
// upstream's single pass by where they are rounded (within the tolerance's u_T term).
// Templated on the element types (bf16 and f16 queries, their own or fp8 caches), the block
// size and the head size's bucket (64, 128, 256: head sizes 32 and 64 run as 64, 80 to 128 as
// 128, 192 and 256 as 256, the rest predicated off): 36 instantiations; the fp8 format is a
// run-time branch. f32 queries (no model decodes in f32) and caches that are not 16-byte
// aligned fall back to the naive kernel, which keeps the build short.
// paged_attention_rocm runs these same instantiations (no new template parameter: the build
// does not grow): the partition size is the plan's (256 instead of 512; the logits buffer,
// sized for 512, is half used), A1 is what upstream's ROCm kernel does with its one workgroup
// per kv head for all GQA_RATIO query heads, A6's v2 path is its split with one block per
// 256-token partition, and A9 its reduce kernel, which also merges a single partition; the
// query and out rows come from query_start_loc (a sequence with other than one query token is
// skipped as upstream skips it) and the merge may store fp8 (e4m3 of out / fp8_out_scale).
// Not yet measured on a GPU.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "common/convert.cuh"
#include "common/device.cuh"
#include "common/dispatch.cuh"
#include "attention/merge_attn_states/merge_math.cuh"
#include "common/fault.cuh"
#include "common/vec.cuh"
#include "convert_fp8/convert_fp8.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/paged_attention_v1.h"
#include "pagedkv/ops/paged_attention_rocm.h"
#include "pagedkv/ops/paged_attention_v2.h"
#include "pagedkv/paged_attention.h"

namespace pagedkv::kernels::paged_attention_optimized {

/// Threads per block: 4 warps.
constexpr int kThreads = 128;
/// Warps per block.
constexpr int kWarps = kThreads / 32;
/// The largest partition (v2's 512 tokens): the shared logits buffer holds one.
constexpr int kMaxPartition = 512;

/// \brief The compile-time shape of one instantiation: how lanes map to key chunks and value
/// rows, and how many query heads one block serves.
/// \tparam Cache the cache element type (T, or std::uint8_t for fp8).
/// \tparam kBlock tokens per cache block (8, 16 or 32).
/// \tparam kHeadMax the head size's bucket (64, 128 or 256).
template <typename Cache, int kBlock, int kHeadMax>
struct Shape {
  /// Elements of one 16-byte key chunk (x).
  static constexpr int kX = 16 / static_cast<int>(sizeof(Cache));
  /// Lanes that share a token in the key pass (A2).
  static constexpr int kLanesPerToken = 32 / kBlock;
  /// Key chunks of a head (at most).
  static constexpr int kChunks = kHeadMax / kX;
  /// Key chunks one lane loads per block.
  static constexpr int kChunksPerLane = (kChunks + kLanesPerToken - 1) / kLanesPerToken;
  /// Key chunks loaded before the multiplies (a batch of registers).
  static constexpr int kChunkBatch = kChunksPerLane < 8 ? kChunksPerLane : 8;
  /// Tokens of one value load: 16 bytes, at most a block (A5).
  static constexpr int kVVec = (16 / static_cast<int>(sizeof(Cache))) < kBlock
                                   ? 16 / static_cast<int>(sizeof(Cache))
                                   : kBlock;
  /// Value loads per row of a block.
  static constexpr int kVecsPerRow = kBlock / kVVec;
  /// Rows one load instruction of a warp covers.
  static constexpr int kRowsPerStep = 32 / kVecsPerRow;
  /// Rows of the head each warp owns.
  static constexpr int kRowsPerWarp = kHeadMax / kWarps;
  /// Rows each lane accumulates.
  static constexpr int kRowsPerLane = (kRowsPerWarp + kRowsPerStep - 1) / kRowsPerStep;
  /// Query heads per block: the accumulators (two sets of kMaxGroup × kRowsPerLane floats)
  /// stay within 64 registers.
  static constexpr int kMaxGroup =
      32 / kRowsPerLane < 1 ? 1 : (32 / kRowsPerLane > 8 ? 8 : 32 / kRowsPerLane);
};

/// \brief What every block of one launch knows: the plan, the pointers and how the work is cut.
struct Work {
  PagedAttentionPlan plan;  ///< sizes and strides
  PagedAttentionData data;  ///< device pointers
  int group = 1;            ///< query heads per kv head (G)
  int heads_per_block = 1;  ///< query heads one block serves (<= kMaxGroup)
  int head_groups = 1;      ///< blocks per kv head: ceil(G / heads_per_block)
  int partition = 512;      ///< tokens per partition
  int partitions = 1;       ///< partitions of the longest sequence: ceil(max_seq_len / partition)
  int partitions_per_split = 1;  ///< consecutive partitions one block takes
  int splits = 1;                ///< ceil(partitions / partitions_per_split)
  bool e5m2 = false;             ///< fp8 caches: E5M2 (else E4M3)
  /// v1 with splits > 1: fp32 partial results [num_seqs, num_heads, splits, head_size + 2]
  /// (the unnormalized output, then the maximum and the sum), else null.
  float* partials = nullptr;
};

/// \brief `kCount` cache elements loaded as one vector and turned into floats: the element
/// itself ("auto"), or round_T(float(fp8) × scale) two bytes at a time (A7).
/// \tparam T the query's dtype.
/// \tparam Cache the cache element type.
/// \tparam kCount elements.
/// \param raw the loaded vector.
/// \param e5m2 fp8: whether the bytes are E5M2.
/// \param scale fp8: k_scale or v_scale.
/// \param out the floats.
template <typename T, typename Cache, int kCount>
__device__ __forceinline__ void to_floats(const AlignedVector<Cache, kCount>& raw, bool e5m2,
                                          float scale, float* out) {
  if constexpr (std::is_same_v<Cache, std::uint8_t>) {
    T pair[2];
#pragma unroll
    for (int i = 0; i < kCount; i += 2) {
      const std::uint16_t bytes = static_cast<std::uint16_t>(raw.elements[i] |
                                                             (raw.elements[i + 1] << 8));
      if (e5m2) {
        convert_fp8::dequantize_pair<KvCacheDtype::kFp8E5m2, T>(bytes, scale, pair);
      } else {
        convert_fp8::dequantize_pair<KvCacheDtype::kFp8E4m3, T>(bytes, scale, pair);
      }
      out[i] = to_float(pair[0]);
      out[i + 1] = to_float(pair[1]);
    }
  } else {
#pragma unroll
    for (int i = 0; i < kCount; ++i) out[i] = to_float(raw.elements[i]);
  }
}

/// \brief The main kernel: one block per (sequence, kv head, head group, split), grid-stride;
/// each partition of the split in two passes over its blocks (keys, then values) around a
/// softmax in shared memory (A1-A8).
/// \tparam T the query's dtype.
/// \tparam Cache the cache element type.
/// \tparam kBlock tokens per cache block.
/// \tparam kHeadMax the head size's bucket.
/// \param work the launch's work.
/// \param fault the device's fault record: set by a deferred check, the kernel writes nothing.
template <typename T, typename Cache, int kBlock, int kHeadMax>
__global__ void __launch_bounds__(kThreads, 4)
    paged_attention_kernel(const Work work, const DeviceFault* fault) {
  using S = Shape<Cache, kBlock, kHeadMax>;
  constexpr int kX = S::kX, kG = S::kMaxGroup;
  if (call_rejected(fault)) return;  // a deferred check rejected the call
  __shared__ __align__(16) float q_shared[kG][kHeadMax];       // A3
  __shared__ __align__(16) float logits[kG][kMaxPartition];    // A4: then the probabilities
  __shared__ float part_max[kG], part_sum[kG];

  const PagedAttentionPlan& plan = work.plan;
  const PagedAttentionData& data = work.data;
  const int D = static_cast<int>(plan.head_size);
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const bool v2 = plan.partition_size > 0;
  const float k_scale = data.k_scale != nullptr ? *data.k_scale : 1.f;
  const float v_scale = data.v_scale != nullptr ? *data.v_scale : 1.f;
  const T* query = static_cast<const T*>(data.query);
  const Cache* key_cache = static_cast<const Cache*>(data.key_cache);
  const Cache* value_cache = static_cast<const Cache*>(data.value_cache);

  const std::int64_t items = plan.num_seqs * plan.num_kv_heads * work.head_groups * work.splits;
  for (std::int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    // A1: one item is (sequence s, kv head g, head group, split): this block reads kv head g
    // once for the nh query heads of its group.
    const int split = static_cast<int>(item % work.splits);
    const int head_group = static_cast<int>(item / work.splits % work.head_groups);
    const std::int64_t g = item / work.splits / work.head_groups % plan.num_kv_heads;
    const std::int64_t s = item / work.splits / work.head_groups / plan.num_kv_heads;
    const std::int64_t qrow = attention_query_row(data, s);  // rocm: -1, a skipped sequence
    if (qrow < 0) continue;                                   // (uniform across the block)
    const int L = data.seq_lens[s];
    const int first_part = split * work.partitions_per_split;
    const int seq_parts = (L + work.partition - 1) / work.partition;
    if (first_part >= seq_parts) continue;  // a split past the sequence's end (uniform)
    const int last_part = min(first_part + work.partitions_per_split, seq_parts);
    const int h0 = static_cast<int>(g) * work.group + head_group * work.heads_per_block;
    const int nh = min(work.heads_per_block, work.group - head_group * work.heads_per_block);
    const std::int32_t* blocks = data.block_tables + s * plan.table_stride;
    // A8: the kv head's base; a block's is blocks[i] × block_stride on top, in 64 bits.
    const std::int64_t head_base = g * plan.head_stride;

    // A3: the query heads, as floats, zero beyond D.
    for (int i = threadIdx.x; i < kG * kHeadMax; i += kThreads) {
      const int h = i / kHeadMax, d = i % kHeadMax;
      q_shared[h][d] =
          h < nh && d < D
              ? to_float(query[qrow * plan.query_stride[0] + (h0 + h) * plan.query_stride[1] + d])
              : 0.f;
    }

    // v1: the running merge of this split's partitions (A6), per head; the accumulators of
    // the rows this lane owns (A5).
    float run_max[kG], run_sum[kG], run_out[kG][S::kRowsPerLane];
#pragma unroll
    for (int h = 0; h < kG; ++h) {
      run_max[h] = -INFINITY;
      run_sum[h] = 0.f;
#pragma unroll
      for (int r = 0; r < S::kRowsPerLane; ++r) run_out[h][r] = 0.f;
    }
    __syncthreads();

    for (int part = first_part; part < last_part; ++part) {
      const int t0 = part * work.partition;                // first token
      const int n = min(work.partition, L - t0);           // tokens of the partition
      const int n_blocks = (n + kBlock - 1) / kBlock;
      const std::int32_t* part_blocks = blocks + t0 / kBlock;

      // ---- Keys (A2): warp w takes blocks w, w + 4, ...; lane l token l % B, chunks
      // l / B + k × 32 / B.
      {
        const int token = lane % kBlock, chunk0 = lane / kBlock;
        for (int j = warp; j < n_blocks; j += kWarps) {
          const int t = j * kBlock + token;  // within the partition
          const Cache* k_base = key_cache + static_cast<std::int64_t>(part_blocks[j]) *
                                                plan.block_stride +
                                head_base + token * kX;  // A8
          float dot[kG];
#pragma unroll
          for (int h = 0; h < kG; ++h) dot[h] = 0.f;
#pragma unroll
          for (int c0 = 0; c0 < S::kChunksPerLane; c0 += S::kChunkBatch) {
            AlignedVector<Cache, kX> raw[S::kChunkBatch];
#pragma unroll
            for (int c = 0; c < S::kChunkBatch; ++c) {  // all loads first
              const int chunk = chunk0 + (c0 + c) * S::kLanesPerToken;
              if (c0 + c < S::kChunksPerLane && chunk * kX < D && t < n) {
                raw[c] = load_vector<kX>(k_base + chunk * kBlock * kX);
              }
            }
#pragma unroll
            for (int c = 0; c < S::kChunkBatch; ++c) {
              const int chunk = chunk0 + (c0 + c) * S::kLanesPerToken;
              if (!(c0 + c < S::kChunksPerLane && chunk * kX < D && t < n)) continue;
              float k[kX];
              to_floats<T>(raw[c], work.e5m2, k_scale, k);  // A7
#pragma unroll
              for (int h = 0; h < kG; ++h) {
                if (h >= nh) break;
                const float4* q4 = reinterpret_cast<const float4*>(&q_shared[h][chunk * kX]);
#pragma unroll
                for (int e = 0; e < kX; e += 4) {
                  const float4 qv = q4[e / 4];
                  dot[h] += qv.x * k[e] + qv.y * k[e + 1] + qv.z * k[e + 2] + qv.w * k[e + 3];
                }
              }
            }
          }
          // The lanes of one token add their chunks' partial dot products.
#pragma unroll
          for (int h = 0; h < kG; ++h) {
#pragma unroll
            for (int offset = kBlock; offset < 32; offset *= 2) {
              dot[h] += __shfl_xor_sync(0xffffffffu, dot[h], offset);
            }
          }
          if (chunk0 == 0) {
#pragma unroll
            for (int h = 0; h < kG; ++h) {
              if (h >= nh) break;
              float logit = plan.scale * dot[h];
              if (data.alibi_slopes != nullptr) {
                const float slope = data.alibi_slopes[(h0 + h) * plan.alibi_stride];
                if (slope != 0.f) logit += slope * static_cast<float>(t0 + t - L + 1);
              }
              logits[h][t] = t < n ? logit : -INFINITY;
            }
          }
        }
      }
      __syncthreads();

      // ---- Softmax (A4): warp w takes heads w, w + 4, ...
      for (int h = warp; h < nh; h += kWarps) {
        float m = -INFINITY;
        for (int i = lane; i < n; i += 32) m = fmaxf(m, logits[h][i]);
#pragma unroll
        for (int offset = 16; offset > 0; offset /= 2) {
          m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
        }
        float sum = 0.f;
        for (int i = lane; i < n; i += 32) {
          const float e = __expf(logits[h][i] - m);
          logits[h][i] = e;
          sum += e;
        }
#pragma unroll
        for (int offset = 16; offset > 0; offset /= 2) {
          sum += __shfl_xor_sync(0xffffffffu, sum, offset);
        }
        const float inv_sum = __fdividef(1.f, sum + 1e-6f);
        // Each probability rounded to T (upstream's rounding point); the masked tail 0.
        for (int i = lane; i < n_blocks * kBlock; i += 32) {
          logits[h][i] = i < n ? to_float(convert_fp8::from_float<T>(logits[h][i] * inv_sum)) : 0.f;
        }
        if (lane == 0) {
          part_max[h] = m;
          part_sum[h] = sum;
        }
      }
      __syncthreads();
      if (v2 && static_cast<int>(threadIdx.x) < nh) {
        const int h = static_cast<int>(threadIdx.x);
        data.max_logits[s * plan.max_logits_stride[0] + (h0 + h) * plan.max_logits_stride[1] +
                        part * plan.max_logits_stride[2]] = part_max[h];
        data.exp_sums[s * plan.exp_sums_stride[0] + (h0 + h) * plan.exp_sums_stride[1] +
                      part * plan.exp_sums_stride[2]] = part_sum[h];
      }

      // ---- Values (A5): warp w owns rows w × kRowsPerWarp + l / kVecsPerRow + r ×
      // kRowsPerStep, lane l the tokens (l % kVecsPerRow) × kVVec .. of each block.
      float acc[kG][S::kRowsPerLane];
#pragma unroll
      for (int h = 0; h < kG; ++h) {
#pragma unroll
        for (int r = 0; r < S::kRowsPerLane; ++r) acc[h][r] = 0.f;
      }
      const int vec = lane % S::kVecsPerRow, row_in_step = lane / S::kVecsPerRow;
      const auto row_of = [&](int r) {
        return warp * S::kRowsPerWarp + row_in_step + r * S::kRowsPerStep;
      };
      const auto row_valid = [&](int r) {
        return row_in_step + r * S::kRowsPerStep < S::kRowsPerWarp && row_of(r) < D;
      };
      const auto load_values = [&](int j, AlignedVector<Cache, S::kVVec>* raw) {
        const Cache* v_base = value_cache +
                              static_cast<std::int64_t>(part_blocks[j]) * plan.block_stride +
                              head_base + vec * S::kVVec;  // A8
#pragma unroll
        for (int r = 0; r < S::kRowsPerLane; ++r) {
          if (row_valid(r)) raw[r] = load_vector<S::kVVec>(v_base + row_of(r) * kBlock);
        }
      };
      AlignedVector<Cache, S::kVVec> next[S::kRowsPerLane];
      if (n_blocks > 0) load_values(0, next);
      for (int j = 0; j < n_blocks; ++j) {
        AlignedVector<Cache, S::kVVec> current[S::kRowsPerLane];
#pragma unroll
        for (int r = 0; r < S::kRowsPerLane; ++r) current[r] = next[r];
        if (j + 1 < n_blocks) load_values(j + 1, next);  // A5: the next block in flight
        const int tok = j * kBlock + vec * S::kVVec;  // first token of this lane's run
        float v[S::kRowsPerLane][S::kVVec];
#pragma unroll
        for (int r = 0; r < S::kRowsPerLane; ++r) {
          if (!row_valid(r)) continue;
          to_floats<T>(current[r], work.e5m2, v_scale, v[r]);  // A7
          if (tok + S::kVVec > n) {  // A8: the last block's tail (may hold NaN)
#pragma unroll
            for (int e = 0; e < S::kVVec; ++e) v[r][e] = tok + e < n ? v[r][e] : 0.f;
          }
        }
#pragma unroll
        for (int h = 0; h < kG; ++h) {
          if (h >= nh) break;
          float p[S::kVVec];
#pragma unroll
          for (int e = 0; e < S::kVVec; e += 4) {
            const float4 p4 = *reinterpret_cast<const float4*>(&logits[h][tok + e]);
            p[e] = p4.x;
            p[e + 1] = p4.y;
            p[e + 2] = p4.z;
            p[e + 3] = p4.w;
          }
#pragma unroll
          for (int r = 0; r < S::kRowsPerLane; ++r) {
            if (!row_valid(r)) continue;
#pragma unroll
            for (int e = 0; e < S::kVVec; ++e) acc[h][r] += p[e] * v[r][e];
          }
        }
      }
      // The lanes of one row add their tokens' sums.
#pragma unroll
      for (int h = 0; h < kG; ++h) {
#pragma unroll
        for (int r = 0; r < S::kRowsPerLane; ++r) {
#pragma unroll
          for (int offset = 1; offset < S::kVecsPerRow; offset *= 2) {
            acc[h][r] += __shfl_xor_sync(0xffffffffu, acc[h][r], offset);
          }
        }
      }

      if (v2) {  // this partition's output, normalized by its own sum, rounded to T
        if (vec == 0) {
          T* tmp_out = static_cast<T*>(data.tmp_out);
#pragma unroll
          for (int h = 0; h < kG; ++h) {
            if (h >= nh) break;
#pragma unroll
            for (int r = 0; r < S::kRowsPerLane; ++r) {
              if (!row_valid(r)) continue;
              tmp_out[s * plan.tmp_out_stride[0] + (h0 + h) * plan.tmp_out_stride[1] +
                      part * plan.tmp_out_stride[2] + row_of(r)] =
                  convert_fp8::from_float<T>(acc[h][r]);
            }
          }
        }
      } else {  // A6: merged into the split's running result, weighted as v2's merge weighs it
#pragma unroll
        for (int h = 0; h < kG; ++h) {
          if (h >= nh) break;
          const float m = part_max[h], sum = part_sum[h];
          const float new_max = fmaxf(run_max[h], m);
          const float old_weight = run_max[h] == -INFINITY ? 0.f : expf(run_max[h] - new_max);
          const float weight = sum * expf(m - new_max);
          run_sum[h] = run_sum[h] * old_weight + weight;
          run_max[h] = new_max;
#pragma unroll
          for (int r = 0; r < S::kRowsPerLane; ++r) {
            run_out[h][r] = run_out[h][r] * old_weight + acc[h][r] * weight;
          }
        }
      }
      __syncthreads();  // the next partition rewrites logits, part_max, part_sum
    }

    if (v2) continue;
    // v1: the split's result, from the lanes that hold whole rows.
    const int vec = lane % S::kVecsPerRow, row_in_step = lane / S::kVecsPerRow;
#pragma unroll
    for (int h = 0; h < kG; ++h) {
      if (h >= nh) break;
      const int head = h0 + h;
      float* partial = work.partials == nullptr
                           ? nullptr
                           : work.partials +
                                 ((s * plan.num_heads + head) * work.splits + split) * (D + 2);
      const float inv_sum = __fdividef(1.f, run_sum[h] + 1e-6f);
      T* out = static_cast<T*>(data.out) + qrow * plan.out_stride[0] + head * plan.out_stride[1];
#pragma unroll
      for (int r = 0; r < S::kRowsPerLane; ++r) {
        const int row = warp * S::kRowsPerWarp + row_in_step + r * S::kRowsPerStep;
        if (vec != 0 || row_in_step + r * S::kRowsPerStep >= S::kRowsPerWarp || row >= D) continue;
        if (partial == nullptr) {  // the whole sequence: normalize and write out
          out[row] = convert_fp8::from_float<T>(run_out[h][r] * inv_sum);
        } else {  // A6: this split's fp32 partial result, merged by merge_splits_kernel
          partial[row] = run_out[h][r];
        }
      }
      if (partial != nullptr && threadIdx.x == 0) {
        partial[D] = run_max[h];
        partial[D + 1] = run_sum[h];
      }
    }
  }
}

/// \brief v2's merge (upstream's paged_attention_v2_reduce_kernel), one warp per (sequence,
/// query head), grid-stride (A9), also rocm's (upstream's paged_attention_ll4mi_reduce_kernel):
/// with one partition its output copied (rocm: merged like several), else
/// out = Σ_p tmp_out[p] × w_p / (Σ_p w_p + 1e-6), w_p = exp_sums[p] × exp(max_logits[p] - M).
/// \tparam T the query's dtype.
/// \param work the launch's work.
/// \param fault the device's fault record: set by a deferred check, the kernel writes nothing.
template <typename T>
__global__ void __launch_bounds__(kThreads) merge_partitions_kernel(const Work work,
                                                                    const DeviceFault* fault) {
  if (call_rejected(fault)) return;
  const PagedAttentionPlan& plan = work.plan;
  const PagedAttentionData& data = work.data;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const std::int64_t items = plan.num_seqs * plan.num_heads;
  const float out_scale_inverse =
      data.fp8_out_scale != nullptr ? 1.0f / *data.fp8_out_scale : 1.0f;
  for (std::int64_t item = (static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x) / 32;
       item < items; item += static_cast<std::int64_t>(gridDim.x) * kWarps) {
    const std::int64_t s = item / plan.num_heads, h = item % plan.num_heads;
    const std::int64_t out_row = attention_query_row(data, s);
    if (out_row < 0) continue;  // rocm: a sequence the call skips (uniform across the warp)
    const int partitions = (data.seq_lens[s] + work.partition - 1) / work.partition;
    const float* max_logits =
        data.max_logits + s * plan.max_logits_stride[0] + h * plan.max_logits_stride[1];
    const float* exp_sums =
        data.exp_sums + s * plan.exp_sums_stride[0] + h * plan.exp_sums_stride[1];
    const T* tmp = static_cast<const T*>(data.tmp_out) + s * plan.tmp_out_stride[0] +
                   h * plan.tmp_out_stride[1];
    const std::int64_t row_offset = out_row * plan.out_stride[0] + h * plan.out_stride[1];
    T* row = static_cast<T*>(data.out) + row_offset;
    if (partitions == 1 && !plan.merge_single_partition) {
      for (int d = lane; d < plan.head_size; d += 32) row[d] = tmp[d];
      continue;
    }
    float m = -INFINITY;
    for (int p = lane; p < partitions; p += 32) m = fmaxf(m, max_logits[p * plan.max_logits_stride[2]]);
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
    float total = 0.f;
    for (int p = lane; p < partitions; p += 32) {
      total += exp_sums[p * plan.exp_sums_stride[2]] *
               expf(max_logits[p * plan.max_logits_stride[2]] - m);
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) total += __shfl_xor_sync(0xffffffffu, total, offset);
    const float inv_total = __fdividef(1.f, total + 1e-6f);
    for (int d = lane; d < plan.head_size; d += 32) {
      float acc = 0.f;
      for (int p = 0; p < partitions; ++p) {
        const float weight = exp_sums[p * plan.exp_sums_stride[2]] *
                             expf(max_logits[p * plan.max_logits_stride[2]] - m);
        acc += to_float(tmp[p * plan.tmp_out_stride[2] + d]) * weight * inv_total;
      }
      if (plan.fp8_output) {  // rocm: e4m3(clamp(acc × (1 / fp8_out_scale), ±448))
        static_cast<std::uint8_t*>(data.out)[row_offset + d] =
            merge::fp8_output(acc, out_scale_inverse);
      } else {
        row[d] = convert_fp8::from_float<T>(acc);
      }
    }
  }
}

/// \brief v1's merge of the splits of a sequence (A6, A9): one warp per (sequence, query
/// head), grid-stride; out = Σ_k O_k × exp(M_k - M) / (Σ_k S_k × exp(M_k - M) + 1e-6) over
/// the splits k that had tokens, O_k their unnormalized fp32 outputs.
/// \tparam T the query's dtype.
/// \param work the launch's work.
/// \param fault the device's fault record: set by a deferred check, the kernel writes nothing.
template <typename T>
__global__ void __launch_bounds__(kThreads) merge_splits_kernel(const Work work,
                                                                const DeviceFault* fault) {
  if (call_rejected(fault)) return;
  const PagedAttentionPlan& plan = work.plan;
  const PagedAttentionData& data = work.data;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int D = static_cast<int>(plan.head_size);
  const std::int64_t items = plan.num_seqs * plan.num_heads;
  for (std::int64_t item = (static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x) / 32;
       item < items; item += static_cast<std::int64_t>(gridDim.x) * kWarps) {
    const std::int64_t s = item / plan.num_heads, h = item % plan.num_heads;
    const int partitions = (data.seq_lens[s] + work.partition - 1) / work.partition;
    const int splits = (partitions + work.partitions_per_split - 1) / work.partitions_per_split;
    const float* partials = work.partials + item * work.splits * (D + 2);
    float m = -INFINITY;
    for (int k = lane; k < splits; k += 32) m = fmaxf(m, partials[k * (D + 2) + D]);
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
    float total = 0.f;
    for (int k = lane; k < splits; k += 32) {
      total += partials[k * (D + 2) + D + 1] * expf(partials[k * (D + 2) + D] - m);
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) total += __shfl_xor_sync(0xffffffffu, total, offset);
    const float inv_total = __fdividef(1.f, total + 1e-6f);
    T* row = static_cast<T*>(data.out) + s * plan.out_stride[0] + h * plan.out_stride[1];
    for (int d = lane; d < D; d += 32) {
      float acc = 0.f;
      for (int k = 0; k < splits; ++k) {
        acc += partials[k * (D + 2) + d] * expf(partials[k * (D + 2) + D] - m);
      }
      row[d] = convert_fp8::from_float<T>(acc * inv_total);
    }
  }
}

}  // namespace pagedkv::kernels::paged_attention_optimized

namespace pagedkv::kernels::paged_attention_optimized {

namespace {

// Whether every key chunk and value run of the caches is aligned for one vector load.
bool vector_loads_allowed(const PagedAttentionPlan& plan, const PagedAttentionData& data) {
  const std::int64_t bytes = is_fp8(plan.cache_kind) ? 1 : dtype_size(plan.dtype);
  return is_aligned(data.key_cache, 16) && is_aligned(data.value_cache, 16) &&
         stride_allows(plan.block_stride * bytes, plan.num_blocks, 16) &&
         stride_allows(plan.head_stride * bytes, plan.num_kv_heads, 16);
}

// One instantiation: the work cut into blocks (A1, A6), the main kernel, then the merge.
template <typename T, typename Cache, int kBlock, int kHeadMax>
void launch(const PagedAttentionPlan& plan, const PagedAttentionData& data, bool e5m2,
            cudaStream_t stream) {
  using S = Shape<Cache, kBlock, kHeadMax>;
  Work work;
  work.plan = plan;
  work.data = data;
  work.e5m2 = e5m2;
  work.group = static_cast<int>(plan.num_heads / plan.num_kv_heads);
  work.heads_per_block = std::min(work.group, S::kMaxGroup);
  work.head_groups = (work.group + work.heads_per_block - 1) / work.heads_per_block;
  const bool v2 = plan.partition_size > 0;
  work.partition = static_cast<int>(v2 ? plan.partition_size : kPagedAttentionPartitionSize);
  work.partitions =
      static_cast<int>((plan.max_seq_len + work.partition - 1) / work.partition);
  const std::int64_t base = plan.num_seqs * plan.num_kv_heads * work.head_groups;
  if (v2) {  // one block per partition: the workspaces hold each partition's result
    work.partitions_per_split = 1;
    work.splits = work.partitions;
  } else {  // A6: split only as far as needed to give every SM a few blocks
    const std::int64_t target = 4 * static_cast<std::int64_t>(sm_count());
    const std::int64_t wanted = std::min<std::int64_t>((target + base - 1) / base, work.partitions);
    work.partitions_per_split =
        static_cast<int>((work.partitions + std::max<std::int64_t>(wanted, 1) - 1) /
                         std::max<std::int64_t>(wanted, 1));
    work.splits = (work.partitions + work.partitions_per_split - 1) / work.partitions_per_split;
  }
  const DeviceFault* fault = device_fault();
  void* scratch = nullptr;
  if (!v2 && work.splits > 1) {
    const std::size_t bytes = static_cast<std::size_t>(plan.num_seqs * plan.num_heads) *
                              work.splits * (plan.head_size + 2) * sizeof(float);
    PAGEDKV_CUDA_CHECK(cudaMallocAsync(&scratch, bytes, stream));
    work.partials = static_cast<float*>(scratch);
  }
  const std::int64_t items = base * work.splits;
  const auto grid = static_cast<unsigned>(std::min<std::int64_t>(items, std::int64_t{1} << 30));
  paged_attention_kernel<T, Cache, kBlock, kHeadMax><<<grid, kThreads, 0, stream>>>(work, fault);
  PAGEDKV_CUDA_CHECK_LAUNCH();
  const std::int64_t heads = plan.num_seqs * plan.num_heads;
  const auto merge_grid =
      static_cast<unsigned>(std::min<std::int64_t>((heads + kWarps - 1) / kWarps, 1 << 30));
  if (v2) {
    merge_partitions_kernel<T><<<merge_grid, kThreads, 0, stream>>>(work, fault);
    PAGEDKV_CUDA_CHECK_LAUNCH();
  } else if (scratch != nullptr) {
    merge_splits_kernel<T><<<merge_grid, kThreads, 0, stream>>>(work, fault);
    PAGEDKV_CUDA_CHECK_LAUNCH();
    PAGEDKV_CUDA_CHECK(cudaFreeAsync(scratch, stream));
  }
}

// The head size's bucket, then the block size, as compile-time values.
template <typename T, typename Cache>
void launch_for_sizes(const PagedAttentionPlan& plan, const PagedAttentionData& data, bool e5m2,
                      cudaStream_t stream) {
  const auto with_block = [&](auto head_max) {
    constexpr int kHeadMax = decltype(head_max)::value;
    switch (plan.block_size) {
      case 8: launch<T, Cache, 8, kHeadMax>(plan, data, e5m2, stream); return;
      case 16: launch<T, Cache, 16, kHeadMax>(plan, data, e5m2, stream); return;
      default: launch<T, Cache, 32, kHeadMax>(plan, data, e5m2, stream); return;
    }
  };
  if (plan.head_size <= 64) {
    with_block(std::integral_constant<int, 64>{});
  } else if (plan.head_size <= 128) {
    with_block(std::integral_constant<int, 128>{});
  } else {
    with_block(std::integral_constant<int, 256>{});
  }
}

}  // namespace

}  // namespace pagedkv::kernels::paged_attention_optimized

namespace pagedkv {

namespace attention {

void optimized(const PagedAttentionPlan& plan, const PagedAttentionData& data,
               cudaStream_t stream) {
  using namespace pagedkv::kernels;
  using namespace pagedkv::kernels::paged_attention_optimized;
  if (plan.num_seqs == 0) return;  // an empty batch: nothing to write
  if (plan.dtype == DType::f32 || !vector_loads_allowed(plan, data)) {
    // f32 queries (not instantiated, to keep the build short) and caches the 16-byte loads
    // cannot read: the naive kernel.
    naive(plan, data, stream);
    return;
  }
  const bool fp8 = is_fp8(plan.cache_kind);
  const bool e5m2 = plan.cache_kind == KvCacheDtype::kFp8E5m2;
  const auto with_type = [&](auto t_tag) {
    using T = typename decltype(t_tag)::type;
    if (fp8) {
      launch_for_sizes<T, std::uint8_t>(plan, data, e5m2, stream);
    } else {
      launch_for_sizes<T, T>(plan, data, e5m2, stream);
    }
  };
  if (plan.dtype == DType::f16) {
    with_type(TypeTag<__half>{});
  } else {
    with_type(TypeTag<__nv_bfloat16>{});
  }
}

}  // namespace attention

void PagedAttentionV1::optimized(const Plan& plan, const Args& args, cudaStream_t stream) {
  attention::optimized(plan, paged_attention_data(plan, args), stream);
}

void PagedAttentionV2::optimized(const Plan& plan, const Args& args, cudaStream_t stream) {
  attention::optimized(plan, paged_attention_data(plan, args), stream);
}

void PagedAttentionRocm::optimized(const Plan& plan, const Args& args, cudaStream_t stream) {
  attention::optimized(plan, paged_attention_data(plan, args), stream);
}

}  // namespace pagedkv
