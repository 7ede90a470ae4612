// Tests of gather_and_maybe_dequant_cache (vLLM csrc/cache_kernels.cu @9803b00:
// gather_and_maybe_dequant_cache).
//
// CPU part (runs everywhere): a hand-computed gather; round trips through the writer
// (concat_and_cache_mla's CPU reference, then the gather: "auto" gives back the input exactly,
// fp8 the fp8 decode of the stored bytes, fp8_ds_mla each latent value as its code times its
// tile's scale and the RoPE bits unchanged); rows not gathered keep their poison; empty
// sequences and zero sequences change nothing; and one test per validation rule: the call
// throws InvalidArgument naming the argument, and no workspace byte changes.
//
// GPU part ([gpu]): the CPU reference, the naive and the optimized kernel fill whole poisoned
// workspaces from random caches, which must be byte-identical over dtypes, cache kinds, block
// sizes, batch shapes (one long request, skewed batches, empty sequences), seq_starts, padding
// rows, strided and misaligned workspaces and caches.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cache_element.h"
#include "numerics.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/concat_and_cache_mla.h"
#include "pagedkv/ops/gather_and_maybe_dequant_cache.h"
#include "support.h"

using pagedkv::cpu::load_activation;  // one element of f32 / f16 / bf16 as float (exact)

namespace {

using namespace pagedkv;
using Catch::Matchers::Contains;
using test::floats;
using test::int64s;
using test::poisoned;
using test::same_bytes;

// ---------------------------------------------------------------------------------------------
// Small helpers.

Buffer int32s(const std::vector<std::int32_t>& values) {
  Buffer buffer(Memory::host, std::max<std::size_t>(values.size(), 1) * 4);
  if (!values.empty()) std::memcpy(buffer.data(), values.data(), values.size() * 4);
  return buffer;
}

// A float rounded into `dtype`'s bits (an independent formulation of the row's rounding).
std::vector<std::uint8_t> element_bits(float value, DType dtype) {
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(dtype_size(dtype)));
  if (dtype == DType::f32) {
    std::memcpy(bytes.data(), &value, 4);
  } else {
    const std::uint16_t bits = dtype == DType::f16 ? numerics::float_to_half_bits(value)
                                                   : numerics::float_to_bf16_bits(value);
    std::memcpy(bytes.data(), &bits, 2);
  }
  return bytes;
}

// A batch of sequences and the block table that places them: sequence b gathers lengths[b]
// tokens from position starts[b] (0 without starts) of its blocks. Every block a gathered
// position needs is a distinct random block of the cache; columns no gathered position needs
// hold -1, which the op must never read.
struct Batch {
  std::vector<std::int64_t> lengths, starts;
  std::int64_t block_size = 4, num_blocks = 0, max_blocks = 1, total = 0;
  std::vector<std::int32_t> table, cu{0}, token_to_seq;
  std::vector<std::int64_t> slots;  // slot of workspace row k < total

  Batch(std::vector<std::int64_t> lengths_, std::vector<std::int64_t> starts_, std::int64_t bs,
        std::uint64_t seed, std::int64_t spare_blocks = 3)
      : lengths(std::move(lengths_)), starts(std::move(starts_)), block_size(bs) {
    const auto batch = static_cast<std::int64_t>(lengths.size());
    std::int64_t needed = 0;
    for (std::int64_t b = 0; b < batch; ++b) {
      const std::int64_t end = start(b) + lengths[b];
      if (lengths[b] > 0) {
        max_blocks = std::max(max_blocks, (end - 1) / bs + 1);
        needed += (end - 1) / bs - start(b) / bs + 1;
      }
    }
    num_blocks = needed + spare_blocks;
    std::vector<std::int32_t> pool(static_cast<std::size_t>(num_blocks));
    std::iota(pool.begin(), pool.end(), 0);
    std::mt19937_64 rng(seed);
    std::shuffle(pool.begin(), pool.end(), rng);
    table.assign(static_cast<std::size_t>(std::max<std::int64_t>(batch, 1) * max_blocks), -1);
    std::size_t next = 0;
    for (std::int64_t b = 0; b < batch; ++b) {
      if (lengths[b] > 0) {
        for (std::int64_t c = start(b) / bs; c <= (start(b) + lengths[b] - 1) / bs; ++c) {
          table[static_cast<std::size_t>(b * max_blocks + c)] = pool[next++];
        }
      }
      for (std::int64_t p = 0; p < lengths[b]; ++p) {
        const std::int64_t position = start(b) + p;
        slots.push_back(table[static_cast<std::size_t>(b * max_blocks + position / bs)] * bs +
                        position % bs);
        token_to_seq.push_back(static_cast<std::int32_t>(b));
      }
      cu.push_back(static_cast<std::int32_t>(cu.back() + lengths[b]));
    }
    total = cu.back();
  }
  std::int64_t start(std::int64_t b) const {
    return starts.empty() ? 0 : starts[static_cast<std::size_t>(b)];
  }
  std::int64_t batch() const { return static_cast<std::int64_t>(lengths.size()); }
};

// The host tensors of one gather over a Batch: index buffers, a cache and a poisoned workspace
// of total + extra_rows rows; num_tokens = total + padding_rows (token_to_seq padded with 0).
struct HostGather {
  Buffer cache, dst, table, cu, token_to_seq, starts, scale;
  GatherAndMaybeDequantCache::Args args;
  std::size_t dst_bytes = 0;
};

