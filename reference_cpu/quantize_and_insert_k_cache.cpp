// CPU reference of quantize_and_insert_k_cache (vLLM
// vllm/models/deepseek_v4/common/ops/cache_utils.py @03dc564: _quantize_and_insert_k_cache
// kernel): the specification in code. Token t goes to slot s = slot_mapping[t], i.e. page
// s / B, position p = s % B inside it. Each 64-element quant block j of its 448 NoPE dims gets
// the exponent e_j = ceil(log2(max(amax_j, 1e-4) / 448)); the codes E4M3(x / 2^e_j) fill bytes
// [64 j, 64 j + 64) of the token's data record, the 64 RoPE dims are copied as raw bf16 into
// bytes [448, 576), and the scale record gets e_j + 127 for j = 0..6 and a pad byte 0.
// Negative slots are padding.
//
// The offsets are spelled out here on purpose, not shared with the kernels: a bug in one
// formula cannot hide in both.
#include "pagedkv/ops/quantize_and_insert_k_cache.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "numerics.h"
#include "ue8m0.h"

namespace pagedkv {

void QuantizeAndInsertKCache::cpu(const Plan& plan, const Args& args) {
  const auto* k = static_cast<const std::uint16_t*>(args.k.data);  // [>= T, 512] bf16 bits
  auto* k_cache = static_cast<std::uint8_t*>(args.k_cache.data);   // [num_blocks, stride] u8
  const auto* slots = static_cast<const std::int64_t*>(args.slot_mapping.data);  // [T]

  for (std::int64_t token = 0; token < plan.num_tokens; ++token) {
    const std::int64_t slot = slots[token];
    if (slot < 0) continue;  // padding token: nothing is written
    const std::int64_t page = slot / plan.block_size;
    const std::int64_t position = slot % plan.block_size;
    std::uint8_t* page_bytes = k_cache + page * plan.block_stride;
    // The page: B data records of 576 bytes, then B scale records of 8 bytes.
    std::uint8_t* data = page_bytes + position * kDsv4TokenDataBytes;
    std::uint8_t* scales =
        page_bytes + plan.block_size * kDsv4TokenDataBytes + position * kDsv4TokenScaleBytes;
    const std::uint16_t* key = k + token * plan.k_stride;

    for (std::int64_t block = 0; block < kDsv4QuantBlocks; ++block) {
      const std::uint16_t* values = key + block * kDsv4QuantBlock;
      float amax = 0.f;
      for (std::int64_t i = 0; i < kDsv4QuantBlock; ++i) {
        // |bf16| is exact in fp32; fmax ignores a NaN element, as the GPU's fmaxf does.
        amax = std::fmax(amax, std::fabs(numerics::bf16_bits_to_float(values[i])));
      }
      // The floor keeps an all-zero block at a finite exponent (-22).
      const int exponent = ue8m0::exponent_for(std::fmax(amax, kDsv4AmaxFloor));
      const float inverse = ue8m0::inverse_scale(exponent);
      for (std::int64_t i = 0; i < kDsv4QuantBlock; ++i) {
        // x × 2^-e is exact (a power of two), then E4M3 rounded to nearest even, saturating.
        data[block * kDsv4QuantBlock + i] =
            numerics::float_to_fp8_e4m3(numerics::bf16_bits_to_float(values[i]) * inverse);
      }
      scales[block] = ue8m0::code_of(exponent);
    }
    scales[kDsv4QuantBlocks] = 0;  // the pad byte
    // The RoPE dims: their bf16 bits, little-endian, unchanged.
    std::memcpy(data + kDsv4NopeDim, key + kDsv4NopeDim, 2 * kDsv4RopeDim);
  }
}

}  // namespace pagedkv
