// Registry entries of paged_attention_v1, paged_attention_v2 and paged_attention_rocm, and
// their workload (W8: the same points for the three; rocm's workspaces hold 256-token
// partitions).
//
// A point: a decode batch of `batch` sequences of `context` tokens each (quick points: ragged
// lengths below `context`), Llama-3-8B's attention (32 query / 8 kv heads of 128, block 16),
// the keys and values in a legacy cache of 4 × the blocks the batch needs, the block tables
// drawn at random over that pool (distinct blocks). Blocks no sequence uses, and the slots
// past a sequence's end in its last block, hold 0xFF bytes (NaN in every float format): a
// kernel that reads them into its result produces NaN.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "harness.h"
#include "pagedkv/agreement.h"
#include "pagedkv/buffers.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/paged_attention_rocm.h"
#include "pagedkv/ops/paged_attention_v1.h"
#include "pagedkv/ops/paged_attention_v2.h"
#include "pagedkv/paged_attention.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

// The standard grid: batch × context up to 2^19 tokens (a 2 GiB bf16 KV footprint, an 8 GiB
// pool).
constexpr std::int64_t kMaxTokens = std::int64_t{1} << 19;

struct AttentionShape {
  std::int64_t batch = 1;
  std::int64_t context = 512;
  bool ragged = false;  // quick points: sequence b holds context - (13 b mod context) tokens
  std::int64_t num_heads = 32, num_kv_heads = 8, head_size = 128, block_size = 16;
  bool fp8 = false;
  float k_scale = 4.f / 448.f, v_scale = 4.f / 448.f;  // fp8 bytes span E4M3's range × 1/112

  DType dtype() const { return DType::bf16; }
  std::int64_t cache_bytes() const { return fp8 ? 1 : 2; }
  std::int64_t x() const { return 16 / cache_bytes(); }
  std::int64_t length(std::int64_t b) const {
    return ragged ? context - (13 * b) % context : context;
  }
  std::int64_t blocks_of(std::int64_t b) const {
    return (length(b) + block_size - 1) / block_size;
  }
  std::int64_t width() const { return (context + block_size - 1) / block_size; }
  std::int64_t tokens() const {
    std::int64_t total = 0;
    for (std::int64_t b = 0; b < batch; ++b) total += length(b);
    return total;
  }
  std::int64_t blocks_used() const {
    std::int64_t total = 0;
    for (std::int64_t b = 0; b < batch; ++b) total += blocks_of(b);
    return total;
  }
  // 4 × the blocks the batch needs (the quick points, ragged: 2 ×, to keep the fuzzer's
  // thousands of CPU calls short).
  std::int64_t pool() const {
    return std::max<std::int64_t>((ragged ? 2 : 4) * blocks_used(), 4);
  }
  // Elements of one block of one cache (all kv heads).
  std::int64_t block_elements() const { return num_kv_heads * head_size * block_size; }
  std::int64_t partition_size = kPagedAttentionPartitionSize;  // rocm: 256
  std::int64_t partitions() const { return (context + partition_size - 1) / partition_size; }
};

// A W8 point: variant "bf16" or "fp8_e4m3" (the cache), slots "context <n>" (each sequence's
// length; the block ids are always random), size the batch.
AttentionShape shape_of(const WorkloadPoint& point) {
  AttentionShape shape;
  shape.batch = point.size;
  shape.fp8 = point.variant == "fp8_e4m3";
  PAGEDKV_CHECK(point.variant == "bf16" || shape.fp8, "W8: unknown variant \"", point.variant,
                "\"");
  PAGEDKV_CHECK(point.slots.rfind("context ", 0) == 0, "W8: slots \"", point.slots,
                "\" names no context");
  shape.context = std::stoll(point.slots.substr(8));
  shape.ragged = shape.context % shape.block_size != 0;
  return shape;
}

std::vector<WorkloadPoint> attention_points(const std::string& workload, bool quick) {
  std::vector<WorkloadPoint> points;
  if (workload != "W8") return points;
  const auto add = [&](const char* dtype, std::int64_t context, std::int64_t batch) {
    points.push_back({"W8", dtype, "context " + std::to_string(context), batch, "sequences", 0});
  };
  for (const char* dtype : {"bf16", "fp8_e4m3"}) {
    if (quick) {  // ragged lengths, a partial last block, and two partitions (rocm: three)
      add(dtype, 37, 3);
      add(dtype, 530, 1);
      continue;
    }
    for (std::int64_t context : {512, 2048, 8192, 32768}) {
      for (std::int64_t batch : {1, 4, 16, 64, 256}) {
        if (batch * context <= kMaxTokens) add(dtype, context, batch);
      }
    }
  }
  return points;
}

