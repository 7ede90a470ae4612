// combine_topk_swa_indices: the spec's worked example (window 8, ratio 4, topk 2, M 20, N 5)
// worked by hand, a second request and a rebased query_start_loc, the invariants on random
// batches (each row's top-k part holds workspace rows of its own request's compressed region,
// its window part consecutive rows of its SWA region ending at its own position, the length is
// kl + sl, the rest -1), windows at the start of a sequence, short top-k lists and -1 padding,
// compress ratios 1, 4 and 128, rows no request owns, the hardened rule, bad input and zero
// tokens on the CPU; on a GPU, the naive and optimized kernels against the CPU reference.
#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "pagedkv/error.h"
#include "pagedkv/ops/combine_topk_swa_indices.h"
#include "pagedkv/registry.h"
#include "sparse_index_support.h"

namespace {

using namespace pagedkv;
using Catch::Matchers::Contains;
using Op = CombineTopkSwaIndices;
using test::HostTensors;

// One batch, described by its requests; the call's tensors are built from it.
struct Batch {
  std::vector<std::int32_t> query_lens, seq_lens, gather_lens;
  std::int32_t base = 0;  // query_start_loc[0]
  std::int64_t window = 8, ratio = 4, topk = 2, M = 20, N = 5, Kw = 2, extra_rows = 0;
  std::int64_t width = 128, pitch = -1;
  std::vector<std::int32_t> topk_values;  // [Tc, Kw]
  std::int64_t tokens() const {
    std::int64_t t = extra_rows;
    for (std::int32_t q : query_lens) t += q;
    return t;
  }
};

struct Call {
  HostTensors tensors;
  Op::Args args;
  Batch batch;

