// Tests of swap_blocks: the CPU reference against results computed by hand, one test per
// validation rule (rejected with a message naming the argument, nothing written), and on a GPU
// the CPU reference, the naive version and every strategy of the optimized version compared
// byte for byte, host-to-device (pinned and pageable), device-to-host and device-to-device.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "pagedkv/error.h"
#include "pagedkv/ops/swap_blocks.h"
#include "support.h"

namespace {

using namespace pagedkv;
using Catch::Matchers::Contains;

// A u8 tensor of num_blocks rows of block_bytes: one block per row.
TensorView block_rows(void* data, std::int64_t num_blocks, std::int64_t block_bytes,
                      Device device = Device::cpu) {
  return TensorView::contiguous(data, DType::u8, {num_blocks, block_bytes}, device);
}

// block_mapping [pairs.size() / 2, 2] i64 over a vector of (src, dst) ids.
TensorView mapping_of(std::vector<std::int64_t>& pairs) {
  return TensorView::contiguous(pairs.data(), DType::i64,
                                {static_cast<std::int64_t>(pairs.size() / 2), 2});
}

// Bytes 1, 2, 3, ... (so every block is recognisable).
std::vector<std::uint8_t> counting_bytes(std::size_t count) {
  std::vector<std::uint8_t> bytes(count);
  std::iota(bytes.begin(), bytes.end(), std::uint8_t{1});
  return bytes;
}

std::vector<std::uint8_t> poisoned_bytes(std::size_t count) {
  std::vector<std::uint8_t> bytes(count);
  test::poison(bytes.data(), bytes.size());
  return bytes;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// CPU reference: results computed by hand.

TEST_CASE("swap_blocks cpu: copies the named blocks and nothing else", "[swap_blocks]") {
  // src: 4 blocks of 4 bytes: A = 1 2 3 4, B = 5 6 7 8, C = 9 10 11 12, D = 13 14 15 16.
  std::vector<std::uint8_t> src = counting_bytes(16);
  // dst: 3 poisoned blocks; the mapping writes D into dst block 0 and A into dst block 2.
  std::vector<std::uint8_t> dst = poisoned_bytes(12);
  std::vector<std::int64_t> pairs = {3, 0, 0, 2};

  pagedkv::run<SwapBlocks>(Impl::cpu, {block_rows(src.data(), 4, 4), block_rows(dst.data(), 3, 4),
                                       4, mapping_of(pairs)});

  const std::vector<std::uint8_t> expected = {13,   14,   15,   16,    // D
                                              0xA5, 0x5A, 0xA5, 0x5A,  // untouched
                                              1,    2,    3,    4};    // A
  CHECK(dst == expected);
  CHECK(src == counting_bytes(16));  // the source is only read
}

TEST_CASE("swap_blocks cpu: an i32 mapping gives the same bytes as an i64 one", "[swap_blocks]") {
  std::vector<std::uint8_t> src = counting_bytes(16);
  std::vector<std::uint8_t> dst = poisoned_bytes(12);
  std::vector<std::int32_t> pairs = {3, 0, 0, 2};
  const TensorView mapping = TensorView::contiguous(pairs.data(), DType::i32, {2, 2});

  pagedkv::run<SwapBlocks>(
      Impl::cpu, {block_rows(src.data(), 4, 4), block_rows(dst.data(), 3, 4), 4, mapping});

  const std::vector<std::uint8_t> expected = {13, 14, 15, 16, 0xA5, 0x5A, 0xA5, 0x5A, 1, 2, 3, 4};
  CHECK(dst == expected);
}

TEST_CASE("swap_blocks cpu: blocks are counted in bytes over size(0) rows of stride(0)",
          "[swap_blocks]") {
  SECTION("a block smaller than a row: f32 [2, 6] is 48 bytes, three 16-byte blocks") {
    std::vector<std::uint8_t> src = counting_bytes(48);
    std::vector<std::uint8_t> dst = poisoned_bytes(48);
    std::vector<std::int64_t> pairs = {2, 0};  // src bytes 32..47 → dst bytes 0..15
    pagedkv::run<SwapBlocks>(Impl::cpu, {TensorView::contiguous(src.data(), DType::f32, {2, 6}),
                                         TensorView::contiguous(dst.data(), DType::bf16, {3, 8}),
                                         16, mapping_of(pairs)});
    std::vector<std::uint8_t> expected = poisoned_bytes(48);
    for (int i = 0; i < 16; ++i) expected[i] = static_cast<std::uint8_t>(33 + i);
    CHECK(dst == expected);
  }
  SECTION("a block of two rows: u8 [6, 4] is three 8-byte blocks") {
    std::vector<std::uint8_t> src = counting_bytes(24);
    std::vector<std::uint8_t> dst = poisoned_bytes(24);
    std::vector<std::int64_t> pairs = {1, 2};  // src bytes 8..15 → dst bytes 16..23
    pagedkv::run<SwapBlocks>(Impl::cpu, {block_rows(src.data(), 6, 4), block_rows(dst.data(), 6, 4),
                                         8, mapping_of(pairs)});
    std::vector<std::uint8_t> expected = poisoned_bytes(24);
    for (int i = 0; i < 8; ++i) expected[16 + i] = static_cast<std::uint8_t>(9 + i);
    CHECK(dst == expected);
  }
  SECTION("padded rows: u8 [3, 4] with stride(0) 8 spans 24 bytes, padding included") {
    std::vector<std::uint8_t> src = counting_bytes(24);
    std::vector<std::uint8_t> dst = poisoned_bytes(24);
    std::vector<std::int64_t> pairs = {2, 0};  // src row 2 with its padding: bytes 16..23
    pagedkv::run<SwapBlocks>(Impl::cpu, {TensorView::strided(src.data(), DType::u8, {3, 4}, {8, 1}),
                                         TensorView::strided(dst.data(), DType::u8, {3, 4}, {8, 1}),
                                         8, mapping_of(pairs)});
    std::vector<std::uint8_t> expected = poisoned_bytes(24);
    for (int i = 0; i < 8; ++i) expected[i] = static_cast<std::uint8_t>(17 + i);
    CHECK(dst == expected);
  }
}

TEST_CASE("swap_blocks cpu: pairs apply in order on shared memory", "[swap_blocks]") {
  // One buffer of 4 blocks (A B C D) is both src and dst.
  std::vector<std::uint8_t> buffer = counting_bytes(16);
  const TensorView blocks = block_rows(buffer.data(), 4, 4);

  SECTION("a chain 0→1, 1→2, 2→3 carries block A all the way") {
    std::vector<std::int64_t> pairs = {0, 1, 1, 2, 2, 3};
    pagedkv::run<SwapBlocks>(Impl::cpu, {blocks, blocks, 4, mapping_of(pairs)});
    const std::vector<std::uint8_t> expected = {1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4};
    CHECK(buffer == expected);
  }
  SECTION("swapping A and B through block D: 0→3, 1→0, 3→1") {
    std::vector<std::int64_t> pairs = {0, 3, 1, 0, 3, 1};
    pagedkv::run<SwapBlocks>(Impl::cpu, {blocks, blocks, 4, mapping_of(pairs)});
    const std::vector<std::uint8_t> expected = {5, 6, 7, 8, 1, 2, 3, 4, 9, 10, 11, 12, 1, 2, 3, 4};
    CHECK(buffer == expected);
  }
  SECTION("a block copied onto itself is unchanged") {
    std::vector<std::int64_t> pairs = {2, 2};
    pagedkv::run<SwapBlocks>(Impl::cpu, {blocks, blocks, 4, mapping_of(pairs)});
    CHECK(buffer == counting_bytes(16));
  }
  SECTION("views shifted by one whole block: dst block b is src block b + 1") {
    // src = blocks A B C D, dst = blocks B C D (dst starts 4 bytes later).
    std::vector<std::int64_t> pairs = {0, 0, 1, 1};  // A over B, then the new B over C
    pagedkv::run<SwapBlocks>(Impl::cpu,
                             {blocks, block_rows(buffer.data() + 4, 3, 4), 4, mapping_of(pairs)});
    const std::vector<std::uint8_t> expected = {1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4, 13, 14, 15, 16};
    CHECK(buffer == expected);
  }
}

TEST_CASE("swap_blocks cpu: a dst block named twice keeps the last copy", "[swap_blocks]") {
  std::vector<std::uint8_t> src = counting_bytes(16);
  std::vector<std::uint8_t> dst = poisoned_bytes(8);
  std::vector<std::int64_t> pairs = {0, 1, 2, 1, 3, 0};
  pagedkv::run<SwapBlocks>(Impl::cpu, {block_rows(src.data(), 4, 4), block_rows(dst.data(), 2, 4),
                                       4, mapping_of(pairs)});
  const std::vector<std::uint8_t> expected = {13, 14, 15, 16, 9, 10, 11, 12};
  CHECK(dst == expected);
}

TEST_CASE("swap_blocks cpu: an empty mapping is a no-op", "[swap_blocks]") {
  std::vector<std::uint8_t> src = counting_bytes(16);
  std::vector<std::uint8_t> dst = poisoned_bytes(16);
  SECTION("[0, 2] with storage") {
    std::vector<std::int64_t> pairs;
    pairs.reserve(2);
    pagedkv::run<SwapBlocks>(Impl::cpu,
                             {block_rows(src.data(), 4, 4), block_rows(dst.data(), 4, 4), 4,
                              TensorView::contiguous(pairs.data(), DType::i64, {0, 2})});
  }
  SECTION("[0, 2] without storage, and a block size no tensor could hold") {
    pagedkv::run<SwapBlocks>(Impl::cpu,
                             {block_rows(src.data(), 4, 4), block_rows(dst.data(), 4, 4), 1 << 20,
                              TensorView::contiguous(nullptr, DType::i64, {0, 2})});
  }
  CHECK(dst == poisoned_bytes(16));
}

TEST_CASE("swap_blocks: the plan records which pairs may run in any order", "[swap_blocks]") {
  std::vector<std::uint8_t> buffer(64);
  const TensorView blocks = block_rows(buffer.data(), 8, 8);
  auto plan_for = [&](std::vector<std::int64_t> pairs) {
    return SwapBlocks::validate({blocks, blocks, 8, mapping_of(pairs)}, Impl::cpu);
  };
  {
    const SwapBlocks::Plan plan = plan_for({0, 4, 1, 5, 2, 6});
    CHECK(plan.direction == CopyDirection::host_to_host);
    CHECK(plan.num_pairs == 3);
    CHECK(plan.src_capacity == 8);
    CHECK(plan.dst_capacity == 8);
    CHECK(plan.pairs == std::vector<std::int64_t>{0, 4, 1, 5, 2, 6});
    CHECK(plan.dst_ids_unique);
    CHECK(plan.dst_ids_disjoint_from_src_ids);
  }
  {
    const SwapBlocks::Plan plan = plan_for({0, 1, 1, 2});  // pair 1 reads what pair 0 writes
    CHECK(plan.dst_ids_unique);
    CHECK_FALSE(plan.dst_ids_disjoint_from_src_ids);
  }
  {
    const SwapBlocks::Plan plan = plan_for({0, 3, 1, 3});  // block 3 written twice
    CHECK_FALSE(plan.dst_ids_unique);
    CHECK(plan.dst_ids_disjoint_from_src_ids);
  }
  {
    const SwapBlocks::Plan plan = plan_for({5, 5, 6, 7});  // a self-copy does not count
    CHECK(plan.dst_ids_unique);
    CHECK(plan.dst_ids_disjoint_from_src_ids);
  }
}

// ---------------------------------------------------------------------------------------------
// Validation: one test per rule. Every call is rejected with InvalidArgument naming the
// argument, and dst is unchanged (validation runs before the first byte is written; several
// mappings below start with a valid pair to prove it).

namespace {

struct RejectionFixture {
  std::vector<std::uint8_t> src = counting_bytes(32);  // 4 blocks of 8 bytes
  std::vector<std::uint8_t> dst = poisoned_bytes(24);  // 3 blocks of 8 bytes
  TensorView src_view() { return block_rows(src.data(), 4, 8); }
  TensorView dst_view() { return block_rows(dst.data(), 3, 8); }
  bool dst_untouched() const { return dst == poisoned_bytes(24); }
};

}  // namespace

TEST_CASE("swap_blocks rejects a src block id out of range", "[swap_blocks]") {
  RejectionFixture f;
  std::vector<std::int64_t> pairs = {0, 0, 4, 1};  // src holds blocks 0..3
  CHECK_THROWS_AS(
      pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), f.dst_view(), 8, mapping_of(pairs)}),
      InvalidArgument);
  CHECK_THROWS_WITH(
      pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), f.dst_view(), 8, mapping_of(pairs)}),
      Contains("block_mapping[1, 0]") && Contains("src block id in [0, 4)") && Contains("got 4"));
  CHECK(f.dst_untouched());
}