HostGather make_gather(const Batch& batch, const std::string& kind, DType dst_dtype,
                       std::int64_t padding_rows = 0, std::int64_t extra_rows = 2) {
  HostGather g;
  const bool ds = kind == "fp8_ds_mla";
  const DType cache_dtype = kind.rfind("fp8", 0) == 0 ? DType::u8 : dst_dtype;
  const std::int64_t entry = ds ? 656 : 576;
  const std::int64_t cache_bytes =
      batch.num_blocks * batch.block_size * entry * dtype_size(cache_dtype);
  g.cache = Buffer(Memory::host, static_cast<std::size_t>(std::max<std::int64_t>(cache_bytes, 1)));
  test::fill_random(g.cache.data(), DType::u8, cache_bytes, 77);  // random bytes, not poison
  const std::int64_t rows = batch.total + std::max(padding_rows, extra_rows);
  g.dst_bytes = static_cast<std::size_t>(rows * 576 * dtype_size(dst_dtype));
  g.dst = poisoned(g.dst_bytes);
  g.table = int32s(batch.table);
  g.cu = int32s(batch.cu);
  std::vector<std::int32_t> token_to_seq = batch.token_to_seq;
  token_to_seq.resize(static_cast<std::size_t>(batch.total + padding_rows), 0);
  g.token_to_seq = int32s(token_to_seq);
  std::vector<std::int32_t> starts(batch.starts.begin(), batch.starts.end());
  g.starts = int32s(starts);
  g.scale = floats({0.125f});
  g.args.src_cache = TensorView::contiguous(g.cache.data(), cache_dtype,
                                            {batch.num_blocks, batch.block_size, entry});
  g.args.dst = TensorView::contiguous(g.dst.data(), dst_dtype, {rows, 576});
  g.args.block_table =
      TensorView::contiguous(g.table.data(), DType::i32, {batch.batch(), batch.max_blocks});
  g.args.cu_seq_lens = TensorView::contiguous(g.cu.data(), DType::i32, {batch.batch() + 1});
  g.args.token_to_seq =
      TensorView::contiguous(g.token_to_seq.data(), DType::i32, {batch.total + padding_rows});
  g.args.num_tokens = batch.total + padding_rows;
  g.args.kv_cache_dtype = kind;
  g.args.scale = TensorView::contiguous(g.scale.data(), DType::f32, {1});
  if (!batch.starts.empty()) {
    g.args.seq_starts = TensorView::contiguous(g.starts.data(), DType::i32, {batch.batch()});
  }
  return g;
}

// Writes `total` random tokens into g's cache with concat_and_cache_mla's CPU reference, at
// the batch's slots: the cache a real engine would have. Returns kv_c [total, 512] and k_pe
// [total, 64] (in `latent` and `rope`).
void write_with_concat(const Batch& batch, HostGather& g, DType activation, Buffer& latent,
                       Buffer& rope, std::uint64_t seed) {
  const std::int64_t T = batch.total, bytes = dtype_size(activation);
  latent =
      Buffer(Memory::host, static_cast<std::size_t>(std::max<std::int64_t>(T, 1) * 512 * bytes));
  rope = Buffer(Memory::host, static_cast<std::size_t>(std::max<std::int64_t>(T, 1) * 64 * bytes));
  test::fill_random(latent.data(), activation, T * 512, seed, 20.f);
  test::fill_random(rope.data(), activation, T * 64, seed + 1, 2.f);
  Buffer slots = int64s(batch.slots);
  run<ConcatAndCacheMla>(
      Impl::cpu,
      {TensorView::contiguous(latent.data(), activation, {T, 512}),
       TensorView::contiguous(rope.data(), activation, {T, 64}), g.args.src_cache,
       TensorView::contiguous(slots.data(), DType::i64, {T}), g.args.kv_cache_dtype, g.args.scale});
}

// Bytes of row `row` of a [rows, 576] workspace of `dtype`.
const std::uint8_t* row_of(const HostGather& g, std::int64_t row) {
  return g.dst.data() + row * 576 * g.args.dst.element_size();
}

// The rows from `first` on still hold their poison.
bool rows_untouched_from(const HostGather& g, std::int64_t first) {
  const Buffer fresh = poisoned(g.dst_bytes);
  const std::size_t from = static_cast<std::size_t>(first * 576 * g.args.dst.element_size());
  return same_bytes(g.dst.data() + from, fresh.data() + from, g.dst_bytes - from);
}

// ---------------------------------------------------------------------------------------------
// CPU reference: a hand-computed gather.

TEST_CASE("gather_and_maybe_dequant_cache CPU: rows come from the blocks the table names",
          "[gather_and_maybe_dequant_cache]") {
  // Cache [3 blocks, block_size 2, 576] f32, entry e of block b filled with 100 b + 10 e + 1.
  // Sequence 0: 1 token from position 0; sequence 1: 2 tokens from position 1 (seq_starts).
  // block_table = [[2, -1], [-1, 0]]: row 0 = block 2 slot 0; row 1 = sequence 1 position 1 =
  // column 0 ... which is -1, so use seq_starts 2: positions 2, 3 = column 1 (block 0) slots 0
  // and 1. Row 3 is padding (num_tokens 4 > cu_seq_lens[2] = 3).
  std::vector<float> cache_values(3 * 2 * 576);
  for (int b = 0; b < 3; ++b)
    for (int e = 0; e < 2; ++e)
      std::fill_n(cache_values.begin() + (b * 2 + e) * 576, 576, 100.f * b + 10.f * e + 1.f);
  Buffer cache = floats(cache_values);
  Buffer dst = poisoned(5 * 576 * 4);
  Buffer table = int32s({2, -1, -1, 0});
  Buffer cu = int32s({0, 1, 3});
  Buffer token_to_seq = int32s({0, 1, 1, 7});  // row 3 is padding: never read
  Buffer starts = int32s({0, 2});
  Buffer scale = floats({1.f});
  run<GatherAndMaybeDequantCache>(
      Impl::cpu, {TensorView::contiguous(cache.data(), DType::f32, {3, 2, 576}),
                  TensorView::contiguous(dst.data(), DType::f32, {5, 576}),
                  TensorView::contiguous(table.data(), DType::i32, {2, 2}),
                  TensorView::contiguous(cu.data(), DType::i32, {3}),
                  TensorView::contiguous(token_to_seq.data(), DType::i32, {4}), 4, "auto",
                  TensorView::contiguous(scale.data(), DType::f32, {1}),
                  TensorView::contiguous(starts.data(), DType::i32, {2})});
  Buffer expected = poisoned(5 * 576 * 4);
  const float rows[3] = {201.f, 1.f, 11.f};  // block 2 slot 0, block 0 slot 0, block 0 slot 1
  for (int r = 0; r < 3; ++r) {
    std::vector<float> row(576, rows[r]);
    std::memcpy(expected.data() + r * 576 * 4, row.data(), 576 * 4);
  }
  CHECK(same_bytes(dst, expected, 5 * 576 * 4));
}

