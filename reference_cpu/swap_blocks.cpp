// CPU reference of swap_blocks: the specification in code.
//
// Both tensors are plain byte arrays cut into blocks of block_size_in_bytes; pair i copies
// source block block_mapping[i, 0] over destination block block_mapping[i, 1]. The pairs are
// applied one after the other, so when src and dst are the same memory a later pair sees what
// an earlier one wrote.
#include "pagedkv/ops/swap_blocks.h"

#include <cstdint>
#include <cstring>

namespace pagedkv {

void SwapBlocks::cpu(const Plan& plan, const Args& args) {
  const TensorView& src = args.src;
  const TensorView& dst = args.dst;

  const auto* src_bytes = static_cast<const std::uint8_t*>(src.data);  // [src_capacity, B]
  auto* dst_bytes = static_cast<std::uint8_t*>(dst.data);              // [dst_capacity, B]
  const std::int64_t block_bytes = plan.block_size_in_bytes;

  for (std::int64_t i = 0; i < plan.num_pairs; ++i) {
    const std::int64_t src_block = plan.pairs[2 * i];
    const std::int64_t dst_block = plan.pairs[2 * i + 1];
    const std::uint8_t* from = src_bytes + src_block * block_bytes;
    std::uint8_t* to = dst_bytes + dst_block * block_bytes;
    // Copying a block onto itself changes nothing (and memcpy onto itself is undefined).
    // Validation guarantees that the two ranges are otherwise disjoint.
    if (from == to) continue;
    std::memcpy(to, from, static_cast<std::size_t>(block_bytes));
  }
}

}  // namespace pagedkv