// The inputs of one buffer set, in host or device memory, and its outputs.
struct AttentionSet {
  Buffer query, key_cache, value_cache, block_tables, seq_lens, k_scale, v_scale;
  Buffer out, exp_sums, max_logits, tmp_out;
};

// Random fp8 E4M3 bytes (no NaN: 0x7F and 0xFF become ±448).
void fill_fp8(Random& random, std::uint8_t* bytes, std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i) {
    std::uint8_t b = static_cast<std::uint8_t>(random.next() >> 56);
    if ((b & 0x7F) == 0x7F) b = static_cast<std::uint8_t>(b - 1);
    bytes[i] = b;
  }
}

template <class Op>
class AttentionCase final : public PlannedCase<Op> {
  // v2 and rocm: the split ops, with workspaces.
  static constexpr bool kRocm = std::is_same_v<Op, PagedAttentionRocm>;
  static constexpr bool kV2 = std::is_same_v<Op, PagedAttentionV2> || kRocm;

 public:
  AttentionCase(const WorkloadPoint& point, std::uint64_t seed)
      : shape_(shape_of(point)), seed_(seed) {
    if (kRocm) shape_.partition_size = kPagedAttentionRocmPartitionSize;
    host_ = draw(seed_);
    reference_out_ = Buffer(Memory::host, host_.out.size());
    reference_out_.fill(kPoisonByte);
    if (kV2) {
      reference_exp_sums_ = copy_to(Memory::host, host_.exp_sums);
      reference_max_logits_ = copy_to(Memory::host, host_.max_logits);
      reference_tmp_out_ = copy_to(Memory::host, host_.tmp_out);
    }
  }