// ---------------------------------------------------------------------------------------------
// Round trips: write with concat_and_cache_mla (CPU), then gather.

TEST_CASE("gather_and_maybe_dequant_cache round trip: auto gives back the input exactly",
          "[gather_and_maybe_dequant_cache]") {
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  const bool with_starts = GENERATE(false, true);
  CAPTURE(dtype_name(dtype), with_starts);
  const Batch batch(
      {5, 0, 9, 1},
      with_starts ? std::vector<std::int64_t>{3, 0, 6, 13} : std::vector<std::int64_t>{}, 4, 11);
  HostGather g = make_gather(batch, "auto", dtype, /*padding_rows=*/2);
  Buffer latent, rope;
  write_with_concat(batch, g, dtype, latent, rope, 21);
  run<GatherAndMaybeDequantCache>(Impl::cpu, g.args);
  const std::int64_t bytes = dtype_size(dtype);
  for (std::int64_t k = 0; k < batch.total; ++k) {
    CAPTURE(k);
    CHECK(same_bytes(row_of(g, k), latent.data() + k * 512 * bytes,
                     static_cast<std::size_t>(512 * bytes)));
    CHECK(same_bytes(row_of(g, k) + 512 * bytes, rope.data() + k * 64 * bytes,
                     static_cast<std::size_t>(64 * bytes)));
  }
  CHECK(rows_untouched_from(g, batch.total));  // the padding rows and the rows past num_tokens
}

TEST_CASE("gather_and_maybe_dequant_cache round trip: fp8 gives back the fp8 decode",
          "[gather_and_maybe_dequant_cache]") {
  const std::string kind = GENERATE("fp8", "fp8_e4m3", "fp8_e5m2");
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  CAPTURE(kind, dtype_name(dtype));
  const Batch batch({7, 3}, {}, 4, 12);
  HostGather g = make_gather(batch, kind, dtype);
  Buffer latent, rope;
  write_with_concat(batch, g, dtype, latent, rope, 22);
  run<GatherAndMaybeDequantCache>(Impl::cpu, g.args);
  const bool e5m2 = kind == "fp8_e5m2";
  const float scale = 0.125f;
  const std::int64_t bytes = dtype_size(dtype);
  int mismatches = 0, off_the_input = 0;
  for (std::int64_t k = 0; k < batch.total; ++k) {
    const std::uint8_t* entry = g.cache.data() + batch.slots[static_cast<std::size_t>(k)] * 576;
    for (int i = 0; i < 576; ++i) {
      // Against the stored byte: fp8 × scale, rounded into the row's dtype.
      const float decoded =
          (e5m2 ? numerics::fp8_e5m2_to_float(entry[i]) : numerics::fp8_e4m3_to_float(entry[i])) *
          scale;
      const std::vector<std::uint8_t> want = element_bits(decoded, dtype);
      mismatches += std::memcmp(row_of(g, k) + i * bytes, want.data(), want.size()) != 0;
      // Against the input: within fp8's rounding of x / scale (relative 2^-4 for E4M3 and
      // 2^-3 for E5M2, plus the subnormal step).
      const std::uint8_t* source = i < 512 ? latent.data() + (k * 512 + i) * bytes
                                           : rope.data() + (k * 64 + i - 512) * bytes;
      const float x = load_activation(source, dtype);
      const float got = load_activation(row_of(g, k) + i * bytes, dtype);
      const float bound = std::fabs(x) * (e5m2 ? 0.13f : 0.07f) + scale * (e5m2 ? 1e-4f : 2e-3f);
      off_the_input += !(std::fabs(got - x) <= bound);
    }
  }
  CHECK(mismatches == 0);
  CHECK(off_the_input == 0);
  CHECK(rows_untouched_from(g, batch.total));
}

TEST_CASE(
    "gather_and_maybe_dequant_cache round trip: fp8_ds_mla decodes each tile with its "
    "scale",
    "[gather_and_maybe_dequant_cache]") {
  const bool with_starts = GENERATE(false, true);
  CAPTURE(with_starts);
  const Batch batch(
      {6, 2, 0, 5},
      with_starts ? std::vector<std::int64_t>{1, 63, 4, 0} : std::vector<std::int64_t>{}, 8, 13);
  HostGather g = make_gather(batch, "fp8_ds_mla", DType::bf16, 1);
  Buffer latent, rope;
  write_with_concat(batch, g, DType::bf16, latent, rope, 23);
  run<GatherAndMaybeDequantCache>(Impl::cpu, g.args);
  int mismatches = 0, off_the_input = 0;
  for (std::int64_t k = 0; k < batch.total; ++k) {
    const std::uint8_t* entry = g.cache.data() + batch.slots[static_cast<std::size_t>(k)] * 656;
    for (int i = 0; i < 512; ++i) {
      float tile_scale;
      std::memcpy(&tile_scale, entry + 512 + 4 * (i / 128), 4);
      const float want = numerics::fp8_e4m3_to_float(entry[i]) * tile_scale;
      const std::vector<std::uint8_t> bits = element_bits(want, DType::bf16);
      mismatches += std::memcmp(row_of(g, k) + 2 * i, bits.data(), 2) != 0;
      // The latent value within E4M3's rounding of the input (relative 2^-4, plus the
      // subnormal step of its tile).
      const float x = load_activation(latent.data() + (k * 512 + i) * 2, DType::bf16);
      const float got = load_activation(row_of(g, k) + 2 * i, DType::bf16);
      off_the_input += !(std::fabs(got - x) <= std::fabs(x) * 0.07f + tile_scale * 2e-3f);
    }
    // RoPE: the bf16 bits of the input, unchanged.
    mismatches += !same_bytes(row_of(g, k) + 1024, rope.data() + k * 128, 128);
  }
  CHECK(mismatches == 0);
  CHECK(off_the_input == 0);
  CHECK(rows_untouched_from(g, batch.total));
}

