// The batches and packed arrays of W4's index points. See sparse_index_case.h.
#include "sparse_index_case.h"

#include <algorithm>
#include <cstring>

namespace pagedkv::entries {

SparseBatch draw_sparse_batch(std::int64_t decode, std::int64_t prefill_tokens,
                              std::uint64_t seed) {
  Random random{seed};
  SparseBatch batch;
  batch.num_decode = decode;
  batch.query_start_loc.push_back(0);
  const auto add_request = [&](std::int64_t seq_len, std::int64_t queries) {
    const auto r = static_cast<std::int32_t>(batch.seq_lens.size());
    batch.seq_lens.push_back(static_cast<std::int32_t>(seq_len));
    for (std::int64_t q = 0; q < queries; ++q) {
      batch.token_to_req.push_back(r);
      batch.positions.push_back(static_cast<std::int32_t>(seq_len - queries + q));
    }
    batch.query_start_loc.push_back(batch.query_start_loc.back() +
                                    static_cast<std::int32_t>(queries));
  };
  for (std::int64_t d = 0; d < decode; ++d) add_request(16384 + random.below(49153), 1);
  for (std::int64_t left = prefill_tokens; left > 0;) {
    const std::int64_t queries = std::min<std::int64_t>(left, 2048);
    add_request(random.below(30001) + queries, queries);
    left -= queries;
  }
  std::int64_t longest = 1;
  for (std::int32_t length : batch.seq_lens) longest = std::max<std::int64_t>(longest, length);
  batch.swa_width = (longest + kW4SwaBlock - 1) / kW4SwaBlock;
  batch.compressed_width = (longest / kW4Ratio + kW4CompressedBlock - 1) / kW4CompressedBlock;
  const std::int64_t R = batch.requests();
  batch.swa_table.resize(static_cast<std::size_t>(R * batch.swa_width));
  batch.compressed_table.resize(static_cast<std::size_t>(R * batch.compressed_width));
  for (std::int32_t& id : batch.swa_table) id = static_cast<std::int32_t>(random.below(1 << 20));
  for (std::int32_t& id : batch.compressed_table) {
    id = static_cast<std::int32_t>(random.below(1 << 20));
  }
  return batch;
}

void draw_topk_row(Random& random, std::int64_t position, std::int32_t* row, std::int64_t width) {
  const std::int64_t available = (position + 1) / kW4Ratio;
  const std::int64_t count = std::min(available, width);
  // A partial Fisher-Yates shuffle of 0 .. available - 1: the first `count` picks.
  std::vector<std::int32_t> pool(static_cast<std::size_t>(available));
  for (std::int64_t i = 0; i < available; ++i) pool[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t j = i + random.below(available - i);
    std::swap(pool[static_cast<std::size_t>(i)], pool[static_cast<std::size_t>(j)]);
    row[i] = pool[static_cast<std::size_t>(i)];
  }
  for (std::int64_t i = count; i < width; ++i) row[i] = -1;
}

int PackedArrays::add(const void* data, std::size_t bytes) {
  const std::size_t offset = (host_.size() + 255) / 256 * 256;
  Buffer grown(Memory::host, offset + std::max<std::size_t>(bytes, 1));
  if (host_.size() > 0) std::memcpy(grown.data(), host_.data(), host_.size());
  if (bytes > 0) std::memcpy(grown.data() + offset, data, bytes);
  host_ = std::move(grown);
  offsets_.push_back(offset);
  return static_cast<int>(offsets_.size()) - 1;
}

std::string sparse_index_workload_notes() {
  return "W4 (index ops): DeepSeek V4's C4A layers, topk 2048, window 128, compress ratio 4, "
         "SWA and compressed cache blocks of 64 tokens. Decode batches of 1 .. 512 requests, one "
         "query each, of 16,384 .. 65,536 tokens; prefill chunks of up to 8,192 query tokens, "
         "2,048 per request, each after a prefix of 0 .. 30,000 tokens. Top-k lists hold "
         "min((pos + 1) / 4, 2048) distinct random local indices of the query's causal "
         "compressed tokens, then -1; block ids are random in [0, 2^20).";
}

}  // namespace pagedkv::entries