TEST_CASE("swap_blocks rejects a dst block id out of range", "[swap_blocks]") {
  RejectionFixture f;
  std::vector<std::int64_t> pairs = {0, 0, 1, 3};  // dst holds blocks 0..2
  CHECK_THROWS_AS(
      pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), f.dst_view(), 8, mapping_of(pairs)}),
      InvalidArgument);
  CHECK_THROWS_WITH(
      pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), f.dst_view(), 8, mapping_of(pairs)}),
      Contains("block_mapping[1, 1]") && Contains("dst block id in [0, 3)") && Contains("got 3"));
  CHECK(f.dst_untouched());
}

TEST_CASE("swap_blocks rejects negative block ids", "[swap_blocks]") {
  RejectionFixture f;
  SECTION("src") {
    std::vector<std::int64_t> pairs = {0, 0, -1, 1};
    CHECK_THROWS_WITH(
        pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), f.dst_view(), 8, mapping_of(pairs)}),
        Contains("block_mapping[1, 0]") && Contains("got -1"));
  }
  SECTION("dst, from an i32 mapping") {
    std::vector<std::int32_t> pairs = {0, 0, 1, -2};
    const TensorView mapping = TensorView::contiguous(pairs.data(), DType::i32, {2, 2});
    CHECK_THROWS_AS(pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), f.dst_view(), 8, mapping}),
                    InvalidArgument);
    CHECK_THROWS_WITH(pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), f.dst_view(), 8, mapping}),
                      Contains("block_mapping[1, 1]") && Contains("got -2"));
  }
  CHECK(f.dst_untouched());
}

