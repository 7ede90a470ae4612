// build_flashinfer_mixed_sparse_indices: the header's worked example and other hand-worked
// decode rows (local indices with a padding token, global indices with and without lengths, no
// compressed table), the invariants on random decode-first batches (every prefill window slot
// is the slot of one of the token's own window positions in its request's SWA blocks, every
// compressed slot one of its request's compressed tokens, lengths window_size + kl, the rest
// -1), windows at the start of a sequence, short top-k lists, compress ratios 1, 4 and 128, the
// hardened rule, bad input and zero tokens on the CPU; on a GPU, the naive and optimized
// kernels against the CPU reference.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "pagedkv/error.h"
#include "pagedkv/ops/build_flashinfer_mixed_sparse_indices.h"
#include "pagedkv/registry.h"
#include "sparse_index_support.h"

namespace {

using namespace pagedkv;
using Catch::Matchers::Contains;
using Op = BuildFlashinferMixedSparseIndices;
using test::HostTensors;

// One batch, as plain vectors; the call's tensors are built from it.
struct Batch {
  std::int64_t W = 4, swa_B = 4, c_B = 2, ratio = 4, topk = 2, Kd = 0, Kp = 2, P = 4;
  std::vector<std::int32_t> decode_swa;               // [Td, W]
  std::vector<std::int32_t> decode_topk;              // [Td, Kd]
  std::optional<std::vector<std::int32_t>> decode_lens;
  std::optional<std::vector<bool>> decode_valid;
  bool local = false;
  std::vector<std::int32_t> prefill_topk;             // [Tp, Kp]
  std::vector<std::int32_t> qsl, seq_lens, req;
  std::int64_t swa_width = 2, c_width = 1;
  std::vector<std::int32_t> swa_table, c_table;       // [R, width]
  bool no_compressed_table = false;
  std::int64_t pitch = -1;
  std::int64_t Td() const { return static_cast<std::int64_t>(decode_swa.size()) / W; }
  std::int64_t Tp() const { return static_cast<std::int64_t>(prefill_topk.size()) / Kp; }
  std::int64_t R() const { return static_cast<std::int64_t>(seq_lens.size()); }
};

struct Call {
  HostTensors tensors;
  Op::Args args;
  Batch batch;

