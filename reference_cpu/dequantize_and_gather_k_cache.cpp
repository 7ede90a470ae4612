// CPU reference of dequantize_and_gather_k_cache (vLLM
// vllm/models/deepseek_v4/common/ops/cache_utils.py @4fec5ad, the bounds-hardened
// _dequantize_and_gather_k_cache kernel): the specification in code. Request r gathers its
// last g = gather_lens[r] (else seq_lens[r]) tokens, positions seq_len - g .. seq_len - 1; the
// token at position pos lives at position pos % B of page block_table[r, pos / B] and goes to
// out[r, offset + i]. Its 448 NoPE dims are E4M3(code) × 2^(exponent code - 127) of their quant
// block, rounded to bf16 (exact for every code the writer produces), its 64 RoPE dims the
// record's raw bf16. Nothing else of out is written.
//
// The offsets are spelled out here on purpose, not shared with the kernels: a bug in one
// formula cannot hide in both.
#include "pagedkv/ops/dequantize_and_gather_k_cache.h"

#include <cstdint>
#include <cstring>

#include "numerics.h"
#include "ue8m0.h"

namespace pagedkv {

void DequantizeAndGatherKCache::cpu(const Plan& plan, const Args& args) {
  auto* out = static_cast<std::uint16_t*>(args.out.data);  // [>= R, max_tokens, 512] bf16 bits
  const auto* k_cache = static_cast<const std::uint8_t*>(args.k_cache.data);          // pages, u8
  const auto* seq_lens = static_cast<const std::int32_t*>(args.seq_lens.data);        // [R]
  const auto* gather_lens = static_cast<const std::int32_t*>(args.gather_lens.data);  // [R]
  const auto* block_table = static_cast<const std::int32_t*>(args.block_table.data);  // [R, nb]

  for (std::int64_t request = 0; request < plan.num_requests; ++request) {
    const std::int64_t seq_len = seq_lens[request];
    const std::int64_t gather_len = plan.has_gather_lens ? gather_lens[request] : seq_len;
    const std::int64_t start = seq_len - gather_len;
    for (std::int64_t i = 0; i < gather_len; ++i) {
      const std::int64_t position = start + i;
      const std::int64_t column = position / plan.block_size;
      // The hardened kernel's guards; validation has made them true, so they never skip.
      if (column >= plan.max_blocks || plan.offset + i >= plan.out_tokens) continue;
      const std::int64_t page = block_table[request * plan.block_table_stride + column];
      if (page < 0 || page >= plan.num_blocks) continue;
      const std::int64_t in_page = position % plan.block_size;
      const std::uint8_t* page_bytes = k_cache + page * plan.block_stride;
      const std::uint8_t* data = page_bytes + in_page * kDsv4TokenDataBytes;
      const std::uint8_t* scales =
          page_bytes + plan.block_size * kDsv4TokenDataBytes + in_page * kDsv4TokenScaleBytes;
      std::uint16_t* row =
          out + request * plan.out_request_stride + (plan.offset + i) * plan.out_token_stride;

      for (std::int64_t d = 0; d < kDsv4NopeDim; ++d) {
        const float scale = ue8m0::scale_of_code(scales[d / kDsv4QuantBlock]);
        // The product of a 4-bit-significand code and a power of two: exact in fp32 and in
        // bf16 unless it leaves bf16's normal range (codes the writer never produces).
        row[d] = numerics::float_to_bf16_bits(numerics::fp8_e4m3_to_float(data[d]) * scale);
      }
      std::memcpy(row + kDsv4NopeDim, data + kDsv4NopeDim, 2 * kDsv4RopeDim);  // raw bf16
    }
  }
}

}  // namespace pagedkv