  // K and V of every token read once per kv head, query read, out written.
  std::int64_t bytes_moved() const override {
    const AttentionShape& a = shape_;
    const std::int64_t kv = a.tokens() * a.num_kv_heads * a.head_size * 2 * a.cache_bytes();
    const std::int64_t rows = a.batch * a.num_heads * a.head_size * dtype_size(a.dtype());
    return kv + 2 * rows;
  }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    for (int set = 0; set < sets; ++set) {
      AttentionSet drawn = set == 0 ? AttentionSet{} : draw(set_seed(seed_, set));
      const AttentionSet& from = set == 0 ? host_ : drawn;
      AttentionSet d;
      d.query = copy_to(Memory::device, from.query);
      d.block_tables = copy_to(Memory::device, from.block_tables);
      d.seq_lens = copy_to(Memory::device, from.seq_lens);
      d.k_scale = copy_to(Memory::device, from.k_scale);
      d.v_scale = copy_to(Memory::device, from.v_scale);
      d.out = Buffer(Memory::device, from.out.size());
      d.out.fill(kPoisonByte);
      if (kV2) {
        d.exp_sums = copy_to(Memory::device, from.exp_sums);
        d.max_logits = copy_to(Memory::device, from.max_logits);
        d.tmp_out = copy_to(Memory::device, from.tmp_out);
      }
      // The pool: 0xFF everywhere, then the blocks the sequences use, one copy each.
      d.key_cache = Buffer(Memory::device, from.key_cache.size());
      d.value_cache = Buffer(Memory::device, from.value_cache.size());
      d.key_cache.fill(kPoisonByte);
      d.value_cache.fill(kPoisonByte);
      const std::int64_t block_bytes = shape_.block_elements() * shape_.cache_bytes();
      const auto* table = reinterpret_cast<const std::int32_t*>(from.block_tables.data());
      for (std::int64_t b = 0; b < shape_.batch; ++b) {
        for (std::int64_t c = 0; c < shape_.blocks_of(b); ++c) {
          const std::int64_t block = table[b * shape_.width() + c];
          PAGEDKV_CUDA_CHECK(cudaMemcpy(d.key_cache.data() + block * block_bytes,
                                        from.key_cache.data() + block * block_bytes, block_bytes,
                                        cudaMemcpyHostToDevice));
          PAGEDKV_CUDA_CHECK(cudaMemcpy(d.value_cache.data() + block * block_bytes,
                                        from.value_cache.data() + block * block_bytes,
                                        block_bytes, cudaMemcpyHostToDevice));
        }
      }
      device_.push_back(std::move(d));
      this->calls_.add(call(device_.back(), Device::cuda));
    }
  }

  void reset_outputs() override {
    AttentionSet& d = device_.at(0);
    d.out.fill(kPoisonByte);
    if (kV2) {  // the workspaces start from the drawn contents: unwritten entries keep them
      d.exp_sums.copy_from(host_.exp_sums);
      d.max_logits.copy_from(host_.max_logits);
      d.tmp_out.copy_from(host_.tmp_out);
    }
  }

  Agreement compare_outputs() override {
    const AttentionSet& d = device_.at(0);
    const AttentionShape& a = shape_;
    const double tolerance = attention_tolerance(a.dtype(), a.context, a.head_size);
    Agreement agreement = compare_with_reference(d.out, reference_out_.data(), a.dtype());
    const Buffer out = copy_to(Memory::host, d.out);
    agreement.rel_err = relative_error(out.data(), reference_out_.data(), a.dtype(),
                                       a.batch * a.num_heads * a.head_size);
    agreement.tolerance = tolerance;
    if (kV2) {
      // The partitions each sequence has: within the tolerance; the others untouched.
      const Buffer exp_sums = copy_to(Memory::host, d.exp_sums);
      const Buffer max_logits = copy_to(Memory::host, d.max_logits);
      const Buffer tmp_out = copy_to(Memory::host, d.tmp_out);
      std::vector<float> got_stats, want_stats;
      std::vector<std::uint8_t> got_rows, want_rows;
      bool untouched = true;
      const std::int64_t P = a.partitions(), D = a.head_size, row_bytes = D * 2;
      for (std::int64_t s = 0; s < a.batch; ++s) {
        const std::int64_t used = (a.length(s) + a.partition_size - 1) / a.partition_size;
        for (std::int64_t h = 0; h < a.num_heads; ++h) {
          for (std::int64_t p = 0; p < P; ++p) {
            const std::int64_t i = (s * a.num_heads + h) * P + p;
            const auto stat = [&](const Buffer& b) { return reinterpret_cast<const float*>(b.data())[i]; };
            const std::uint8_t* got_row = tmp_out.data() + i * row_bytes;
            const std::uint8_t* want_row = reference_tmp_out_.data() + i * row_bytes;
            if (p < used) {
              got_stats.push_back(stat(exp_sums));
              want_stats.push_back(stat(reference_exp_sums_));
              got_stats.push_back(stat(max_logits));
              want_stats.push_back(stat(reference_max_logits_));
              got_rows.insert(got_rows.end(), got_row, got_row + row_bytes);
              want_rows.insert(want_rows.end(), want_row, want_row + row_bytes);
            } else {
              untouched = untouched && stat(exp_sums) == stat(reference_exp_sums_) &&
                          stat(max_logits) == stat(reference_max_logits_) &&
                          std::memcmp(got_row, want_row, row_bytes) == 0;
            }
          }
        }
      }
      const double stats_err =
          relative_error(got_stats.data(), want_stats.data(), DType::f32,
                         static_cast<std::int64_t>(got_stats.size()));
      const double rows_err = relative_error(got_rows.data(), want_rows.data(), a.dtype(),
                                             static_cast<std::int64_t>(got_rows.size() / 2));
      // Each workspace within its own tolerance, expressed in out's (tmp_out has out's dtype;
      // the statistics are f32): the worst of the three is the reported error.
      const double stats_tolerance = attention_tolerance(DType::f32, a.context, D);
      agreement.rel_err = std::max({agreement.rel_err, rows_err,
                                    stats_err * tolerance / stats_tolerance});
      agreement.exact_part_equal = untouched;
      const Agreement ws_exp = compare_with_reference(d.exp_sums, reference_exp_sums_.data(), DType::f32);
      const Agreement ws_max = compare_with_reference(d.max_logits, reference_max_logits_.data(), DType::f32);
      const Agreement ws_tmp = compare_with_reference(d.tmp_out, reference_tmp_out_.data(), a.dtype());
      for (const Agreement* w : {&ws_exp, &ws_max, &ws_tmp}) {
        agreement.bit_exact = agreement.bit_exact && w->bit_exact;
        agreement.bytes_differing += w->bytes_differing;
        agreement.bytes_compared += w->bytes_compared;
      }
    }
    return agreement;
  }

 private:
  typename Op::Args cpu_call() override {
    if (kV2) {  // every run starts from the drawn workspaces
      reference_exp_sums_.copy_from(host_.exp_sums);
      reference_max_logits_.copy_from(host_.max_logits);
      reference_tmp_out_.copy_from(host_.tmp_out);
    }
    return call_of(host_, reference_out_, reference_exp_sums_, reference_max_logits_,
                   reference_tmp_out_, Device::cpu);
  }

  typename Op::Args call(const AttentionSet& set, Device device) const {
    return call_of(set, set.out, set.exp_sums, set.max_logits, set.tmp_out, device);
  }

  typename Op::Args call_of(const AttentionSet& in, const Buffer& out, const Buffer& exp_sums,
                            const Buffer& max_logits, const Buffer& tmp_out, Device device) const {
    const AttentionShape& a = shape_;
    const DType cache_dtype = a.fp8 ? DType::u8 : a.dtype();
    typename Op::Args args;
    args.out = TensorView::contiguous(out.data(), a.dtype(), {a.batch, a.num_heads, a.head_size},
                                      device);
    args.query = TensorView::contiguous(in.query.data(), a.dtype(),
                                        {a.batch, a.num_heads, a.head_size}, device);
    args.key_cache = TensorView::contiguous(
        in.key_cache.data(), cache_dtype,
        {a.pool(), a.num_kv_heads, a.head_size / a.x(), a.block_size, a.x()}, device);
    args.value_cache = TensorView::contiguous(
        in.value_cache.data(), cache_dtype, {a.pool(), a.num_kv_heads, a.head_size, a.block_size},
        device);
    args.num_kv_heads = a.num_kv_heads;
    args.scale = 1.0 / std::sqrt(static_cast<double>(a.head_size));
    args.block_tables =
        TensorView::contiguous(in.block_tables.data(), DType::i32, {a.batch, a.width()}, device);
    args.seq_lens = TensorView::contiguous(in.seq_lens.data(), DType::i32, {a.batch}, device);
    args.block_size = a.block_size;
    args.max_seq_len = a.context;
    args.kv_cache_dtype = a.fp8 ? "fp8_e4m3" : "auto";
    args.k_scale = TensorView::contiguous(in.k_scale.data(), DType::f32, {1}, device);
    args.v_scale = TensorView::contiguous(in.v_scale.data(), DType::f32, {1}, device);
    if constexpr (kRocm) args.mfma_type = "f16";
    if constexpr (kV2) {
      args.exp_sum = TensorView::contiguous(exp_sums.data(), DType::f32,
                                             {a.batch, a.num_heads, a.partitions()}, device);
      args.max_logits = TensorView::contiguous(max_logits.data(), DType::f32,
                                               {a.batch, a.num_heads, a.partitions()}, device);
      args.tmp_out = TensorView::contiguous(tmp_out.data(), a.dtype(),
                                            {a.batch, a.num_heads, a.partitions(), a.head_size},
                                            device);
    } else {
      (void)exp_sums;
      (void)max_logits;
      (void)tmp_out;
    }
    return args;
  }

  // The inputs of one set, in host memory (the pool zero where no sequence reads it).
  AttentionSet draw(std::uint64_t seed) const {
    const AttentionShape& a = shape_;
    Random random{seed};
    AttentionSet set;
    const std::int64_t rows = a.batch * a.num_heads * a.head_size;
    set.query = Buffer(Memory::host, static_cast<std::size_t>(rows * 2));
    fill_random(random, set.query.data(), a.dtype(), rows);
    set.out = Buffer(Memory::host, set.query.size());
    set.out.fill(kPoisonByte);
    // Distinct blocks over a pool of 4 × what the batch needs; unused columns hold -1.
    const std::vector<std::int64_t> ids = draw_unique(a.blocks_used(), a.pool(), random.next());
    set.block_tables = Buffer(Memory::host, static_cast<std::size_t>(a.batch * a.width() * 4));
    set.seq_lens = Buffer(Memory::host, static_cast<std::size_t>(std::max<std::int64_t>(a.batch, 1) * 4));
    auto* table = reinterpret_cast<std::int32_t*>(set.block_tables.data());
    auto* lengths = reinterpret_cast<std::int32_t*>(set.seq_lens.data());
    std::size_t next = 0;
    for (std::int64_t b = 0; b < a.batch; ++b) {
      lengths[b] = static_cast<std::int32_t>(a.length(b));
      for (std::int64_t c = 0; c < a.width(); ++c) {
        table[b * a.width() + c] = c < a.blocks_of(b) ? static_cast<std::int32_t>(ids[next++]) : -1;
      }
    }
    // The caches: every used block random, its slots past the sequence's end 0xFF.
    const std::int64_t block_elements = a.block_elements();
    const std::size_t cache_size = static_cast<std::size_t>(a.pool() * block_elements * a.cache_bytes());
    set.key_cache = Buffer(Memory::host, cache_size);
    set.value_cache = Buffer(Memory::host, cache_size);
    for (std::int64_t b = 0; b < a.batch; ++b) {
      for (std::int64_t c = 0; c < a.blocks_of(b); ++c) {
        const std::int64_t block = table[b * a.width() + c];
        for (Buffer* cache : {&set.key_cache, &set.value_cache}) {
          std::uint8_t* bytes = cache->data() + block * block_elements * a.cache_bytes();
          if (a.fp8) {
            fill_fp8(random, bytes, block_elements);
          } else {
            fill_random(random, bytes, a.dtype(), block_elements);
          }
        }
        const std::int64_t filled = std::min(a.block_size, a.length(b) - c * a.block_size);
        for (std::int64_t slot = filled; slot < a.block_size; ++slot) {
          for (std::int64_t g = 0; g < a.num_kv_heads; ++g) {
            for (std::int64_t d = 0; d < a.head_size; ++d) {
              // key [block, g, d / x, slot, d % x], value [block, g, d, slot]
              const std::int64_t k = (((block * a.num_kv_heads + g) * (a.head_size / a.x()) +
                                       d / a.x()) * a.block_size + slot) * a.x() + d % a.x();
              const std::int64_t v = ((block * a.num_kv_heads + g) * a.head_size + d) *
                                         a.block_size + slot;
              std::memset(set.key_cache.data() + k * a.cache_bytes(), 0xFF, a.cache_bytes());
              std::memset(set.value_cache.data() + v * a.cache_bytes(), 0xFF, a.cache_bytes());
            }
          }
        }
      }
    }
    set.k_scale = Buffer(Memory::host, 4);
    set.v_scale = Buffer(Memory::host, 4);
    std::memcpy(set.k_scale.data(), &a.k_scale, 4);
    std::memcpy(set.v_scale.data(), &a.v_scale, 4);
    if (kV2) {  // workspaces: finite random contents (what the call must not disturb)
      const std::int64_t stats = std::max<std::int64_t>(a.batch * a.num_heads * a.partitions(), 1);
      set.exp_sums = Buffer(Memory::host, static_cast<std::size_t>(stats * 4));
      set.max_logits = Buffer(Memory::host, static_cast<std::size_t>(stats * 4));
      set.tmp_out = Buffer(Memory::host, static_cast<std::size_t>(stats * a.head_size * 2));
      fill_random(random, set.exp_sums.data(), DType::f32, stats);
      fill_random(random, set.max_logits.data(), DType::f32, stats);
      fill_random(random, set.tmp_out.data(), a.dtype(), stats * a.head_size);
    }
    return set;
  }

  AttentionShape shape_;
  std::uint64_t seed_;
  AttentionSet host_;
  Buffer reference_out_, reference_exp_sums_, reference_max_logits_, reference_tmp_out_;
  std::vector<AttentionSet> device_;
};