TEST_CASE("swap_blocks rejects a block_mapping that is not [N, 2]", "[swap_blocks]") {
  RejectionFixture f;
  std::vector<std::int64_t> ids = {0, 0, 1, 1, 2, 2};
  SECTION("1-d") {
    const TensorView mapping = TensorView::contiguous(ids.data(), DType::i64, {6});
    CHECK_THROWS_AS(pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), f.dst_view(), 8, mapping}),
                    InvalidArgument);
    CHECK_THROWS_WITH(pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), f.dst_view(), 8, mapping}),
                      Contains("block_mapping: expected shape [num_pairs, 2], got [6]"));
  }
  SECTION("[2, 3]") {
    const TensorView mapping = TensorView::contiguous(ids.data(), DType::i64, {2, 3});
    CHECK_THROWS_WITH(pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), f.dst_view(), 8, mapping}),
                      Contains("block_mapping: expected shape [num_pairs, 2], got [2, 3]"));
  }
  CHECK(f.dst_untouched());
}

TEST_CASE("swap_blocks rejects a block_mapping that is not on the CPU", "[swap_blocks]") {
  RejectionFixture f;
  std::vector<std::int64_t> pairs = {0, 0};
  const TensorView mapping = TensorView::contiguous(pairs.data(), DType::i64, {1, 2}, Device::cuda);
  CHECK_THROWS_AS(pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), f.dst_view(), 8, mapping}),
                  InvalidArgument);
  CHECK_THROWS_WITH(
      pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), f.dst_view(), 8, mapping}),
      Contains("block_mapping: expected a tensor on cpu") && Contains("got one on cuda"));
  // The same rule holds for the CUDA versions (checked before anything touches the GPU).
  CHECK_THROWS_WITH(
      SwapBlocks::validate({f.src_view(), block_rows(f.dst.data(), 3, 8, Device::cuda), 8, mapping},
                           Impl::optimized),
      Contains("block_mapping must be on CPU"));
  CHECK(f.dst_untouched());
}

TEST_CASE("swap_blocks rejects a block_mapping that does not hold integers", "[swap_blocks]") {
  RejectionFixture f;
  std::vector<float> pairs = {0.f, 0.f};
  const TensorView mapping = TensorView::contiguous(pairs.data(), DType::f32, {1, 2});
  CHECK_THROWS_AS(pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), f.dst_view(), 8, mapping}),
                  InvalidArgument);
  CHECK_THROWS_WITH(pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), f.dst_view(), 8, mapping}),
                    Contains("block_mapping: expected dtype in {i64, i32}, got f32"));
  CHECK(f.dst_untouched());
}

TEST_CASE("swap_blocks rejects a block_mapping that is not contiguous", "[swap_blocks]") {
  RejectionFixture f;
  std::vector<std::int64_t> ids = {0, 1, 0, 1};  // read transposed: pairs (0, 0), (1, 1)
  const TensorView mapping = TensorView::strided(ids.data(), DType::i64, {2, 2}, {1, 2});
  CHECK_THROWS_AS(pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), f.dst_view(), 8, mapping}),
                  InvalidArgument);
  CHECK_THROWS_WITH(pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), f.dst_view(), 8, mapping}),
                    Contains("block_mapping: expected a contiguous tensor"));
  CHECK(f.dst_untouched());
}

TEST_CASE("swap_blocks rejects block_size_in_bytes <= 0", "[swap_blocks]") {
  RejectionFixture f;
  std::vector<std::int64_t> pairs = {0, 0};
  const std::int64_t block_size = GENERATE(0, -8);
  CAPTURE(block_size);
  CHECK_THROWS_AS(pagedkv::run<SwapBlocks>(
                      Impl::cpu, {f.src_view(), f.dst_view(), block_size, mapping_of(pairs)}),
                  InvalidArgument);
  CHECK_THROWS_WITH(pagedkv::run<SwapBlocks>(
                        Impl::cpu, {f.src_view(), f.dst_view(), block_size, mapping_of(pairs)}),
                    Contains("block_size_in_bytes: expected a positive number of bytes, got " +
                             std::to_string(block_size)));
  CHECK(f.dst_untouched());
}

