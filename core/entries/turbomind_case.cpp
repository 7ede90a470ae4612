// What TurboMind's KV entries share. See turbomind_case.h.
#include "turbomind_case.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "pagedkv/error.h"
#include "numerics.h"

namespace pagedkv::entries {

const char* turbomind_workload_notes() {
  return "W14: LMDeploy TurboMind's paged cache for Llama-3-8B: 8 KV heads x 128, blocks of 64 "
         "tokens holding 2 layer regions (layer 1 is written and read), bf16 activations, quant "
         "policy 0, 8 (int8) and 4 (int4). A batch of 4 sequences whose shares of the point's "
         "tokens grow as 1 : 2 : 3 : 4, their blocks drawn at random (distinct) from a pool "
         "twice the size needed. process_kv writes each sequence's new tokens after 100 cached "
         "ones, K and V views of one [tokens, 16, 128] activation (random, never zero), with "
         "Llama 3.1's RoPE (llama3: base 500000, factor 8, low 1, high 4, original 8192). "
         "flatten_kv reads the whole sequences back from a pool of random codes with valid "
         "[scale, zero] pairs into [tokens, 8, 128] K and V rows, without RoPE, as TurboMind "
         "calls it.";
}

std::vector<std::int64_t> TurbomindShape::shares() const {
  std::vector<std::int64_t> share(static_cast<std::size_t>(kW14Sequences));
  const std::int64_t weights = kW14Sequences * (kW14Sequences + 1) / 2;
  std::int64_t given = 0;
  for (std::int64_t i = 0; i + 1 < kW14Sequences; ++i) {
    share[static_cast<std::size_t>(i)] = tokens * (i + 1) / weights;
    given += share[static_cast<std::size_t>(i)];
  }
  share.back() = tokens - given;
  return share;
}

std::vector<std::int64_t> TurbomindShape::lengths() const {
  std::vector<std::int64_t> length = shares();
  if (writes)
    for (std::int64_t& l : length) l += kW14Prefix;
  return length;
}

std::int64_t TurbomindShape::blocks_used() const {
  std::int64_t blocks = 0;
  for (std::int64_t l : lengths()) blocks += (l + kW14BlockSeqLen - 1) / kW14BlockSeqLen;
  return blocks;
}

TurbomindLayout TurbomindShape::layout() const {
  return turbomind_layout(kW14Heads, kW14HeadDim, kW14BlockSeqLen, policy);
}

std::int64_t TurbomindShape::block_bytes() const {
  return get_cache_block_size(static_cast<std::int64_t>(policy), kW14Layers, kW14Heads,
                              kW14HeadDim, kW14BlockSeqLen);
}

std::int64_t TurbomindShape::bytes() const {
  const TurbomindLayout l = layout();
  const std::int64_t activation = 2 * 2 * kW14HeadDim;  // K and V rows, bf16
  const std::int64_t stored = 2 * (l.token_data_size() + l.token_param_size());
  const std::int64_t indices = 3 * 4 * (kW14Sequences + 1) + 8 * blocks_used();
  return tokens * kW14Heads * (activation + stored) + indices;
}

TurbomindShape turbomind_shape(const WorkloadPoint& point, bool writes) {
  PAGEDKV_CHECK(point.workload == "W14", "TurboMind's KV ops run workload W14, got ",
                point.workload);
  TurbomindShape shape;
  shape.tokens = point.size;
  shape.writes = writes;
  if (point.variant == "policy 0") {
    shape.policy = QuantPolicy::none;
  } else if (point.variant == "policy 8") {
    shape.policy = QuantPolicy::int8;
  } else if (point.variant == "policy 4") {
    shape.policy = QuantPolicy::int4;
  } else {
    reject("W14 variant: expected \"policy 0\", \"policy 8\" or \"policy 4\", got \"",
           point.variant, "\"");
  }
  return shape;
}

std::vector<WorkloadPoint> turbomind_points(bool quick) {
  const std::vector<std::int64_t> sizes =
      quick ? std::vector<std::int64_t>{1, 16, 256}
            : std::vector<std::int64_t>{1, 16, 256, 4096, 16384, 65536};
  std::vector<WorkloadPoint> points;
  for (const char* variant : {"policy 0", "policy 8", "policy 4"})
    for (std::int64_t tokens : sizes)
      points.push_back({"W14", variant, "random", tokens, "tokens", 0});
  return points;
}

namespace {

void set_index_views(const TurbomindShape& shape, TurbomindIndices& indices, Device device) {
  auto* cu = reinterpret_cast<std::int32_t*>(indices.cu.data());
  const std::int64_t n = kW14Sequences + 1;
  indices.cu_q_len = TensorView::contiguous(cu, DType::i32, {n}, device);
  indices.cu_k_len = TensorView::contiguous(cu + n, DType::i32, {n}, device);
  indices.cu_block_num = TensorView::contiguous(cu + 2 * n, DType::i32, {n}, device);
  indices.blocks =
      TensorView::contiguous(indices.offsets.data(), DType::i64, {shape.blocks_used()}, device);
}

}  // namespace

TurbomindIndices make_turbomind_indices(const TurbomindShape& shape, std::uint64_t seed, int set) {
  const std::vector<std::int64_t> shares = shape.shares(), lengths = shape.lengths();
  const std::int64_t n = kW14Sequences + 1;
  std::vector<std::int32_t> cu(static_cast<std::size_t>(3 * n), 0);
  for (std::int64_t b = 0; b < kW14Sequences; ++b) {
    const auto i = static_cast<std::size_t>(b);
    cu[i + 1] = cu[i] + static_cast<std::int32_t>(shares[i]);                    // cu_q_len
    cu[n + i + 1] = cu[n + i] + static_cast<std::int32_t>(lengths[i]);           // cu_k_len
    cu[2 * n + i + 1] = cu[2 * n + i] + static_cast<std::int32_t>(
                                            (lengths[i] + kW14BlockSeqLen - 1) / kW14BlockSeqLen);
  }
  const std::vector<std::int64_t> ids =
      draw_unique(shape.blocks_used(), shape.pool_blocks(), set_seed(seed, set) ^ 0x7B10C5ull);
  std::vector<std::int64_t> offsets(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) offsets[i] = ids[i] * shape.block_bytes();
  TurbomindIndices indices;
  indices.cu = Buffer(Memory::host, cu.size() * sizeof(std::int32_t));
  std::memcpy(indices.cu.data(), cu.data(), indices.cu.size());
  indices.offsets = Buffer(Memory::host, offsets.size() * sizeof(std::int64_t));
  if (!offsets.empty()) std::memcpy(indices.offsets.data(), offsets.data(), indices.offsets.size());
  set_index_views(shape, indices, Device::cpu);
  return indices;
}

TurbomindIndices copy_turbomind_indices(const TurbomindShape& shape,
                                        const TurbomindIndices& indices, Memory memory) {
  TurbomindIndices copy;
  copy.cu = copy_to(memory, indices.cu);
  copy.offsets = copy_to(memory, indices.offsets);
  set_index_views(shape, copy, memory == Memory::device ? Device::cuda : Device::cpu);
  return copy;
}

TensorView turbomind_pool_view(const TurbomindShape& shape, const Buffer& pool, Device device) {
  return TensorView::contiguous(const_cast<std::uint8_t*>(pool.data()), DType::u8,
                                {shape.pool_blocks(), shape.block_bytes()}, device);
}

TensorView turbomind_rows_view(std::int64_t rows, const Buffer& buffer, Device device,
                               bool value) {
  auto* base = reinterpret_cast<std::uint16_t*>(const_cast<std::uint8_t*>(buffer.data()));
  return TensorView::strided(base + (value ? kW14Heads * kW14HeadDim : 0), DType::bf16,
                             {rows, kW14Heads, kW14HeadDim},
                             {2 * kW14Heads * kW14HeadDim, kW14HeadDim, 1}, device);
}

void fill_turbomind_pool(const TurbomindShape& shape, Buffer& pool, std::uint64_t seed) {
  const std::int64_t blocks = shape.pool_blocks(), block_bytes = shape.block_bytes();
  if (shape.policy == QuantPolicy::none) {
    fill_random(pool.data(), DType::bf16, blocks * block_bytes / 2, seed);  // finite bf16
    return;
  }
  fill_random(pool.data(), DType::u8, blocks * block_bytes, seed);
  const TurbomindLayout layout = shape.layout();
  Random random{seed ^ 0x5CA1Eull};
  for (std::int64_t block = 0; block < blocks; ++block) {
    std::uint8_t* region = pool.data() + block * block_bytes + kW14Layer * layout.layer_size();
    std::uint8_t* params = region + layout.k_param(0, 0);
    for (std::int64_t pair = 0; pair < kW14Heads * 2 * kW14BlockSeqLen; ++pair) {
      const float scale = static_cast<float>(1 + random.below(16)) / 256.f;
      const float zero = -static_cast<float>(random.below(4096)) / 1024.f;
      const std::uint16_t bits[2] = {numerics::float_to_bf16_bits(scale),
                                     numerics::float_to_bf16_bits(zero)};
      std::memcpy(params + 4 * pair, bits, 4);
    }
  }
}

}  // namespace pagedkv::entries
