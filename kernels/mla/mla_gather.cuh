/// \file
/// \brief Device code that the MLA cache readers share (gather_and_maybe_dequant_cache and
/// cp_gather_and_upconvert_fp8_kv_cache): the block lookup (sequence and position → entry),
/// and one entry decoded into a workspace row, element by element (naive kernels) or 16 bytes
/// at a time (optimized kernels).
///
/// The decode is the CPU reference's (reference_cpu/mla_gather.cpp): fp8 → fp16 exactly, one
/// fp32 multiplication by the scale, round to nearest even into the row's dtype
/// (convert_fp8/convert_fp8.cuh's dequantize_one() and dequantize_pair()).
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "common/convert.cuh"
#include "common/vec.cuh"
#include "convert_fp8/convert_fp8.cuh"
#include "pagedkv/kv_cache_dtype.h"
#include "pagedkv/ops/concat_and_cache_mla.h"

namespace pagedkv::kernels::mla {

/// \brief The paged cache as the readers see it: position p of sequence b lives in block
/// `block_table[b, p / block_size]`, slot `p % block_size` of it. Strides in cache elements.
struct DeviceCacheLookup {
  const std::int32_t* block_table;  ///< [batch, max_blocks], rows table_stride apart
  std::int64_t table_stride;        ///< block_table.stride(0)
  std::int64_t block_size;          ///< slots per block
  std::int64_t block_stride;        ///< src_cache.stride(0)
  std::int64_t entry_stride;        ///< src_cache.stride(1)

