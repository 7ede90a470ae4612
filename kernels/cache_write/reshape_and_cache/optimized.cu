// reshape_and_cache, optimized CUDA version: tiles of tokens staged through shared memory, stored
// in the order the tile's slots call for.
//
// What this version does differently (H100, W1, 65536 tokens; % of a device copy of the bytes):
//   L1 one CTA per (32-token tile, head part): 16-byte coalesced loads, staged in shared memory.
//   L2 key chunks: consecutive threads store the 16-byte chunks of consecutive tokens.
//   L3 value pieces: 16 bytes of consecutive slots, 1 store per value row: contiguous 92.1 %.
//   L4 store order per tile: token by token unless half the pieces are full: 5433 -> 2100 µs.
//   L5 odd row pitch in 16-byte units, plus a 16-byte skew per 8 rows: no bank conflicts.
//   L6 16-byte loads and stores only where pointers and strides allow; element accesses otherwise.
//   L7 every (head, chunk) is written (upstream stops at 512 chunks); big heads span several CTAs.
//   L8 5 CTAs per SM, 48 registers, addresses from the parameters: no spill (2120 -> 2105 µs).
// Random slots (bf16: 2100 µs, 8.5 %, as naive) stay bound by 32-byte read-modify-writes in DRAM.
// The full story: chapter "Writing the cache", page "reshape_and_cache".
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "common/convert.cuh"
#include "common/dispatch.cuh"
#include "common/fault.cuh"
#include "common/vec.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/reshape_and_cache.h"

