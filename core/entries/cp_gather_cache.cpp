// Registry entry of cp_gather_cache, and its workload points (W3).
//
// One point: a batch of requests whose cached MLA entries are gathered into one packed dst.
// The entry is the bf16 latent (576 elements, 1152 bytes) or the fp8_ds_mla entry (656 bytes,
// copied as raw u8); block 64. The variant names the entry, `slots` the batch shape, as for the
// other W3 gathers (gather_case.h): "one", one request of `size` tokens (61,440 and 307,200);
// "skewed": half of the tokens in 4 long requests, the other half in requests of 100 tokens
// (307,200 tokens: 1,536 short requests next to 4 of 38,400), the batch shape that leaves most
// of the GPU idle when the work is split per request. Every request starts at a random position
// inside its first two blocks (seq_starts), so rows do not start at block boundaries; its blocks
// are distinct and random over a cache 1.25 × as large as the gathered tokens need; block table
// columns that no request uses hold -1 (never read).
#include "pagedkv/ops/cp_gather_cache.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "harness.h"
#include "pagedkv/error.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

constexpr std::int64_t kBlockSize = 64;
constexpr std::int64_t kLatentElements = 576;  // kv_lora_rank 512 + rope 64, bf16
constexpr std::int64_t kDsMlaBytes = 656;      // the fp8_ds_mla entry, raw bytes
constexpr std::int64_t kLongRequests = 4;      // "skewed": the few long requests
constexpr std::int64_t kShortTokens = 100;     // "skewed": tokens of each short request

// The W3 shape of one point.
struct GatherShape {
  bool ds_mla = false;  // 656-byte u8 entries, else 576 bf16 elements
  bool skewed = false;  // 4 long + many short requests, else one request
  std::int64_t num_tokens = 0;

  DType dtype() const { return ds_mla ? DType::u8 : DType::bf16; }
  std::int64_t entry_elements() const { return ds_mla ? kDsMlaBytes : kLatentElements; }
  std::int64_t entry_bytes() const { return entry_elements() * dtype_size(dtype()); }
  // Tokens of each request.
  std::vector<std::int64_t> request_tokens() const {
    if (!skewed) return {num_tokens};
    std::vector<std::int64_t> longs, shorts;
    const std::int64_t long_total = num_tokens / 2;
    for (std::int64_t i = 0; i < kLongRequests; ++i) {
      longs.push_back(long_total / kLongRequests + (i < long_total % kLongRequests ? 1 : 0));
    }
    for (std::int64_t left = num_tokens - long_total; left > 0; left -= kShortTokens) {
      shorts.push_back(std::min(left, kShortTokens));
    }
    // The long requests spread evenly through the batch (at 0, 1/4, 1/2 and 3/4 of it), as a
    // scheduler mixes them.
    const std::size_t total = longs.size() + shorts.size();
    std::vector<std::int64_t> mixed;
    for (std::size_t i = 0, l = 0, s = 0; i < total; ++i) {
      mixed.push_back(l < longs.size() && i == l * total / longs.size() ? longs[l++] : shorts[s++]);
    }
    return mixed;
  }
};

GatherShape gather_shape(const WorkloadPoint& point) {
  PAGEDKV_CHECK(point.workload == "W3", "cp_gather_cache runs workload W3, got ", point.workload);
  GatherShape shape;
  shape.num_tokens = point.size;
  if (point.variant != "bf16" && point.variant != "fp8_ds_mla")
    reject("cp_gather_cache W3 variant: expected \"bf16\" or \"fp8_ds_mla\", got \"", point.variant,
           "\"");
  if (point.slots != "one" && point.slots != "skewed")
    reject("cp_gather_cache W3 batch shape (slots): expected \"one\" or \"skewed\", got \"",
           point.slots, "\"");
  shape.ds_mla = point.variant == "fp8_ds_mla";
  shape.skewed = point.slots == "skewed";
  return shape;
}

// The batch's index tensors, on the host: what every buffer set shares.
struct Batch {
  std::int64_t batch_size = 0;
  std::int64_t width = 0;        // block table columns
  std::int64_t num_blocks = 0;   // blocks in the cache
  std::int64_t used_blocks = 0;  // block table entries the gather reads
  std::vector<std::int32_t> block_table, cu_seq_lens, seq_starts;
};