TEST_CASE("gather_and_maybe_dequant_cache: empty sequences and zero sequences change nothing",
          "[gather_and_maybe_dequant_cache]") {
  const std::string kind = GENERATE("auto", "fp8_e4m3", "fp8_ds_mla");
  CAPTURE(kind);
  SECTION("every sequence empty") {
    const Batch batch({0, 0, 0}, {}, 4, 14);
    HostGather g = make_gather(batch, kind, DType::bf16, /*padding_rows=*/3);
    CHECK_NOTHROW(run<GatherAndMaybeDequantCache>(Impl::cpu, g.args));
    CHECK(rows_untouched_from(g, 0));
  }
  SECTION("zero sequences (cu_seq_lens = [0]), with and without rows to consider") {
    const Batch batch({}, {}, 4, 15);
    const std::int64_t padding = GENERATE(0, 2);
    HostGather g = make_gather(batch, kind, DType::bf16, padding);
    CHECK_NOTHROW(run<GatherAndMaybeDequantCache>(Impl::cpu, g.args));
    CHECK(rows_untouched_from(g, 0));
  }
  SECTION("num_tokens 0") {
    const Batch batch({3, 2}, {}, 4, 16);
    HostGather g = make_gather(batch, kind, DType::bf16);
    g.args.num_tokens = 0;
    CHECK_NOTHROW(run<GatherAndMaybeDequantCache>(Impl::cpu, g.args));
    CHECK(rows_untouched_from(g, 0));
  }
}

TEST_CASE("gather_and_maybe_dequant_cache: num_tokens below the batch gathers only those rows",
          "[gather_and_maybe_dequant_cache]") {
  // num_tokens 4 of 7: rows 0-3 gathered (sequence 1 partly), rows 4-6 untouched, and the
  // blocks only rows 4-6 would need are never looked at (they hold -1 here).
  Batch batch({3, 4}, {}, 2, 17);
  batch.table[static_cast<std::size_t>(1 * batch.max_blocks + 1)] = -1;  // positions 2, 3 of seq 1
  HostGather g = make_gather(batch, "auto", DType::bf16);
  g.args.num_tokens = 4;
  run<GatherAndMaybeDequantCache>(Impl::cpu, g.args);
  CHECK(rows_untouched_from(g, 4));
  CHECK_FALSE(rows_untouched_from(g, 3));
}

// ---------------------------------------------------------------------------------------------
// Rules: each test breaks one valid call in exactly one way; the call must throw
// InvalidArgument naming the argument, and no workspace byte may change.

struct ValidCall {
  // Sequence 0: 3 tokens from position 0 (column 0); sequence 1: 2 tokens from position 3 with
  // seq_starts (column 0 slot 3, column 1 slot 0). Row 5 is padding.
  static constexpr int kRows = 8, kBlocks = 3, kBlockSize = 4;
  static constexpr int kDstBytes = kRows * 576 * 4;
  static constexpr int kCacheBytes = kBlocks * kBlockSize * 656 * 2;

  Buffer cache_data = poisoned(kCacheBytes);
  Buffer dst_data = poisoned(kDstBytes);
  Buffer table_data = int32s({2, 0, 0, 1, 2, 0});
  Buffer table64_data = int64s({2, 0, 0, 1, 2, 0});
  Buffer cu_data = int32s({0, 3, 5});
  Buffer cu64_data = int64s({0, 3, 5});
  Buffer token_data = int32s({0, 0, 0, 1, 1, 0, 0, 0});
  Buffer token64_data = int64s({0, 0, 0, 1, 1, 0});
  Buffer starts_data = int32s({0, 3});
  Buffer starts64_data = int64s({0, 3});
  Buffer scale_data = floats({0.5f, 0.25f});

  TensorView src_cache =
      TensorView::contiguous(cache_data.data(), DType::bf16, {kBlocks, kBlockSize, 576});
  TensorView dst = TensorView::contiguous(dst_data.data(), DType::bf16, {kRows, 576});
  TensorView block_table = TensorView::contiguous(table_data.data(), DType::i32, {2, 3});
  TensorView cu_seq_lens = TensorView::contiguous(cu_data.data(), DType::i32, {3});
  TensorView token_to_seq = TensorView::contiguous(token_data.data(), DType::i32, {6});
  std::int64_t num_tokens = 6;
  std::string kv_cache_dtype = "auto";
  TensorView scale = TensorView::contiguous(scale_data.data(), DType::f32, {1});
  TensorView seq_starts = TensorView::contiguous(starts_data.data(), DType::i32, {2});
  Impl impl = Impl::cpu;

  ValidCall() { test::fill_random(cache_data.data(), DType::bf16, kCacheBytes / 2, 3); }

  void use_fp8() {
    kv_cache_dtype = "fp8_e4m3";
    src_cache.dtype = DType::u8;
  }

