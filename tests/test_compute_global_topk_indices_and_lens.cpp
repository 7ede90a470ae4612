// compute_global_topk_indices_and_lens: the header's worked example and other hand-worked rows,
// the invariants on random batches (every output slot lies in a block of the token's request
// and comes from one of its local indices, in order; the slots are packed to the left; the
// length counts them; the rest is -1), masked tokens, short lists, block sizes 1 and 64, the
// kernels' hardening (reached by launching a plan validated on other values), bad input and
// zero tokens on the CPU; on a GPU, the naive and optimized kernels against the CPU reference
// element for element.
#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "pagedkv/error.h"
#include "pagedkv/ops/compute_global_topk_indices_and_lens.h"
#include "pagedkv/registry.h"
#include "sparse_index_support.h"

namespace {

using namespace pagedkv;
using Catch::Matchers::Contains;
using Op = ComputeGlobalTopkIndicesAndLens;
using test::HostTensors;

// One call: tensors built from plain vectors, outputs poisoned.
struct Call {
  HostTensors tensors;
  Op::Args args;
  std::vector<std::int32_t> topk, req, table;
  std::vector<bool> valid;
  std::int64_t T = 0, K = 0, R = 0, width = 0;

  Call(std::int64_t tokens, std::int64_t k, std::vector<std::int32_t> topk_values,
       std::vector<std::int32_t> req_values, std::int64_t requests, std::int64_t table_width,
       std::vector<std::int32_t> table_values, std::int64_t block_size, std::vector<bool> valid_values,
       std::int64_t pitch = -1)
      : topk(std::move(topk_values)), req(std::move(req_values)), table(std::move(table_values)),
        valid(std::move(valid_values)), T(tokens), K(k), R(requests), width(table_width) {
    args.topk_indices = tensors.matrix(T, K, topk, pitch);
    args.token_to_req_indices = tensors.vector(req);
    args.block_table = tensors.matrix(R, width, table);
    args.block_size = block_size;
    args.is_valid_token = tensors.mask(valid);
    args.global_topk_indices = tensors.output(T, K, pitch);
    args.topk_lens = tensors.output_vector(T);
  }
  void call() { run<Op>(Impl::cpu, args); }
  std::vector<std::int32_t> row(std::int64_t t) const { return test::row_of(args.global_topk_indices, t); }
  std::int32_t len(std::int64_t t) const {
    return static_cast<const std::int32_t*>(args.topk_lens.data)[t];
  }
  bool nothing_written() const {
    for (const auto& bytes : test::written_bytes<Op>(args))
      for (std::uint8_t b : bytes)
        if (b != 0xA5 && b != 0x5A) return false;
    return true;
  }
};

Call worked_example(bool valid = true) {
  return Call(1, 4, {0, 64, -1, 130}, {0}, 1, 4, {10, 11, 12, 13}, 64, {valid});
}

TEST_CASE("compute_global_topk_indices_and_lens CPU: the header's worked example",
          "[compute_global_topk_indices_and_lens][cpu]") {
  Call c = worked_example();
  c.call();
  CHECK(c.row(0) == std::vector<std::int32_t>{640, 704, 770, -1});
  CHECK(c.len(0) == 3);
  Call masked = worked_example(false);
  masked.call();
  CHECK(masked.row(0) == std::vector<std::int32_t>{-1, -1, -1, -1});
  CHECK(masked.len(0) == 0);
}

TEST_CASE("compute_global_topk_indices_and_lens CPU: hand-worked rows (two requests, empty "
          "entries in the middle, block size 1, an empty list)",
          "[compute_global_topk_indices_and_lens][cpu]") {
  SECTION("two requests, block size 4") {
    // Request 0: blocks [5, 2]; request 1: blocks [7, 0]. Token 0 (request 1) asks 6, -1, 1:
    // 6 = block 0 of column 1, offset 2 -> 2; 1 = block 7, offset 1 -> 29. Token 1 (request 0)
    // asks -1, 4, -1: 4 = block 2, offset 0 -> 8.
    Call c(2, 3, {6, -1, 1, -1, 4, -1}, {1, 0}, 2, 2, {5, 2, 7, 0}, 4, {true, true});
    c.call();
    CHECK(c.row(0) == std::vector<std::int32_t>{2, 29, -1});
    CHECK(c.len(0) == 2);
    CHECK(c.row(1) == std::vector<std::int32_t>{8, -1, -1});
    CHECK(c.len(1) == 1);
  }
  SECTION("block size 1: the slot is the block id") {
    Call c(1, 3, {2, 0, 1}, {0}, 1, 3, {9, 4, 6}, 1, {true});
    c.call();
    CHECK(c.row(0) == std::vector<std::int32_t>{6, 9, 4});
    CHECK(c.len(0) == 3);
  }
  SECTION("a list of only empty entries") {
    Call c(1, 2, {-1, -7}, {0}, 1, 1, {3}, 64, {true});
    c.call();
    CHECK(c.row(0) == std::vector<std::int32_t>{-1, -1});
    CHECK(c.len(0) == 0);
  }
}

// A random batch: R requests with random distinct block ids, tokens with random requests and
// top-k lists of random length (short lists, -1 in between), some masked.
Call random_call(std::uint64_t seed, std::int64_t T, std::int64_t K, std::int64_t B,
                 std::int64_t pitch = -1) {
  std::mt19937_64 rng(seed);
  const std::int64_t R = 1 + static_cast<std::int64_t>(rng() % 5);
  const std::int64_t width = 1 + static_cast<std::int64_t>(rng() % 6);
  std::vector<std::int32_t> table(static_cast<std::size_t>(R * width));
  for (std::size_t i = 0; i < table.size(); ++i) table[i] = static_cast<std::int32_t>(i * 3 + 1);
  std::shuffle(table.begin(), table.end(), rng);
  std::vector<std::int32_t> topk, req;
  std::vector<bool> valid;
  for (std::int64_t t = 0; t < T; ++t) {
    req.push_back(static_cast<std::int32_t>(rng() % R));
    valid.push_back(rng() % 5 != 0);
    const std::int64_t filled = static_cast<std::int64_t>(rng() % (K + 1));
    for (std::int64_t i = 0; i < K; ++i) {
      const bool hole = rng() % 7 == 0;
      topk.push_back(i < filled && !hole ? static_cast<std::int32_t>(rng() % (width * B)) : -1);
    }
  }
  return Call(T, K, topk, req, R, width, table, B, valid, pitch);
}

TEST_CASE("compute_global_topk_indices_and_lens CPU: invariants on random batches",
          "[compute_global_topk_indices_and_lens][cpu]") {
  const std::int64_t B = GENERATE(1, 4, 64);
  const std::uint64_t seed = GENERATE(1, 2, 3, 4);
  Call c = random_call(seed, 37, 19, B);
  c.call();
  for (std::int64_t t = 0; t < c.T; ++t) {
    CAPTURE(t);
    const std::vector<std::int32_t> out = c.row(t);
    // The slots this token's locals name, in their order (the invariant, written from the
    // definition of a slot: the request's block at column l / B, offset l % B).
    std::vector<std::int32_t> expected;
    if (c.valid[t]) {
      for (std::int64_t i = 0; i < c.K; ++i) {
        const std::int32_t l = c.topk[t * c.K + i];
        if (l < 0) continue;
        expected.push_back(c.table[c.req[t] * c.width + l / B] * static_cast<std::int32_t>(B) +
                           static_cast<std::int32_t>(l % B));
      }
    }
    CHECK(c.len(t) == static_cast<std::int32_t>(expected.size()));
    for (std::int64_t i = 0; i < c.K; ++i) {
      if (i < static_cast<std::int64_t>(expected.size())) {
        CHECK(out[i] == expected[i]);
        // Belongs to the token's request: its block is in the request's row.
        const std::int32_t block = out[i] / static_cast<std::int32_t>(B);
        const auto first = c.table.begin() + c.req[t] * c.width;
        CHECK(std::find(first, first + c.width, block) != first + c.width);
      } else {
        CHECK(out[i] == -1);
      }
    }
  }
}

TEST_CASE("compute_global_topk_indices_and_lens CPU: the hardened rule (an entry past the "
          "table, a negative block id, a request outside the table become -1, not counted)",
          "[compute_global_topk_indices_and_lens][cpu]") {
  Call c(3, 3, {0, 9, 1, 0, 1, 2, 5, 0, 1}, {0, 0, 7}, 1, 2, {3, -1}, 4, {true, true, true});
  // Validated on good values, then broken: what a deferred call can meet.
  std::vector<std::int32_t> good_table{3, 6};
  Call good(3, 3, {0, 1, 1, 0, 1, 2, 5, 0, 1}, {0, 0, 0}, 1, 2, good_table, 4, {true, true, true});
  const Op::Plan plan = Op::validate(good.args, Impl::cpu);
  Op::cpu(plan, c.args);
  CHECK(c.row(0) == std::vector<std::int32_t>{12, 13, -1});  // 9: column 2 of 2
  CHECK(c.len(0) == 2);
  CHECK(c.row(1) == std::vector<std::int32_t>{12, 13, 14});
  CHECK(c.row(2) == std::vector<std::int32_t>{-1, -1, -1});  // request 7 of 1
  CHECK(c.len(2) == 0);
  Call good_one(1, 2, {5, 1}, {0}, 1, 2, good_table, 4, {true});
  const Op::Plan plan_one = Op::validate(good_one.args, Impl::cpu);
  Call negative(1, 2, {5, 1}, {0}, 1, 2, {3, -1}, 4, {true});
  Op::cpu(plan_one, negative.args);
  CHECK(negative.row(0) == std::vector<std::int32_t>{13, -1});  // 5 lies in block -1
  CHECK(negative.len(0) == 1);
}

TEST_CASE("compute_global_topk_indices_and_lens rejects bad values, nothing written",
          "[compute_global_topk_indices_and_lens][cpu]") {
  SECTION("a local index beyond the request's compressed tokens") {
    Call c(1, 2, {0, 8}, {0}, 1, 2, {3, 6}, 4, {true});
    CHECK_REJECTED(c, "topk_indices[0, 1] = 8");
  }
  SECTION("a request outside the block table") {
    Call c(1, 2, {0, 1}, {1}, 1, 2, {3, 6}, 4, {true});
    CHECK_REJECTED(c, "token_to_req_indices[0] = 1");
  }
  SECTION("a negative block id a local index lies in") {
    Call c(1, 2, {0, 5}, {0}, 1, 2, {3, -1}, 4, {true});
    CHECK_REJECTED(c, "block_table[0, 1] = -1");
  }
  SECTION("a slot beyond i32") {
    Call c(1, 1, {3}, {0}, 1, 1, {1 << 30}, 4, {true});
    CHECK_REJECTED(c, "does not fit the i32 output");
  }
  SECTION("a masked token's bad values are not looked at") {
    Call c(1, 2, {0, 8}, {5}, 1, 2, {3, 6}, 4, {false});
    CHECK_NOTHROW(c.call());
    CHECK(c.len(0) == 0);
  }
}

TEST_CASE("compute_global_topk_indices_and_lens rejects bad arguments, nothing written",
          "[compute_global_topk_indices_and_lens][cpu]") {
  Call c = worked_example();
  SECTION("block_size out of range") {
    c.args.block_size = GENERATE(0, -64, 4097);
    CHECK_REJECTED(c, "block_size");
  }
  SECTION("i64 topk_indices") {
    c.args.topk_indices.dtype = DType::i64;
    c.args.topk_indices.shape[1] = 2;
    c.args.global_topk_indices.shape[1] = 2;
    CHECK_REJECTED(c, "topk_indices");
  }
  SECTION("i64 token_to_req_indices") {
    c.args.token_to_req_indices.dtype = DType::i64;
    CHECK_REJECTED(c, "token_to_req_indices");
  }
  SECTION("an i32 mask") {
    c.args.is_valid_token.dtype = DType::i32;
    CHECK_REJECTED(c, "is_valid_token");
  }
  SECTION("i64 outputs") {
    c.args.topk_lens.dtype = DType::i64;
    CHECK_REJECTED(c, "topk_lens");
  }
  SECTION("an output of another width") {
    c.args.global_topk_indices.shape[1] = 3;
    CHECK_REJECTED(c, "global_topk_indices");
  }
  SECTION("too few lengths") {
    c.args.topk_lens.shape[0] = 0;
    CHECK_REJECTED(c, "topk_lens");
  }
  SECTION("a mask too short") {
    c.args.is_valid_token.shape[0] = 0;
    CHECK_REJECTED(c, "is_valid_token");
  }
  SECTION("a strided last dimension") {
    c.args.topk_indices.strides[1] = 2;
    c.args.topk_indices.shape[1] = 2;
    c.args.global_topk_indices.shape[1] = 2;
    CHECK_REJECTED(c, "topk_indices");
  }
  SECTION("a tensor on the GPU for the CPU reference") {
    c.args.block_table.device = Device::cuda;
    CHECK_REJECTED(c, "block_table");
  }
}

TEST_CASE("compute_global_topk_indices_and_lens with zero tokens is a no-op",
          "[compute_global_topk_indices_and_lens][cpu]") {
  Call c(0, 4, {}, {}, 1, 1, {3}, 64, {});
  CHECK_NOTHROW(c.call());
  CHECK(c.nothing_written());
}

TEST_CASE("compute_global_topk_indices_and_lens: the W4 workload has the sizes of the design "
          "and its byte model",
          "[compute_global_topk_indices_and_lens][cpu]") {
  const OpEntry& op = find_op("compute_global_topk_indices_and_lens");
  std::set<std::int64_t> sizes;
  for (const WorkloadPoint& p : op.points("W4", false)) {
    sizes.insert(p.size);
    CHECK(p.variant == "decode");
    CHECK(p.size_unit == "tokens");
  }
  CHECK(sizes == std::set<std::int64_t>{1, 8, 64, 512});
  // One decode token, topk 2048: 2048 × 4 bytes read, 2048 × 4 written, a 4-byte length, a
  // 4-byte request id and a 1-byte mask.
  const auto one = op.make_case(op.points("W4", true).at(0), 7);
  CHECK(one->bytes_moved() == 2048 * 4 + 2048 * 4 + 4 + 4 + 1);
  CHECK_NOTHROW(one->run_cpu());
}

// ---------------------------------------------------------------------------------------------
// GPU: the naive and optimized kernels against the CPU reference, over whole poisoned outputs.

void check_three_way(std::uint64_t seed, std::int64_t T, std::int64_t K, std::int64_t B,
                     std::int64_t pitch) {
  CAPTURE(seed, T, K, B, pitch);
  Call expected = random_call(seed, T, K, B, pitch);
  expected.call();
  const auto reference = test::written_bytes<Op>(expected.args);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    Call fresh = random_call(seed, T, K, B, pitch);
    CHECK(test::run_on_device<Op>(impl, fresh.args) == reference);
  }
}