  explicit Call(const Batch& b) : batch(b) {
    const std::int64_t Td = b.Td(), Tp = b.Tp(), T = Td + Tp;
    args.decode_swa_indices = tensors.matrix(Td, b.W, b.decode_swa);
    if (b.Kd > 0) args.decode_compressed_indices = tensors.matrix(Td, b.Kd, b.decode_topk);
    if (b.decode_lens) args.decode_compressed_topk_lens = tensors.vector(*b.decode_lens);
    args.prefill_topk_indices = tensors.matrix(Tp, b.Kp, b.prefill_topk);
    args.query_start_loc = tensors.vector(b.qsl);
    args.seq_lens = tensors.vector(b.seq_lens);
    args.token_to_req_indices = tensors.vector(b.req);
    args.swa_block_table = tensors.matrix(b.R(), b.swa_width, b.swa_table);
    args.swa_block_size = b.swa_B;
    if (!b.no_compressed_table) args.compressed_block_table = tensors.matrix(b.R(), b.c_width, b.c_table);
    args.compressed_block_size = b.c_B;
    args.window_size = b.W;
    args.compress_ratio = b.ratio;
    args.topk = b.topk;
    args.decode_compressed_indices_are_local = b.local;
    if (b.decode_valid) args.decode_is_valid_token = tensors.mask(*b.decode_valid);
    args.sparse_indices = tensors.output(T, b.W + b.P, b.pitch);
    args.sparse_topk_lens = tensors.output_vector(T);
  }
  void call() { run<Op>(Impl::cpu, args); }
  std::vector<std::int32_t> row(std::int64_t u) const { return test::row_of(args.sparse_indices, u); }
  std::vector<std::int32_t> lens() const { return test::elements(args.sparse_topk_lens); }
  bool nothing_written() const {
    for (const auto& bytes : test::written_bytes<Op>(args))
      for (std::uint8_t b : bytes)
        if (b != 0xA5 && b != 0x5A) return false;
    return true;
  }
};

// The header's example: decode token 0 (request 0, seq_len 10), then request 1 (seq_len 6) with
// prefill tokens 1 and 2 at positions 4 and 5.
Batch header_example() {
  Batch b;
  b.decode_swa = {100, 101, 102, 103};
  b.prefill_topk = {0, -1, 0, 1};  // position 5 may use 1 compressed token: the 1 is not read
  b.qsl = {0, 1, 3};
  b.seq_lens = {10, 6};
  b.req = {0, 1, 1};
  b.swa_table = {1, 2, 7, 9};
  b.c_table = {4, 3};
  return b;
}

TEST_CASE("build_flashinfer_mixed_sparse_indices CPU: the header's worked example",
          "[build_flashinfer_mixed_sparse_indices][cpu]") {
  Call c(header_example());
  c.call();
  CHECK(c.row(0) == std::vector<std::int32_t>{100, 101, 102, 103, -1, -1, -1, -1});
  CHECK(c.row(1) == std::vector<std::int32_t>{29, 30, 31, 36, 6, -1, -1, -1});
  CHECK(c.row(2) == std::vector<std::int32_t>{30, 31, 36, 37, 6, -1, -1, -1});
  CHECK(c.lens() == std::vector<std::int32_t>{4, 5, 5});
}

TEST_CASE("build_flashinfer_mixed_sparse_indices CPU: decode rows by hand",
          "[build_flashinfer_mixed_sparse_indices][cpu]") {
  Batch b;
  b.decode_swa = {1, 2, 3, 4, 5, 6, 7, 8};
  b.prefill_topk = {};
  b.qsl = {0, 1, 2};
  b.seq_lens = {40, 9};
  b.req = {0, 1};
  b.swa_table = {0, 0, 0, 0};
  b.c_width = 3;
  b.c_table = {5, 8, 2, 6, 6, 6};
  b.Kd = 3;
  SECTION("local indices, a padding token") {
    // Token 0: locals 0, 3, -1 of request 0 (40 / 4 = 10 compressed tokens): 0 -> block 5,
    // offset 0 = 10; 3 -> block 8, offset 1 = 17. Token 1 is padding: no compressed slots.
    b.local = true;
    b.decode_topk = {0, 3, -1, 0, 1, 1};
    b.decode_valid = std::vector<bool>{true, false};
    Call c(b);
    c.call();
    CHECK(c.row(0) == std::vector<std::int32_t>{1, 2, 3, 4, 10, 17, -1, -1});
    CHECK(c.row(1) == std::vector<std::int32_t>{5, 6, 7, 8, -1, -1, -1, -1});
    CHECK(c.lens() == std::vector<std::int32_t>{4 + 2, 4 + 0});
  }
  SECTION("global indices with lengths") {
    b.decode_topk = {55, 66, 77, 11, -1, -1};
    b.decode_lens = std::vector<std::int32_t>{2, 1};
    Call c(b);
    c.call();
    CHECK(c.row(0) == std::vector<std::int32_t>{1, 2, 3, 4, 55, 66, 77, -1});
    CHECK(c.row(1) == std::vector<std::int32_t>{5, 6, 7, 8, 11, -1, -1, -1});
    CHECK(c.lens() == std::vector<std::int32_t>{6, 5});
  }
  SECTION("global indices without lengths count Kd") {
    b.decode_topk = {55, 66, 77, 11, -1, -1};
    Call c(b);
    c.call();
    CHECK(c.lens() == std::vector<std::int32_t>{7, 7});
  }
}

TEST_CASE("build_flashinfer_mixed_sparse_indices CPU: no compressed table (the SWA table "
          "serves), ratio 1 and windows at the start of a sequence",
          "[build_flashinfer_mixed_sparse_indices][cpu]") {
  Batch b;
  b.ratio = 1;
  b.topk = 2;
  b.c_B = 4;
  b.no_compressed_table = true;
  b.decode_swa = {};
  b.prefill_topk = {0, -1, 1, 0, 2, 0};  // positions 0, 1, 2 of one request
  b.qsl = {0, 3};
  b.seq_lens = {3};
  b.req = {0, 0, 0};
  b.swa_table = {7, 9};
  Call c(b);
  c.call();
  // Position 0: window [28], kl = min(1, 2) = 1: local 0 through the SWA table -> 28.
  CHECK(c.row(0) == std::vector<std::int32_t>{28, -1, -1, -1, 28, -1, -1, -1});
  CHECK(c.row(1) == std::vector<std::int32_t>{28, 29, -1, -1, 29, 28, -1, -1});
  CHECK(c.row(2) == std::vector<std::int32_t>{28, 29, 30, -1, 30, 28, -1, -1});
  // The length counts the whole window, as upstream does.
  CHECK(c.lens() == std::vector<std::int32_t>{5, 6, 6});
}

// A random valid decode-first batch.
Batch random_batch(std::uint64_t seed, std::int64_t ratio, std::int64_t Td, std::int64_t prefill_requests,
                   bool local, std::int64_t W, std::int64_t topk) {
  std::mt19937_64 rng(seed);
  Batch b;
  b.W = W;
  b.ratio = ratio;
  b.topk = topk;
  b.swa_B = 4;
  b.c_B = 2;
  b.Kd = topk;
  b.Kp = std::max<std::int64_t>(topk, 1);
  b.P = (std::max<std::int64_t>(topk, b.Kd) + 3) / 4 * 4;
  b.local = local;
  std::int64_t longest = 1;
  b.qsl = {0};
  for (std::int64_t d = 0; d < Td; ++d) {
    b.seq_lens.push_back(static_cast<std::int32_t>(1 + rng() % 300));
    b.qsl.push_back(b.qsl.back() + 1);
    b.req.push_back(static_cast<std::int32_t>(d));
  }
  for (std::int64_t r = 0; r < prefill_requests; ++r) {
    const std::int64_t q = static_cast<std::int64_t>(rng() % 20);
    const std::int64_t prefix = rng() % 3 == 0 ? 0 : static_cast<std::int64_t>(rng() % 300);
    b.seq_lens.push_back(static_cast<std::int32_t>(q + prefix));
    for (std::int64_t i = 0; i < q; ++i) b.req.push_back(static_cast<std::int32_t>(Td + r));
    b.qsl.push_back(b.qsl.back() + static_cast<std::int32_t>(q));
  }
  for (std::int32_t L : b.seq_lens) longest = std::max<std::int64_t>(longest, L);
  b.swa_width = (longest + b.swa_B - 1) / b.swa_B;
  b.c_width = std::max<std::int64_t>(1, (longest / ratio + b.c_B - 1) / b.c_B);
  for (std::int64_t i = 0; i < b.R() * b.swa_width; ++i)
    b.swa_table.push_back(static_cast<std::int32_t>(rng() % 5000));
  for (std::int64_t i = 0; i < b.R() * b.c_width; ++i)
    b.c_table.push_back(static_cast<std::int32_t>(rng() % 5000));
  std::vector<bool> valid;
  std::vector<std::int32_t> lens;
  for (std::int64_t u = 0; u < Td; ++u) {
    for (std::int64_t o = 0; o < W; ++o) b.decode_swa.push_back(static_cast<std::int32_t>(rng() % 100000));
    valid.push_back(rng() % 4 != 0);
    const std::int64_t compressed = b.seq_lens[u] / ratio;
    for (std::int64_t o = 0; o < b.Kd; ++o) {
      const bool used = compressed > 0 && rng() % 5 != 0;
      b.decode_topk.push_back(!used ? -1
                              : local ? static_cast<std::int32_t>(rng() % compressed)
                                      : static_cast<std::int32_t>(rng() % 100000));
    }
    lens.push_back(static_cast<std::int32_t>(rng() % (b.Kd + 1)));
  }
  if (local) b.decode_valid = valid;
  else if (seed % 2 == 0) b.decode_lens = lens;
  for (std::int64_t u = Td; u < static_cast<std::int64_t>(b.req.size()); ++u) {
    const std::int64_t r = b.req[u];
    const std::int64_t pos = b.seq_lens[r] - (b.qsl[r + 1] - b.qsl[r]) + (u - b.qsl[r]);
    const std::int64_t kl = std::min((pos + 1) / ratio, topk);
    const std::int64_t compressed = b.seq_lens[r] / ratio;
    for (std::int64_t o = 0; o < b.Kp; ++o) {
      const bool used = o < kl && rng() % 6 != 0;
      b.prefill_topk.push_back(used ? static_cast<std::int32_t>(rng() % compressed) : -1);
    }
  }
  return b;
}

// The slot of position p of request r through a table: written out from the definition.
std::int32_t slot(const std::vector<std::int32_t>& table, std::int64_t width, std::int64_t B,
                  std::int64_t r, std::int64_t p) {
  return table[r * width + p / B] * static_cast<std::int32_t>(B) + static_cast<std::int32_t>(p % B);
}

TEST_CASE("build_flashinfer_mixed_sparse_indices CPU: invariants on random decode-first "
          "batches",
          "[build_flashinfer_mixed_sparse_indices][cpu]") {
  const std::int64_t ratio = GENERATE(1, 4, 128);
  const bool local = GENERATE(true, false);
  const std::uint64_t seed = GENERATE(1, 2, 3);
  const Batch b = random_batch(seed, ratio, 6, 4, local, 8, 5);
  Call c(b);
  c.call();
  const std::vector<std::int32_t> lens = c.lens();
  for (std::int64_t u = 0; u < b.Td(); ++u) {
    CAPTURE(u);
    const std::vector<std::int32_t> row = c.row(u);
    std::int64_t count = 0;
    for (std::int64_t o = 0; o < b.W; ++o) CHECK(row[o] == b.decode_swa[u * b.W + o]);
    for (std::int64_t o = 0; o < b.P; ++o) {
      const std::int32_t v = o < b.Kd ? b.decode_topk[u * b.Kd + o] : -1;
      std::int32_t expected = v;
      if (local) expected = (*b.decode_valid)[u] && v >= 0 ? slot(b.c_table, b.c_width, b.c_B, b.req[u], v) : -1;
      CHECK(row[b.W + o] == expected);
      count += expected >= 0;
    }
    const std::int64_t compressed = local ? count : b.decode_lens ? (*b.decode_lens)[u] : b.Kd;
    CHECK(lens[u] == b.W + compressed);
  }
  for (std::int64_t u = b.Td(); u < b.Td() + b.Tp(); ++u) {
    CAPTURE(u);
    const std::vector<std::int32_t> row = c.row(u);
    const std::int64_t r = b.req[u];
    const std::int64_t pos = b.seq_lens[r] - (b.qsl[r + 1] - b.qsl[r]) + (u - b.qsl[r]);
    const std::int64_t sl = std::min(pos + 1, b.W);
    const std::int64_t kl = std::min((pos + 1) / ratio, b.topk);
    for (std::int64_t o = 0; o < b.W; ++o) {
      CHECK(row[o] == (o < sl ? slot(b.swa_table, b.swa_width, b.swa_B, r, pos - sl + 1 + o) : -1));
    }
    for (std::int64_t o = 0; o < b.P; ++o) {
      const std::int32_t l = o < kl ? b.prefill_topk[(u - b.Td()) * b.Kp + o] : -1;
      CHECK(row[b.W + o] == (l >= 0 ? slot(b.c_table, b.c_width, b.c_B, r, l) : -1));
    }
    CHECK(lens[u] == b.W + kl);
  }
}

TEST_CASE("build_flashinfer_mixed_sparse_indices CPU: the hardened rule (a local index past "
          "the request's compressed tokens, a window on a negative block id, a token outside "
          "its request become -1)",
          "[build_flashinfer_mixed_sparse_indices][cpu]") {
  Call good(header_example());
  const Op::Plan plan = Op::validate(good.args, Impl::cpu);
  Batch bad = header_example();
  bad.prefill_topk = {1, -1, 0, 1};  // token 1: local 1 >= 6 / 4 = 1 compressed tokens
  bad.swa_table = {1, 2, 7, -1};     // positions 4, 5 of request 1 on block -1
  Call c(bad);
  Op::cpu(plan, c.args);
  CHECK(c.row(1) == std::vector<std::int32_t>{29, 30, 31, -1, -1, -1, -1, -1});
  CHECK(c.row(2) == std::vector<std::int32_t>{30, 31, -1, -1, 6, -1, -1, -1});
  CHECK(c.lens() == std::vector<std::int32_t>{4, 5, 5});
  Batch stray = header_example();
  stray.req = {0, 1, 0};  // token 2 is not one of request 0's queries
  Call s(stray);
  Op::cpu(plan, s.args);
  CHECK(s.row(2) == std::vector<std::int32_t>(8, -1));
  CHECK(s.lens()[2] == 0);
}

TEST_CASE("build_flashinfer_mixed_sparse_indices rejects bad values, nothing written",
          "[build_flashinfer_mixed_sparse_indices][cpu]") {
  Batch b = header_example();
  SECTION("a prefill local index beyond the request's compressed tokens") {
    b.prefill_topk = {1, -1, 0, 1};
    Call c(b);
    CHECK_REJECTED(c, "prefill_topk_indices[0, 0] = 1");
  }
  SECTION("a window position on a negative block id") {
    b.swa_table = {1, 2, 7, -1};
    Call c(b);
    CHECK_REJECTED(c, "swa_block_table[1, 1] = -1");
  }
  SECTION("a window position past the SWA table") {
    b.swa_width = 1;
    b.swa_table = {1, 7};
    Call c(b);
    CHECK_REJECTED(c, "swa_block_table: position 4");
  }
  SECTION("a prefill token outside its request") {
    b.req = {0, 1, 0};
    Call c(b);
    CHECK_REJECTED(c, "token_to_req_indices[2] = 0");
  }
  SECTION("a request outside seq_lens") {
    b.req = {0, 1, 2};
    Call c(b);
    CHECK_REJECTED(c, "token_to_req_indices[2] = 2");
  }
  SECTION("query_start_loc not from 0") {
    b.qsl = {1, 1, 3};
    Call c(b);
    CHECK_REJECTED(c, "query_start_loc[0]");
  }
  SECTION("a sequence shorter than its queries") {
    b.seq_lens = {10, 1};
    Call c(b);
    CHECK_REJECTED(c, "seq_lens[1] = 1");
  }
  SECTION("a decode local index beyond its request") {
    b.Kd = 2;
    b.local = true;
    b.decode_topk = {2, -1};  // request 0: 10 / 4 = 2 compressed tokens
    b.decode_valid = std::vector<bool>{true};
    Call c(b);
    CHECK_REJECTED(c, "decode_compressed_indices[0, 0] = 2");
  }
  SECTION("a decode length past Kd") {
    b.Kd = 2;
    b.decode_topk = {5, 6};
    b.decode_lens = std::vector<std::int32_t>{3};
    Call c(b);
    CHECK_REJECTED(c, "decode_compressed_topk_lens[0] = 3");
  }
}

TEST_CASE("build_flashinfer_mixed_sparse_indices rejects bad arguments, nothing written",
          "[build_flashinfer_mixed_sparse_indices][cpu]") {
  Call c(header_example());
  SECTION("window_size other than decode_swa_indices' width") {
    c.args.window_size = 8;
    CHECK_REJECTED(c, "decode_swa_indices");
  }
  SECTION("window_size, block sizes, compress_ratio, topk out of range") {
    SECTION("window") { c.args.window_size = 0; CHECK_REJECTED(c, "window_size"); }
    SECTION("swa block") { c.args.swa_block_size = 0; CHECK_REJECTED(c, "swa_block_size"); }
    SECTION("compressed block") {
      c.args.compressed_block_size = 5000;
      CHECK_REJECTED(c, "compressed_block_size");
    }
    SECTION("ratio") { c.args.compress_ratio = 2; CHECK_REJECTED(c, "compress_ratio"); }
    SECTION("topk") { c.args.topk = -1; CHECK_REJECTED(c, "topk"); }
  }
  SECTION("too few compressed columns") {
    c.args.topk = 5;
    CHECK_REJECTED(c, "sparse_indices");
  }
  SECTION("an i64 token_to_req_indices") {
    c.args.token_to_req_indices.dtype = DType::i64;
    CHECK_REJECTED(c, "token_to_req_indices");
  }
  SECTION("an i64 prefill_topk_indices") {
    c.args.prefill_topk_indices.dtype = DType::i64;
    CHECK_REJECTED(c, "prefill_topk_indices");
  }
  SECTION("an i64 sparse_topk_lens") {
    c.args.sparse_topk_lens.dtype = DType::i64;
    CHECK_REJECTED(c, "sparse_topk_lens");
  }
  SECTION("token_to_req_indices too short") {
    c.args.token_to_req_indices.shape[0] = 2;
    CHECK_REJECTED(c, "token_to_req_indices");
  }
  SECTION("local decode indices without decode_is_valid_token") {
    Batch b = header_example();
    b.Kd = 1;
    b.local = true;
    b.decode_topk = {0};
    b.P = 4;
    Call local(b);
    CHECK_REJECTED(local, "decode_is_valid_token");
  }
}

TEST_CASE("build_flashinfer_mixed_sparse_indices with zero tokens is a no-op",
          "[build_flashinfer_mixed_sparse_indices][cpu]") {
  Batch b;
  b.decode_swa = {};
  b.prefill_topk = {};
  b.qsl = {0};
  b.seq_lens = {};
  b.req = {};
  b.swa_table = {};
  b.c_table = {};
  Call c(b);
  CHECK_NOTHROW(c.call());
  CHECK(c.nothing_written());
}

TEST_CASE("build_flashinfer_mixed_sparse_indices: the W4 workload has the sizes of the design "
          "and its byte model",
          "[build_flashinfer_mixed_sparse_indices][cpu]") {
  const OpEntry& op = find_op("build_flashinfer_mixed_sparse_indices");
  std::set<std::pair<std::string, std::int64_t>> points;
  for (const WorkloadPoint& p : op.points("W4", false)) points.insert({p.variant, p.size});
  CHECK(points == std::set<std::pair<std::string, std::int64_t>>{
                      {"decode", 1}, {"decode", 8}, {"decode", 64}, {"decode", 512},
                      {"prefill", 1024}, {"prefill", 8192}});
  // One decode token: a row of 128 + 2048 columns and a length written, its 128 SWA slots and
  // 2048 local indices read, its validity byte and its request id.
  const auto one = op.make_case(op.points("W4", true).at(0), 7);
  CHECK(one->bytes_moved() == 2176 * 4 + 4 + (128 + 2048) * 4 + 1 + 4);
  CHECK_NOTHROW(one->run_cpu());
}

// ---------------------------------------------------------------------------------------------
// GPU: the naive and optimized kernels against the CPU reference, over whole poisoned outputs.

TEST_CASE("build_flashinfer_mixed_sparse_indices GPU: ratios, decode forms, windows, top-k, "
          "batches, row pitches",
          "[build_flashinfer_mixed_sparse_indices][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const std::int64_t ratio = GENERATE(1, 4, 128);
  const bool local = GENERATE(true, false);
  const std::int64_t W = GENERATE(2, 4, 8, 128);  // 2: the 4-byte path with packed rows
  const std::int64_t topk = GENERATE(0, 5, 300);
  const std::int64_t Td = GENERATE(0, 1, 33);
  const std::int64_t pitch = GENERATE(-1, 1001);
  Batch b = random_batch(static_cast<std::uint64_t>(ratio + W + topk + Td), ratio, Td, 3, local, W,
                         topk);
  b.pitch = pitch < 0 ? -1 : std::max(pitch, b.W + b.P);
  CAPTURE(ratio, local, W, topk, Td, b.pitch);
  Call expected(b);
  expected.call();
  const auto reference = test::written_bytes<Op>(expected.args);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    Call fresh(b);
    CHECK(test::run_on_device<Op>(impl, fresh.args) == reference);
  }
}

TEST_CASE("build_flashinfer_mixed_sparse_indices GPU: the hardened rule, as the CPU reference",
          "[build_flashinfer_mixed_sparse_indices][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  Call good(header_example());
  const Op::Plan plan = Op::validate(good.args, Impl::cpu);
  Batch bad = header_example();
  bad.prefill_topk = {1, -1, 0, 1};
  bad.swa_table = {1, 2, 7, -1};
  bad.req = {0, 1, 0};
  Call expected(bad);
  Op::cpu(plan, expected.args);
  const auto reference = test::written_bytes<Op>(expected.args);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    Call c(bad);
    CHECK(test::run_on_device<Op>(impl, c.args, false, &plan) == reference);
  }
}

TEST_CASE("build_flashinfer_mixed_sparse_indices GPU: a bad local index is rejected, nothing "
          "written",
          "[build_flashinfer_mixed_sparse_indices][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  Batch b = header_example();
  b.prefill_topk = {1, -1, 0, 1};
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    Call c(b);
    CHECK_THROWS_WITH(test::run_on_device<Op>(impl, c.args),
                      Contains("prefill_topk_indices[0, 0] = 1"));
  }
}

}  // namespace
