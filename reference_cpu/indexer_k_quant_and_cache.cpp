// CPU reference of indexer_k_quant_and_cache (vLLM csrc/cache_kernels.cu @9803b00:
// indexer_k_quant_and_cache_kernel): the specification in code. Token t goes to slot
// s = slot_mapping[t], i.e. block s / block_size, position o = s % block_size inside it. Each
// 128-element tile g of its key gets a scale = max(amax, 1e-4) / 448 (rounded up to a power of
// two for "ue8m0"); the tile's codes E4M3(x / scale) go to the block's code plane, the scale
// to its scale plane. Negative slots are padding.
//
// The offsets are spelled out here on purpose, not shared with the kernels: a bug in one
// formula cannot hide in both.
#include "pagedkv/ops/indexer_k_quant_and_cache.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "numerics.h"

namespace pagedkv {

namespace {

// The value of one 16-bit key element (exact in fp32).
float key_value(std::uint16_t bits, DType dtype) {
  return dtype == DType::bf16 ? numerics::bf16_bits_to_float(bits)
                              : numerics::half_bits_to_float(bits);
}

// The smallest power of two >= scale, from the fp32 bits: a scale whose mantissa bits are all
// zero is a power of two already; any other is raised to the next exponent with a zero
// mantissa. Exact, with no log2f or exp2f (see the header's note). The scale is a positive
// normal number or +inf (which has a zero mantissa and stays +inf).
float round_up_to_power_of_two(float scale) {
  std::uint32_t bits;
  std::memcpy(&bits, &scale, sizeof bits);
  constexpr std::uint32_t kMantissa = 0x007FFFFFu;
  if ((bits & kMantissa) != 0) bits = (bits & ~kMantissa) + 0x00800000u;  // next exponent
  float rounded;
  std::memcpy(&rounded, &bits, sizeof rounded);
  return rounded;
}

}  // namespace

void IndexerKQuantAndCache::cpu(const Plan& plan, const Args& args) {
  const auto* k = static_cast<const std::uint16_t*>(args.k.data);   // [T, head_dim] bf16/f16 bits
  auto* kv_cache = static_cast<std::uint8_t*>(args.kv_cache.data);  // [N, block_size, slot bytes]
  const auto* slots = static_cast<const std::int64_t*>(args.slot_mapping.data);  // [>= T]
  const std::int64_t head_dim = plan.head_dim;
  const std::int64_t tiles = plan.tiles_per_token;  // G scales per token

  for (std::int64_t token = 0; token < plan.num_tokens; ++token) {
    const std::int64_t slot = slots[token];
    if (slot < 0) continue;  // padding token: nothing is written
    const std::int64_t block = slot / plan.block_size;
    const std::int64_t offset_in_block = slot % plan.block_size;
    std::uint8_t* block_bytes = kv_cache + block * plan.block_stride;
    // The block's two planes: block_size × head_dim code bytes, then block_size × G scales.
    std::uint8_t* codes = block_bytes + offset_in_block * head_dim;
    std::uint8_t* scales = block_bytes + plan.block_size * head_dim;
    const std::uint16_t* key = k + token * plan.k_stride;

    for (std::int64_t tile = 0; tile < tiles; ++tile) {
      const std::uint16_t* values = key + tile * kIndexerQuantBlock;
      float amax = 0.f;
      for (std::int64_t i = 0; i < kIndexerQuantBlock; ++i) {
        // fmax: a NaN element is ignored, as by the GPU's fmaxf.
        amax = std::fmax(amax, std::fabs(key_value(values[i], plan.k_dtype)));
      }
      // The floor keeps an all-zero tile away from 0 / 0; a true fp32 division by 448.
      float scale = std::fmax(amax, kIndexerAmaxFloor) / kIndexerFp8Max;
      if (plan.ue8m0) scale = round_up_to_power_of_two(scale);
      for (std::int64_t i = 0; i < kIndexerQuantBlock; ++i) {
        // A true fp32 division by the scale, then E4M3 rounded to nearest even, saturating.
        codes[tile * kIndexerQuantBlock + i] =
            numerics::float_to_fp8_e4m3(key_value(values[i], plan.k_dtype) / scale);
      }
      std::memcpy(scales + (offset_in_block * tiles + tile) * kIndexerScaleBytes, &scale,
                  sizeof scale);  // little-endian fp32
    }
  }
}

}  // namespace pagedkv