TEST_CASE("swap_blocks rejects a block larger than the rows of src or dst", "[swap_blocks]") {
  RejectionFixture f;
  std::vector<std::int64_t> pairs = {0, 0};
  SECTION("src: 32 bytes of rows") {
    CHECK_THROWS_AS(
        pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), f.dst_view(), 40, mapping_of(pairs)}),
        InvalidArgument);
    CHECK_THROWS_WITH(
        pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), f.dst_view(), 40, mapping_of(pairs)}),
        Contains("block_size_in_bytes: expected at most the bytes of src's rows") &&
            Contains("= 32), got 40"));
  }
  SECTION("dst: 24 bytes of rows") {
    CHECK_THROWS_WITH(
        pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), f.dst_view(), 32, mapping_of(pairs)}),
        Contains("block_size_in_bytes: expected at most the bytes of dst's rows") &&
            Contains("= 24), got 32"));
  }
  CHECK(f.dst_untouched());
}

TEST_CASE("swap_blocks rejects devices its implementation cannot use", "[swap_blocks]") {
  RejectionFixture f;
  std::vector<std::int64_t> pairs = {0, 0};
  SECTION("naive with src and dst both on the CPU") {
    CHECK_THROWS_AS(
        pagedkv::run<SwapBlocks>(Impl::naive, {f.src_view(), f.dst_view(), 8, mapping_of(pairs)}),
        InvalidArgument);
    CHECK_THROWS_WITH(
        pagedkv::run<SwapBlocks>(Impl::naive, {f.src_view(), f.dst_view(), 8, mapping_of(pairs)}),
        Contains("src, dst: the naive implementation") && Contains("Invalid device combination"));
  }
  SECTION("optimized with src and dst both on the CPU") {
    CHECK_THROWS_AS(pagedkv::run<SwapBlocks>(Impl::optimized,
                                             {f.src_view(), f.dst_view(), 8, mapping_of(pairs)}),
                    InvalidArgument);
    CHECK_THROWS_WITH(pagedkv::run<SwapBlocks>(Impl::optimized,
                                               {f.src_view(), f.dst_view(), 8, mapping_of(pairs)}),
                      Contains("src, dst: the optimized implementation") &&
                          Contains("Invalid device combination"));
  }
  SECTION("cpu with a tensor on the GPU") {
    // The pointers are never dereferenced: validation stops first.
    const TensorView gpu_src = block_rows(f.src.data(), 4, 8, Device::cuda);
    CHECK_THROWS_AS(
        pagedkv::run<SwapBlocks>(Impl::cpu, {gpu_src, f.dst_view(), 8, mapping_of(pairs)}),
        InvalidArgument);
    CHECK_THROWS_WITH(
        pagedkv::run<SwapBlocks>(Impl::cpu, {gpu_src, f.dst_view(), 8, mapping_of(pairs)}),
        Contains("src: the cpu implementation expected a tensor on cpu, got one "
                 "on cuda"));
    const TensorView gpu_dst = block_rows(f.dst.data(), 3, 8, Device::cuda);
    CHECK_THROWS_WITH(
        pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), gpu_dst, 8, mapping_of(pairs)}),
        Contains("dst: the cpu implementation expected a tensor on cpu"));
  }
  SECTION("each GPU-side combination is accepted by the CUDA versions' contract") {
    const TensorView on_gpu_src = block_rows(f.src.data(), 4, 8, Device::cuda);
    const TensorView on_gpu_dst = block_rows(f.dst.data(), 3, 8, Device::cuda);
    CHECK(SwapBlocks::validate({f.src_view(), on_gpu_dst, 8, mapping_of(pairs)}, Impl::naive)
              .direction == CopyDirection::host_to_device);
    CHECK(SwapBlocks::validate({on_gpu_src, f.dst_view(), 8, mapping_of(pairs)}, Impl::optimized)
              .direction == CopyDirection::device_to_host);
    CHECK(SwapBlocks::validate({on_gpu_src, on_gpu_dst, 8, mapping_of(pairs)}, Impl::naive)
              .direction == CopyDirection::device_to_device);
  }
  CHECK(f.dst_untouched());
}

TEST_CASE("swap_blocks rejects null data pointers", "[swap_blocks]") {
  RejectionFixture f;
  std::vector<std::int64_t> pairs = {0, 0};
  SECTION("src") {
    CHECK_THROWS_AS(pagedkv::run<SwapBlocks>(
                        Impl::cpu, {block_rows(nullptr, 4, 8), f.dst_view(), 8, mapping_of(pairs)}),
                    InvalidArgument);
    CHECK_THROWS_WITH(pagedkv::run<SwapBlocks>(Impl::cpu, {block_rows(nullptr, 4, 8), f.dst_view(),
                                                           8, mapping_of(pairs)}),
                      Contains("src: data pointer is null but the tensor spans 32 bytes"));
  }
  SECTION("dst") {
    CHECK_THROWS_WITH(pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), block_rows(nullptr, 3, 8),
                                                           8, mapping_of(pairs)}),
                      Contains("dst: data pointer is null but the tensor spans 24 bytes"));
  }
  SECTION("block_mapping with pairs") {
    const TensorView mapping = TensorView::contiguous(nullptr, DType::i64, {1, 2});
    CHECK_THROWS_AS(pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), f.dst_view(), 8, mapping}),
                    InvalidArgument);
    CHECK_THROWS_WITH(pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), f.dst_view(), 8, mapping}),
                      Contains("block_mapping: data pointer is null"));
  }
  SECTION("an empty src without storage has no blocks") {
    CHECK_THROWS_WITH(pagedkv::run<SwapBlocks>(Impl::cpu, {block_rows(nullptr, 0, 8), f.dst_view(),
                                                           8, mapping_of(pairs)}),
                      Contains("block_size_in_bytes: expected at most the bytes of src's rows"));
  }
  CHECK(f.dst_untouched());
}