  void use_ds_mla() {
    kv_cache_dtype = "fp8_ds_mla";
    src_cache = TensorView::contiguous(cache_data.data(), DType::u8, {kBlocks, kBlockSize, 656});
  }

  void call() const {
    run<GatherAndMaybeDequantCache>(impl, {src_cache, dst, block_table, cu_seq_lens, token_to_seq,
                                           num_tokens, kv_cache_dtype, scale, seq_starts});
  }

  bool nothing_written() const {
    const Buffer fresh = poisoned(kDstBytes);
    return same_bytes(dst_data, fresh, kDstBytes);
  }
};

TEST_CASE("gather_and_maybe_dequant_cache: the valid calls used by the rule tests pass",
          "[gather_and_maybe_dequant_cache]") {
  ValidCall call;
  CHECK_NOTHROW(call.call());
  CHECK_FALSE(call.nothing_written());
  ValidCall fp8;
  fp8.use_fp8();
  CHECK_NOTHROW(fp8.call());
  ValidCall ds;
  ds.use_ds_mla();
  CHECK_NOTHROW(ds.call());
  ValidCall no_starts;
  no_starts.seq_starts = TensorView{};  // absent: sequence 1 then reads column 0 slots 0, 1
  CHECK_NOTHROW(no_starts.call());
}

TEST_CASE("gather_and_maybe_dequant_cache rejects a block id outside the cache",
          "[gather_and_maybe_dequant_cache]") {
  const std::int32_t bad = GENERATE(3, 1000, -1);
  ValidCall call;
  reinterpret_cast<std::int32_t*>(call.table_data.data())[4] = bad;  // [1, 1]: needed
  CHECK_REJECTED(call, "block_table[1, 1] = " + std::to_string(bad));
  CHECK_THROWS_WITH(call.call(), Contains("num_blocks = 3"));
}

TEST_CASE("gather_and_maybe_dequant_cache ignores block ids no gathered token needs",
          "[gather_and_maybe_dequant_cache]") {
  ValidCall call;
  reinterpret_cast<std::int32_t*>(call.table_data.data())[1] = 99;  // [0, 1]: not needed
  reinterpret_cast<std::int32_t*>(call.table_data.data())[5] = -7;  // [1, 2]: not needed
  CHECK_NOTHROW(call.call());
}

TEST_CASE("gather_and_maybe_dequant_cache rejects a position past block_table's columns",
          "[gather_and_maybe_dequant_cache]") {
  ValidCall call;
  reinterpret_cast<std::int32_t*>(call.starts_data.data())[1] = 9;  // positions 9, 10: column 2
  call.block_table = TensorView::contiguous(call.table_data.data(), DType::i32, {2, 2});
  call.block_table.strides[0] = 3;
  CHECK_REJECTED(call, "block_table: sequence 1 needs column 2");
}

TEST_CASE("gather_and_maybe_dequant_cache rejects cu_seq_lens not starting at 0 or decreasing",
          "[gather_and_maybe_dequant_cache]") {
  SECTION("first element not 0") {
    ValidCall call;
    reinterpret_cast<std::int32_t*>(call.cu_data.data())[0] = 1;
    CHECK_REJECTED(call, "cu_seq_lens[0]");
  }
  SECTION("decreasing") {
    ValidCall call;
    reinterpret_cast<std::int32_t*>(call.cu_data.data())[2] = 2;
    CHECK_REJECTED(call, "cu_seq_lens[2] = 2");
  }
}

TEST_CASE("gather_and_maybe_dequant_cache rejects token_to_seq inconsistent with cu_seq_lens",
          "[gather_and_maybe_dequant_cache]") {
  const int row = GENERATE(0, 2, 3, 4);
  const std::int32_t value = GENERATE(-1, 2, 5);
  ValidCall call;
  auto* tokens = reinterpret_cast<std::int32_t*>(call.token_data.data());
  tokens[row] = tokens[row] == 0 && value == 2 ? 1 : value;  // never the right sequence
  CHECK_REJECTED(call, "token_to_seq[" + std::to_string(row) + "]");
}

TEST_CASE("gather_and_maybe_dequant_cache rejects a workspace too small for num_tokens",
          "[gather_and_maybe_dequant_cache]") {
  ValidCall call;
  call.dst = TensorView::contiguous(call.dst_data.data(), DType::bf16, {5, 576});
  CHECK_REJECTED(call, "num_tokens");
  ValidCall negative;
  negative.num_tokens = -1;
  CHECK_REJECTED(negative, "num_tokens");
  ValidCall short_map;
  short_map.token_to_seq = TensorView::contiguous(short_map.token_data.data(), DType::i32, {5});
  CHECK_REJECTED(short_map, "token_to_seq");
}

TEST_CASE("gather_and_maybe_dequant_cache rejects index tensors that are not i32",
          "[gather_and_maybe_dequant_cache]") {
  SECTION("block_table") {
    ValidCall call;
    call.block_table = TensorView::contiguous(call.table64_data.data(), DType::i64, {2, 3});
    CHECK_REJECTED(call, "block_table");
    CHECK_THROWS_WITH(call.call(), Contains("i32"));
  }
  SECTION("cu_seq_lens") {
    ValidCall call;
    call.cu_seq_lens = TensorView::contiguous(call.cu64_data.data(), DType::i64, {3});
    CHECK_REJECTED(call, "cu_seq_lens");
  }
  SECTION("token_to_seq (upstream does not check it)") {
    ValidCall call;
    call.token_to_seq = TensorView::contiguous(call.token64_data.data(), DType::i64, {6});
    CHECK_REJECTED(call, "token_to_seq");
  }
  SECTION("seq_starts") {
    ValidCall call;
    call.seq_starts = TensorView::contiguous(call.starts64_data.data(), DType::i64, {2});
    CHECK_REJECTED(call, "seq_starts");
  }
}

