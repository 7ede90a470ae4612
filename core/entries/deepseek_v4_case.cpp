// What DeepSeek V4's K-cache entries share. See deepseek_v4_case.h.
#include "deepseek_v4_case.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "cache_write_case.h"
#include "pagedkv/error.h"

namespace pagedkv::entries {

namespace {

void set_gather_views(const Dsv4GatherShape& shape, Dsv4GatherIndices& indices, Device device) {
  const std::int64_t requests = shape.num_requests;
  indices.block_table = TensorView::contiguous(indices.table.data(), DType::i32,
                                               {requests, shape.max_blocks()}, device);
  auto* lengths = reinterpret_cast<std::int32_t*>(indices.lengths.data());
  indices.seq_lens = TensorView::contiguous(lengths, DType::i32, {requests}, device);
  // "1 request" gathers whole sequences: gather_lens is None, as in upstream's compressed call.
  indices.gather_lens = shape.prefix == 0 ? TensorView{}
                                          : TensorView::contiguous(lengths + requests, DType::i32,
                                                                   {requests}, device);
}

}  // namespace

Dsv4InsertShape dsv4_insert_shape(const WorkloadPoint& point) {
  PAGEDKV_CHECK(point.workload == "W4", "DeepSeek V4 cache ops run workload W4, got ",
                point.workload);
  PAGEDKV_CHECK(point.slots == "random" || point.slots == "contiguous",
                "W4 slots: expected \"random\" or \"contiguous\", got \"", point.slots, "\"");
  PAGEDKV_CHECK(point.variant == "block 64", "W4 insert variant: expected \"block 64\", got \"",
                point.variant, "\"");
  Dsv4InsertShape shape;
  shape.num_tokens = point.size;
  if (point.num_blocks > 0) shape.num_blocks = point.num_blocks;
  shape.contiguous_slots = point.slots == "contiguous";
  PAGEDKV_CHECK(shape.num_tokens <= shape.num_blocks * kW4BlockSize,
                "W4 insert: ", shape.num_tokens, " tokens do not fit a cache of ", shape.num_blocks,
                " pages");
  return shape;
}

std::vector<WorkloadPoint> dsv4_insert_points(bool quick) {
  const std::vector<std::int64_t> sizes =
      quick ? std::vector<std::int64_t>{1, 16, 256}
            : std::vector<std::int64_t>{1, 16, 256, 4096, 16384, 65536, 262144};
  std::vector<WorkloadPoint> points;
  for (const char* slots : {"random", "contiguous"})
    for (std::int64_t tokens : sizes)
      points.push_back({"W4", "block 64", slots, tokens, "tokens", quick ? 256 : 4096});
  return points;
}

Dsv4InsertInputs make_dsv4_insert_inputs(const Dsv4InsertShape& shape, std::uint64_t seed,
                                         int set) {
  const std::uint64_t s = set_seed(seed, set);
  return make_key_slot_inputs(shape.num_tokens, kDsv4HeadDim, shape.num_blocks, kW4BlockSize,
                              shape.contiguous_slots, s, s ^ 0xD5E4ull);
}

TensorView dsv4_cache_view(std::int64_t num_blocks, const Buffer& cache, Device device) {
  return TensorView::contiguous(const_cast<std::uint8_t*>(cache.data()), DType::u8,
                                {num_blocks, kW4PageStride}, device);
}

std::vector<std::int64_t> Dsv4GatherShape::gather_lengths() const {
  std::vector<std::int64_t> lengths(static_cast<std::size_t>(num_requests));
  const std::int64_t weights = num_requests * (num_requests + 1) / 2;
  std::int64_t given = 0;
  for (std::int64_t i = 0; i + 1 < num_requests; ++i) {
    lengths[static_cast<std::size_t>(i)] = num_tokens * (i + 1) / weights;
    given += lengths[static_cast<std::size_t>(i)];
  }
  lengths.back() = num_tokens - given;
  return lengths;
}

std::int64_t Dsv4GatherShape::rows() const {
  const std::vector<std::int64_t> lengths = gather_lengths();
  return std::max<std::int64_t>(1, *std::max_element(lengths.begin(), lengths.end()));
}

std::int64_t Dsv4GatherShape::max_blocks() const {
  return (prefix + rows() + kW4BlockSize - 1) / kW4BlockSize;
}

std::int64_t Dsv4GatherShape::num_blocks() const { return 2 * num_requests * max_blocks(); }

std::int64_t Dsv4GatherShape::bytes() const {
  std::int64_t pages = 0;
  for (std::int64_t length : gather_lengths()) {
    if (length == 0) continue;
    pages += (prefix + length - 1) / kW4BlockSize - prefix / kW4BlockSize + 1;
  }
  const std::int64_t lengths_read = (prefix == 0 ? 4 : 8) * num_requests;
  return num_tokens * (kDsv4TokenBytes + 2 * kDsv4HeadDim) + 4 * pages + lengths_read;
}

Dsv4GatherShape dsv4_gather_shape(const WorkloadPoint& point) {
  PAGEDKV_CHECK(point.workload == "W4", "DeepSeek V4 cache ops run workload W4, got ",
                point.workload);
  PAGEDKV_CHECK(point.slots == "random", "W4 gather block tables: expected \"random\", got \"",
                point.slots, "\"");
  PAGEDKV_CHECK(point.variant == "1 request" || point.variant == "4 requests",
                "W4 gather variant: expected \"1 request\" or \"4 requests\", got \"",
                point.variant, "\"");
  Dsv4GatherShape shape;
  shape.num_tokens = point.size;
  if (point.variant == "4 requests") {
    shape.num_requests = 4;
    shape.prefix = 100;
  }
  return shape;
}

std::vector<WorkloadPoint> dsv4_gather_points(bool quick) {
  const std::vector<std::int64_t> sizes =
      quick ? std::vector<std::int64_t>{1, 16, 256}
            : std::vector<std::int64_t>{1, 16, 256, 4096, 16384, 65536, 262144};
  std::vector<WorkloadPoint> points;
  for (const char* variant : {"1 request", "4 requests"})
    for (std::int64_t tokens : sizes)
      points.push_back({"W4", variant, "random", tokens, "tokens", 0});
  return points;
}

Dsv4GatherIndices make_dsv4_gather_indices(const Dsv4GatherShape& shape, std::uint64_t seed,
                                           int set) {
  const std::int64_t requests = shape.num_requests;
  const std::int64_t columns = shape.max_blocks();
  // A shuffle of every page id, dealt out to the requests: distinct, random pages.
  std::vector<std::int32_t> ids(static_cast<std::size_t>(shape.num_blocks()));
  std::iota(ids.begin(), ids.end(), 0);
  Random random{set_seed(seed, set) ^ 0xD5E4B10Cull};
  for (std::size_t i = ids.size(); i > 1; --i)
    std::swap(ids[i - 1],
              ids[static_cast<std::size_t>(random.below(static_cast<std::int64_t>(i)))]);
  std::vector<std::int32_t> table(static_cast<std::size_t>(requests * columns));
  for (std::size_t i = 0; i < table.size(); ++i) table[i] = ids[i];
  const std::vector<std::int64_t> gathers = shape.gather_lengths();
  std::vector<std::int32_t> lengths(static_cast<std::size_t>(2 * requests));
  for (std::int64_t r = 0; r < requests; ++r) {
    const auto g = static_cast<std::int32_t>(gathers[static_cast<std::size_t>(r)]);
    lengths[static_cast<std::size_t>(r)] = static_cast<std::int32_t>(shape.prefix) + g;
    lengths[static_cast<std::size_t>(requests + r)] = g;
  }
  Dsv4GatherIndices indices;
  indices.table = Buffer(Memory::host, table.size() * sizeof(std::int32_t));
  std::memcpy(indices.table.data(), table.data(), indices.table.size());
  indices.lengths = Buffer(Memory::host, lengths.size() * sizeof(std::int32_t));
  std::memcpy(indices.lengths.data(), lengths.data(), indices.lengths.size());
  set_gather_views(shape, indices, Device::cpu);
  return indices;
}

Dsv4GatherIndices copy_dsv4_gather_indices(const Dsv4GatherShape& shape,
                                           const Dsv4GatherIndices& indices, Memory memory) {
  Dsv4GatherIndices copy;
  copy.table = copy_to(memory, indices.table);
  copy.lengths = copy_to(memory, indices.lengths);
  set_gather_views(shape, copy, memory == Memory::device ? Device::cuda : Device::cpu);
  return copy;
}

void fill_dsv4_cache(Buffer& cache, std::int64_t num_blocks, std::uint64_t seed) {
  fill_random(cache.data(), DType::u8, num_blocks * kW4PageStride, seed);
  Random random{seed ^ 0x5CA1Eull};
  for (std::int64_t page = 0; page < num_blocks; ++page) {
    std::uint8_t* scales = cache.data() + page * kW4PageStride + kW4BlockSize * kDsv4TokenDataBytes;
    for (std::int64_t token = 0; token < kW4BlockSize; ++token) {
      for (std::int64_t j = 0; j < kDsv4QuantBlocks; ++j)
        scales[token * kDsv4TokenScaleBytes + j] =
            static_cast<std::uint8_t>(105 + random.below(36));
      scales[token * kDsv4TokenScaleBytes + kDsv4QuantBlocks] = 0;
    }
  }
}

}  // namespace pagedkv::entries
