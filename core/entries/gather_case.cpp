// What the MLA cache-read entries share. See gather_case.h.
#include "gather_case.h"

#include <algorithm>
#include <cstring>

#include "pagedkv/error.h"

namespace pagedkv::entries {

namespace {

// The request lengths of a batch shape: one request, or short ones with the long ones spread
// among them (at evenly spaced places, so that no kernel sees them all first or all last).
std::vector<std::int64_t> request_lengths(const GatherShape& shape, Random& random) {
  if (shape.batch_shape == "one") return {shape.total_tokens};
  std::vector<std::int64_t> lengths;
  std::int64_t short_tokens = 0;
  for (std::int64_t r = 0; r < shape.short_requests; ++r) {
    lengths.push_back(1 + random.below(shape.short_max));
    short_tokens += lengths.back();
  }
  const std::int64_t rest = shape.total_tokens - short_tokens;
  PAGEDKV_CHECK(rest >= shape.long_requests, "W3 skewed batch: ", shape.total_tokens,
                " tokens leave too few for the long requests after ", short_tokens);
  for (std::int64_t l = 0; l < shape.long_requests; ++l) {
    const std::int64_t length =
        l + 1 < shape.long_requests
            ? rest / shape.long_requests
            : rest - (shape.long_requests - 1) * (rest / shape.long_requests);
    const std::int64_t at =
        (l * static_cast<std::int64_t>(lengths.size() + 1)) / shape.long_requests;
    lengths.insert(lengths.begin() + at, length);
  }
  return lengths;
}

void set_gather_views(const GatherShape& shape, GatherInputs& in, Device device) {
  in.src_cache =
      TensorView::contiguous(in.cache.data(), shape.cache_dtype(),
                             {in.num_blocks, shape.block_size, shape.entry_elements()}, device);
  in.block_table = TensorView::contiguous(in.block_table_buffer.data(), DType::i32,
                                          {in.batch, in.max_blocks}, device);
  in.cu_seq_lens =
      TensorView::contiguous(in.cu_seq_lens_buffer.data(), DType::i32, {in.batch + 1}, device);
  in.token_to_seq = TensorView::contiguous(in.token_to_seq_buffer.data(), DType::i32,
                                           {shape.total_tokens}, device);
  in.seq_lens = TensorView::contiguous(in.seq_lens_buffer.data(), DType::i32, {in.batch}, device);
  in.workspace_starts =
      TensorView::contiguous(in.workspace_starts_buffer.data(), DType::i32, {in.batch}, device);
}

Buffer i32_buffer(const std::vector<std::int32_t>& values) {
  Buffer buffer(Memory::host, std::max<std::size_t>(values.size(), 1) * sizeof(std::int32_t));
  if (!values.empty()) {
    std::memcpy(buffer.data(), values.data(), values.size() * sizeof(std::int32_t));
  }
  return buffer;
}

}  // namespace

GatherShape gather_shape(const WorkloadPoint& point) {
  PAGEDKV_CHECK(point.workload == "W3", "MLA cache reads run workload W3, got ", point.workload);
  PAGEDKV_CHECK(point.slots == "one" || point.slots == "skewed",
                "W3 batch shape: expected \"one\" or \"skewed\", got \"", point.slots, "\"");
  PAGEDKV_CHECK(
      point.variant == "bf16" || point.variant == "fp8_e4m3" || point.variant == "fp8_ds_mla",
      "W3 variant: expected bf16, fp8_e4m3 or fp8_ds_mla, got \"", point.variant, "\"");
  GatherShape shape;
  shape.variant = point.variant;
  shape.batch_shape = point.slots;
  shape.total_tokens = point.size;
  if (point.size < 16384) {  // the quick points
    shape.short_requests = 16;
    shape.short_max = 8;
  }
  return shape;
}

std::vector<WorkloadPoint> gather_points(const std::vector<std::string>& variants, bool quick) {
  const std::vector<std::int64_t> one =
      quick ? std::vector<std::int64_t>{256} : std::vector<std::int64_t>{61440, 307200};
  const std::vector<std::int64_t> skewed =
      quick ? std::vector<std::int64_t>{256} : std::vector<std::int64_t>{65536, 307200};
  std::vector<WorkloadPoint> points;
  for (const std::string& variant : variants) {
    for (std::int64_t tokens : one) points.push_back({"W3", variant, "one", tokens, "tokens", 0});
    for (std::int64_t tokens : skewed) {
      points.push_back({"W3", variant, "skewed", tokens, "tokens", 0});
    }
  }
  return points;
}

GatherInputs make_gather_inputs(const GatherShape& shape, std::uint64_t seed, int set) {
  const std::uint64_t s = set_seed(seed, set);
  Random random{s};
  const std::vector<std::int64_t> lengths = request_lengths(shape, random);
  GatherInputs in;
  in.batch = static_cast<std::int64_t>(lengths.size());
  for (std::int64_t length : lengths) {
    const std::int64_t blocks = (length + shape.block_size - 1) / shape.block_size;
    in.used_blocks += blocks;
    in.max_blocks = std::max(in.max_blocks, blocks);
  }
  in.num_blocks = 2 * std::max<std::int64_t>(in.used_blocks, 1);
  const std::vector<std::int64_t> blocks =
      draw_unique(in.used_blocks, in.num_blocks, s ^ 0xB10C5ull);

  std::vector<std::int32_t> table(static_cast<std::size_t>(in.batch * in.max_blocks), 0);
  std::vector<std::int32_t> cu(1, 0), token_to_seq, seq_lens, starts;
  std::size_t next_block = 0;
  for (std::int64_t b = 0; b < in.batch; ++b) {
    const std::int64_t length = lengths[static_cast<std::size_t>(b)];
    for (std::int64_t c = 0; c < (length + shape.block_size - 1) / shape.block_size; ++c) {
      table[static_cast<std::size_t>(b * in.max_blocks + c)] =
          static_cast<std::int32_t>(blocks[next_block++]);
    }
    starts.push_back(cu.back());
    seq_lens.push_back(static_cast<std::int32_t>(length));
    token_to_seq.insert(token_to_seq.end(), static_cast<std::size_t>(length),
                        static_cast<std::int32_t>(b));
    cu.push_back(static_cast<std::int32_t>(cu.back() + length));
  }
  in.block_table_buffer = i32_buffer(table);
  in.cu_seq_lens_buffer = i32_buffer(cu);
  in.token_to_seq_buffer = i32_buffer(token_to_seq);
  in.seq_lens_buffer = i32_buffer(seq_lens);
  in.workspace_starts_buffer = i32_buffer(starts);
  const std::int64_t cache_elements = in.num_blocks * shape.block_size * shape.entry_elements();
  in.cache = Buffer(Memory::host,
                    static_cast<std::size_t>(cache_elements * dtype_size(shape.cache_dtype())));
  fill_random(random, in.cache.data(), shape.cache_dtype(), cache_elements);
  set_gather_views(shape, in, Device::cpu);
  return in;
}

GatherInputs copy_gather_inputs(const GatherShape& shape, const GatherInputs& inputs,
                                Memory memory) {
  GatherInputs copy;
  copy.batch = inputs.batch;
  copy.max_blocks = inputs.max_blocks;
  copy.num_blocks = inputs.num_blocks;
  copy.used_blocks = inputs.used_blocks;
  copy.cache = copy_to(memory, inputs.cache);
  copy.block_table_buffer = copy_to(memory, inputs.block_table_buffer);
  copy.cu_seq_lens_buffer = copy_to(memory, inputs.cu_seq_lens_buffer);
  copy.token_to_seq_buffer = copy_to(memory, inputs.token_to_seq_buffer);
  copy.seq_lens_buffer = copy_to(memory, inputs.seq_lens_buffer);
  copy.workspace_starts_buffer = copy_to(memory, inputs.workspace_starts_buffer);
  set_gather_views(shape, copy, memory == Memory::device ? Device::cuda : Device::cpu);
  return copy;
}

}  // namespace pagedkv::entries
