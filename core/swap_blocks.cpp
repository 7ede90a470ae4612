// The one contract of swap_blocks: every rule the three implementations rely on, checked once,
// before any byte is written. Upstream (vLLM csrc/cache_kernels.cu) checks only the device
// combination and that block_mapping is on the CPU; it reads out of bounds for a bad block id.
#include "pagedkv/ops/swap_blocks.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "pagedkv/checks.h"
#include "pagedkv/error.h"

namespace pagedkv {

// Bytes covered by size(0) rows of stride(0) elements, or -1 when that overflows int64.
static std::int64_t row_span_bytes(const TensorView& tensor) {
  std::int64_t elements = 0;
  std::int64_t bytes = 0;
  if (__builtin_mul_overflow(tensor.size(0), tensor.stride(0), &elements) ||
      __builtin_mul_overflow(elements, tensor.element_size(), &bytes)) {
    return -1;
  }
  return bytes;
}

// src and dst are seen as rows; both must have a first dimension with a usable layout.
static std::int64_t check_rows(const TensorView& tensor, const char* name) {
  PAGEDKV_CHECK(tensor.ndim >= 1, name,
                ": expected at least 1 dimension (blocks are counted in rows of size(0)), got a "
                "0-d tensor");
  PAGEDKV_CHECK(tensor.size(0) >= 0 && tensor.stride(0) >= 0, name,
                ": expected a non-negative size(0) and stride(0), got size(0) = ", tensor.size(0),
                " and stride(0) = ", tensor.stride(0), " (", tensor.describe(), ")");
  const std::int64_t span = row_span_bytes(tensor);
  PAGEDKV_CHECK(span >= 0, name, ": size(0) × stride(0) × element_size overflows 64 bits (",
                tensor.describe(), ")");
  PAGEDKV_CHECK(span == 0 || tensor.data != nullptr, name,
                ": data pointer is null but the tensor spans ", span, " bytes");
  return span;
}

// block_mapping[pair, column] as int64, whether the mapping holds i64 or i32.
static std::int64_t read_id(const TensorView& block_mapping, std::int64_t pair, int column) {
  const std::int64_t flat = 2 * pair + column;  // [num_pairs, 2], contiguous
  if (block_mapping.dtype == DType::i64) {
    return static_cast<const std::int64_t*>(block_mapping.data)[flat];
  }
  return static_cast<const std::int32_t*>(block_mapping.data)[flat];
}

SwapBlocks::Plan SwapBlocks::validate(const Args& args, Impl impl) {
  const TensorView& src = args.src;
  const TensorView& dst = args.dst;
  const auto block_size_in_bytes = args.block_size_in_bytes;
  const TensorView& block_mapping = args.block_mapping;
  // block_mapping: [num_pairs, 2] integers on the CPU (upstream reads it with .item()).
  PAGEDKV_CHECK(block_mapping.device == Device::cpu,
                "block_mapping: expected a tensor on cpu (upstream: \"block_mapping must be on "
                "CPU\"), got one on ",
                device_name(block_mapping.device));
  PAGEDKV_CHECK(block_mapping.ndim == 2 && block_mapping.size(1) == 2,
                "block_mapping: expected shape [num_pairs, 2], got ", block_mapping.shape_string());
  checks::dtype_in(block_mapping, "block_mapping", {DType::i64, DType::i32});
  PAGEDKV_CHECK(block_mapping.is_contiguous(), "block_mapping: expected a contiguous tensor, got ",
                block_mapping.describe());
  checks::not_null(block_mapping, "block_mapping");
  const std::int64_t num_pairs = block_mapping.size(0);
  PAGEDKV_CHECK(num_pairs >= 0, "block_mapping: expected a non-negative size(0), got ", num_pairs);

  PAGEDKV_CHECK(block_size_in_bytes > 0,
                "block_size_in_bytes: expected a positive number of bytes, got ",
                block_size_in_bytes);

  const std::int64_t src_span = check_rows(src, "src");
  const std::int64_t dst_span = check_rows(dst, "dst");

  // Devices: the CPU reference copies host to host; the CUDA versions need a GPU side, as
  // upstream, which rejects two CPU tensors with "Invalid device combination".
  if (impl == Impl::cpu) {
    PAGEDKV_CHECK(src.device == Device::cpu,
                  "src: the cpu implementation expected a tensor on "
                  "cpu, got one on ",
                  device_name(src.device));
    PAGEDKV_CHECK(dst.device == Device::cpu,
                  "dst: the cpu implementation expected a tensor on "
                  "cpu, got one on ",
                  device_name(dst.device));
  } else {
    PAGEDKV_CHECK(src.device == Device::cuda || dst.device == Device::cuda, "src, dst: the ",
                  impl_name(impl),
                  " implementation expected at least one of them on cuda, got "
                  "both on cpu (upstream: \"Invalid device combination\"; use the cpu "
                  "implementation for host-to-host copies)");
  }

  SwapBlocksPlan plan;
  plan.direction = src.device == Device::cpu
                       ? (dst.device == Device::cpu ? CopyDirection::host_to_host
                                                    : CopyDirection::host_to_device)
                       : (dst.device == Device::cpu ? CopyDirection::device_to_host
                                                    : CopyDirection::device_to_device);
  plan.block_size_in_bytes = block_size_in_bytes;
  plan.num_pairs = num_pairs;
  plan.src_capacity = src_span / block_size_in_bytes;  // blocks b with (b + 1) × B ≤ span
  plan.dst_capacity = dst_span / block_size_in_bytes;
  if (num_pairs == 0) return plan;  // nothing is addressed: a no-op

  // A block bigger than a whole tensor cannot be addressed at all; say so plainly rather than
  // reporting "block id 0 out of range [0, 0)".
  PAGEDKV_CHECK(block_size_in_bytes <= src_span,
                "block_size_in_bytes: expected at most the bytes of src's rows (size(0) × "
                "stride(0) × element_size = ",
                src_span, "), got ", block_size_in_bytes);
  PAGEDKV_CHECK(block_size_in_bytes <= dst_span,
                "block_size_in_bytes: expected at most the bytes of dst's rows (size(0) × "
                "stride(0) × element_size = ",
                dst_span, "), got ", block_size_in_bytes);

  // Every id in range (negative ids included: upstream would read before the tensor).
  plan.pairs.resize(static_cast<std::size_t>(2 * num_pairs));
  for (std::int64_t i = 0; i < num_pairs; ++i) {
    const std::int64_t src_block = read_id(block_mapping, i, 0);
    const std::int64_t dst_block = read_id(block_mapping, i, 1);
    PAGEDKV_CHECK(src_block >= 0 && src_block < plan.src_capacity, "block_mapping[", i,
                  ", 0]: expected a src block id in [0, ", plan.src_capacity, ") (src holds ",
                  plan.src_capacity, " blocks of ", block_size_in_bytes, " bytes), got ",
                  src_block);
    PAGEDKV_CHECK(dst_block >= 0 && dst_block < plan.dst_capacity, "block_mapping[", i,
                  ", 1]: expected a dst block id in [0, ", plan.dst_capacity, ") (dst holds ",
                  plan.dst_capacity, " blocks of ", block_size_in_bytes, " bytes), got ",
                  dst_block);
    plan.pairs[2 * i] = src_block;
    plan.pairs[2 * i + 1] = dst_block;
  }

  // When src and dst are views of the same memory shifted by a non-multiple of the block
  // size, one pair's source and destination can overlap partially: a memcpy (and
  // cudaMemcpyAsync) of overlapping ranges is undefined, so such a pair is rejected. Ranges
  // that coincide exactly are a no-op and are allowed.
  const bool same_memory_space = src.device == dst.device;
  const auto src_base = reinterpret_cast<std::uintptr_t>(src.data);
  const auto dst_base = reinterpret_cast<std::uintptr_t>(dst.data);
  const auto block = static_cast<std::uintptr_t>(block_size_in_bytes);
  const bool spans_overlap =
      same_memory_space && src_base < dst_base + dst_span && dst_base < src_base + src_span;
  const std::uintptr_t shift = src_base > dst_base ? src_base - dst_base : dst_base - src_base;
  if (spans_overlap && shift % block != 0) {
    for (std::int64_t i = 0; i < num_pairs; ++i) {
      const std::uintptr_t from = src_base + static_cast<std::uintptr_t>(plan.pairs[2 * i]) * block;
      const std::uintptr_t to =
          dst_base + static_cast<std::uintptr_t>(plan.pairs[2 * i + 1]) * block;
      const bool overlap = from < to + block && to < from + block;
      PAGEDKV_CHECK(!overlap || from == to, "block_mapping[", i,
                    "]: src and dst share memory and "
                    "pair (",
                    plan.pairs[2 * i], ", ", plan.pairs[2 * i + 1],
                    ") copies a block onto a range that partially overlaps it (expected disjoint "
                    "or identical byte ranges; the bases differ by ",
                    shift, " bytes, not a multiple of block_size_in_bytes = ", block_size_in_bytes,
                    ")");
    }
  }

  // Facts about the ids alone, for the optimized version (see SwapBlocksPlan).
  std::vector<std::int64_t> src_ids(static_cast<std::size_t>(num_pairs));
  std::vector<std::int64_t> dst_ids(static_cast<std::size_t>(num_pairs));
  for (std::int64_t i = 0; i < num_pairs; ++i) {
    src_ids[i] = plan.pairs[2 * i];
    dst_ids[i] = plan.pairs[2 * i + 1];
  }
  std::sort(src_ids.begin(), src_ids.end());
  std::sort(dst_ids.begin(), dst_ids.end());
  plan.dst_ids_unique = std::adjacent_find(dst_ids.begin(), dst_ids.end()) == dst_ids.end();
  for (std::int64_t i = 0; i < num_pairs && plan.dst_ids_disjoint_from_src_ids; ++i) {
    // How many pairs read block dst_block; the pair itself does not count (a self-copy).
    const std::int64_t dst_block = plan.pairs[2 * i + 1];
    const auto readers = std::equal_range(src_ids.begin(), src_ids.end(), dst_block);
    const std::int64_t others = (readers.second - readers.first) - (plan.pairs[2 * i] == dst_block);
    if (others > 0) plan.dst_ids_disjoint_from_src_ids = false;
  }
  return plan;
}

}  // namespace pagedkv