TEST_CASE("swap_blocks rejects src or dst without a usable first dimension", "[swap_blocks]") {
  RejectionFixture f;
  std::vector<std::int64_t> pairs = {0, 0};
  SECTION("0-d src") {
    const TensorView scalar = TensorView::contiguous(f.src.data(), DType::u8, {});
    CHECK_THROWS_AS(
        pagedkv::run<SwapBlocks>(Impl::cpu, {scalar, f.dst_view(), 8, mapping_of(pairs)}),
        InvalidArgument);
    CHECK_THROWS_WITH(
        pagedkv::run<SwapBlocks>(Impl::cpu, {scalar, f.dst_view(), 8, mapping_of(pairs)}),
        Contains("src: expected at least 1 dimension"));
  }
  SECTION("negative stride(0) in dst") {
    const TensorView reversed = TensorView::strided(f.dst.data() + 16, DType::u8, {3, 8}, {-8, 1});
    CHECK_THROWS_WITH(
        pagedkv::run<SwapBlocks>(Impl::cpu, {f.src_view(), reversed, 8, mapping_of(pairs)}),
        Contains("dst: expected a non-negative size(0) and stride(0)") &&
            Contains("stride(0) = -8"));
  }
  CHECK(f.dst_untouched());
}

TEST_CASE("swap_blocks rejects a pair whose source and destination partially overlap",
          "[swap_blocks]") {
  // One buffer; dst starts 2 bytes after src, so with 4-byte blocks src block 0 (bytes 0..3)
  // and dst block 0 (bytes 2..5) overlap by half: a memcpy of them would be undefined.
  std::vector<std::uint8_t> buffer = counting_bytes(20);
  const TensorView src = block_rows(buffer.data(), 4, 4);
  const TensorView dst = block_rows(buffer.data() + 2, 4, 4);
  std::vector<std::int64_t> pairs = {3, 1, 0, 0};  // pair 0 is fine, pair 1 overlaps
  CHECK_THROWS_AS(pagedkv::run<SwapBlocks>(Impl::cpu, {src, dst, 4, mapping_of(pairs)}),
                  InvalidArgument);
  CHECK_THROWS_WITH(pagedkv::run<SwapBlocks>(Impl::cpu, {src, dst, 4, mapping_of(pairs)}),
                    Contains("block_mapping[1]") && Contains("partially overlaps"));
  CHECK(buffer == counting_bytes(20));
  // Shifted by a whole block instead, the same pair is fine.
  std::vector<std::int64_t> ok = {0, 0};
  CHECK_NOTHROW(pagedkv::run<SwapBlocks>(
      Impl::cpu, {src, block_rows(buffer.data() + 4, 4, 4), 4, mapping_of(ok)}));
}

// ---------------------------------------------------------------------------------------------
// GPU: CPU reference, naive and every optimized strategy, byte for byte.

namespace {

const char* memory_name(Memory memory) {
  switch (memory) {
    case Memory::device: return "device";
    case Memory::pinned: return "pinned host";
    case Memory::host:
      return "pageable host";
  }
  return "?";
}

// A pagedkv::Buffer in device, pinned host or pageable host memory that the test fills and
// reads back whole, whatever the memory.
class Region {
 public:
  Region(Memory memory, std::size_t bytes) : buffer_(memory, bytes) {}
  std::uint8_t* data() const { return buffer_.data(); }
  Device device() const { return buffer_.memory() == Memory::device ? Device::cuda : Device::cpu; }
  void write(const std::vector<std::uint8_t>& image) {
    REQUIRE(image.size() <= buffer_.size());
    buffer_.upload(image.data(), image.size());
  }
  std::vector<std::uint8_t> read(std::size_t bytes) const {
    std::vector<std::uint8_t> image(bytes);
    buffer_.download(image.data(), bytes);
    return image;
  }