const char* attention_workload_notes() {
  return "W8: decode batches for Llama-3-8B's attention, 32 query / 8 kv heads of 128, block 16, "
         "one query token per sequence (bf16), batch 1 ... 256 x context 512 ... 32768 (slots "
         "\"context n\": each sequence n tokens long; batch x context up to 2^19 tokens), the "
         "legacy cache in bf16 or fp8_e4m3 (the variant) (random bytes of E4M3's range, k_scale = v_scale = 4 / 448) in a "
         "pool of 4 x the blocks the batch needs, block tables drawn at random over it; blocks "
         "no sequence reads and the slots past a sequence's end hold 0xFF (NaN); v2's "
         "workspaces (rocm's: 256-token partitions) start with random contents. A quick run keeps a pool of 2 x the blocks and contexts 37 (3 sequences of "
         "37, 24 and 11 tokens) and 530 (two partitions of 512, three of 256).";
}

const char* attention_byte_model() {
  return "keys and values read once per kv head (seq_len x num_kv_heads x head_size x 2 x "
         "cache element bytes, summed over the sequences), query read and out written once "
         "(num_seqs x num_heads x head_size x element bytes each); block tables, seq_lens and "
         "the workspaces of v2 and rocm not counted";
}

const char* attention_agreement() {
  return "norm-wise relative error ||gpu - cpu||_2 / ||cpu||_2 of out (v2, rocm: and of exp_sum, "
         "max_logits and tmp_out over the partitions each sequence has, the other entries "
         "untouched) against the float64 CPU reference within attention_tolerance(dtype, "
         "max_seq_len, head_size) = 3 u_dtype + (8 sqrt(max_seq_len) + 8 sqrt(head_size) + 64) "
         "u_f32";
}

