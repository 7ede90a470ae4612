// Tests of cp_gather_and_upconvert_fp8_kv_cache (vLLM csrc/cache_kernels.cu @9803b00:
// cp_gather_and_upconvert_fp8_kv_cache).
//
// CPU part (runs everywhere): a round trip through the writer (concat_and_cache_mla's CPU
// reference with "fp8_ds_mla", then this op: each latent value is its code times its tile's
// scale, the RoPE bits are the input's), the same rows as gather_and_maybe_dequant_cache's
// fp8_ds_mla decode, an f8_e5m2 cache decoded as E5M2 (upstream: E4M3), rows between and past
// the requests untouched, zero requests a no-op; and one test per validation rule: the call
// throws InvalidArgument naming the argument, and no workspace byte changes.
//
// GPU part ([gpu]): the CPU reference, the naive and the optimized kernel fill whole poisoned
// workspaces from random caches, byte-identical over batch shapes (skewed included), gaps
// between requests, block sizes, both fp8 formats, strided and misaligned layouts.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "numerics.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/concat_and_cache_mla.h"
#include "pagedkv/ops/cp_gather_and_upconvert_fp8_kv_cache.h"
#include "pagedkv/ops/gather_and_maybe_dequant_cache.h"
#include "support.h"

namespace {

using namespace pagedkv;
using Catch::Matchers::Contains;
using test::floats;
using test::int64s;
using test::poisoned;
using test::same_bytes;

Buffer int32s(const std::vector<std::int32_t>& values) {
  Buffer buffer(Memory::host, std::max<std::size_t>(values.size(), 1) * 4);
  if (!values.empty()) std::memcpy(buffer.data(), values.data(), values.size() * 4);
  return buffer;
}

// Requests placed in a cache: request r has lengths[r] tokens from position 0 in distinct
// random blocks (-1 in columns it does not need), and its workspace rows start at starts[r]
// (the running sum plus `gap` rows between requests).
struct Requests {
  std::vector<std::int64_t> lengths;
  std::int64_t block_size, num_blocks = 0, max_blocks = 1, row_end = 0;
  std::vector<std::int32_t> table, seq_lens, starts;
  std::vector<std::int64_t> slots, rows;  // per gathered token: its slot and its workspace row

