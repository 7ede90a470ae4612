// reshape_and_cache, optimized CUDA version: tiles of tokens staged through shared memory, stored
// in the order the tile's slots call for.
//
// What this version does differently from naive.cu:
//  1. One CTA per (tile of 32 consecutive tokens, head, part of the head). The tile is loaded
//     with 16-byte vector loads (each token row read once, fully coalesced), converted to the
//     cache element type in registers, and staged in shared memory. Warp 0 issues its read of
//     the tile's slots first, so that latency overlaps the tile loads.
//  2. Key side: each x-chunk of the key cache is exactly 16 bytes, and the same chunk of
//     neighbouring offsets of a block is contiguous (key_cache[b, h, c, o, 0:x]). Consecutive
//     threads store consecutive tokens of one chunk, so a block filled by consecutive tokens
//     receives 16 × block_size contiguous bytes per chunk: one 16-byte store per thread.
//  3. Value side (the lesson): value_cache[b, h, d, o] is transposed, so one token's values are
//     block_size elements apart and the naive kernel writes every one with its own 2-byte store.
//     Here warp 0 first splits the tile into PIECES: runs of consecutive tokens whose slots are
//     consecutive in one block and inside one 16-byte group of a value row (o / (16 / element
//     size)). For row d, a piece's elements are read out of shared memory down the token column
//     (the transpose) and, when the piece is a full aligned 16-byte group, written with ONE
//     16-byte store (8 bf16 or 16 fp8 neighbouring offsets); shorter pieces use element stores.
//     Consecutive threads take consecutive pieces of one row, then the next row, so for a block
//     filled by consecutive tokens a warp writes whole 32-byte sectors back to back.
//  4. Store order chosen per tile, in the kernel. Pieces pay only when they are long. With
//     random slots (decode) every piece is one token, and the piece order then has a warp store
//     row d of 32 unrelated tokens: 32 L2 write requests of one sector each. Token by token, a
//     warp stores 32 neighbouring value rows of ONE token (d to d + 31, block_size elements
//     apart): for bf16 and block 16, 8 requests (128-byte lines) of 4 sectors each. Same
//     sectors, same DRAM bytes, a third of the requests, and on an H100 that is the difference
//     between 5.4 ms and 2.1 ms (below). So warp 0, which plans the pieces anyway, also counts
//     the FULL ones (one 16-byte store each); when fewer than half the pieces are full, the
//     tile is stored token by token from the same staged rows (keys too: consecutive threads
//     take one token's chunks). The choice is one shared flag per tile: no host
//     synchronization (the host cannot read slot_mapping without one), and the prefill and
//     decode tiles of one launch each get their own order.
//  5. Bank conflicts: staged rows are an odd number of 16-byte units apart, and every group of 8
//     rows is pushed 16 bytes further ("row-group skew"). A quarter-warp of 16-byte key reads
//     (8 consecutive tokens) then hits 8 different bank groups, and the column reads of the value
//     pieces (which start 8 or 16 tokens apart) land in different banks too. In the token
//     order of trick 4 a warp reads along one staged row: neighbouring bytes, no conflict.
//  6. Vectors only where allowed: 16-byte loads when key/value start and row pitch are 16-byte
//     aligned, 16-byte key stores when key_cache is aligned, 16-byte value stores when
//     value_cache is aligned and block_size × element size is a multiple of 16; element accesses
//     otherwise. Nothing outside the slots named by slot_mapping is written.
//  7. Every (head, chunk) is written whatever num_heads × head_size is (upstream stops at 512
//     16-byte chunks per token, see upstream reshape_and_cache_kernel), and heads larger than 32 chunks (512 cache bytes per
//     token) are split over several CTAs so that shared memory stays under 48 KiB.
//  8. Registers: 5 CTAs per SM cap a thread at 48 registers. The tile loads form their addresses
//     from the kernel parameters instead of keeping two 64-bit row pointers live: with trick 4's
//     second store path the 16-bit "auto" kernels otherwise spilled one 8-byte value to local
//     memory, and Nsight Compute saw those spills as 16 extra L2 write requests per CTA and
//     40 MB more DRAM writes per 65536-token random launch (2.39 instead of 2.35 GB; 2120
//     instead of 2105 µs side by side). No instantiation spills now (-Xptxas -v: 48 registers,
//     0 bytes stack frame).
//
// What caps random slots (W1: 8 kv heads × 128, block 16, 65536 tokens in random slots of 16384
// blocks; H100, Nsight Compute on one launch). Every store of a token lands in its own 32-byte
// sector. bf16: 8 heads × 16 key chunks = 128 sectors with 16 of their 32 bytes new, and
// 8 × 128 value elements = 1,024 sectors with 2 bytes new: 1,152 sectors for 4 KiB of data.
// fp8: 64 key sectors + 1,024 value bytes in 512 sectors = 576. A partly written sector goes
// back to DRAM whole, so the L2 first reads its other bytes from DRAM: 32 bytes read and 32
// written per sector. bf16: 1,152 × 64 + 4,104 (input, slot) = 77.8 KB of DRAM traffic per
// token where the byte model counts 8.2 KB; 5.1 GB per launch. Measured: 2.56 GB read + 2.35 GB
// written = 4.91 GB (a few fills hit in L2), the same for the naive kernel. At the 3.0 TB/s of a
// device copy that traffic alone takes 1.64 ms, so random slots cannot beat ~10.9 % of copy
// under the byte model; this kernel takes 2.09 ms under ncu (DRAM at 2.35 TB/s, 78 % of the copy
// rate, on scattered read-modify-writes) and reaches 8.5 %. fp8: 1.37 + 1.15 = 2.52 GB, a
// 0.84 ms floor (16.0 % of copy), measured 1.07 ms (12.5 %).
// The second ceiling is L2 write requests, and it is what the piece order hit: the same 4.9 GB
// of DRAM traffic, but 75.4 M requests of one sector instead of 25.2 M of four (1,151 instead
// of 384 per token), ~14 G requests/s, 5.4 ms. That is the ceiling behind the measured
// "random 16-byte scatter at ~0.41 TB/s" too: one 16-byte unit per request at ~14 G/s is
// ~0.45 TB/s counting 16 bytes read + 16 written. A kernel with one thread per (token, head,
// 16-byte chunk), no shared memory, each thread storing its 8 values down 8 value rows, makes
// the same 75 M requests and took 4.9 ms.
// With contiguous slots the same bytes arrive as whole sectors and the kernel is
// bandwidth-bound.
//
// Byte model: key and value read once, both caches written once, 8 bytes of slot per token.
//
// Measured (H100 80GB HBM3, driver 580.159.04, CUDA 13.0; `pagedkv compare reshape_and_cache
// --workload W1 --size 65536`, % = size-matched device copy time / op time, copy 3.0 TB/s):
// contiguous slots bf16 194 µs = 92.4 %, fp8 174 µs = 77.5 % (the piece order, unchanged:
// 78.0 % in an earlier run, and 180 µs both before and after this change side by side in a
// benchmark); random slots bf16
// 2100 µs = 8.5 % (naive 2090 µs, Thrust 2138 µs; the piece order alone: 5433 µs = 3.3 %),
// fp8 1077 µs = 12.5 % (naive 1205 µs; the piece order alone: 3084 µs = 4.4 %).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "common/convert.cuh"
#include "common/dispatch.cuh"
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
/// CTAs that must fit on one SM (trick 8): bounds registers to 48 per thread (1,280 threads per
/// SM, no spills in any instantiation; checked with -Xptxas -v). More loads in flight per thread
/// (unrolling) cost registers and spilled; more threads per SM hide the latency instead (4 CTAs
/// per SM, 64 registers: fp8 contiguous slots took 195 instead of 180 µs, measured once).
constexpr int kMinCtasPerSm = 5;
/// Staged rows per 16-byte skew (trick 5).
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
/// (trick 5).
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
template <typename T, KvCacheDtype kKind>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
    reshape_and_cache_kernel(const Params p) {
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
  __shared__ bool store_by_token;  // trick 4: this tile's store order

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

  // Trick 1: warp 0 starts reading the tile's slots now and uses them after the key/value loads
  // below, so the two memory latencies overlap.
  std::int64_t slot = -1;
  if (static_cast<int>(threadIdx.x) < tile_tokens) slot = p.slot_mapping[first_token + threadIdx.x];

  float key_scale = 1.0f;
  float value_scale = 1.0f;
  if constexpr (is_fp8(kKind)) {
    key_scale = __ldg(p.k_scale);
    value_scale = __ldg(p.v_scale);
  }

  // --- 1. Load the tile (trick 1): 16-byte vectors, consecutive threads along a token row
  // (coalesced). Convert in registers and stage in cache elements (8, 4 or 16 bytes per vector
  // for fp8).
  // The element (token, head, first_d + column) is at token × stride + head × head_size +
  // first_d + column. Trick 8: the addresses are formed from the kernel parameters in every
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

  // --- 2. Warp 0 plans the pieces (trick 3): a piece is a run of consecutive tokens with
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
    // Trick 4: the piece order only when at least half the pieces are full 16-byte groups
    // (a prefill); random slots give none, and the tile is stored token by token.
    const unsigned full_mask = __ballot_sync(kAllLanes, length == kCacheVector);
    if (lane == 0) {
      num_pieces = __popc(start_mask);
      store_by_token = 2 * __popc(full_mask) < __popc(start_mask);
    }
  }
  __syncthreads();  // the staged tile and the plan are complete; from here on only reads

  // --- 3. Key chunks. Piece order (trick 2): consecutive threads = consecutive tokens of one
  // chunk, whose 16-byte chunks are neighbours in key_cache[block, head, chunk, offset, 0:x].
  // Token order (trick 4): consecutive threads = consecutive chunks of one token.
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
    // --- 4a. Values token by token (trick 4): consecutive threads take consecutive elements d
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

  // --- 4b. Value pieces (trick 3, the transpose): for row d of the head, a piece's elements are
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
  // Trick 7: split a head over as few CTAs as keep each at most kMaxChunksPerCta chunks, evenly
  // (the second division drops a part that the rounding would leave empty).
  const int min_parts = (p.chunks_per_head + k::kMaxChunksPerCta - 1) / k::kMaxChunksPerCta;
  p.chunks_per_cta = (p.chunks_per_head + min_parts - 1) / min_parts;
  p.parts_per_head = (p.chunks_per_head + p.chunks_per_cta - 1) / p.chunks_per_cta;
  p.row_pitch = (p.chunks_per_cta | 1) * 16;  // trick 5: an odd number of 16-byte units

  const std::int64_t activation_size = dtype_size(plan.activation_dtype);
  const std::int64_t cache_element_size = key_cache.element_size();
  // Trick 6. Row starts move by key_stride; heads and parts move by multiples of 16 bytes
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
            <<<num_ctas, k::kThreads, shared_bytes, stream>>>(p);
        PAGEDKV_CUDA_CHECK_LAUNCH();
      });
}

}  // namespace pagedkv