namespace pagedkv::kernels::reshape_and_cache_optimized {

/// Tokens per CTA: one warp plans the tile's pieces with one ballot.
constexpr int kTileTokens = 32;
/// Threads per CTA.
constexpr int kThreads = 256;
/// Most 16-byte key chunks of one head a CTA stages (512 cache bytes per token row); larger
/// heads are split over several CTAs.
constexpr int kMaxChunksPerCta = 32;
/// CTAs that must fit on one SM (trick L8): bounds registers to 48 per thread (1,280 threads per
/// SM, no spills in any instantiation; checked with -Xptxas -v). More loads in flight per thread
/// (unrolling) cost registers and spilled; more threads per SM hide the latency instead (4 CTAs
/// per SM, 64 registers: fp8 contiguous slots took 195 instead of 180 µs, measured once).
constexpr int kMinCtasPerSm = 5;
/// Staged rows per 16-byte skew (trick L5).
constexpr int kRowGroup = 8;

/// \brief Everything the kernel reads besides its template arguments.
struct Params {
  const void* key;                   ///< [T_pad, num_heads, head_size], rows key_stride apart
  const void* value;                 ///< [T_pad, num_heads, head_size], rows value_stride apart
  void* key_cache;                   ///< [num_blocks, num_heads, head_size / x, block_size, x]
  void* value_cache;                 ///< [num_blocks, num_heads, head_size, block_size]
  const std::int64_t* slot_mapping;  ///< [num_tokens]
  const float* k_scale;              ///< [1], fp8 only
  const float* v_scale;              ///< [1], fp8 only
  std::int64_t num_tokens;           ///< tokens to write
  std::int64_t key_stride;           ///< elements between two key rows
  std::int64_t value_stride;         ///< elements between two value rows
  int num_heads;                     ///< heads per token
  int head_size;                     ///< elements per head
  int block_size;                    ///< slots per cache block
  int chunks_per_head;               ///< head_size / x: 16-byte key chunks per head
  int chunks_per_cta;                ///< chunks of one head staged by one CTA
  int parts_per_head;                ///< CTAs per (tile, head)
  int row_pitch;                     ///< bytes between staged rows: an odd number of 16-byte units
  bool key_loads_vectorized;         ///< key rows may be read 16 bytes at a time
  bool value_loads_vectorized;       ///< value rows may be read 16 bytes at a time
  bool key_stores_vectorized;        ///< key_cache chunks may be written 16 bytes at a time
  bool value_stores_vectorized;      ///< value_cache rows may be written 16 bytes at a time
};

/// \brief Byte offset of staged row `row`: `row_pitch` bytes per row plus the row-group skew
/// (trick L5).
/// \param row the row (token of the tile).
/// \param row_pitch bytes between consecutive rows.
/// \return offset from the start of the staged tile.
__host__ __device__ constexpr int staged_row_offset(int row, int row_pitch) {
  return row * row_pitch + (row / kRowGroup) * 16;
}

/// \brief Bytes of one staged tile (key or value).
/// \param row_pitch bytes between consecutive rows.
/// \return size of the tile in shared memory.
__host__ __device__ constexpr int staged_tile_bytes(int row_pitch) {
  return staged_row_offset(kTileTokens, row_pitch);
}

/// \brief The 16 bytes at `source` as activation elements, in one load when allowed.
/// \tparam T activation type.
/// \param source first element.
/// \param vectorized whether `source` is 16-byte aligned.
/// \return the elements.
template <typename T>
__device__ __forceinline__ AlignedVector<T, 16 / sizeof(T)> load_16_bytes(const T* source,
                                                                         bool vectorized) {
  constexpr int kCount = 16 / sizeof(T);
  if (vectorized) return load_vector<kCount>(source);
  AlignedVector<T, kCount> elements;
#pragma unroll
  for (int j = 0; j < kCount; ++j) elements.elements[j] = source[j];
  return elements;
}

/// \brief One CTA writes one tile of tokens for one head (or part of a head).
/// \tparam T activation type (float, __half, __nv_bfloat16).
/// \tparam kKind how the cache stores elements.
/// \param p pointers, sizes and the vectorization decisions made on the host.
/// \param fault the device's fault record: set by a deferred index check, it makes the kernel
/// return before writing anything.
template <typename T, KvCacheDtype kKind>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
    reshape_and_cache_kernel(const Params p, const DeviceFault* fault) {
  if (call_rejected(fault)) return;  // a deferred index check rejected the call
  using Cache = typename CacheElement<T, kKind>::type;
  constexpr int kSourceVector = 16 / sizeof(T);     // activations per 16-byte load
  constexpr int kCacheVector = 16 / sizeof(Cache);  // cache elements per 16-byte store (= x)

  // Staged key tile, then staged value tile: [kTileTokens rows][row_pitch bytes] each, in cache
  // elements, one row per token of the tile (row r at staged_row_offset(r)).
  extern __shared__ uint4 staged[];
  __shared__ std::int64_t token_block[kTileTokens];  // cache block of each token, -1 = padding
  __shared__ int token_offset[kTileTokens];          // offset inside the block
  __shared__ int piece_first_token[kTileTokens];     // first token (row) of each piece
  __shared__ int piece_length[kTileTokens];          // tokens in each piece
  __shared__ int num_pieces;
  __shared__ bool store_by_token;  // trick L4: this tile's store order

  // Which tile, head and part of the head: consecutive CTAs take the heads of one tile, whose
  // rows are neighbours in memory.
  const int parts_of_tile = p.num_heads * p.parts_per_head;
  const std::int64_t tile = blockIdx.x / parts_of_tile;
  const int head = (blockIdx.x % parts_of_tile) / p.parts_per_head;
  const int part = blockIdx.x % p.parts_per_head;
  const std::int64_t first_token = tile * kTileTokens;
  const std::int64_t tokens_left = p.num_tokens - first_token;
  const int tile_tokens = tokens_left < kTileTokens ? static_cast<int>(tokens_left) : kTileTokens;
  const int first_chunk = part * p.chunks_per_cta;
  const int num_chunks = min(p.chunks_per_cta, p.chunks_per_head - first_chunk);
  const int first_d = first_chunk * kCacheVector;  // first element of the head this CTA writes
  const int num_d = num_chunks * kCacheVector;

  auto* key_tile = reinterpret_cast<std::uint8_t*>(staged);
  auto* value_tile = key_tile + staged_tile_bytes(p.row_pitch);

  // Trick L1: warp 0 starts reading the tile's slots now and uses them after the key/value loads
  // below, so the two memory latencies overlap.
  std::int64_t slot = -1;
  if (static_cast<int>(threadIdx.x) < tile_tokens) slot = p.slot_mapping[first_token + threadIdx.x];

  float key_scale = 1.0f;
  float value_scale = 1.0f;
  if constexpr (is_fp8(kKind)) {
    key_scale = __ldg(p.k_scale);
    value_scale = __ldg(p.v_scale);
  }

  // --- 1. Load the tile (trick L1): 16-byte vectors, consecutive threads along a token row
  // (coalesced). Convert in registers and stage in cache elements (8, 4 or 16 bytes per vector
  // for fp8).
  // The element (token, head, first_d + column) is at token × stride + head × head_size +
  // first_d + column. Trick L8: the addresses are formed from the kernel parameters in every
  // iteration rather than kept in two 64-bit row pointers: four registers fewer, so that the
  // kernel stays within its 48 without spilling (a 32-bit offset inside the row, one 64-bit
  // product).
  const int first_element = head * p.head_size + first_d;  // < num_heads × head_size
  const int vectors_per_row = num_d / kSourceVector;
  const int num_vectors = tile_tokens * vectors_per_row;
  for (int w = threadIdx.x; w < num_vectors; w += kThreads) {
    const int row = w / vectors_per_row;
    const int column = (w % vectors_per_row) * kSourceVector;
    const int at = staged_row_offset(row, p.row_pitch) + column * static_cast<int>(sizeof(Cache));
    const std::int64_t token = first_token + row;
    // Both loads are issued before either result is used: two 16-byte requests in flight.
    const AlignedVector<T, kSourceVector> key_in = load_16_bytes(
        static_cast<const T*>(p.key) + token * p.key_stride + first_element + column,
        p.key_loads_vectorized);
    const AlignedVector<T, kSourceVector> value_in = load_16_bytes(
        static_cast<const T*>(p.value) + token * p.value_stride + first_element + column,
        p.value_loads_vectorized);
    AlignedVector<Cache, kSourceVector> key_out;
    AlignedVector<Cache, kSourceVector> value_out;
#pragma unroll
    for (int j = 0; j < kSourceVector; ++j) {
      key_out.elements[j] = to_cache<kKind>(key_in.elements[j], key_scale);
      value_out.elements[j] = to_cache<kKind>(value_in.elements[j], value_scale);
    }
    store_vector(reinterpret_cast<Cache*>(key_tile + at), key_out);
    store_vector(reinterpret_cast<Cache*>(value_tile + at), value_out);
  }

  // --- 2. Warp 0 plans the pieces (trick L3): a piece is a run of consecutive tokens with
  // consecutive slots that stays inside one block and inside one 16-byte group (kCacheVector
  // offsets) of a value row. Random slots give one piece per token; a block filled in order gives
  // block_size / kCacheVector full pieces.
  if (threadIdx.x < 32) {
    constexpr unsigned kAllLanes = 0xffffffffu;
    const int lane = threadIdx.x;
    const std::int64_t block = slot >= 0 ? slot / p.block_size : -1;
    const int offset = slot >= 0 ? static_cast<int>(slot % p.block_size) : 0;
    const std::int64_t previous_slot = __shfl_up_sync(kAllLanes, slot, 1);
    const bool starts = slot >= 0 && (lane == 0 || previous_slot < 0 ||
                                      slot != previous_slot + 1 || offset % kCacheVector == 0);
    const std::int64_t next_slot = __shfl_down_sync(kAllLanes, slot, 1);
    const int next_starts = __shfl_down_sync(kAllLanes, static_cast<int>(starts), 1);
    const bool ends = slot >= 0 && (lane == 31 || next_slot < 0 || next_starts != 0);
    const unsigned start_mask = __ballot_sync(kAllLanes, starts);
    const unsigned end_mask = __ballot_sync(kAllLanes, ends);
    // A piece's length: up to its first end bit.
    const int length = starts ? __ffs(end_mask >> lane) : 0;
    if (starts) {
      const int piece = __popc(start_mask & ((1u << lane) - 1u));  // starts before this lane
      piece_first_token[piece] = lane;
      piece_length[piece] = length;
    }
    token_block[lane] = block;
    token_offset[lane] = offset;
    // Trick L4: the piece order only when at least half the pieces are full 16-byte groups
    // (a prefill); random slots give none, and the tile is stored token by token.
    const unsigned full_mask = __ballot_sync(kAllLanes, length == kCacheVector);
    if (lane == 0) {
      num_pieces = __popc(start_mask);
      store_by_token = 2 * __popc(full_mask) < __popc(start_mask);
    }
  }
  __syncthreads();  // the staged tile and the plan are complete; from here on only reads

  // --- 3. Key chunks. Piece order (trick L2): consecutive threads = consecutive tokens of one
  // chunk, whose 16-byte chunks are neighbours in key_cache[block, head, chunk, offset, 0:x].
  // Token order (trick L4): consecutive threads = consecutive chunks of one token.
  const bool by_token = store_by_token;
  auto* key_cache = static_cast<Cache*>(p.key_cache);
  const auto store_key_chunk = [&](int row, int chunk) {
    const std::int64_t block = token_block[row];
    if (block < 0) return;  // padding token
    Cache* destination =
        key_cache + (((block * p.num_heads + head) * p.chunks_per_head + first_chunk + chunk) *
                         p.block_size + token_offset[row]) * kCacheVector;
    const auto* source = reinterpret_cast<const Cache*>(
        key_tile + staged_row_offset(row, p.row_pitch) + chunk * 16);
    if (p.key_stores_vectorized) {
      store_vector(destination, load_vector<kCacheVector>(source));
    } else {
#pragma unroll
      for (int j = 0; j < kCacheVector; ++j) destination[j] = source[j];
    }
  };
  const int key_items = num_chunks * tile_tokens;
  if (by_token) {
    for (int w = threadIdx.x; w < key_items; w += kThreads) {
      store_key_chunk(w / num_chunks, w % num_chunks);
    }
  } else {
    for (int w = threadIdx.x; w < key_items; w += kThreads) {
      store_key_chunk(w % tile_tokens, w / tile_tokens);
    }
  }

  auto* value_cache = static_cast<Cache*>(p.value_cache);
  if (by_token) {
    // --- 4a. Values token by token (trick L4): consecutive threads take consecutive elements d
    // of one token and read them along its staged row; each lands in its own value row,
    // value_cache[block, head, d, offset], block_size elements after the previous one.
    const int value_items = num_d * tile_tokens;
    for (int w = threadIdx.x; w < value_items; w += kThreads) {
      const int row = w / num_d;
      const int d = w % num_d;
      const std::int64_t block = token_block[row];
      if (block < 0) continue;  // padding token
      // The token's slot in row 0 of its (block, head), then row first_d + d (< 2^31 elements
      // into the block: head_size × block_size is far smaller).
      Cache* token_rows = value_cache +
                          (block * p.num_heads + head) * p.head_size * p.block_size +
                          token_offset[row];
      token_rows[(first_d + d) * p.block_size] = *reinterpret_cast<const Cache*>(
          value_tile + staged_row_offset(row, p.row_pitch) + d * static_cast<int>(sizeof(Cache)));
    }
    return;
  }

  // --- 4b. Value pieces (trick L3, the transpose): for row d of the head, a piece's elements are
  // read down the staged token column and written to value_cache[block, head, d, offset...].
  // Consecutive threads take consecutive pieces of one row, then the next row.
  const int pieces = num_pieces;
  const int value_items = num_d * pieces;
  for (int w = threadIdx.x; w < value_items; w += kThreads) {
    const int d = w / pieces;
    const int piece = w % pieces;
    const int first_row = piece_first_token[piece];
    const int length = piece_length[piece];
    const std::int64_t block = token_block[first_row];
    Cache* destination =
        value_cache + ((block * p.num_heads + head) * p.head_size + first_d + d) * p.block_size +
        token_offset[first_row];
    const std::uint8_t* column = value_tile + d * static_cast<int>(sizeof(Cache));
    // A full piece starts at an offset that is a multiple of kCacheVector (a piece never
    // crosses one), so the destination is 16-byte aligned when value_stores_vectorized.
    if (p.value_stores_vectorized && length == kCacheVector) {
      AlignedVector<Cache, kCacheVector> row_piece;
#pragma unroll
      for (int j = 0; j < kCacheVector; ++j) {
        row_piece.elements[j] =
            *reinterpret_cast<const Cache*>(column + staged_row_offset(first_row + j, p.row_pitch));
      }
      store_vector(destination, row_piece);
    } else {
      for (int j = 0; j < length; ++j) {
        destination[j] =
            *reinterpret_cast<const Cache*>(column + staged_row_offset(first_row + j, p.row_pitch));
      }
    }
  }
}

}  // namespace pagedkv::kernels::reshape_and_cache_optimized