  Requests(std::vector<std::int64_t> lengths_, std::int64_t bs, std::uint64_t seed,
           std::int64_t gap = 0)
      : lengths(std::move(lengths_)), block_size(bs) {
    std::int64_t needed = 0;
    for (std::int64_t n : lengths) {
      needed += (n + bs - 1) / bs;
      max_blocks = std::max(max_blocks, (n + bs - 1) / bs);
    }
    num_blocks = needed + 2;
    std::vector<std::int32_t> pool(static_cast<std::size_t>(num_blocks));
    std::iota(pool.begin(), pool.end(), 0);
    std::mt19937_64 rng(seed);
    std::shuffle(pool.begin(), pool.end(), rng);
    table.assign(std::max<std::size_t>(lengths.size(), 1) * max_blocks, -1);
    std::size_t next = 0;
    std::int64_t row = 0;
    for (std::size_t r = 0; r < lengths.size(); ++r) {
      row += gap;
      starts.push_back(static_cast<std::int32_t>(row));
      seq_lens.push_back(static_cast<std::int32_t>(lengths[r]));
      for (std::int64_t c = 0; c < (lengths[r] + bs - 1) / bs; ++c) {
        table[r * max_blocks + c] = pool[next++];
      }
      for (std::int64_t p = 0; p < lengths[r]; ++p) {
        slots.push_back(table[r * max_blocks + p / bs] * bs + p % bs);
        rows.push_back(row + p);
      }
      row += lengths[r];
    }
    row_end = row;
  }
  std::int64_t batch() const { return static_cast<std::int64_t>(lengths.size()); }
};

struct HostUpconvert {
  Buffer cache, dst, table, seq_lens, starts;
  CpGatherAndUpconvertFp8KvCache::Args args;
  std::size_t dst_bytes = 0;
};

HostUpconvert make_upconvert(const Requests& req, DType cache_dtype = DType::u8,
                             std::int64_t extra_rows = 2) {
  HostUpconvert u;
  const std::int64_t cache_bytes = req.num_blocks * req.block_size * 656;
  u.cache = Buffer(Memory::host, static_cast<std::size_t>(std::max<std::int64_t>(cache_bytes, 1)));
  test::fill_random(u.cache.data(), DType::u8, cache_bytes, 31);
  const std::int64_t rows = req.row_end + extra_rows;
  u.dst_bytes = static_cast<std::size_t>(rows * 576 * 2);
  u.dst = poisoned(u.dst_bytes);
  u.table = int32s(req.table);
  u.seq_lens = int32s(req.seq_lens);
  u.starts = int32s(req.starts);
  u.args.src_cache =
      TensorView::contiguous(u.cache.data(), cache_dtype, {req.num_blocks, req.block_size, 656});
  u.args.dst = TensorView::contiguous(u.dst.data(), DType::bf16, {rows, 576});
  u.args.block_table =
      TensorView::contiguous(u.table.data(), DType::i32, {req.batch(), req.max_blocks});
  u.args.seq_lens = TensorView::contiguous(u.seq_lens.data(), DType::i32, {req.batch()});
  u.args.workspace_starts = TensorView::contiguous(u.starts.data(), DType::i32, {req.batch()});
  u.args.batch_size = req.batch();
  return u;
}

// The rows no request fills (gaps and the rows past row_end) still hold their poison.
bool only_request_rows_written(const HostUpconvert& u, const Requests& req) {
  std::vector<bool> written(u.dst_bytes / 1152, false);
  for (std::int64_t row : req.rows) written[static_cast<std::size_t>(row)] = true;
  const Buffer fresh = poisoned(u.dst_bytes);
  for (std::size_t row = 0; row < written.size(); ++row) {
    const bool untouched = same_bytes(u.dst.data() + row * 1152, fresh.data() + row * 1152, 1152);
    if (written[row] == untouched) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// CPU reference.

TEST_CASE("cp_gather_and_upconvert_fp8_kv_cache round trip: each tile decodes with its scale",
          "[cp_gather_and_upconvert_fp8_kv_cache]") {
  const std::int64_t gap = GENERATE(0, 3);
  CAPTURE(gap);
  const Requests req({6, 0, 9, 2}, 4, 41, gap);
  HostUpconvert u = make_upconvert(req);
  // Write the tokens with concat_and_cache_mla's CPU reference, as an engine would.
  const std::int64_t T = static_cast<std::int64_t>(req.slots.size());
  Buffer latent(Memory::host, static_cast<std::size_t>(T * 1024));
  Buffer rope(Memory::host, static_cast<std::size_t>(T * 128));
  test::fill_random(latent.data(), DType::bf16, T * 512, 42, 20.f);
  test::fill_random(rope.data(), DType::bf16, T * 64, 43, 2.f);
  Buffer slots = int64s(req.slots);
  Buffer unused_scale = floats({1.f});
  run<ConcatAndCacheMla>(
      Impl::cpu, {TensorView::contiguous(latent.data(), DType::bf16, {T, 512}),
                  TensorView::contiguous(rope.data(), DType::bf16, {T, 64}), u.args.src_cache,
                  TensorView::contiguous(slots.data(), DType::i64, {T}), "fp8_ds_mla",
                  TensorView::contiguous(unused_scale.data(), DType::f32, {1})});
  run<CpGatherAndUpconvertFp8KvCache>(Impl::cpu, u.args);
  int mismatches = 0;
  for (std::int64_t t = 0; t < T; ++t) {
    const std::uint8_t* entry = u.cache.data() + req.slots[t] * 656;
    const std::uint8_t* row = u.dst.data() + req.rows[t] * 1152;
    for (int i = 0; i < 512; ++i) {
      float tile_scale;
      std::memcpy(&tile_scale, entry + 512 + 4 * (i / 128), 4);
      const std::uint16_t want =
          numerics::float_to_bf16_bits(numerics::fp8_e4m3_to_float(entry[i]) * tile_scale);
      std::uint16_t got;
      std::memcpy(&got, row + 2 * i, 2);
      mismatches += got != want;
    }
    mismatches += !same_bytes(row + 1024, rope.data() + t * 128, 128);
  }
  CHECK(mismatches == 0);
  CHECK(only_request_rows_written(u, req));
}

TEST_CASE(
    "cp_gather_and_upconvert_fp8_kv_cache gives the rows gather_and_maybe_dequant_cache "
    "gives for fp8_ds_mla",
    "[cp_gather_and_upconvert_fp8_kv_cache]") {
  const Requests req({5, 7, 1}, 4, 44);
  HostUpconvert u = make_upconvert(req);
  run<CpGatherAndUpconvertFp8KvCache>(Impl::cpu, u.args);
  // The same cache read token-major.
  std::vector<std::int32_t> cu{0}, token_to_seq;
  for (std::int64_t r = 0; r < req.batch(); ++r) {
    cu.push_back(cu.back() + req.seq_lens[r]);
    token_to_seq.insert(token_to_seq.end(), req.seq_lens[r], static_cast<std::int32_t>(r));
  }
  Buffer cu_buffer = int32s(cu), tokens = int32s(token_to_seq);
  Buffer other = poisoned(u.dst_bytes);
  Buffer scale = floats({1.f});
  run<GatherAndMaybeDequantCache>(
      Impl::cpu,
      {u.args.src_cache,
       TensorView::contiguous(other.data(), DType::bf16, {u.args.dst.size(0), 576}),
       u.args.block_table, TensorView::contiguous(cu_buffer.data(), DType::i32, {4}),
       TensorView::contiguous(tokens.data(), DType::i32, {cu.back()}), cu.back(), "fp8_ds_mla",
       TensorView::contiguous(scale.data(), DType::f32, {1}), TensorView{}});
  CHECK(same_bytes(u.dst, other, u.dst_bytes));
}

TEST_CASE("cp_gather_and_upconvert_fp8_kv_cache decodes an f8_e5m2 cache as E5M2",
          "[cp_gather_and_upconvert_fp8_kv_cache]") {
  // Upstream decodes E4M3 whatever the dtype (quirk): pagedkv follows the tensor's dtype.
  const Requests req({3}, 4, 45);
  HostUpconvert u = make_upconvert(req, DType::f8_e5m2);
  run<CpGatherAndUpconvertFp8KvCache>(Impl::cpu, u.args);
  int mismatches = 0;
  for (std::size_t t = 0; t < req.slots.size(); ++t) {
    const std::uint8_t* entry = u.cache.data() + req.slots[t] * 656;
    for (int i = 0; i < 512; ++i) {
      float tile_scale;
      std::memcpy(&tile_scale, entry + 512 + 4 * (i / 128), 4);
      const std::uint16_t want =
          numerics::float_to_bf16_bits(numerics::fp8_e5m2_to_float(entry[i]) * tile_scale);
      std::uint16_t got;
      std::memcpy(&got, u.dst.data() + req.rows[t] * 1152 + 2 * i, 2);
      mismatches += got != want;
    }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("cp_gather_and_upconvert_fp8_kv_cache: zero requests and empty requests change nothing",
          "[cp_gather_and_upconvert_fp8_kv_cache]") {
  SECTION("zero requests") {
    const Requests req({}, 4, 46);
    HostUpconvert u = make_upconvert(req);
    CHECK_NOTHROW(run<CpGatherAndUpconvertFp8KvCache>(Impl::cpu, u.args));
    CHECK(only_request_rows_written(u, req));
  }
  SECTION("every request empty") {
    const Requests req({0, 0}, 4, 47, 1);
    HostUpconvert u = make_upconvert(req);
    CHECK_NOTHROW(run<CpGatherAndUpconvertFp8KvCache>(Impl::cpu, u.args));
    CHECK(only_request_rows_written(u, req));
  }
}

// ---------------------------------------------------------------------------------------------
// Rules.

struct ValidCall {
  // Request 0: 3 tokens (column 0) at rows 0-2; request 1: 5 tokens (columns 0, 1) at rows 4-8.
  static constexpr int kRows = 10, kBlocks = 4, kBlockSize = 4;
  static constexpr int kDstBytes = kRows * 576 * 2;
  Buffer cache_data{Memory::host, kBlocks* kBlockSize * 656};
  Buffer dst_data = poisoned(kDstBytes);
  Buffer table_data = int32s({3, -1, 0, 2});
  Buffer lens_data = int32s({3, 5});
  Buffer lens64_data = int64s({3, 5});
  Buffer starts_data = int32s({0, 4});
  TensorView src_cache =
      TensorView::contiguous(cache_data.data(), DType::u8, {kBlocks, kBlockSize, 656});
  TensorView dst = TensorView::contiguous(dst_data.data(), DType::bf16, {kRows, 576});
  TensorView block_table = TensorView::contiguous(table_data.data(), DType::i32, {2, 2});
  TensorView seq_lens = TensorView::contiguous(lens_data.data(), DType::i32, {2});
  TensorView workspace_starts = TensorView::contiguous(starts_data.data(), DType::i32, {2});
  std::int64_t batch_size = 2;
  Impl impl = Impl::cpu;

  ValidCall() { test::fill_random(cache_data.data(), DType::u8, kBlocks * kBlockSize * 656, 5); }

  void call() const {
    run<CpGatherAndUpconvertFp8KvCache>(
        impl, {src_cache, dst, block_table, seq_lens, workspace_starts, batch_size});
  }
  bool nothing_written() const {
    const Buffer fresh = poisoned(kDstBytes);
    return same_bytes(dst_data, fresh, kDstBytes);
  }
};

TEST_CASE("cp_gather_and_upconvert_fp8_kv_cache: the valid call used by the rule tests passes",
          "[cp_gather_and_upconvert_fp8_kv_cache]") {
  ValidCall call;
  CHECK_NOTHROW(call.call());
  CHECK_FALSE(call.nothing_written());
}

TEST_CASE("cp_gather_and_upconvert_fp8_kv_cache rejects a block id outside the cache",
          "[cp_gather_and_upconvert_fp8_kv_cache]") {
  const std::int32_t bad = GENERATE(4, -1);
  ValidCall call;
  reinterpret_cast<std::int32_t*>(call.table_data.data())[3] = bad;
  CHECK_REJECTED(call, "block_table[1, 1] = " + std::to_string(bad));
}

TEST_CASE("cp_gather_and_upconvert_fp8_kv_cache rejects a request past block_table's columns",
          "[cp_gather_and_upconvert_fp8_kv_cache]") {
  ValidCall too_long;  // request 1: positions 0-5 need columns 0 and 1, the view has one
  reinterpret_cast<std::int32_t*>(too_long.lens_data.data())[1] = 6;
  too_long.block_table = TensorView::contiguous(too_long.table_data.data(), DType::i32, {2, 1});
  too_long.block_table.strides[0] = 2;
  CHECK_REJECTED(too_long, "block_table: sequence 1 needs column 1");
}

TEST_CASE(
    "cp_gather_and_upconvert_fp8_kv_cache rejects requests whose rows overlap, come out of "
    "order or run past dst",
    "[cp_gather_and_upconvert_fp8_kv_cache]") {
  SECTION("overlap") {
    ValidCall call;
    reinterpret_cast<std::int32_t*>(call.starts_data.data())[1] = 2;
    CHECK_REJECTED(call, "workspace_starts[1] = 2");
  }
  SECTION("out of order") {
    ValidCall call;
    reinterpret_cast<std::int32_t*>(call.starts_data.data())[0] = 6;  // rows 6-8, then 0-4
    reinterpret_cast<std::int32_t*>(call.starts_data.data())[1] = 0;
    CHECK_REJECTED(call, "workspace_starts[1]");
  }
  SECTION("past dst") {
    ValidCall call;
    reinterpret_cast<std::int32_t*>(call.starts_data.data())[1] = 6;
    CHECK_REJECTED(call, "dst.size(0) = 10");
  }
  SECTION("negative start") {
    ValidCall call;
    reinterpret_cast<std::int32_t*>(call.starts_data.data())[0] = -1;
    CHECK_REJECTED(call, "workspace_starts[0] = -1");
  }
  SECTION("negative length") {
    ValidCall call;
    reinterpret_cast<std::int32_t*>(call.lens_data.data())[0] = -2;
    CHECK_REJECTED(call, "seq_lens[0] = -2");
  }
}

TEST_CASE("cp_gather_and_upconvert_fp8_kv_cache rejects shapes, dtypes and layouts that do not fit",
          "[cp_gather_and_upconvert_fp8_kv_cache]") {
  SECTION("an entry of 576 bytes") {
    ValidCall call;
    call.src_cache = TensorView::contiguous(call.cache_data.data(), DType::u8, {4, 4, 576});
    CHECK_REJECTED(call, "src_cache: entry size");
  }
  SECTION("a cache of two-byte elements") {
    ValidCall call;
    call.src_cache.dtype = DType::bf16;
    CHECK_REJECTED(call, "src_cache");
  }
  SECTION("a workspace that is not bf16") {
    ValidCall call;
    call.dst.dtype = DType::f16;
    CHECK_REJECTED(call, "dst");
  }
  SECTION("a workspace row of 512") {
    ValidCall call;
    call.dst = TensorView::contiguous(call.dst_data.data(), DType::bf16, {10, 512});
    CHECK_REJECTED(call, "dst");
  }
  SECTION("i64 seq_lens") {
    ValidCall call;
    call.seq_lens = TensorView::contiguous(call.lens64_data.data(), DType::i64, {2});
    CHECK_REJECTED(call, "seq_lens");
  }
  SECTION("too few workspace_starts") {
    ValidCall call;
    call.workspace_starts = TensorView::contiguous(call.starts_data.data(), DType::i32, {1});
    CHECK_REJECTED(call, "workspace_starts");
  }
  SECTION("a negative batch_size") {
    ValidCall call;
    call.batch_size = -1;
    CHECK_REJECTED(call, "batch_size");
  }
  SECTION("entries not packed") {
    ValidCall call;
    call.src_cache =
        TensorView::strided(call.cache_data.data(), DType::u8, {2, 4, 656}, {4 * 1312, 1312, 2});
    CHECK_REJECTED(call, "src_cache");
  }
  SECTION("overlapping workspace rows") {
    ValidCall call;
    call.dst = TensorView::strided(call.dst_data.data(), DType::bf16, {10, 576}, {100, 1});
    CHECK_REJECTED(call, "dst: stride(0)");
  }
  SECTION("a tensor on the wrong device") {
    ValidCall call;
    call.seq_lens.device = Device::cuda;
    CHECK_REJECTED(call, "seq_lens");
  }
}

// ---------------------------------------------------------------------------------------------
// GPU: CPU reference vs naive vs optimized, byte for byte over whole poisoned workspaces.

struct ProblemSpec {
  std::string batch = "mixed";  // "one", "skewed", "mixed" (with empty requests)
  std::int64_t block_size = 64;
  std::int64_t gap = 0;  // rows between requests
  DType cache_dtype = DType::u8;
  bool misaligned = false;  // workspace and cache one element past an aligned address
  bool padded = false;      // entries 16 bytes apart more than needed, rows 8 elements more
  std::uint64_t seed = 1;

  std::string describe() const {
    return "batch " + batch + ", block_size=" + std::to_string(block_size) + ", gap " +
           std::to_string(gap) + ", " + std::string(dtype_name(cache_dtype)) +
           (misaligned ? ", misaligned" : "") + (padded ? ", padded" : "");
  }
};

struct HostProblem {
  Buffer cache, dst, table, seq_lens, starts;
  CpGatherAndUpconvertFp8KvCache::Args args;
};

HostProblem make_problem(const ProblemSpec& spec) {
  std::mt19937_64 rng(spec.seed * 131 + 7);
  std::vector<std::int64_t> lengths;
  if (spec.batch == "one") {
    lengths = {3000};
  } else if (spec.batch == "skewed") {
    for (int r = 0; r < 200; ++r) lengths.push_back(1 + static_cast<std::int64_t>(rng() % 40));
    lengths.insert(lengths.begin() + 70, 4000);
    lengths.push_back(2500);
  } else {
    for (int r = 0; r < 12; ++r)
      lengths.push_back(r % 4 == 1 ? 0 : static_cast<std::int64_t>(rng() % 150));
  }
  const Requests req(lengths, spec.block_size, spec.seed, spec.gap);
  HostProblem p;
  const std::int64_t shift = spec.misaligned ? 1 : 0;
  const std::int64_t entry_stride = 656 + (spec.padded ? 16 : 0);
  const std::int64_t B = spec.block_size;
  const std::int64_t cache_bytes = req.num_blocks * B * entry_stride + shift;
  p.cache = Buffer(Memory::host, static_cast<std::size_t>(cache_bytes));
  test::fill_random(p.cache.data(), DType::u8, cache_bytes, spec.seed);
  p.args.src_cache =
      TensorView::strided(p.cache.data() + shift, spec.cache_dtype, {req.num_blocks, B, 656},
                          {B * entry_stride, entry_stride, 1});
  const std::int64_t rows = req.row_end + 3;
  const std::int64_t pitch = 576 + (spec.padded ? 8 : 0);
  p.dst = poisoned(static_cast<std::size_t>((rows * pitch + shift) * 2));
  p.args.dst = TensorView::strided(p.dst.data() + 2 * shift, DType::bf16, {rows, 576}, {pitch, 1});
  p.table = int32s(req.table);
  p.args.block_table =
      TensorView::contiguous(p.table.data(), DType::i32, {req.batch(), req.max_blocks});
  p.seq_lens = int32s(req.seq_lens);
  p.args.seq_lens = TensorView::contiguous(p.seq_lens.data(), DType::i32, {req.batch()});
  p.starts = int32s(req.starts);
  p.args.workspace_starts = TensorView::contiguous(p.starts.data(), DType::i32, {req.batch()});
  p.args.batch_size = req.batch();
  return p;
}

Buffer run_on_device(Impl impl, const HostProblem& p) {
  const Buffer cache = copy_to(Memory::device, p.cache);
  const Buffer dst = copy_to(Memory::device, p.dst);
  const Buffer table = copy_to(Memory::device, p.table);
  const Buffer seq_lens = copy_to(Memory::device, p.seq_lens);
  const Buffer starts = copy_to(Memory::device, p.starts);
  CpGatherAndUpconvertFp8KvCache::Args args = p.args;
  args.src_cache = test::rebase(p.args.src_cache, p.cache.data(), cache.data(), Device::cuda);
  args.dst = test::rebase(p.args.dst, p.dst.data(), dst.data(), Device::cuda);
  args.block_table = test::rebase(p.args.block_table, p.table.data(), table.data(), Device::cuda);
  args.seq_lens = test::rebase(p.args.seq_lens, p.seq_lens.data(), seq_lens.data(), Device::cuda);
  args.workspace_starts =
      test::rebase(p.args.workspace_starts, p.starts.data(), starts.data(), Device::cuda);
  run<CpGatherAndUpconvertFp8KvCache>(impl, args);
  PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  Buffer result(Memory::host, p.dst.size());
  dst.download(result.data(), p.dst.size());
  return result;
}

void check_three_way(const ProblemSpec& spec) {
  INFO(spec.describe());
  const HostProblem problem = make_problem(spec);
  Buffer expected = copy_to(Memory::host, problem.dst);
  CpGatherAndUpconvertFp8KvCache::Args args = problem.args;
  args.dst = test::rebase(args.dst, problem.dst.data(), expected.data(), Device::cpu);
  run<CpGatherAndUpconvertFp8KvCache>(Impl::cpu, args);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    const Buffer actual = run_on_device(impl, problem);
    CHECK(same_bytes(actual, expected, problem.dst.size()));
  }
}

TEST_CASE("cp_gather_and_upconvert_fp8_kv_cache GPU: batch shapes × block sizes × gaps",
          "[cp_gather_and_upconvert_fp8_kv_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.batch = GENERATE("one", "skewed", "mixed");
  spec.block_size = GENERATE(1, 16, 64);
  spec.gap = GENERATE(0, 3);
  spec.seed = static_cast<std::uint64_t>(spec.block_size + spec.gap);
  check_three_way(spec);
}

TEST_CASE("cp_gather_and_upconvert_fp8_kv_cache GPU: fp8 formats and layouts",
          "[cp_gather_and_upconvert_fp8_kv_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.cache_dtype = GENERATE(DType::u8, DType::f8_e4m3, DType::f8_e5m2);
  spec.misaligned = GENERATE(false, true);  // the optimized version falls back to the naive one
  spec.padded = GENERATE(false, true);
  spec.block_size = 16;
  check_three_way(spec);
}

TEST_CASE("cp_gather_and_upconvert_fp8_kv_cache GPU: device-resident indices are checked",
          "[cp_gather_and_upconvert_fp8_kv_cache][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.batch = "one";
  HostProblem p = make_problem(spec);
  reinterpret_cast<std::int32_t*>(p.table.data())[0] =
      static_cast<std::int32_t>(p.args.src_cache.size(0));
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    CHECK_THROWS_WITH(run_on_device(impl, p), Contains("block_table[0, 0]"));
  }
}

}  // namespace