 private:
  Buffer buffer_;
};

// Random bytes, fast (splitmix64, 8 bytes per step): the buffers reach megabytes.
std::vector<std::uint8_t> random_bytes(std::size_t count, std::uint64_t seed) {
  std::vector<std::uint8_t> bytes(count);
  std::uint64_t state = seed;
  for (std::size_t i = 0; i < count; i += 8) {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    std::memcpy(bytes.data() + i, &z, std::min<std::size_t>(8, count - i));
  }
  return bytes;
}

// `count` distinct ids from [0, range), in random order.
std::vector<std::int64_t> distinct_ids(std::int64_t count, std::int64_t range,
                                       std::mt19937_64& rng) {
  std::vector<std::int64_t> ids(static_cast<std::size_t>(range));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  ids.resize(static_cast<std::size_t>(count));
  return ids;
}

// How the (src, dst) ids of a case are drawn, and whether src and dst share one buffer.
enum class Mapping {
  random_unique,  // distinct src ids, distinct dst ids, two buffers
  chained,        // (i, i + 1): one buffer for D2D (in-order result), two buffers otherwise
  duplicate_dst,  // random ids drawn with replacement: dst blocks written several times
  shared_halves,  // D2D, one buffer: src ids from the first half, dst ids from the second
  shared_random,  // D2D, one buffer: random distinct ids, reads and writes interleave
  shared_shifted  // D2D, one buffer: dst view starts 3 blocks after src
};

const char* mapping_name(Mapping mapping) {
  switch (mapping) {
    case Mapping::random_unique: return "random_unique";
    case Mapping::chained: return "chained";
    case Mapping::duplicate_dst: return "duplicate_dst";
    case Mapping::shared_halves: return "shared_halves";
    case Mapping::shared_random: return "shared_random";
    case Mapping::shared_shifted: return "shared_shifted";
  }
  return "?";
}

bool shares_buffer(Mapping mapping, Memory src_memory, Memory dst_memory) {
  const bool d2d = src_memory == Memory::device && dst_memory == Memory::device;
  return d2d && (mapping == Mapping::chained || mapping == Mapping::shared_halves ||
                 mapping == Mapping::shared_random || mapping == Mapping::shared_shifted);
}

// One GPU case: memories, block size, pairs, mapping and base offsets (for misalignment).
struct GpuCase {
  Memory src_memory = Memory::device;
  Memory dst_memory = Memory::device;
  std::int64_t block_bytes = 0;
  std::int64_t num_pairs = 0;
  Mapping mapping = Mapping::random_unique;
  std::size_t src_offset = 0;
  std::size_t dst_offset = 0;
  std::uint64_t seed = 0;
};

// Runs one case through the CPU reference and through every GPU path; all must agree on every
// byte of the destination (of the whole buffer when src and dst share it).
void check_gpu_case(const GpuCase& c, cudaStream_t stream) {
  CAPTURE(memory_name(c.src_memory), memory_name(c.dst_memory), c.block_bytes, c.num_pairs,
          mapping_name(c.mapping), c.src_offset, c.dst_offset);
  std::mt19937_64 rng(c.seed);
  const bool shared = shares_buffer(c.mapping, c.src_memory, c.dst_memory);
  const std::int64_t n = c.num_pairs;
  const std::int64_t B = c.block_bytes;

  // Capacities and pairs.
  std::int64_t src_blocks = n + 8;
  std::int64_t dst_blocks = n + 5;
  std::int64_t dst_shift_blocks = 0;  // dst view = src view + this many blocks (shared only)
  std::vector<std::int64_t> pairs;
  switch (c.mapping) {
    case Mapping::random_unique: {
      const auto from = distinct_ids(n, src_blocks, rng);
      const auto to = distinct_ids(n, dst_blocks, rng);
      for (std::int64_t i = 0; i < n; ++i) pairs.insert(pairs.end(), {from[i], to[i]});
      break;
    }
    case Mapping::chained:
      if (shared) src_blocks = dst_blocks = n + 1;
      for (std::int64_t i = 0; i < n; ++i) pairs.insert(pairs.end(), {i, i + 1});
      break;
    case Mapping::duplicate_dst: {
      std::uniform_int_distribution<std::int64_t> any_src(0, src_blocks - 1);
      std::uniform_int_distribution<std::int64_t> few_dst(0, std::max<std::int64_t>(1, n / 3));
      for (std::int64_t i = 0; i < n; ++i) pairs.insert(pairs.end(), {any_src(rng), few_dst(rng)});
      break;
    }
    case Mapping::shared_halves: {
      src_blocks = dst_blocks = 2 * n + 2;
      const auto from = distinct_ids(n, n + 1, rng);
      const auto to = distinct_ids(n, n + 1, rng);
      for (std::int64_t i = 0; i < n; ++i) pairs.insert(pairs.end(), {from[i], n + 1 + to[i]});
      break;
    }
    case Mapping::shared_random: {
      src_blocks = dst_blocks = n + 4;
      const auto from = distinct_ids(n, src_blocks, rng);
      const auto to = distinct_ids(n, dst_blocks, rng);
      for (std::int64_t i = 0; i < n; ++i) pairs.insert(pairs.end(), {from[i], to[i]});
      break;
    }
    case Mapping::shared_shifted: {
      src_blocks = n + 6;
      dst_shift_blocks = 3;
      dst_blocks = src_blocks - dst_shift_blocks;
      std::uniform_int_distribution<std::int64_t> any_src(0, src_blocks - 1);
      const auto to = distinct_ids(std::min(n, dst_blocks), dst_blocks, rng);
      for (std::size_t i = 0; i < to.size(); ++i) pairs.insert(pairs.end(), {any_src(rng), to[i]});
      break;
    }
  }
  const TensorView mapping = mapping_of(pairs);

  // Initial images: random source bytes; a poisoned destination (so untouched bytes are
  // checked), or one random image when src and dst share a buffer.
  const std::size_t src_bytes = static_cast<std::size_t>(src_blocks * B);
  const std::size_t dst_bytes = static_cast<std::size_t>(dst_blocks * B);
  const std::size_t shared_bytes = c.src_offset + src_bytes;  // dst lies inside it
  std::vector<std::uint8_t> src_image;
  std::vector<std::uint8_t> dst_image;
  if (shared) {
    src_image = random_bytes(shared_bytes, c.seed + 1);
  } else {
    src_image = random_bytes(c.src_offset + src_bytes, c.seed + 1);
    dst_image.assign(c.dst_offset + dst_bytes, 0);
    test::poison(dst_image.data(), dst_image.size());
  }

  // The expected bytes: the CPU reference on host copies laid out the same way.
  std::vector<std::uint8_t> expected_src = src_image;
  std::vector<std::uint8_t> expected_dst = dst_image;
  {
    std::uint8_t* src_base = expected_src.data() + c.src_offset;
    std::uint8_t* dst_base =
        shared ? src_base + dst_shift_blocks * B : expected_dst.data() + c.dst_offset;
    pagedkv::run<SwapBlocks>(Impl::cpu, {block_rows(src_base, src_blocks, B),
                                         block_rows(dst_base, dst_blocks, B), B, mapping});
  }
  const std::vector<std::uint8_t>& expected = shared ? expected_src : expected_dst;

  // The real memories and the views of them.
  Region src_region(c.src_memory, src_image.size());
  std::unique_ptr<Region> dst_region;
  if (!shared) dst_region = std::make_unique<Region>(c.dst_memory, dst_image.size());
  Region& written = shared ? src_region : *dst_region;
  const TensorView src_view =
      block_rows(src_region.data() + c.src_offset, src_blocks, B, src_region.device());
  const TensorView dst_view =
      shared ? block_rows(src_region.data() + c.src_offset + dst_shift_blocks * B, dst_blocks, B,
                          Device::cuda)
             : block_rows(dst_region->data() + c.dst_offset, dst_blocks, B, dst_region->device());

  auto reset = [&] {
    src_region.write(src_image);
    if (!shared) dst_region->write(dst_image);
    PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  };
  auto result = [&] {
    PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream));
    return written.read(expected.size());
  };
  auto check_path = [&](const char* path, const std::function<void()>& run) {
    INFO("path: " << path);
    reset();
    run();
    const std::vector<std::uint8_t> got = result();
    const std::int64_t at = test::first_difference(got.data(), expected.data(), expected.size());
    INFO("first differing byte: " << at);
    CHECK(at == -1);
  };

  check_path("naive", [&] {
    pagedkv::run<SwapBlocks>(Impl::naive, {src_view, dst_view, B, mapping}, stream);
  });
  check_path("optimized", [&] {
    pagedkv::run<SwapBlocks>(Impl::optimized, {src_view, dst_view, B, mapping}, stream);
  });

  const SwapBlocks::Plan plan =
      SwapBlocks::validate({src_view, dst_view, B, mapping}, Impl::optimized);
  const optimized::SwapStrategy chosen = optimized::choose_swap_strategy(plan, src_view, dst_view);
  INFO("automatic chose " << optimized::swap_strategy_name(chosen));
  const bool reachable = c.src_memory != Memory::host && c.dst_memory != Memory::host;
  if (c.mapping == Mapping::random_unique) {
    // Random unique ids over two buffers: pairs are independent, so only pageable memory keeps
    // the automatic rule from the one-launch kernel.
    CHECK(chosen == (reachable ? optimized::SwapStrategy::copy_kernel
                               : optimized::SwapStrategy::memcpy_runs));
  }
  if (c.mapping == Mapping::shared_random && n > 1 && !plan.dst_ids_disjoint_from_src_ids) {
    CHECK(chosen == optimized::SwapStrategy::memcpy_runs);  // rule 1: in order
  }
  if (c.mapping == Mapping::shared_shifted) {
    CHECK(chosen == optimized::SwapStrategy::memcpy_runs);  // rule 1: overlap with a shift
  }

  check_path("memcpy_runs", [&] {
    optimized::launch_swap_blocks_with(plan, src_view, dst_view,
                                       optimized::SwapStrategy::memcpy_runs, stream);
  });
  // copy_kernel and memcpy_batch either refuse a plan they cannot run in order (before
  // writing anything) or give the reference bytes.
  for (const auto strategy :
       {optimized::SwapStrategy::copy_kernel, optimized::SwapStrategy::memcpy_batch}) {
    const std::string name(optimized::swap_strategy_name(strategy));
    INFO("strategy " << name);
    if (strategy == optimized::SwapStrategy::memcpy_batch && !reachable) continue;  // see below
    reset();
    bool refused = false;
    try {
      optimized::launch_swap_blocks_with(plan, src_view, dst_view, strategy, stream);
    } catch (const InvalidArgument& error) {
      INFO(error.what());
      refused = true;
    }
    const std::vector<std::uint8_t> got = result();
    if (refused) {
      const std::vector<std::uint8_t>& before = shared ? src_image : dst_image;
      CHECK(test::first_difference(got.data(), before.data(), before.size()) == -1);
      // A refusal is only allowed where automatic would not pick the kernel either.
      CHECK(chosen != optimized::SwapStrategy::copy_kernel);
    } else {
      const std::int64_t at = test::first_difference(got.data(), expected.data(), expected.size());
      INFO("first differing byte: " << at);
      CHECK(at == -1);
    }
  }
}