Batch make_batch(const GatherShape& shape, std::uint64_t seed) {
  const std::vector<std::int64_t> tokens = shape.request_tokens();
  Batch batch;
  batch.batch_size = static_cast<std::int64_t>(tokens.size());
  Random random{seed ^ 0xCA7BA7C4ull};
  std::vector<std::int64_t> columns;
  batch.cu_seq_lens.push_back(0);
  for (std::int64_t n : tokens) {
    const std::int64_t start = random.below(2 * kBlockSize);
    batch.seq_starts.push_back(static_cast<std::int32_t>(start));
    batch.cu_seq_lens.push_back(static_cast<std::int32_t>(batch.cu_seq_lens.back() + n));
    const std::int64_t first = start / kBlockSize;
    const std::int64_t last = (start + n - 1) / kBlockSize;
    columns.push_back(last + 1);
    batch.used_blocks += last - first + 1;
    batch.width = std::max(batch.width, last + 1);
  }
  std::int64_t needed = 0;
  for (std::int64_t c : columns) needed += c;
  batch.num_blocks = needed + needed / 4 + 1;
  const std::vector<std::int64_t> ids = draw_unique(needed, batch.num_blocks, seed ^ 0xB10C5ull);
  batch.block_table.assign(static_cast<std::size_t>(batch.batch_size * batch.width), -1);
  std::size_t next = 0;
  for (std::int64_t b = 0; b < batch.batch_size; ++b) {
    for (std::int64_t c = 0; c < columns[static_cast<std::size_t>(b)]; ++c) {
      batch.block_table[static_cast<std::size_t>(b * batch.width + c)] =
          static_cast<std::int32_t>(ids[next++]);
    }
  }
  return batch;
}

Buffer buffer_of(const std::vector<std::int32_t>& values, Memory memory) {
  Buffer host(Memory::host, values.size() * sizeof(std::int32_t));
  if (!values.empty()) std::memcpy(host.data(), values.data(), host.size());
  return memory == Memory::host ? std::move(host) : copy_to(memory, host);
}

// The OpCase of one W3 point. Each buffer set has its own cache and dst (so that rotating
// through them keeps the gathered entries out of L2); the index tensors are shared.
class CpGatherCacheCase final : public PlannedCase<CpGatherCache> {
  using Op = CpGatherCache;

 public:
  CpGatherCacheCase(const WorkloadPoint& point, std::uint64_t seed)
      : shape_(gather_shape(point)), seed_(seed), batch_(make_batch(shape_, seed)) {
    host_table_ = buffer_of(batch_.block_table, Memory::host);
    host_cu_ = buffer_of(batch_.cu_seq_lens, Memory::host);
    host_starts_ = buffer_of(batch_.seq_starts, Memory::host);
    host_cache_ = draw_cache(0);
    reference_ = Buffer(Memory::host, static_cast<std::size_t>(dst_bytes()));
    reference_.fill(kPoisonByte);
  }