TEST_CASE("gather_and_maybe_dequant_cache rejects a negative seq_starts, or too few",
          "[gather_and_maybe_dequant_cache]") {
  ValidCall call;
  reinterpret_cast<std::int32_t*>(call.starts_data.data())[1] = -1;
  CHECK_REJECTED(call, "seq_starts[1] = -1");
  ValidCall few;
  few.seq_starts = TensorView::contiguous(few.starts_data.data(), DType::i32, {1});
  CHECK_REJECTED(few, "seq_starts");
}

TEST_CASE("gather_and_maybe_dequant_cache rejects entry sizes and dtypes that do not match",
          "[gather_and_maybe_dequant_cache]") {
  SECTION("auto: cache of another dtype than dst") {
    ValidCall call;
    call.src_cache.dtype = DType::f16;
    CHECK_REJECTED(call, "src_cache");
    CHECK_THROWS_WITH(call.call(), Contains("the dtype of dst"));
  }
  SECTION("auto: entry of 656") {
    ValidCall call;
    call.src_cache = TensorView::contiguous(call.cache_data.data(), DType::bf16, {3, 4, 656});
    CHECK_REJECTED(call, "src_cache: entry size");
  }
  SECTION("fp8: cache of two-byte elements") {
    ValidCall call;
    call.use_fp8();
    call.src_cache.dtype = DType::bf16;
    CHECK_REJECTED(call, "src_cache");
  }
  SECTION("fp8_ds_mla: entry of 576 bytes") {
    ValidCall call;
    call.use_ds_mla();
    call.src_cache = TensorView::contiguous(call.cache_data.data(), DType::u8, {3, 4, 576});
    CHECK_REJECTED(call, "656");
  }
  SECTION("fp8_ds_mla: a workspace that is not bf16") {
    const DType dtype = GENERATE(DType::f32, DType::f16);
    ValidCall call;
    call.use_ds_mla();
    call.dst.dtype = dtype;
    CHECK_REJECTED(call, "dst");
    CHECK_THROWS_WITH(call.call(), Contains("bf16"));
  }
  SECTION("fp8_ds_mla: an f8_e5m2 cache") {
    ValidCall call;
    call.use_ds_mla();
    call.src_cache.dtype = DType::f8_e5m2;
    CHECK_REJECTED(call, "src_cache");
  }
  SECTION("a workspace row of 575") {
    ValidCall call;
    call.dst = TensorView::contiguous(call.dst_data.data(), DType::bf16, {8, 575});
    CHECK_REJECTED(call, "dst");
  }
  SECTION("a workspace of ints") {
    ValidCall call;
    call.dst.dtype = DType::i32;
    CHECK_REJECTED(call, "dst");
  }
  SECTION("an unknown kv_cache_dtype") {
    ValidCall call;
    call.kv_cache_dtype = GENERATE("int8", "", "FP8", "nvfp4");
    CHECK_REJECTED(call, "kv_cache_dtype");
  }
}

TEST_CASE("gather_and_maybe_dequant_cache rejects an fp8 scale that is not one f32",
          "[gather_and_maybe_dequant_cache]") {
  ValidCall two;
  two.use_fp8();
  two.scale = TensorView::contiguous(two.scale_data.data(), DType::f32, {2});
  CHECK_REJECTED(two, "scale");
  ValidCall wrong_dtype;
  wrong_dtype.use_fp8();
  wrong_dtype.scale.dtype = DType::f16;
  CHECK_REJECTED(wrong_dtype, "scale");
  ValidCall ignored;  // "auto" and "fp8_ds_mla" never read it
  ignored.scale = TensorView{};
  CHECK_NOTHROW(ignored.call());
  ValidCall ignored_ds;
  ignored_ds.use_ds_mla();
  ignored_ds.scale = TensorView{};
  CHECK_NOTHROW(ignored_ds.call());
}

TEST_CASE("gather_and_maybe_dequant_cache rejects layouts the kernels cannot address",
          "[gather_and_maybe_dequant_cache]") {
  SECTION("cache entries not packed") {
    ValidCall call;
    call.src_cache =
        TensorView::strided(call.cache_data.data(), DType::bf16, {3, 2, 576}, {4 * 1152, 1152, 2});
    CHECK_REJECTED(call, "src_cache");
  }
  SECTION("workspace elements not packed") {
    ValidCall call;
    call.dst = TensorView::strided(call.dst_data.data(), DType::bf16, {4, 576}, {1152, 2});
    call.num_tokens = 4;
    CHECK_REJECTED(call, "dst");
  }
  SECTION("workspace rows that overlap") {
    ValidCall call;
    call.dst = TensorView::strided(call.dst_data.data(), DType::bf16, {8, 576}, {288, 1});
    CHECK_REJECTED(call, "dst: stride(0)");
  }
  SECTION("block_table columns not packed") {
    ValidCall call;
    call.block_table = TensorView::strided(call.table_data.data(), DType::i32, {2, 2}, {3, 2});
    CHECK_REJECTED(call, "block_table");
  }
  SECTION("token_to_seq not contiguous") {
    ValidCall call;
    call.token_to_seq = TensorView::strided(call.token_data.data(), DType::i32, {3}, {2});
    call.num_tokens = 3;
    CHECK_REJECTED(call, "token_to_seq");
  }
  SECTION("cu_seq_lens of two dimensions") {
    ValidCall call;
    call.cu_seq_lens = TensorView::contiguous(call.cu_data.data(), DType::i32, {1, 3});
    CHECK_REJECTED(call, "cu_seq_lens");
  }
}