using test::Stream;
}  // namespace

TEST_CASE("swap_blocks gpu: naive and optimized match the CPU reference", "[swap_blocks][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  struct Direction {
    Memory src, dst;
  };
  const Direction direction =
      GENERATE(Direction{Memory::pinned, Memory::device}, Direction{Memory::host, Memory::device},
               Direction{Memory::device, Memory::pinned}, Direction{Memory::device, Memory::host},
               Direction{Memory::device, Memory::device});
  // 16 and 48 bytes: tiny blocks; 32 KiB: W6; 32 KiB + 4: not a multiple of 16.
  const std::int64_t block_bytes = GENERATE(16, 48, 4096, 32768, 32768 + 4);
  Stream stream;
  const bool d2d = direction.src == Memory::device && direction.dst == Memory::device;
  std::vector<Mapping> mappings = {Mapping::random_unique, Mapping::chained,
                                   Mapping::duplicate_dst};
  if (d2d) {
    mappings.insert(mappings.end(),
                    {Mapping::shared_halves, Mapping::shared_random, Mapping::shared_shifted});
  }
  // Base offsets: aligned, 4-byte aligned only, byte aligned only.
  const std::pair<std::size_t, std::size_t> offsets[] = {{0, 0}, {4, 12}, {1, 3}};
  std::uint64_t seed = 1000 * static_cast<std::uint64_t>(block_bytes);
  for (const std::int64_t num_pairs : {1, 17, 256}) {
    for (const Mapping mapping : mappings) {
      for (const auto& [src_offset, dst_offset] : offsets) {
        GpuCase c;
        c.src_memory = direction.src;
        c.dst_memory = direction.dst;
        c.block_bytes = block_bytes;
        c.num_pairs = num_pairs;
        c.mapping = mapping;
        c.src_offset = src_offset;
        c.dst_offset = dst_offset;
        c.seed = ++seed;
        check_gpu_case(c, stream.handle);
      }
    }
  }
}

TEST_CASE("swap_blocks gpu: many pairs span several kernel launches", "[swap_blocks][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  Stream stream;
  // 9000 pairs of 16-byte blocks: three launches of up to 4000 pairs each.
  GpuCase c;
  c.block_bytes = 16;
  c.num_pairs = 9000;
  c.mapping = Mapping::random_unique;
  c.seed = 77;
  SECTION("device to device") { check_gpu_case(c, stream.handle); }
  SECTION("pinned host to device") {
    c.src_memory = Memory::pinned;
    check_gpu_case(c, stream.handle);
  }
  SECTION("W6 size: 2048 blocks of 32 KiB, device to pinned host") {
    c.block_bytes = 32768;
    c.num_pairs = 2048;
    c.dst_memory = Memory::pinned;
    check_gpu_case(c, stream.handle);
  }
}