  // Each gathered entry read once and written once, and the index values read once.
  std::int64_t bytes_moved() const override {
    const std::int64_t index_bytes =
        4 * ((batch_.batch_size + 1) + batch_.batch_size + batch_.used_blocks);
    return 2 * shape_.num_tokens * shape_.entry_bytes() + index_bytes;
  }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    table_ = copy_to(Memory::device, host_table_);
    cu_ = copy_to(Memory::device, host_cu_);
    starts_ = copy_to(Memory::device, host_starts_);
    for (int set = 0; set < sets; ++set) {
      Set s;
      s.cache = set == 0 ? copy_to(Memory::device, host_cache_)
                         : copy_to(Memory::device, draw_cache(set));
      s.dst = Buffer(Memory::device, reference_.size());
      s.dst.fill(kPoisonByte);
      sets_.push_back(std::move(s));
      calls_.add(
          args_for(sets_.back().cache, sets_.back().dst, table_, cu_, starts_, Device::cuda));
      // Validation (with its synchronizing reads of the indices) happens here, never when timed.
    }
  }

  void reset_outputs() override { sets_.at(0).dst.fill(kPoisonByte); }

  Agreement compare_outputs() override {
    return compare_with_reference(sets_.at(0).dst, reference_.data(), shape_.dtype());
  }

 private:
  // The CPU reference's call on the host inputs (what run_cpu() runs and cpu_arguments()
  // lists).
  Op::Args cpu_call() override {
    return args_for(host_cache_, reference_, host_table_, host_cu_, host_starts_, Device::cpu);
  }
  struct Set {
    Buffer cache;
    Buffer dst;
  };

  std::int64_t cache_bytes() const { return batch_.num_blocks * kBlockSize * shape_.entry_bytes(); }
  std::int64_t dst_bytes() const { return shape_.num_tokens * shape_.entry_bytes(); }
  // Random entries (bf16 never zero; fp8_ds_mla entries as random bytes: the op never decodes).
  Buffer draw_cache(int set) const {
    Buffer cache(Memory::host, static_cast<std::size_t>(cache_bytes()));
    fill_random(cache.data(), shape_.dtype(),
                batch_.num_blocks * kBlockSize * shape_.entry_elements(), set_seed(seed_, set));
    return cache;
  }
  Op::Args args_for(const Buffer& cache, const Buffer& dst, const Buffer& table, const Buffer& cu,
                    const Buffer& starts, Device device) const {
    Op::Args args;
    args.src_cache =
        TensorView::contiguous(cache.data(), shape_.dtype(),
                               {batch_.num_blocks, kBlockSize, shape_.entry_elements()}, device);
    args.dst = TensorView::contiguous(dst.data(), shape_.dtype(),
                                      {shape_.num_tokens, shape_.entry_elements()}, device);
    args.block_table =
        TensorView::contiguous(table.data(), DType::i32, {batch_.batch_size, batch_.width}, device);
    args.cu_seq_lens =
        TensorView::contiguous(cu.data(), DType::i32, {batch_.batch_size + 1}, device);
    args.batch_size = batch_.batch_size;
    args.seq_starts =
        TensorView::contiguous(starts.data(), DType::i32, {batch_.batch_size}, device);
    return args;
  }

  GatherShape shape_;
  std::uint64_t seed_;
  Batch batch_;
  Buffer host_table_, host_cu_, host_starts_;  // the index tensors, on the host
  Buffer host_cache_;                          // set 0's cache, on the host
  Buffer reference_;                           // the CPU reference's dst
  Buffer table_, cu_, starts_;                 // the index tensors, on the device
  std::vector<Set> sets_;                      // one per buffer set, on the device
};

std::vector<WorkloadPoint> points(const std::string& workload, bool quick) {
  if (workload != "W3") return {};
  const std::vector<std::int64_t> single =
      quick ? std::vector<std::int64_t>{200} : std::vector<std::int64_t>{61440, 307200};
  const std::vector<std::int64_t> skewed =
      quick ? std::vector<std::int64_t>{256} : std::vector<std::int64_t>{65536, 307200};
  std::vector<WorkloadPoint> result;
  for (const char* entry : {"bf16", "fp8_ds_mla"}) {
    for (std::int64_t tokens : single) result.push_back({"W3", entry, "one", tokens, "tokens", 0});
    for (std::int64_t tokens : skewed)
      result.push_back({"W3", entry, "skewed", tokens, "tokens", 0});
  }
  return result;
}

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<CpGatherCacheCase>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry CpGatherCache::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "cache reads";
  entry.role =
      "Copies the cached entries of a batch of sequences, in order, into one packed buffer "
      "(MLA context-parallel prefill, the indexer's bf16 keys), from any position of each "
      "sequence; bytes are copied as they are, whatever the element type.";
  entry.upstream = "vLLM csrc/cache_kernels.cu: cp_gather_cache";
  entry.cpu_source = "reference_cpu/cp_gather_cache.cpp";
  entry.naive_source = "kernels/cache_read/cp_gather_cache/naive.cu";
  entry.optimized_source = "kernels/cache_read/cp_gather_cache/optimized.cu";
  entry.byte_model =
      "each gathered entry read once from the cache and written once to dst (tokens x 2 x "
      "entry bytes: 1152 bf16, 656 fp8_ds_mla), plus cu_seq_lens, seq_starts and the block "
      "table entries the batch uses read once (4 bytes each)";
  entry.agreement_rule = "bit-exact: the whole dst equals the CPU reference byte for byte";
  entry.workloads = {"W3"};
  entry.workload_notes =
      "W3 (cp_gather_cache): MLA cache entries gathered into a packed dst, block 64; the entry "
      "is the bf16 latent (576 elements, 1152 bytes) or the 656-byte fp8_ds_mla entry (random "
      "bytes, copied raw). Batch shapes (the slots column): \"one\", one request of 61,440 or "
      "307,200 tokens (200 in a quick run); \"skewed\": half of the tokens in 4 long requests, "
      "the rest in requests of 100 tokens (65,536 and 307,200 tokens in all; 256 in a quick "
      "run). Each request starts "
      "at a random position of its first two blocks (seq_starts); its blocks are distinct and "
      "random over a cache 1.25 x the blocks the batch needs.";
  entry.points = &points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