  /// \brief Offset, in cache elements, of the entry of `position` in sequence `sequence`.
  /// \param sequence the sequence (row of block_table).
  /// \param position the token's position in the sequence's blocks.
  /// \return the offset from the cache's first element.
  __device__ __forceinline__ std::int64_t entry_offset(std::int64_t sequence,
                                                       std::int64_t position) const {
    const std::int64_t block = block_table[sequence * table_stride + position / block_size];
    return block * block_stride + (position % block_size) * entry_stride;
  }
};

/// \brief The rows a gather writes: the plan's count, or, for a deferred call (whose host never
/// read the index tensors, so the plan holds only a bound), the smaller of that bound and the
/// total the device holds. One load that every thread of a warp shares.
/// \param rows the plan's rows (the bound when `total` is given).
/// \param total where the true total lives (cu_seq_lens[batch]), or nullptr.
/// \return the rows to write.
__device__ __forceinline__ std::int64_t rows_to_write(std::int64_t rows,
                                                      const std::int32_t* total) {
  if (total == nullptr) return rows;
  return *total < rows ? static_cast<std::int64_t>(*total) : rows;
}

/// \brief Token-major lookup: workspace row `row` is token `row - cu_seq_lens[b]` of sequence
/// b = token_to_seq[row], at position seq_starts[b] + that in the sequence's blocks.
/// \param token_to_seq [>= rows] the sequence of each row.
/// \param cu_seq_lens [batch + 1] running sum of the lengths.
/// \param seq_starts [batch] first position per sequence, or nullptr (all 0).
/// \param lookup the block lookup.
/// \param row the workspace row, below the plan's rows.
/// \return the offset, in cache elements, of the row's entry.
__device__ __forceinline__ std::int64_t row_entry_offset(const std::int32_t* token_to_seq,
                                                         const std::int32_t* cu_seq_lens,
                                                         const std::int32_t* seq_starts,
                                                         const DeviceCacheLookup& lookup,
                                                         std::int64_t row) {
  const std::int64_t sequence = token_to_seq[row];
  const std::int64_t position =
      (row - cu_seq_lens[sequence]) + (seq_starts != nullptr ? seq_starts[sequence] : 0);
  return lookup.entry_offset(sequence, position);
}

/// \brief Request-major lookup: the request whose workspace rows hold `row`, by binary search
/// over the requests' row ranges [workspace_starts[r], workspace_starts[r] + seq_lens[r]),
/// which the contract keeps in order and apart (so their ends never decrease).
/// \param seq_lens [batch] tokens per request.
/// \param workspace_starts [batch] first row per request.
/// \param batch requests.
/// \param row a workspace row.
/// \return the request, or -1 for a row no request fills (a gap).
__device__ __forceinline__ std::int64_t request_of_row(const std::int32_t* seq_lens,
                                                       const std::int32_t* workspace_starts,
                                                       std::int64_t batch, std::int64_t row) {
  std::int64_t low = 0, high = batch;  // the first request whose rows end after `row`
  while (low < high) {
    const std::int64_t middle = (low + high) / 2;
    if (static_cast<std::int64_t>(workspace_starts[middle]) + seq_lens[middle] > row) {
      high = middle;
    } else {
      low = middle + 1;
    }
  }
  return low < batch && workspace_starts[low] <= row ? low : -1;
}

/// \brief The end of the requests' rows: the plan's row_end, or, for a deferred call (whose
/// plan holds only a bound), the smaller of that bound and workspace_starts[batch - 1] +
/// seq_lens[batch - 1] read here (two loads every thread of a warp shares).
/// \param row_end the plan's row_end (the bound when `on_device`).
/// \param on_device whether the true end must be read.
/// \param seq_lens [batch] tokens per request.
/// \param workspace_starts [batch] first row per request.
/// \param batch requests, >= 1.
/// \return the rows to walk.
__device__ __forceinline__ std::int64_t requests_end(std::int64_t row_end, bool on_device,
                                                     const std::int32_t* seq_lens,
                                                     const std::int32_t* workspace_starts,
                                                     std::int64_t batch) {
  if (!on_device) return row_end;
  const std::int64_t end =
      static_cast<std::int64_t>(workspace_starts[batch - 1]) + seq_lens[batch - 1];
  return end < row_end ? end : row_end;
}

/// \brief Element `i` of a 576-element entry as a row element: the element itself for kAuto,
/// `fp8 × scale` rounded into Row for fp8.
/// \tparam kKind how the cache stores an element.
/// \tparam Row float, __half or __nv_bfloat16.
/// \param entry the entry's first element.
/// \param i the element, 0 <= i < 576.
/// \param scale the fp8 scale (unused for kAuto).
/// \return the row element.
template <KvCacheDtype kKind, typename Row>
__device__ __forceinline__ Row
load_row_element(const typename CacheElement<Row, kKind>::type* entry, int i, float scale) {
  if constexpr (kKind == KvCacheDtype::kAuto) {
    (void)scale;
    return entry[i];
  } else {
    return convert_fp8::dequantize_one<kKind, Row>(entry[i], scale);
  }
}

/// \brief Element `i` of the bf16 row of one 656-byte fp8_ds_mla entry, read byte by byte (any
/// alignment): latent i < 512 is `fp8 × scale of tile i / 128`, RoPE element i - 512 is copied.
/// \tparam kFormat how the latent bytes read (E4M3 as written; E5M2 for an f8_e5m2 tensor).
/// \param entry the entry's first byte.
/// \param i the element, 0 <= i < 576.
/// \return the bf16 element.
template <KvCacheDtype kFormat>
__device__ __forceinline__ __nv_bfloat16 load_ds_mla_element(const std::uint8_t* entry, int i) {
  if (i < kDsMlaLatent) {
    const std::uint8_t* scale = entry + kDsMlaScaleOffset + 4 * (i / kDsMlaTile);  // little-endian
    const std::uint32_t bits = scale[0] | (scale[1] << 8) | (scale[2] << 16) |
                               (static_cast<std::uint32_t>(scale[3]) << 24);
    return convert_fp8::dequantize_one<kFormat, __nv_bfloat16>(entry[i], __uint_as_float(bits));
  }
  const std::uint8_t* rope = entry + kDsMlaRopeOffset + 2 * (i - kDsMlaLatent);
  return __ushort_as_bfloat16(static_cast<unsigned short>(rope[0] | (rope[1] << 8)));
}

/// \brief 16 latent bytes of an fp8_ds_mla entry (one lane's share, inside one tile) decoded into
/// 16 bf16, two values per conversion instruction.
/// \tparam kFormat how the latent bytes read.
/// \param bytes the 16 fp8 bytes.
/// \param tile_scale their tile's scale.
/// \param low the first 8 values.
/// \param high the last 8 values.
template <KvCacheDtype kFormat>
__device__ __forceinline__ void dequantize_ds_mla_16(const AlignedVector<std::uint8_t, 16>& bytes,
                                                     float tile_scale,
                                                     AlignedVector<__nv_bfloat16, 8>& low,
                                                     AlignedVector<__nv_bfloat16, 8>& high) {
#pragma unroll
  for (int e = 0; e < 8; e += 2) {
    convert_fp8::dequantize_pair<kFormat>(
        static_cast<std::uint16_t>(bytes.elements[e] | (bytes.elements[e + 1] << 8)), tile_scale,
        low.elements + e);
    convert_fp8::dequantize_pair<kFormat>(
        static_cast<std::uint16_t>(bytes.elements[8 + e] | (bytes.elements[9 + e] << 8)),
        tile_scale, high.elements + e);
  }
}

/// \brief One 656-byte fp8_ds_mla entry decoded into one bf16 row by a whole warp, 16 bytes per
/// access: lane l decodes latent bytes 16 l .. 16 l + 15, all inside tile l / 8, so it needs one
/// tile scale (one 4-byte load; the warp reads the same 16 scale bytes); lanes 0-7 also copy
/// the 128 RoPE bytes, 16 each. Every load is issued before the first store. The entry and
/// the row must be 16-byte aligned.
/// \tparam kFormat how the latent bytes read.
/// \param entry the entry's first byte.
/// \param row the row's first element, [576] bf16.
/// \param lane this lane, 0-31.
template <KvCacheDtype kFormat>
__device__ __forceinline__ void warp_decode_ds_mla_row(const std::uint8_t* entry,
                                                       __nv_bfloat16* row, int lane) {
  constexpr int kLanesPerTile = kDsMlaTile / 16;  // 8
  constexpr int kRopeLanes = kDsMlaRope / 8;      // 8 lanes × 8 bf16
  const AlignedVector<std::uint8_t, 16> latent = load_vector<16>(entry + 16 * lane);
  const float tile_scale =
      *reinterpret_cast<const float*>(entry + kDsMlaScaleOffset + 4 * (lane / kLanesPerTile));
  AlignedVector<__nv_bfloat16, 8> rope;
  if (lane < kRopeLanes) {
    rope =
        load_vector<8>(reinterpret_cast<const __nv_bfloat16*>(entry + kDsMlaRopeOffset) + 8 * lane);
  }
  AlignedVector<__nv_bfloat16, 8> low, high;
  dequantize_ds_mla_16<kFormat>(latent, tile_scale, low, high);
  store_vector<8>(row + 16 * lane, low);
  store_vector<8>(row + 16 * lane + 8, high);
  if (lane < kRopeLanes) store_vector<8>(row + kDsMlaLatent + 8 * lane, rope);
}

}  // namespace pagedkv::kernels::mla