  explicit Call(const Batch& b) : batch(b) {
    const std::int64_t Tc = b.tokens();
    std::vector<std::int32_t> qsl{b.base};
    for (std::int32_t q : b.query_lens) qsl.push_back(qsl.back() + q);
    args.topk_indices = tensors.matrix(Tc, b.Kw, b.topk_values);
    args.query_start_loc = tensors.vector(qsl);
    args.seq_lens = tensors.vector(b.seq_lens);
    args.gather_lens = tensors.vector(b.gather_lens);
    args.window_size = b.window;
    args.compress_ratio = b.ratio;
    args.topk = b.topk;
    args.M = b.M;
    args.N = b.N;
    args.combined_indices = tensors.output(Tc, b.width, b.pitch);
    args.combined_lens = tensors.output_vector(Tc);
  }
  void call() { run<Op>(Impl::cpu, args); }
  std::vector<std::int32_t> row(std::int64_t t) const {
    return test::row_of(args.combined_indices, t);
  }
  std::vector<std::int32_t> lens() const { return test::elements(args.combined_lens); }
  bool nothing_written() const {
    for (const auto& bytes : test::written_bytes<Op>(args))
      for (std::uint8_t b : bytes)
        if (b != 0xA5 && b != 0x5A) return false;
    return true;
  }
};

// The spec's example: one request of seq_len 9 with 6 queries (positions 3 .. 8), gather_len 9.
Batch spec_example() {
  Batch b;
  b.query_lens = {6};
  b.seq_lens = {9};
  b.gather_lens = {9};
  // Position p may use min((p + 1) / 4, 2) compressed tokens: 1, 1, 1, 1, 2, 2.
  b.topk_values = {0, -1, 0, -1, 0, -1, 0, -1, 1, 0, 0, 1};
  return b;
}

std::vector<std::int32_t> with_tail(std::vector<std::int32_t> head, std::size_t width) {
  head.resize(width, -1);
  return head;
}

TEST_CASE("combine_topk_swa_indices CPU: the spec's worked example",
          "[combine_topk_swa_indices][cpu]") {
  Call c(spec_example());
  c.call();
  CHECK(c.lens() == std::vector<std::int32_t>{5, 6, 7, 8, 10, 10});
  // Position 3: compressed token 0, then SWA positions 0 .. 3 at rows N + 0 .. N + 3.
  CHECK(c.row(0) == with_tail({0, 5, 6, 7, 8}, 128));
  // Position 4: window 0 .. 4.
  CHECK(c.row(1) == with_tail({0, 5, 6, 7, 8, 9}, 128));
  // Position 7: two compressed tokens (8 / 4), window 0 .. 7.
  CHECK(c.row(4) == with_tail({1, 0, 5, 6, 7, 8, 9, 10, 11, 12}, 128));
  // Position 8: window 1 .. 8 at rows N + 1 .. N + 8.
  CHECK(c.row(5) == with_tail({0, 1, 6, 7, 8, 9, 10, 11, 12, 13}, 128));
}

TEST_CASE("combine_topk_swa_indices CPU: a second request, a rebased query_start_loc, rows no "
          "request owns",
          "[combine_topk_swa_indices][cpu]") {
  Batch b;
  b.base = 100;  // global offsets: the op subtracts query_start_loc[0]
  b.query_lens = {1, 2};
  b.seq_lens = {4, 12};  // request 0: position 3; request 1: positions 10, 11
  b.gather_lens = {4, 9};  // request 1: 2 queries + min(10, 7) = 9 gathered, from position 3
  b.extra_rows = 1;
  b.topk_values = {0, 5, 2, 1, 2, -1, 7, 7};
  Call c(b);
  c.call();
  CHECK(c.lens() == std::vector<std::int32_t>{1 + 4, 2 + 8, 2 + 8, 0});
  // Request 0, position 3: kl = 1 (entry 0), window 0 .. 3 from gather start 0.
  CHECK(c.row(0) == with_tail({0, 5, 6, 7, 8}, 128));
  // Request 1 (rows from M = 20), position 10: kl = min(11 / 4, 2) = 2: entries 2, 1 -> 22, 21;
  // window 3 .. 10 -> SWA rows 0 .. 7 -> 20 + 5 + 0 .. 7.
  CHECK(c.row(1) == with_tail({22, 21, 25, 26, 27, 28, 29, 30, 31, 32}, 128));
  // Position 11: entries 2, -1: the -1 stays -1 but is counted; window 4 .. 11 -> rows 1 .. 8.
  CHECK(c.row(2) == with_tail({22, -1, 26, 27, 28, 29, 30, 31, 32, 33}, 128));
  CHECK(c.row(3) == with_tail({}, 128));
}

TEST_CASE("combine_topk_swa_indices CPU: compress ratio 1 (SWA only, topk 0) and 128",
          "[combine_topk_swa_indices][cpu]") {
  SECTION("ratio 1, topk 0: only the window") {
    Batch b;
    b.ratio = 1;
    b.topk = 0;
    b.query_lens = {3};
    b.seq_lens = {3};  // positions 0, 1, 2: windows at the start of the sequence
    b.gather_lens = {3};
    b.N = 0;
    b.M = 3;
    b.topk_values = std::vector<std::int32_t>(6, 99);  // never read
    Call c(b);
    c.call();
    CHECK(c.lens() == std::vector<std::int32_t>{1, 2, 3});
    CHECK(c.row(0) == with_tail({0}, 128));
    CHECK(c.row(2) == with_tail({0, 1, 2}, 128));
  }
  SECTION("ratio 128: a query at position 255 has 2 compressed tokens") {
    Batch b;
    b.ratio = 128;
    b.topk = 4;
    b.Kw = 4;
    b.window = 4;
    b.query_lens = {1};
    b.seq_lens = {256};
    b.gather_lens = {4};
    b.N = 2;
    b.M = 6;
    b.width = 128;
    b.topk_values = {1, 0, -1, -1};
    Call c(b);
    c.call();
    CHECK(c.lens() == std::vector<std::int32_t>{2 + 4});
    CHECK(c.row(0) == with_tail({1, 0, 2, 3, 4, 5}, 128));
  }
}

// A random valid batch: requests with random prefixes (some 0: windows at the start), random
// query lengths, the smallest gather the window needs (or more), top-k lists of causal
// indices, some short, some with -1 holes.
Batch random_batch(std::uint64_t seed, std::int64_t ratio, std::int64_t topk, std::int64_t window,
                   std::int64_t requests) {
  std::mt19937_64 rng(seed);
  Batch b;
  b.ratio = ratio;
  b.topk = topk;
  b.Kw = std::max<std::int64_t>(topk, 1);
  b.window = window;
  b.base = static_cast<std::int32_t>(rng() % 50);
  b.extra_rows = static_cast<std::int64_t>(rng() % 3);
  std::int64_t N = 0, longest_gather = 0;
  for (std::int64_t r = 0; r < requests; ++r) {
    const std::int64_t q = static_cast<std::int64_t>(rng() % 40);
    const std::int64_t prefix = rng() % 3 == 0 ? 0 : static_cast<std::int64_t>(rng() % 700);
    const std::int64_t L = prefix + q;
    const std::int64_t gather =
        std::min<std::int64_t>(L, q + std::min(prefix, window - 1) + static_cast<std::int64_t>(rng() % 3));
    b.query_lens.push_back(static_cast<std::int32_t>(q));
    b.seq_lens.push_back(static_cast<std::int32_t>(L));
    b.gather_lens.push_back(static_cast<std::int32_t>(gather));
    N = std::max(N, L / ratio);
    longest_gather = std::max(longest_gather, gather);
  }
  b.N = N;
  b.M = N + longest_gather + static_cast<std::int64_t>(rng() % 3);
  b.width = (topk + window + 127) / 128 * 128;
  for (std::int64_t r = 0; r < requests; ++r) {
    const std::int64_t L = b.seq_lens[r], q = b.query_lens[r];
    for (std::int64_t i = 0; i < q; ++i) {
      const std::int64_t pos = L - q + i;
      const std::int64_t kl = std::min((pos + 1) / ratio, topk);
      for (std::int64_t o = 0; o < b.Kw; ++o) {
        const bool used = o < kl && rng() % 9 != 0;
        b.topk_values.push_back(used ? static_cast<std::int32_t>(rng() % ((pos + 1) / ratio)) : -1);
      }
    }
  }
  for (std::int64_t e = 0; e < b.extra_rows * b.Kw; ++e) b.topk_values.push_back(-1);
  return b;
}

TEST_CASE("combine_topk_swa_indices CPU: invariants on random batches",
          "[combine_topk_swa_indices][cpu]") {
  const std::int64_t ratio = GENERATE(1, 4, 128);
  const std::uint64_t seed = GENERATE(1, 2, 3);
  const std::int64_t drawn_topk = GENERATE(as<std::int64_t>{}, 3, 16);
  const std::int64_t topk = ratio == 1 ? 0 : drawn_topk;  // SWA only has no top-k part
  const Batch b = random_batch(seed, ratio, topk, 8, 5);
  Call c(b);
  c.call();
  const std::vector<std::int32_t> lens = c.lens();
  std::int64_t t = 0;
  for (std::size_t r = 0; r < b.query_lens.size(); ++r) {
    const std::int64_t L = b.seq_lens[r], q = b.query_lens[r];
    const std::int64_t gather_start = L - b.gather_lens[r];
    for (std::int64_t i = 0; i < q; ++i, ++t) {
      CAPTURE(r, i);
      const std::int64_t pos = L - q + i;
      const std::int64_t kl = std::min((pos + 1) / ratio, topk);
      const std::int64_t sl = std::min<std::int64_t>(pos + 1, b.window);
      CHECK(lens[t] == kl + sl);
      const std::vector<std::int32_t> row = c.row(t);
      const std::int64_t first_row = b.M * static_cast<std::int64_t>(r);
      for (std::int64_t o = 0; o < kl; ++o) {  // the request's own compressed rows, or -1
        const std::int32_t v = b.topk_values[t * b.Kw + o];
        CHECK(row[o] == (v >= 0 ? first_row + v : -1));
        if (row[o] >= 0) CHECK(row[o] < first_row + std::min(b.N, L / ratio));
      }
      for (std::int64_t k = 0; k < sl; ++k) {  // consecutive SWA rows ending at pos
        const std::int64_t position = pos - sl + 1 + k;
        CHECK(row[kl + k] == first_row + b.N + (position - gather_start));
        CHECK(row[kl + k] < first_row + b.M);
      }
      for (std::int64_t o = kl + sl; o < b.width; ++o) CHECK(row[o] == -1);
    }
  }
  for (; t < b.tokens(); ++t) {
    CHECK(lens[t] == 0);
    CHECK(c.row(t) == std::vector<std::int32_t>(static_cast<std::size_t>(b.width), -1));
  }
}

TEST_CASE("combine_topk_swa_indices CPU: the hardened rule (entries past the request's "
          "compressed tokens, a window outside the SWA region become -1)",
          "[combine_topk_swa_indices][cpu]") {
  const Batch good = spec_example();
  Call valid(good);
  const Op::Plan plan = Op::validate(valid.args, Impl::cpu);
  Batch bad = good;
  bad.topk_values[0] = 2;   // position 3: 2 >= min(N, 9 / 4) = 2
  bad.topk_values[10] = 7;  // position 8: 7 >= 2
  bad.gather_lens = {7};    // rows for positions 2 .. 8 only: positions 0, 1 fall outside
  Call c(bad);
  Op::cpu(plan, c.args);
  CHECK(c.lens() == std::vector<std::int32_t>{5, 6, 7, 8, 10, 10});
  CHECK(c.row(0) == with_tail({-1, -1, -1, 5, 6}, 128));
  CHECK(c.row(5) == with_tail({-1, 1, -1, 5, 6, 7, 8, 9, 10, 11}, 128));
}

TEST_CASE("combine_topk_swa_indices rejects bad values, nothing written",
          "[combine_topk_swa_indices][cpu]") {
  Batch b = spec_example();
  SECTION("a top-k entry beyond the request's compressed tokens") {
    b.topk_values[10] = 2;  // position 8: below min(5, 9 / 4) = 2 expected
    Call c(b);
    CHECK_REJECTED(c, "topk_indices[5, 0] = 2");
  }
  SECTION("a gather too short for the first query's window") {
    b.gather_lens = {8};
    Call c(b);
    CHECK_REJECTED(c, "gather_lens[0] = 8");
  }
  SECTION("SWA rows that run past M") {
    b.M = 13;
    Call c(b);
    CHECK_REJECTED(c, "N + gather_len = 14");
  }
  SECTION("a sequence shorter than its queries") {
    b.seq_lens = {5};
    b.gather_lens = {5};
    Call c(b);
    CHECK_REJECTED(c, "seq_lens[0] = 5");
  }
  SECTION("more query tokens than rows") {
    b.query_lens = {7};
    b.extra_rows = -1;
    b.topk_values.resize(12);
    Call c(b);
    CHECK_REJECTED(c, "query_start_loc");
  }
}

TEST_CASE("combine_topk_swa_indices rejects bad arguments, nothing written",
          "[combine_topk_swa_indices][cpu]") {
  Call c(spec_example());
  SECTION("window_size not a power of two, or out of range") {
    c.args.window_size = GENERATE(0, 6, 8192);
    CHECK_REJECTED(c, "window_size");
  }
  SECTION("compress_ratio other than 1, 4, 128") {
    c.args.compress_ratio = GENERATE(0, 2, 64);
    CHECK_REJECTED(c, "compress_ratio");
  }
  SECTION("topk out of range") {
    c.args.topk = GENERATE(-1, 65537);
    CHECK_REJECTED(c, "topk");
  }
  SECTION("N past M") {
    c.args.N = 21;
    CHECK_REJECTED(c, "N");
  }
  SECTION("M times the requests beyond i32") {
    c.args.M = 1ll << 31;
    CHECK_REJECTED(c, "M");
  }
  SECTION("an output narrower than topk + window_size") {
    c.args.combined_indices.shape[1] = 9;
    CHECK_REJECTED(c, "combined_indices");
  }
  SECTION("an i64 query_start_loc") {
    c.args.query_start_loc.dtype = DType::i64;
    CHECK_REJECTED(c, "query_start_loc");
  }
  SECTION("i64 top-k indices") {
    c.args.topk_indices.dtype = DType::i64;
    CHECK_REJECTED(c, "topk_indices");
  }
  SECTION("i64 lengths") {
    c.args.combined_lens.dtype = DType::i64;
    c.args.combined_lens.shape[0] = 3;  // the same bytes
    CHECK_REJECTED(c, "combined_lens");
  }
  SECTION("gather_lens of another size") {
    c.args.gather_lens.shape[0] = 0;
    CHECK_REJECTED(c, "gather_lens");
  }
  SECTION("fewer top-k rows than tokens") {
    c.args.topk_indices.shape[0] = 5;
    CHECK_REJECTED(c, "topk_indices");
  }
}

TEST_CASE("combine_topk_swa_indices with zero tokens is a no-op", "[combine_topk_swa_indices][cpu]") {
  Batch b;
  b.query_lens = {0, 0};
  b.seq_lens = {5, 0};
  b.gather_lens = {0, 0};
  Call c(b);
  CHECK_NOTHROW(c.call());
  CHECK(c.nothing_written());
}

TEST_CASE("combine_topk_swa_indices: the W4 workload has the sizes of the design and its byte "
          "model",
          "[combine_topk_swa_indices][cpu]") {
  const OpEntry& op = find_op("combine_topk_swa_indices");
  std::set<std::int64_t> sizes;
  for (const WorkloadPoint& p : op.points("W4", false)) {
    sizes.insert(p.size);
    CHECK(p.variant == "prefill");
  }
  CHECK(sizes == std::set<std::int64_t>{1024, 8192});
  // 64 query tokens of one request: rows of 2176 columns and a length written per token, at
  // most topk entries read per token, 12 bytes per request and the extra query_start_loc word.
  const auto point = op.points("W4", true).at(0);
  REQUIRE(point.size == 64);
  const auto c = op.make_case(point, 7);
  const std::int64_t written = 64 * 2176 * 4 + 64 * 4;
  CHECK(c->bytes_moved() >= written + 12 + 4);
  CHECK(c->bytes_moved() <= written + 64 * 2048 * 4 + 12 + 4);
  CHECK_NOTHROW(c->run_cpu());
}

// ---------------------------------------------------------------------------------------------
// GPU: the naive and optimized kernels against the CPU reference, over whole poisoned outputs.

TEST_CASE("combine_topk_swa_indices GPU: ratios, top-k sizes, windows, batches, row pitches",
          "[combine_topk_swa_indices][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const std::int64_t ratio = GENERATE(1, 4, 128);
  const std::int64_t drawn_topk = GENERATE(as<std::int64_t>{}, 3, 16, 300);
  const std::int64_t topk = ratio == 1 ? 0 : drawn_topk;
  const std::int64_t window = GENERATE(1, 8, 128);
  const std::int64_t requests = GENERATE(1, 4, 33);
  const std::int64_t pitch = GENERATE(-1, 1001);
  Batch b = random_batch(static_cast<std::uint64_t>(ratio + topk + window + requests), ratio,
                         topk, window, requests);
  b.pitch = pitch < 0 ? -1 : std::max(pitch, b.width);
  CAPTURE(ratio, topk, window, requests, b.pitch);
  Call expected(b);
  expected.call();
  const auto reference = test::written_bytes<Op>(expected.args);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    Call fresh(b);
    CHECK(test::run_on_device<Op>(impl, fresh.args) == reference);
  }
}

TEST_CASE("combine_topk_swa_indices GPU: the hardened rule, as the CPU reference",
          "[combine_topk_swa_indices][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const Batch good = spec_example();
  Call valid(good);
  const Op::Plan plan = Op::validate(valid.args, Impl::cpu);
  Batch bad = good;
  bad.topk_values[0] = 2;
  bad.topk_values[10] = 7;
  bad.gather_lens = {7};
  Call expected(bad);
  Op::cpu(plan, expected.args);
  const auto reference = test::written_bytes<Op>(expected.args);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    Call c(bad);
    CHECK(test::run_on_device<Op>(impl, c.args, false, &plan) == reference);
  }
}

TEST_CASE("combine_topk_swa_indices GPU: a bad top-k entry is rejected, nothing written",
          "[combine_topk_swa_indices][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  Batch b = spec_example();
  b.topk_values[10] = 2;
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    Call c(b);
    CHECK_THROWS_WITH(test::run_on_device<Op>(impl, c.args), Contains("topk_indices[5, 0] = 2"));
  }
}

}  // namespace