namespace pagedkv {

void ReshapeAndCache::optimized(const Plan& plan, const Args& args, cudaStream_t stream) {
  const TensorView& key = args.key;
  const TensorView& value = args.value;
  const TensorView& key_cache = args.key_cache;
  const TensorView& value_cache = args.value_cache;
  const TensorView& slot_mapping = args.slot_mapping;
  const TensorView& k_scale = args.k_scale;
  const TensorView& v_scale = args.v_scale;
  namespace k = kernels::reshape_and_cache_optimized;
  if (plan.num_tokens == 0 || plan.num_heads == 0 || plan.head_size == 0) return;

  k::Params p{};
  p.key = key.data;
  p.value = value.data;
  p.key_cache = key_cache.data;
  p.value_cache = value_cache.data;
  p.slot_mapping = static_cast<const std::int64_t*>(slot_mapping.data);
  const bool fp8 = is_fp8(plan.cache_kind);
  p.k_scale = fp8 ? static_cast<const float*>(k_scale.data) : nullptr;
  p.v_scale = fp8 ? static_cast<const float*>(v_scale.data) : nullptr;
  p.num_tokens = plan.num_tokens;
  p.key_stride = plan.key_stride;
  p.value_stride = plan.value_stride;
  p.num_heads = static_cast<int>(plan.num_heads);
  p.head_size = static_cast<int>(plan.head_size);
  p.block_size = static_cast<int>(plan.block_size);
  p.chunks_per_head = static_cast<int>(plan.head_size / plan.x);
  // Trick L7: split a head over as few CTAs as keep each at most kMaxChunksPerCta chunks, evenly
  // (the second division drops a part that the rounding would leave empty).
  const int min_parts = (p.chunks_per_head + k::kMaxChunksPerCta - 1) / k::kMaxChunksPerCta;
  p.chunks_per_cta = (p.chunks_per_head + min_parts - 1) / min_parts;
  p.parts_per_head = (p.chunks_per_head + p.chunks_per_cta - 1) / p.chunks_per_cta;
  p.row_pitch = (p.chunks_per_cta | 1) * 16;  // trick L5: an odd number of 16-byte units

  const std::int64_t activation_size = dtype_size(plan.activation_dtype);
  const std::int64_t cache_element_size = key_cache.element_size();
  // Trick L6. Row starts move by key_stride; heads and parts move by multiples of 16 bytes
  // (head_size is a multiple of x, and x activations span at least 16 bytes).
  // (stride_allows is given the row pitch in bytes and asks for 16-byte steps.)
  p.key_loads_vectorized = kernels::is_aligned(key.data, 16) &&
                           kernels::stride_allows(plan.key_stride * activation_size,
                                                  plan.num_tokens, 16);
  p.value_loads_vectorized = kernels::is_aligned(value.data, 16) &&
                             kernels::stride_allows(plan.value_stride * activation_size,
                                                    plan.num_tokens, 16);
  p.key_stores_vectorized = kernels::is_aligned(key_cache.data, 16);
  p.value_stores_vectorized = kernels::is_aligned(value_cache.data, 16) &&
                              (plan.block_size * cache_element_size) % 16 == 0;

  const std::int64_t num_tiles = (plan.num_tokens + k::kTileTokens - 1) / k::kTileTokens;
  // Far below 2^31 for any cache that fits in memory (one CTA per 32 tokens and head).
  const auto num_ctas = static_cast<unsigned>(num_tiles * plan.num_heads * p.parts_per_head);
  const int shared_bytes = 2 * k::staged_tile_bytes(p.row_pitch);  // ≤ 33,920 < 48 KiB

  kernels::dispatch_activation_and_cache_kind(
      plan.activation_dtype, plan.cache_kind, [&](auto activation_tag, auto kind_tag) {
        using T = typename decltype(activation_tag)::type;
        constexpr KvCacheDtype kKind = decltype(kind_tag)::value;
        k::reshape_and_cache_kernel<T, kKind>
            <<<num_ctas, k::kThreads, shared_bytes, stream>>>(p, device_fault());
        PAGEDKV_CUDA_CHECK_LAUNCH();
      });
}

}  // namespace pagedkv