// The fuzzer's tolerance of an output: attention_tolerance() for the call's max_seq_len and
// head size (f32 for the workspaces' statistics).
double output_tolerance(const std::vector<ArgValue>& values, std::string_view argument,
                        std::size_t query_index, std::size_t max_seq_len_index) {
  const TensorView& query = std::get<TensorView>(values.at(query_index));
  const std::int64_t max_seq_len = std::get<std::int64_t>(values.at(max_seq_len_index));
  const DType dtype = argument == "exp_sum" || argument == "max_logits" ? DType::f32 : query.dtype;
  return attention_tolerance(dtype, max_seq_len, query.ndim == 3 ? query.size(2) : 1);
}

template <class Op>
OpEntry attention_card(const char* role, const char* upstream) {
  OpEntry entry;
  entry.family = "attention";
  entry.role = role;
  entry.upstream = upstream;
  entry.cpu_source = "reference_cpu/paged_attention.cpp";
  entry.naive_source = "kernels/attention/paged_attention/naive.cu";
  entry.optimized_source = "kernels/attention/paged_attention/optimized.cu";
  entry.byte_model = attention_byte_model();
  entry.agreement_rule = attention_agreement();
  entry.workloads = {"W8"};
  entry.workload_notes = attention_workload_notes();
  entry.points = &attention_points;
  entry.make_case = [](const WorkloadPoint& point, std::uint64_t seed) -> std::unique_ptr<OpCase> {
    return std::make_unique<AttentionCase<Op>>(point, seed);
  };
  return entry;
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry PagedAttentionV1::card() {
  OpEntry entry = entries::attention_card<PagedAttentionV1>(
      "Decode attention of vLLM's original paged KV cache (2023): each sequence's one new query "
      "token attends over its cached keys and values, read through its block table, the "
      "softmax over the whole sequence in one pass; vLLM chose it for short sequences or large "
      "batches, and has since replaced it with FlashAttention / FlashInfer backends.",
      "vLLM csrc/attention/paged_attention_v1.cu: paged_attention_v1 "
      "(attention_kernels.cuh: paged_attention_v1_kernel)");
  entry.output_tolerance = [](const std::vector<ArgValue>& values, std::string_view argument) {
    return entries::output_tolerance(values, argument, 1, 9);
  };
  return entry;
}

OpEntry PagedAttentionV2::card() {
  OpEntry entry = entries::attention_card<PagedAttentionV2>(
      "Decode attention of vLLM's original paged KV cache, with each sequence split into "
      "512-token partitions computed in parallel and merged by their log-sum-exp "
      "(flash-decoding): vLLM's choice for long sequences and small batches, since replaced "
      "by FlashAttention / FlashInfer backends.",
      "vLLM csrc/attention/paged_attention_v2.cu: paged_attention_v2 "
      "(attention_kernels.cuh: paged_attention_v2_kernel, paged_attention_v2_reduce_kernel)");
  entry.output_tolerance = [](const std::vector<ArgValue>& values, std::string_view argument) {
    return entries::output_tolerance(values, argument, 4, 12);
  };
  return entry;
}

OpEntry PagedAttentionRocm::card() {
  OpEntry entry = entries::attention_card<PagedAttentionRocm>(
      "vLLM's decode attention for AMD GPUs (MI200 / MI300: MFMA matrix instructions, 64-lane "
      "wavefronts): the math of paged_attention_v2 with 256-token partitions, one workgroup per "
      "kv head for all its query heads, query_start_loc to pick the decode rows of a mixed "
      "batch and an optional fp8 output; pagedkv runs it on NVIDIA through its v2 kernels.",
      "vLLM csrc/rocm/attention.cu: paged_attention (paged_attention_ll4mi_QKV_mfma4_kernel, "
      "paged_attention_ll4mi_QKV_mfma16_kernel, paged_attention_ll4mi_reduce_kernel)");
  entry.output_tolerance = [](const std::vector<ArgValue>& values, std::string_view argument) {
    return entries::output_tolerance(values, argument, 4, 13);
  };
  return entry;
}

}  // namespace pagedkv