TEST_CASE("compute_global_topk_indices_and_lens GPU: sizes, block sizes, row pitches",
          "[compute_global_topk_indices_and_lens][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const std::int64_t K = GENERATE(1, 3, 4, 19, 1024, 2048, 2051);
  const std::int64_t B = GENERATE(1, 64);
  const std::int64_t T = GENERATE(1, 37, 512);
  const std::int64_t pitch = GENERATE(-1, 2060);  // packed, or rows with a gap (K <= 2051)
  check_three_way(static_cast<std::uint64_t>(K * 7 + B + T), T, K, B, pitch < 0 ? -1 : std::max(pitch, K));
}

TEST_CASE("compute_global_topk_indices_and_lens GPU: the hardened rule, as the CPU reference",
          "[compute_global_topk_indices_and_lens][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  std::vector<std::int32_t> good_table{3, 6};
  Call good(3, 3, {0, 1, 1, 0, 1, 2, 5, 0, 1}, {0, 0, 0}, 1, 2, good_table, 4, {true, true, true});
  const Op::Plan plan = Op::validate(good.args, Impl::cpu);
  Call expected(3, 3, {0, 9, 1, 0, 5, 2, 5, 0, 1}, {0, 0, 7}, 1, 2, {3, -1}, 4, {true, true, true});
  Op::cpu(plan, expected.args);
  const auto reference = test::written_bytes<Op>(expected.args);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    Call bad(3, 3, {0, 9, 1, 0, 5, 2, 5, 0, 1}, {0, 0, 7}, 1, 2, {3, -1}, 4, {true, true, true});
    Op::Plan device_plan = plan;
    CHECK(test::run_on_device<Op>(impl, bad.args, false, &device_plan) == reference);
  }
}

TEST_CASE("compute_global_topk_indices_and_lens GPU: a bad local index is rejected, nothing "
          "written",
          "[compute_global_topk_indices_and_lens][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    Call c(1, 2, {0, 8}, {0}, 1, 2, {3, 6}, 4, {true});
    CHECK_THROWS_WITH(test::run_on_device<Op>(impl, c.args), Contains("topk_indices[0, 1] = 8"));
  }
}

}  // namespace