TEST_CASE("gather_and_maybe_dequant_cache rejects a tensor on the wrong device",
          "[gather_and_maybe_dequant_cache]") {
  ValidCall call;
  call.block_table.device = Device::cuda;
  CHECK_REJECTED(call, "block_table");
  ValidCall gpu;
  gpu.impl = Impl::naive;  // every tensor is on the CPU
  CHECK_REJECTED(gpu, "src_cache");
}

TEST_CASE("gather_and_maybe_dequant_cache rejects null data pointers",
          "[gather_and_maybe_dequant_cache]") {
  ValidCall call;
  call.src_cache.data = nullptr;
  CHECK_REJECTED(call, "src_cache");
}

// ---------------------------------------------------------------------------------------------
// GPU: CPU reference vs naive vs optimized, byte for byte over whole poisoned workspaces.

struct ProblemSpec {
  DType dst_dtype = DType::bf16;
  std::string kv_cache_dtype = "auto";
  std::int64_t block_size = 64;
  std::string batch = "mixed";    // "one", "skewed", "mixed" (with empty sequences)
  bool seq_starts = false;        // non-block-aligned starts
  std::int64_t padding_rows = 0;  // rows past cu_seq_lens[batch] inside num_tokens
  bool misaligned = false;        // workspace and cache one element past an aligned address
  bool padded = false;            // entries 16 elements apart more than needed, rows 8 more
  std::uint64_t seed = 1;

  std::string describe() const {
    return std::string(dtype_name(dst_dtype)) + " ← \"" + kv_cache_dtype +
           "\", block_size=" + std::to_string(block_size) + ", batch " + batch +
           (seq_starts ? ", seq_starts" : "") + ", padding rows " + std::to_string(padding_rows) +
           (misaligned ? ", misaligned" : "") + (padded ? ", padded" : "");
  }
};

std::vector<std::int64_t> lengths_of(const ProblemSpec& spec, std::mt19937_64& rng) {
  if (spec.batch == "one") return {3000};
  std::vector<std::int64_t> lengths;
  if (spec.batch == "skewed") {  // many short requests and two long ones
    for (int r = 0; r < 200; ++r) lengths.push_back(1 + static_cast<std::int64_t>(rng() % 40));
    lengths.insert(lengths.begin() + 50, 4000);
    lengths.push_back(2500);
    return lengths;
  }
  for (int r = 0; r < 12; ++r) {
    lengths.push_back(r % 4 == 1 ? 0 : static_cast<std::int64_t>(rng() % 150));
  }
  return lengths;
}

struct HostProblem {
  Buffer cache, dst, table, cu, token_to_seq, starts, scale;
  GatherAndMaybeDequantCache::Args args;
};

HostProblem make_problem(const ProblemSpec& spec) {
  HostProblem p;
  std::mt19937_64 rng(spec.seed * 7919 + 3);
  const std::vector<std::int64_t> lengths = lengths_of(spec, rng);
  std::vector<std::int64_t> starts;
  if (spec.seq_starts) {
    for (std::size_t b = 0; b < lengths.size(); ++b) {
      starts.push_back(static_cast<std::int64_t>(rng() % (3 * spec.block_size)));
    }
  }
  const Batch batch(lengths, starts, spec.block_size, spec.seed, 5);
  const bool ds = spec.kv_cache_dtype == "fp8_ds_mla";
  const bool fp8 = spec.kv_cache_dtype.rfind("fp8", 0) == 0;
  const DType cache_dtype = fp8 ? DType::u8 : spec.dst_dtype;
  const std::int64_t entry = ds ? 656 : 576;
  const std::int64_t entry_stride = entry + (spec.padded ? 16 : 0);
  const std::int64_t shift = spec.misaligned ? 1 : 0;
  const std::int64_t B = spec.block_size;
  const std::int64_t cache_elements = batch.num_blocks * B * entry_stride + shift;
  p.cache =
      Buffer(Memory::host, static_cast<std::size_t>(cache_elements * dtype_size(cache_dtype)));
  // Random bytes: every fp8 code (NaN included) and, for fp8_ds_mla, random tile scales.
  test::fill_random(p.cache.data(), DType::u8, cache_elements * dtype_size(cache_dtype), spec.seed);
  p.args.src_cache =
      TensorView::strided(p.cache.data() + shift * dtype_size(cache_dtype), cache_dtype,
                          {batch.num_blocks, B, entry}, {B * entry_stride, entry_stride, 1});
  const std::int64_t rows = batch.total + spec.padding_rows + 3;
  const std::int64_t pitch = 576 + (spec.padded ? 8 : 0);
  const std::int64_t dst_elements = rows * pitch + shift;
  p.dst = poisoned(static_cast<std::size_t>(dst_elements * dtype_size(spec.dst_dtype)));
  p.args.dst = TensorView::strided(p.dst.data() + shift * dtype_size(spec.dst_dtype),
                                   spec.dst_dtype, {rows, 576}, {pitch, 1});
  p.table = int32s(batch.table);
  p.args.block_table =
      TensorView::contiguous(p.table.data(), DType::i32, {batch.batch(), batch.max_blocks});
  p.cu = int32s(batch.cu);
  p.args.cu_seq_lens = TensorView::contiguous(p.cu.data(), DType::i32, {batch.batch() + 1});
  std::vector<std::int32_t> token_to_seq = batch.token_to_seq;
  token_to_seq.resize(static_cast<std::size_t>(batch.total + spec.padding_rows), 0);
  p.token_to_seq = int32s(token_to_seq);
  p.args.token_to_seq =
      TensorView::contiguous(p.token_to_seq.data(), DType::i32, {batch.total + spec.padding_rows});
  p.args.num_tokens = batch.total + spec.padding_rows;
  std::vector<std::int32_t> starts32(starts.begin(), starts.end());
  p.starts = int32s(starts32);
  if (spec.seq_starts) {
    p.args.seq_starts = TensorView::contiguous(p.starts.data(), DType::i32, {batch.batch()});
  }
  p.scale = floats({0.0625f});
  p.args.scale = TensorView::contiguous(p.scale.data(), DType::f32, {1});
  p.args.kv_cache_dtype = spec.kv_cache_dtype;
  return p;
}