TEST_CASE("swap_blocks gpu: the default stream and empty mappings", "[swap_blocks][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const std::int64_t B = 64;
  Region src(Memory::device, 8 * B);
  Region dst(Memory::device, 8 * B);
  const std::vector<std::uint8_t> src_image = random_bytes(8 * B, 5);
  std::vector<std::uint8_t> dst_image(8 * B);
  test::poison(dst_image.data(), dst_image.size());
  src.write(src_image);
  dst.write(dst_image);
  const TensorView src_view = block_rows(src.data(), 8, B, Device::cuda);
  const TensorView dst_view = block_rows(dst.data(), 8, B, Device::cuda);

  SECTION("an empty mapping writes nothing") {
    const TensorView empty = TensorView::contiguous(nullptr, DType::i64, {0, 2});
    pagedkv::run<SwapBlocks>(Impl::naive, {src_view, dst_view, B, empty});
    pagedkv::run<SwapBlocks>(Impl::optimized, {src_view, dst_view, B, empty});
    PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
    CHECK(dst.read(dst_image.size()) == dst_image);
  }
  SECTION("the legacy default stream works for naive and automatic, not for memcpy_batch") {
    std::vector<std::int64_t> pairs = {7, 0, 0, 7};
    pagedkv::run<SwapBlocks>(Impl::optimized,
                             {src_view, dst_view, B, mapping_of(pairs)});  // stream = nullptr
    PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<std::uint8_t> expected = dst_image;
    std::memcpy(expected.data(), src_image.data() + 7 * B, B);
    std::memcpy(expected.data() + 7 * B, src_image.data(), B);
    CHECK(dst.read(dst_image.size()) == expected);

    dst.write(dst_image);
    pagedkv::run<SwapBlocks>(Impl::naive, {src_view, dst_view, B, mapping_of(pairs)});
    PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
    CHECK(dst.read(dst_image.size()) == expected);

    dst.write(dst_image);
    const SwapBlocks::Plan plan =
        SwapBlocks::validate({src_view, dst_view, B, mapping_of(pairs)}, Impl::optimized);
    CHECK_THROWS_WITH(optimized::launch_swap_blocks_with(
                          plan, src_view, dst_view, optimized::SwapStrategy::memcpy_batch, nullptr),
                      Contains("stream: memcpy_batch") && Contains("legacy default stream"));
    PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
    CHECK(dst.read(dst_image.size()) == dst_image);
  }
}

TEST_CASE("swap_blocks gpu: optimized strategies refuse what they cannot do",
          "[swap_blocks][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  const std::int64_t B = 64;
  Region host(Memory::host, 8 * B);
  Region device(Memory::device, 8 * B);
  std::vector<std::uint8_t> dst_image(8 * B);
  test::poison(dst_image.data(), dst_image.size());
  device.write(dst_image);
  std::memcpy(host.data(), random_bytes(8 * B, 9).data(), 8 * B);
  const TensorView src_view = block_rows(host.data(), 8, B, Device::cpu);
  const TensorView dst_view = block_rows(device.data(), 8, B, Device::cuda);

  SECTION("copy_kernel cannot read pageable host memory") {
    std::vector<std::int64_t> pairs = {1, 2, 3, 4};
    const SwapBlocks::Plan plan =
        SwapBlocks::validate({src_view, dst_view, B, mapping_of(pairs)}, Impl::optimized);
    CHECK(optimized::choose_swap_strategy(plan, src_view, dst_view) ==
          optimized::SwapStrategy::memcpy_runs);
    CHECK_THROWS_WITH(optimized::launch_swap_blocks_with(
                          plan, src_view, dst_view, optimized::SwapStrategy::copy_kernel, nullptr),
                      Contains("strategy: copy_kernel needs src in device or pinned host memory"));
  }
  SECTION("copy_kernel and memcpy_batch cannot keep two writes of one block in order") {
    Region pinned(Memory::pinned, 8 * B);
    std::memcpy(pinned.data(), random_bytes(8 * B, 11).data(), 8 * B);
    const TensorView pinned_src = block_rows(pinned.data(), 8, B, Device::cpu);
    std::vector<std::int64_t> pairs = {1, 2, 3, 2};
    const SwapBlocks::Plan plan =
        SwapBlocks::validate({pinned_src, dst_view, B, mapping_of(pairs)}, Impl::optimized);
    CHECK(optimized::choose_swap_strategy(plan, pinned_src, dst_view) ==
          optimized::SwapStrategy::memcpy_runs);
    Stream stream;
    CHECK_THROWS_WITH(
        optimized::launch_swap_blocks_with(plan, pinned_src, dst_view,
                                           optimized::SwapStrategy::copy_kernel, stream.handle),
        Contains("strategy: copy_kernel") && Contains("needs them in order"));
    CHECK_THROWS_WITH(
        optimized::launch_swap_blocks_with(plan, pinned_src, dst_view,
                                           optimized::SwapStrategy::memcpy_batch, stream.handle),
        Contains("strategy: memcpy_batch") && Contains("needs them in order"));
  }
  PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  CHECK(device.read(dst_image.size()) == dst_image);
}

TEST_CASE("swap_blocks gpu: memcpy_batch with pageable host memory", "[swap_blocks][gpu]") {
  // Kept apart from the main grid so that a failure here names its cause: the CUDA 13
  // documentation of cudaMemcpyBatchAsync lists malloc'ed host pointers as valid sources, and
  // memcpy_batch relies on it for pageable memory.
  PAGEDKV_REQUIRE_GPU();
  const std::int64_t B = 4096;
  Region host(Memory::host, 16 * B);
  Region device(Memory::device, 16 * B);
  const std::vector<std::uint8_t> src_image = random_bytes(16 * B, 21);
  std::memcpy(host.data(), src_image.data(), src_image.size());
  std::vector<std::uint8_t> dst_image(16 * B);
  test::poison(dst_image.data(), dst_image.size());
  device.write(dst_image);
  std::vector<std::int64_t> pairs = {3, 0, 4, 1, 9, 7, 15, 2};
  const TensorView src_view = block_rows(host.data(), 16, B, Device::cpu);
  const TensorView dst_view = block_rows(device.data(), 16, B, Device::cuda);
  const SwapBlocks::Plan plan =
      SwapBlocks::validate({src_view, dst_view, B, mapping_of(pairs)}, Impl::optimized);
  Stream stream;
  optimized::launch_swap_blocks_with(plan, src_view, dst_view,
                                     optimized::SwapStrategy::memcpy_batch, stream.handle);
  PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream.handle));
  std::vector<std::uint8_t> expected = dst_image;
  for (std::size_t i = 0; i < pairs.size(); i += 2) {
    std::memcpy(expected.data() + pairs[i + 1] * B, src_image.data() + pairs[i] * B, B);
  }
  CHECK(device.read(dst_image.size()) == expected);
}
