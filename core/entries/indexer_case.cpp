// What the indexer K cache entries share. See indexer_case.h.
#include "indexer_case.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "cache_write_case.h"
#include "pagedkv/error.h"

namespace pagedkv::entries {

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
  return make_key_slot_inputs(shape.num_tokens, kW5HeadDim, shape.num_blocks, kW5BlockSize,
                              shape.contiguous_slots, s, s ^ 0x1DE7ull);
}

TensorView indexer_cache_view(std::int64_t num_blocks, const Buffer& cache, Device device) {
  return TensorView::contiguous(cache.data(), DType::u8, {num_blocks, kW5BlockSize, kW5SlotBytes},
                                device);
}

std::vector<std::int64_t> IndexerGatherShape::sequence_lengths() const {
  std::vector<std::int64_t> lengths(static_cast<std::size_t>(batch_size));
  const std::int64_t weights = batch_size * (batch_size + 1) / 2;
  std::int64_t given = 0;
  for (std::int64_t i = 0; i + 1 < batch_size; ++i) {
    lengths[static_cast<std::size_t>(i)] = num_tokens * (i + 1) / weights;
    given += lengths[static_cast<std::size_t>(i)];
  }
  lengths.back() = num_tokens - given;
  return lengths;
}

std::int64_t IndexerGatherShape::gather_bytes() const {
  std::int64_t block_ids = 0;
  for (std::int64_t length : sequence_lengths())
    block_ids += (length + kW5BlockSize - 1) / kW5BlockSize;
  return num_tokens * 2 * kW5SlotBytes + 4 * block_ids + 4 * (batch_size + 1);
}

IndexerGatherShape indexer_gather_shape(const WorkloadPoint& point) {
  PAGEDKV_CHECK(point.workload == "W5", "indexer ops run workload W5, got ", point.workload);
  PAGEDKV_CHECK(point.slots == "random", "W5 gather block tables: expected \"random\", got \"",
                point.slots, "\"");
  PAGEDKV_CHECK(point.variant == "1 request" || point.variant == "16 skewed",
                "W5 gather variant: expected \"1 request\" or \"16 skewed\", got \"", point.variant,
                "\"");
  IndexerGatherShape shape;
  shape.num_tokens = point.size;
  if (point.num_blocks > 0) shape.num_blocks = point.num_blocks;
  shape.batch_size = point.variant == "1 request" ? 1 : 16;
  PAGEDKV_CHECK(shape.num_tokens <= shape.num_blocks * kW5BlockSize,
                "W5 gather: ", shape.num_tokens, " tokens do not fit a cache of ", shape.num_blocks,
                " blocks");
  return shape;
}

std::vector<WorkloadPoint> indexer_gather_points(bool quick) {
  // W3's sizes: one request of 60 K and of 300 K tokens, and smaller batches.
  const std::vector<std::int64_t> sizes =
      quick ? std::vector<std::int64_t>{16, 64, 256}
            : std::vector<std::int64_t>{256, 4096, 16384, 61440, 307200};
  std::vector<WorkloadPoint> points;
  for (const char* variant : {"1 request", "16 skewed"})
    for (std::int64_t tokens : sizes)
      points.push_back({"W5", variant, "random", tokens, "tokens", quick ? 256 : 8192});
  return points;
}

namespace {

void set_gather_views(IndexerGatherIndices& indices, std::int64_t batch_size,
                      std::int64_t max_blocks, Device device) {
  indices.block_table =
      TensorView::contiguous(indices.table.data(), DType::i32, {batch_size, max_blocks}, device);
  indices.cu_seq_lens =
      TensorView::contiguous(indices.starts.data(), DType::i32, {batch_size + 1}, device);
}

}  // namespace

IndexerGatherIndices make_indexer_gather_indices(const IndexerGatherShape& shape,
                                                 std::uint64_t seed, int set) {
  const std::vector<std::int64_t> lengths = shape.sequence_lengths();
  std::int64_t max_blocks = 1;
  for (std::int64_t length : lengths)
    max_blocks = std::max(max_blocks, (length + kW5BlockSize - 1) / kW5BlockSize);
  // A shuffle of every block id, dealt out to the sequences in order: distinct, random blocks.
  std::vector<std::int32_t> ids(static_cast<std::size_t>(shape.num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  Random random{set_seed(seed, set) ^ 0xB10CB10Cull};
  for (std::size_t i = ids.size(); i > 1; --i)
    std::swap(ids[i - 1],
              ids[static_cast<std::size_t>(random.below(static_cast<std::int64_t>(i)))]);
  std::vector<std::int32_t> table(static_cast<std::size_t>(shape.batch_size * max_blocks), 0);
  std::vector<std::int32_t> starts(static_cast<std::size_t>(shape.batch_size + 1), 0);
  std::size_t next = 0;
  for (std::int64_t b = 0; b < shape.batch_size; ++b) {
    const std::int64_t length = lengths[static_cast<std::size_t>(b)];
    starts[static_cast<std::size_t>(b + 1)] =
        starts[static_cast<std::size_t>(b)] + static_cast<std::int32_t>(length);
    for (std::int64_t j = 0; j < (length + kW5BlockSize - 1) / kW5BlockSize; ++j)
      table[static_cast<std::size_t>(b * max_blocks + j)] = ids[next++];
  }
  IndexerGatherIndices indices;
  indices.table = Buffer(Memory::host, table.size() * sizeof(std::int32_t));
  // (Empty batches leave empty buffers, whose null pointers memcpy must not see.)
  if (!table.empty()) std::memcpy(indices.table.data(), table.data(), indices.table.size());
  indices.starts = Buffer(Memory::host, starts.size() * sizeof(std::int32_t));
  if (!starts.empty()) std::memcpy(indices.starts.data(), starts.data(), indices.starts.size());
  set_gather_views(indices, shape.batch_size, max_blocks, Device::cpu);
  return indices;
}

IndexerGatherIndices copy_indexer_gather_indices(const IndexerGatherIndices& indices,
                                                 Memory memory) {
  IndexerGatherIndices copy;
  copy.table = copy_to(memory, indices.table);
  copy.starts = copy_to(memory, indices.starts);
  set_gather_views(copy, indices.block_table.size(0), indices.block_table.size(1),
                   memory == Memory::device ? Device::cuda : Device::cpu);
  return copy;
}

}  // namespace pagedkv::entries