Buffer run_on_device(Impl impl, const HostProblem& p) {
  const Buffer cache = copy_to(Memory::device, p.cache);
  const Buffer dst = copy_to(Memory::device, p.dst);
  const Buffer table = copy_to(Memory::device, p.table);
  const Buffer cu = copy_to(Memory::device, p.cu);
  const Buffer token_to_seq = copy_to(Memory::device, p.token_to_seq);
  const Buffer starts = copy_to(Memory::device, p.starts);
  const Buffer scale = copy_to(Memory::device, p.scale);
  GatherAndMaybeDequantCache::Args args = p.args;
  args.src_cache = test::rebase(p.args.src_cache, p.cache.data(), cache.data(), Device::cuda);
  args.dst = test::rebase(p.args.dst, p.dst.data(), dst.data(), Device::cuda);
  args.block_table = test::rebase(p.args.block_table, p.table.data(), table.data(), Device::cuda);
  args.cu_seq_lens = test::rebase(p.args.cu_seq_lens, p.cu.data(), cu.data(), Device::cuda);
  args.token_to_seq =
      test::rebase(p.args.token_to_seq, p.token_to_seq.data(), token_to_seq.data(), Device::cuda);
  if (p.args.seq_starts.data != nullptr) {
    args.seq_starts = test::rebase(p.args.seq_starts, p.starts.data(), starts.data(), Device::cuda);
  }
  args.scale = test::rebase(p.args.scale, p.scale.data(), scale.data(), Device::cuda);
  run<GatherAndMaybeDequantCache>(impl, args);
  PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  Buffer result(Memory::host, p.dst.size());
  dst.download(result.data(), p.dst.size());
  return result;
}

void check_three_way(const ProblemSpec& spec) {
  INFO(spec.describe());
  const HostProblem problem = make_problem(spec);
  Buffer expected = copy_to(Memory::host, problem.dst);
  GatherAndMaybeDequantCache::Args args = problem.args;
  args.dst = test::rebase(args.dst, problem.dst.data(), expected.data(), Device::cpu);
  run<GatherAndMaybeDequantCache>(Impl::cpu, args);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    const Buffer actual = run_on_device(impl, problem);
    CHECK(same_bytes(actual, expected, problem.dst.size()));
  }
}

TEST_CASE("gather_and_maybe_dequant_cache GPU: dtypes × cache kinds",
          "[gather_and_maybe_dequant_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.dst_dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  spec.kv_cache_dtype = GENERATE("auto", "fp8", "fp8_e4m3", "fp8_e5m2");
  spec.seq_starts = GENERATE(false, true);
  check_three_way(spec);
}

TEST_CASE("gather_and_maybe_dequant_cache GPU: fp8_ds_mla layouts",
          "[gather_and_maybe_dequant_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.kv_cache_dtype = "fp8_ds_mla";
  spec.misaligned = GENERATE(false, true);  // the optimized version falls back to scalar code
  spec.padded = GENERATE(false, true);
  spec.block_size = GENERATE(1, 16, 64);
  spec.seq_starts = GENERATE(false, true);
  check_three_way(spec);
}

TEST_CASE("gather_and_maybe_dequant_cache GPU: batch shapes, block sizes, padding rows",
          "[gather_and_maybe_dequant_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.batch = GENERATE("one", "skewed", "mixed");
  spec.kv_cache_dtype = GENERATE("auto", "fp8_e4m3", "fp8_ds_mla");
  spec.block_size = GENERATE(1, 16, 64);
  spec.padding_rows = GENERATE(0, 5);
  spec.seed = static_cast<std::uint64_t>(spec.block_size + spec.padding_rows);
  check_three_way(spec);
}

TEST_CASE("gather_and_maybe_dequant_cache GPU: strided and misaligned workspaces and caches",
          "[gather_and_maybe_dequant_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.dst_dtype = GENERATE(DType::f32, DType::bf16);
  spec.kv_cache_dtype = GENERATE("auto", "fp8_e4m3");
  spec.misaligned = GENERATE(false, true);
  spec.padded = GENERATE(false, true);
  spec.block_size = 16;
  check_three_way(spec);
}

TEST_CASE(
    "gather_and_maybe_dequant_cache GPU: device-resident indices are checked, nothing "
    "written",
    "[gather_and_maybe_dequant_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.batch = "one";
  spec.kv_cache_dtype = GENERATE("auto", "fp8_ds_mla");
  HostProblem p = make_problem(spec);
  SECTION("a block id past the cache") {
    const auto* table = reinterpret_cast<std::int32_t*>(p.table.data());
    std::int64_t column = 0;  // a column sequence 0 needs
    while (table[column] < 0) ++column;
    reinterpret_cast<std::int32_t*>(p.table.data())[column] =
        static_cast<std::int32_t>(p.args.src_cache.size(0));
    for (Impl impl : {Impl::naive, Impl::optimized}) {
      INFO("implementation: " << impl_name(impl));
      CHECK_THROWS_WITH(run_on_device(impl, p), Contains("block_table[0, "));
    }
  }
  SECTION("token_to_seq naming another sequence") {
    reinterpret_cast<std::int32_t*>(p.token_to_seq.data())[0] = 3;
    for (Impl impl : {Impl::naive, Impl::optimized}) {
      INFO("implementation: " << impl_name(impl));
      CHECK_THROWS_WITH(run_on_device(impl, p), Contains("token_to_seq[0] = 3"));
    }
  }
}

}  // namespace
