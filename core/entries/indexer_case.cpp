// What the indexer K cache entries share. See indexer_case.h.
#include "indexer_case.h"

#include <cstring>

#include "cache_write_case.h"
#include "pagedkv/error.h"

namespace pagedkv::entries {

namespace {

void set_write_views(const IndexerWriteShape& shape, IndexerWriteInputs& inputs, Device device) {
  inputs.k = TensorView::contiguous(inputs.keys.data(), DType::bf16,
                                    {shape.num_tokens, kW5HeadDim}, device);
  inputs.slot_mapping =
      TensorView::contiguous(inputs.slot_buffer.data(), DType::i64, {shape.num_tokens}, device);
}

}  // namespace

IndexerWriteShape indexer_write_shape(const WorkloadPoint& point) {
  PAGEDKV_CHECK(point.workload == "W5", "indexer ops run workload W5, got ", point.workload);
  PAGEDKV_CHECK(point.slots == "random" || point.slots == "contiguous",
                "W5 slots: expected \"random\" or \"contiguous\", got \"", point.slots, "\"");
  PAGEDKV_CHECK(point.variant == "fp32 scale" || point.variant == "ue8m0",
                "W5 write variant: expected \"fp32 scale\" or \"ue8m0\", got \"", point.variant,
                "\"");
  IndexerWriteShape shape;
  shape.num_tokens = point.size;
  if (point.num_blocks > 0) shape.num_blocks = point.num_blocks;
  shape.ue8m0 = point.variant == "ue8m0";
  shape.contiguous_slots = point.slots == "contiguous";
  return shape;
}

std::vector<WorkloadPoint> indexer_write_points(bool quick) {
  const std::vector<std::int64_t> sizes =
      quick ? std::vector<std::int64_t>{1, 16, 256}
            : std::vector<std::int64_t>{1, 16, 256, 4096, 16384, 65536};
  std::vector<WorkloadPoint> points;
  for (const char* variant : {"fp32 scale", "ue8m0"})
    for (const char* slots : {"random", "contiguous"})
      for (std::int64_t tokens : sizes)
        points.push_back({"W5", variant, slots, tokens, "tokens", quick ? 256 : 4096});
  return points;
}

IndexerWriteInputs make_indexer_write_inputs(const IndexerWriteShape& shape, std::uint64_t seed,
                                             int set) {
  const std::uint64_t s = set_seed(seed, set);
  IndexerWriteInputs inputs;
  inputs.keys =
      Buffer(Memory::host, static_cast<std::size_t>(shape.num_tokens * kW5HeadDim * 2));
  Random random{s};
  fill_random(random, inputs.keys.data(), DType::bf16, shape.num_tokens * kW5HeadDim);
  const std::vector<std::int64_t> slots = draw_slots(
      shape.num_tokens, shape.num_blocks, kW5BlockSize, shape.contiguous_slots, s ^ 0x1DE7ull);
  inputs.slot_buffer = Buffer(Memory::host, slots.size() * sizeof(std::int64_t));
  std::memcpy(inputs.slot_buffer.data(), slots.data(), inputs.slot_buffer.size());
  set_write_views(shape, inputs, Device::cpu);
  return inputs;
}

IndexerWriteInputs copy_indexer_write_inputs(const IndexerWriteShape& shape,
                                             const IndexerWriteInputs& inputs, Memory memory) {
  IndexerWriteInputs copy;
  copy.keys = copy_to(memory, inputs.keys);
  copy.slot_buffer = copy_to(memory, inputs.slot_buffer);
  set_write_views(shape, copy, memory == Memory::device ? Device::cuda : Device::cpu);
  return copy;
}

TensorView indexer_cache_view(std::int64_t num_blocks, const Buffer& cache, Device device) {
  return TensorView::contiguous(cache.data(), DType::u8, {num_blocks, kW5BlockSize, kW5SlotBytes},
                                device);
}

}  // namespace pagedkv::entries
