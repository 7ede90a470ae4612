// Tests of reshape_and_cache_flash (vLLM csrc/cache_kernels.cu @9803b00: reshape_and_cache_flash).
//
// CPU part (runs everywhere): small hand-computed cases proving that the CPU reference puts every
// token where the spec says (NHD, HND, joint K/V allocation, per-head fp8 scales, padding slots,
// rows sliced out of a fused QKV buffer), and one test per validation rule: the call throws
// InvalidArgument naming the argument, and no cache byte changes.
//
// GPU part ([gpu]): the CPU reference, the naive and the optimized kernel write whole poisoned
// caches, which must be byte-identical (untouched bytes included) over grids of head sizes, head
// counts, block sizes, token counts, layouts, dtypes, cache kinds, scales, strided and
// misaligned inputs.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "numerics.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/reshape_and_cache_flash.h"
#include "support.h"

namespace {

using namespace pagedkv;
using Catch::Matchers::Contains;
using test::floats;
using test::int64s;
using test::poisoned;
using test::same_bytes;

// ---------------------------------------------------------------------------------------------
// Small helpers.

// Calls the implementation `impl` with one argument list.
void run(Impl impl, const TensorView& key, const TensorView& value, const TensorView& key_cache,
         const TensorView& value_cache, const TensorView& slot_mapping,
         const std::string& kv_cache_dtype, const TensorView& k_scale, const TensorView& v_scale) {
  pagedkv::run<ReshapeAndCacheFlash>(
      impl, {key, value, key_cache, value_cache, slot_mapping, kv_cache_dtype, k_scale, v_scale});
}

// The f32 elements of a poisoned buffer of `count` floats after writing `written`
// (element index → value): what a cache must hold after the op.
Buffer expected_floats(std::size_t count, const std::vector<std::pair<int, float>>& written) {
  Buffer expected = poisoned(count * sizeof(float));
  for (const auto& [index, value] : written) {
    std::memcpy(expected.data() + index * sizeof(float), &value, sizeof(float));
  }
  return expected;
}

// key[t, h, d] = 100 t + 10 h + d + 1 (exact in f32), over `rows` rows of a packed [H, D] row.
std::vector<float> numbered_rows(int rows, int num_heads, int head_size, float sign = 1.f) {
  std::vector<float> values;
  for (int t = 0; t < rows; ++t)
    for (int h = 0; h < num_heads; ++h)
      for (int d = 0; d < head_size; ++d) values.push_back(sign * (100.f * t + 10.f * h + d + 1));
  return values;
}

// An f32 "auto" case with H = 2, D = 2, block_size = 2, num_blocks = 3 (12 slots, 24 floats per
// cache), four key/value rows of which the first three are tokens with slots {3, -1, 4}: token 0
// goes to block 1 offset 1, token 1 is padding, token 2 goes to block 2 offset 0, and row 3 is
// CUDA-graph padding that slot_mapping does not cover.
struct SmallF32Case {
  Buffer key = floats(numbered_rows(4, 2, 2));
  Buffer value = floats(numbered_rows(4, 2, 2, -1.f));
  Buffer key_cache = poisoned(24 * sizeof(float));
  Buffer value_cache = poisoned(24 * sizeof(float));
  Buffer slots = int64s({3, -1, 4});
  Buffer no_scale = floats({1.f});

  // Runs the CPU reference with cache strides `cache_strides` (logical [3, 2, 2, 2]).
  void run_cpu(std::initializer_list<std::int64_t> cache_strides) {
    const TensorView key_view = TensorView::contiguous(key.data(), DType::f32, {4, 2, 2});
    const TensorView value_view = TensorView::contiguous(value.data(), DType::f32, {4, 2, 2});
    const TensorView key_cache_view =
        TensorView::strided(key_cache.data(), DType::f32, {3, 2, 2, 2}, cache_strides);
    const TensorView value_cache_view =
        TensorView::strided(value_cache.data(), DType::f32, {3, 2, 2, 2}, cache_strides);
    const TensorView slot_view = TensorView::contiguous(slots.data(), DType::i64, {3});
    const TensorView scale_view = TensorView::contiguous(no_scale.data(), DType::f32, {1});
    pagedkv::run<ReshapeAndCacheFlash>(
        Impl::cpu, {key_view, value_view, key_cache_view, value_cache_view, slot_view, "auto",
                    scale_view, scale_view});
  }
};

// ---------------------------------------------------------------------------------------------
// CPU reference: hand-computed placement.

TEST_CASE("reshape_and_cache_flash CPU: NHD places each token's heads in its slot",
          "[reshape_and_cache_flash]") {
  SmallF32Case c;
  // NHD: [num_blocks, block_size, H, D] packed, strides (8, 4, 2, 1). Slot 3 = block 1 offset 1
  // starts at element 1*8 + 1*4 = 12; slot 4 = block 2 offset 0 starts at 16. Token 0's row
  // (h0: 1, 2; h1: 11, 12) fills 12..15, token 2's row (201, 202, 211, 212) fills 16..19.
  c.run_cpu({8, 4, 2, 1});
  const Buffer key_expected = expected_floats(
      24, {{12, 1}, {13, 2}, {14, 11}, {15, 12}, {16, 201}, {17, 202}, {18, 211}, {19, 212}});
  const Buffer value_expected = expected_floats(
      24,
      {{12, -1}, {13, -2}, {14, -11}, {15, -12}, {16, -201}, {17, -202}, {18, -211}, {19, -212}});
  CHECK(same_bytes(c.key_cache, key_expected, 24 * sizeof(float)));
  CHECK(same_bytes(c.value_cache, value_expected, 24 * sizeof(float)));
}

TEST_CASE("reshape_and_cache_flash CPU: HND places each head in its own run",
          "[reshape_and_cache_flash]") {
  SmallF32Case c;
  // HND: physical [num_blocks, H, block_size, D], seen as logical [N, B, H, D] with strides
  // (8, 2, 4, 1). Slot 3 (block 1, offset 1): head 0 at 8 + 2 = 10, head 1 at 8 + 2 + 4 = 14.
  // Slot 4 (block 2, offset 0): head 0 at 16, head 1 at 20.
  c.run_cpu({8, 2, 4, 1});
  const Buffer key_expected = expected_floats(
      24, {{10, 1}, {11, 2}, {14, 11}, {15, 12}, {16, 201}, {17, 202}, {20, 211}, {21, 212}});
  CHECK(same_bytes(c.key_cache, key_expected, 24 * sizeof(float)));
}

TEST_CASE("reshape_and_cache_flash CPU: joint K/V allocation keeps keys and values apart",
          "[reshape_and_cache_flash]") {
  // FlashInfer-style kv = [num_blocks = 2, 2, block_size = 2, H = 1, D = 2] (16 floats):
  // key_cache = kv[:, 0], value_cache = kv[:, 1], both with block stride 2 * 2 * 1 * 2 = 8.
  Buffer key = floats({1, 2, 3, 4});  // tokens 0 and 1, one head of 2
  Buffer value = floats({-1, -2, -3, -4});
  Buffer kv = poisoned(16 * sizeof(float));
  Buffer slots = int64s({1, 2});
  Buffer no_scale = floats({1.f});
  auto* kv_floats = reinterpret_cast<float*>(kv.data());
  const TensorView key_cache =
      TensorView::strided(kv_floats, DType::f32, {2, 2, 1, 2}, {8, 2, 2, 1});
  const TensorView value_cache =
      TensorView::strided(kv_floats + 4, DType::f32, {2, 2, 1, 2}, {8, 2, 2, 1});
  const TensorView scale = TensorView::contiguous(no_scale.data(), DType::f32, {1});
  pagedkv::run<ReshapeAndCacheFlash>(
      Impl::cpu,
      {TensorView::contiguous(key.data(), DType::f32, {2, 1, 2}),
       TensorView::contiguous(value.data(), DType::f32, {2, 1, 2}), key_cache, value_cache,
       TensorView::contiguous(slots.data(), DType::i64, {2}), "auto", scale, scale});
  // Slot 1 = block 0 offset 1: key at 0 + 2 = 2, value at 4 + 2 = 6.
  // Slot 2 = block 1 offset 0: key at 8, value at 8 + 4 = 12.
  const Buffer expected =
      expected_floats(16, {{2, 1}, {3, 2}, {6, -1}, {7, -2}, {8, 3}, {9, 4}, {12, -3}, {13, -4}});
  CHECK(same_bytes(kv, expected, 16 * sizeof(float)));
}

TEST_CASE("reshape_and_cache_flash CPU: rows sliced out of a fused QKV buffer",
          "[reshape_and_cache_flash]") {
  // qkv = [T = 2, q (2) | k (2) | v (2)] f32, H = 1, D = 2: key = qkv[:, 2:4], value =
  // qkv[:, 4:6], both with row stride 6.
  Buffer qkv = floats({90, 91, 1, 2, -1, -2,  //
                       92, 93, 3, 4, -3, -4});
  auto* qkv_floats = reinterpret_cast<float*>(qkv.data());
  Buffer key_cache = poisoned(4 * sizeof(float));  // [2 blocks, block_size 1, 1, 2]
  Buffer value_cache = poisoned(4 * sizeof(float));
  Buffer slots = int64s({1, 0});
  Buffer no_scale = floats({1.f});
  const TensorView scale = TensorView::contiguous(no_scale.data(), DType::f32, {1});
  pagedkv::run<ReshapeAndCacheFlash>(
      Impl::cpu, {TensorView::strided(qkv_floats + 2, DType::f32, {2, 1, 2}, {6, 2, 1}),
                  TensorView::strided(qkv_floats + 4, DType::f32, {2, 1, 2}, {6, 2, 1}),
                  TensorView::contiguous(key_cache.data(), DType::f32, {2, 1, 1, 2}),
                  TensorView::contiguous(value_cache.data(), DType::f32, {2, 1, 1, 2}),
                  TensorView::contiguous(slots.data(), DType::i64, {2}), "auto", scale, scale});
  // Token 0 → slot 1 (elements 2, 3), token 1 → slot 0 (elements 0, 1).
  CHECK(same_bytes(key_cache, expected_floats(4, {{0, 3}, {1, 4}, {2, 1}, {3, 2}}), 16));
  CHECK(same_bytes(value_cache, expected_floats(4, {{0, -3}, {1, -4}, {2, -1}, {3, -2}}), 16));
}

TEST_CASE("reshape_and_cache_flash CPU: fp8 with per-head scales (hand-encoded)",
          "[reshape_and_cache_flash]") {
  // H = 2, D = 2, one token into slot 1 of a [2 blocks, block_size 1, 2, 2] fp8 E4M3 cache:
  // bytes 4..7, bytes 0..3 stay poisoned. key / k_scale per head:
  //   head 0 (scale 2):   1 / 2 = 0.5    → 0x30 (exponent 6, mantissa 0)
  //                      -3 / 2 = -1.5   → 0xBC (sign, exponent 7, mantissa 100)
  //   head 1 (scale 0.5): 100 / 0.5 = 200 → halfway between 192 and 208: ties to even, 192 = 0x74
  //                      1000 / 0.5 = 2000 → beyond 448: saturates to 448 = 0x7E
  // value / v_scale:
  //   head 0 (scale 4):   2 / 4 = 0.5 → 0x30;  0.25 / 4 = 2^-4 → 0x18
  //   head 1 (scale 1):  -7 → 0xCE (sign, exponent 9, mantissa 110);
  //                       0.001 → subnormal: 0.512 × 2^-9 rounds up to 2^-9 = 0x01
  Buffer key = floats({1, -3, 100, 1000});
  Buffer value = floats({2, 0.25f, -7, 0.001f});
  Buffer k_scale = floats({2, 0.5f});
  Buffer v_scale = floats({4, 1});
  Buffer key_cache = poisoned(8);
  Buffer value_cache = poisoned(8);
  Buffer slots = int64s({1});
  pagedkv::run<ReshapeAndCacheFlash>(
      Impl::cpu, {TensorView::contiguous(key.data(), DType::f32, {1, 2, 2}),
                  TensorView::contiguous(value.data(), DType::f32, {1, 2, 2}),
                  TensorView::contiguous(key_cache.data(), DType::u8, {2, 1, 2, 2}),
                  TensorView::contiguous(value_cache.data(), DType::u8, {2, 1, 2, 2}),
                  TensorView::contiguous(slots.data(), DType::i64, {1}), "fp8_e4m3",
                  TensorView::contiguous(k_scale.data(), DType::f32, {2}),
                  TensorView::contiguous(v_scale.data(), DType::f32, {2})});
  Buffer key_expected = poisoned(8);
  Buffer value_expected = poisoned(8);
  const std::uint8_t key_bytes[4] = {0x30, 0xBC, 0x74, 0x7E};
  const std::uint8_t value_bytes[4] = {0x30, 0x18, 0xCE, 0x01};
  std::memcpy(key_expected.data() + 4, key_bytes, 4);
  std::memcpy(value_expected.data() + 4, value_bytes, 4);
  CHECK(same_bytes(key_cache, key_expected, 8));
  CHECK(same_bytes(value_cache, value_expected, 8));
}

TEST_CASE("reshape_and_cache_flash CPU: fp8 bytes are the numerics' encoding of x / scale",
          "[reshape_and_cache_flash]") {
  const std::string kind = GENERATE("fp8", "fp8_e4m3", "fp8_e5m2");
  CAPTURE(kind);
  // bf16 activations [5, 4, 16], one token per slot in order, per-tensor scales.
  constexpr int kTokens = 5, kHeads = 4, kHeadSize = 16, kRow = kHeads * kHeadSize;
  Buffer key(Memory::host, kTokens * kRow * 2);
  Buffer value(Memory::host, kTokens * kRow * 2);
  test::fill_random(key.data(), DType::bf16, kTokens * kRow, 11, 300.f);
  test::fill_random(value.data(), DType::bf16, kTokens * kRow, 12, 3.f);
  const float key_scale = 0.37f, value_scale = 0.0061f;
  Buffer k_scale = floats({key_scale});
  Buffer v_scale = floats({value_scale});
  Buffer key_cache = poisoned(kTokens * kRow);
  Buffer value_cache = poisoned(kTokens * kRow);
  Buffer slots = int64s({0, 1, 2, 3, 4});
  pagedkv::run<ReshapeAndCacheFlash>(
      Impl::cpu,
      {TensorView::contiguous(key.data(), DType::bf16, {kTokens, kHeads, kHeadSize}),
       TensorView::contiguous(value.data(), DType::bf16, {kTokens, kHeads, kHeadSize}),
       TensorView::contiguous(key_cache.data(), DType::u8, {kTokens, 1, kHeads, kHeadSize}),
       TensorView::contiguous(value_cache.data(), DType::u8, {kTokens, 1, kHeads, kHeadSize}),
       TensorView::contiguous(slots.data(), DType::i64, {kTokens}), kind,
       TensorView::contiguous(k_scale.data(), DType::f32, {1}),
       TensorView::contiguous(v_scale.data(), DType::f32, {1})});
  // Slot t is block t (block_size 1) and the cache is packed: byte i encodes element i.
  const auto encode = [&](float x) {
    return kind == "fp8_e5m2" ? numerics::float_to_fp8_e5m2(x) : numerics::float_to_fp8_e4m3(x);
  };
  int mismatches = 0;
  for (int i = 0; i < kTokens * kRow; ++i) {
    std::uint16_t key_bits, value_bits;
    std::memcpy(&key_bits, key.data() + 2 * i, 2);
    std::memcpy(&value_bits, value.data() + 2 * i, 2);
    mismatches += key_cache.data()[i] != encode(numerics::bf16_bits_to_float(key_bits) / key_scale);
    mismatches +=
        value_cache.data()[i] != encode(numerics::bf16_bits_to_float(value_bits) / value_scale);
  }
  CHECK(mismatches == 0);
}

// ---------------------------------------------------------------------------------------------
// Validation: one test per rule. A valid bf16 "auto" call (or fp8 after use_fp8()), which each
// test breaks in exactly one way; then the call must throw InvalidArgument naming the argument,
// and no byte of either cache may change.

struct ValidCall {
  static constexpr int kRows = 4, kHeads = 2, kHeadSize = 8, kBlocks = 3, kBlockSize = 4;
  static constexpr int kCacheElements = kBlocks * kBlockSize * kHeads * kHeadSize;

  Buffer key_data{Memory::host, kRows* kHeads* kHeadSize * 2};
  Buffer value_data{Memory::host, kRows* kHeads* kHeadSize * 2};
  Buffer key_cache_data = poisoned(kCacheElements * 2);
  Buffer value_cache_data = poisoned(kCacheElements * 2);
  Buffer slot_data = int64s({0, 5, -1, 11});
  Buffer scale_data = floats({0.5f, 0.25f});

  TensorView key = TensorView::contiguous(key_data.data(), DType::bf16, {kRows, kHeads, kHeadSize});
  TensorView value =
      TensorView::contiguous(value_data.data(), DType::bf16, {kRows, kHeads, kHeadSize});
  TensorView key_cache = TensorView::contiguous(key_cache_data.data(), DType::bf16,
                                                {kBlocks, kBlockSize, kHeads, kHeadSize});
  TensorView value_cache = TensorView::contiguous(value_cache_data.data(), DType::bf16,
                                                  {kBlocks, kBlockSize, kHeads, kHeadSize});
  TensorView slot_mapping = TensorView::contiguous(slot_data.data(), DType::i64, {4});
  std::string kv_cache_dtype = "auto";
  TensorView k_scale = TensorView::contiguous(scale_data.data(), DType::f32, {1});
  TensorView v_scale = TensorView::contiguous(scale_data.data(), DType::f32, {1});
  Impl impl = Impl::cpu;

  ValidCall() {
    test::fill_random(key_data.data(), DType::bf16, kRows * kHeads * kHeadSize, 1);
    test::fill_random(value_data.data(), DType::bf16, kRows * kHeads * kHeadSize, 2);
  }

  // Switches to an fp8 E4M3 cache of u8 bytes (same buffers, now kCacheElements bytes each).
  void use_fp8() {
    kv_cache_dtype = "fp8_e4m3";
    key_cache.dtype = DType::u8;
    value_cache.dtype = DType::u8;
  }

  void call() const {
    run(impl, key, value, key_cache, value_cache, slot_mapping, kv_cache_dtype, k_scale, v_scale);
  }

  bool nothing_written() const {
    const Buffer fresh = poisoned(kCacheElements * 2);
    return same_bytes(key_cache_data, fresh, kCacheElements * 2) &&
           same_bytes(value_cache_data, fresh, kCacheElements * 2);
  }
};

TEST_CASE("reshape_and_cache_flash: the valid call used by the rule tests passes",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  CHECK_NOTHROW(call.call());
  ValidCall fp8;
  fp8.use_fp8();
  CHECK_NOTHROW(fp8.call());
}

TEST_CASE("reshape_and_cache_flash rejects a slot beyond num_blocks × block_size",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  reinterpret_cast<std::int64_t*>(call.slot_data.data())[1] = 12;  // 3 blocks × 4 slots
  CHECK_REJECTED(call, "slot_mapping");
  CHECK_THROWS_WITH(call.call(), Contains("slot_mapping[1] = 12"));
}

TEST_CASE("reshape_and_cache_flash rejects a cache with another head count than key",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  call.key_cache = TensorView::contiguous(call.key_cache_data.data(), DType::bf16, {3, 4, 1, 8});
  call.value_cache =
      TensorView::contiguous(call.value_cache_data.data(), DType::bf16, {3, 4, 1, 8});
  CHECK_REJECTED(call, "key_cache");
  CHECK_THROWS_WITH(call.call(), Contains("num_heads"));
}

TEST_CASE("reshape_and_cache_flash rejects a cache with another head size than key",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  call.key_cache = TensorView::contiguous(call.key_cache_data.data(), DType::bf16, {3, 4, 2, 4});
  call.value_cache =
      TensorView::contiguous(call.value_cache_data.data(), DType::bf16, {3, 4, 2, 4});
  CHECK_REJECTED(call, "key_cache");
  CHECK_THROWS_WITH(call.call(), Contains("head_size"));
}

TEST_CASE("reshape_and_cache_flash rejects value with another head count or size than key",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  call.value = TensorView::contiguous(call.value_data.data(), DType::bf16, {4, 1, 16});
  CHECK_REJECTED(call, "value");
}

TEST_CASE("reshape_and_cache_flash rejects an unsupported activation dtype",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  call.key.dtype = DType::u8;
  call.value.dtype = DType::u8;
  CHECK_REJECTED(call, "key");
  CHECK_THROWS_WITH(call.call(), Contains("u8"));
}

TEST_CASE("reshape_and_cache_flash rejects value of another dtype than key",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  call.value.dtype = DType::f16;
  CHECK_REJECTED(call, "value");
}

TEST_CASE("reshape_and_cache_flash rejects an unsupported kv_cache_dtype string",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  call.kv_cache_dtype = GENERATE("fp8_ds_mla", "int8", "fp8_inc", "nvfp4", "", "AUTO");
  CAPTURE(call.kv_cache_dtype);
  CHECK_REJECTED(call, "kv_cache_dtype");
}

TEST_CASE("reshape_and_cache_flash rejects kv_cache_dtype float16 with bf16 activations",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  call.kv_cache_dtype = "float16";
  CHECK_REJECTED(call, "kv_cache_dtype");
  call.kv_cache_dtype = "bfloat16";  // the matching name is accepted
  CHECK_NOTHROW(call.call());
}

TEST_CASE("reshape_and_cache_flash rejects an auto cache of another dtype than key",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  call.key_cache.dtype = DType::f16;
  call.value_cache.dtype = DType::f16;
  CHECK_REJECTED(call, "key_cache");
}

TEST_CASE("reshape_and_cache_flash rejects an fp8 cache whose tensor is not one byte wide",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  call.kv_cache_dtype = GENERATE("fp8", "fp8_e4m3", "fp8_e5m2");
  CAPTURE(call.kv_cache_dtype);
  CHECK_REJECTED(call, "key_cache");  // still bf16
  // Every one-byte dtype is accepted as fp8 storage.
  for (DType byte_dtype : {DType::u8, DType::f8_e4m3, DType::f8_e5m2}) {
    call.key_cache.dtype = byte_dtype;
    call.value_cache.dtype = byte_dtype;
    CHECK_NOTHROW(call.call());
  }
}

TEST_CASE("reshape_and_cache_flash rejects a value cache of another dtype than the key cache",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  call.use_fp8();
  call.value_cache.dtype = DType::f8_e4m3;
  CHECK_REJECTED(call, "value_cache");
}

TEST_CASE("reshape_and_cache_flash rejects an int32 slot_mapping", "[reshape_and_cache_flash]") {
  ValidCall call;
  Buffer slots32(Memory::host, 4 * 4);
  const std::int32_t values[4] = {0, 5, -1, 11};
  std::memcpy(slots32.data(), values, sizeof values);
  call.slot_mapping = TensorView::contiguous(slots32.data(), DType::i32, {4});
  CHECK_REJECTED(call, "slot_mapping");
  CHECK_THROWS_WITH(call.call(), Contains("i64"));
}

TEST_CASE("reshape_and_cache_flash rejects a slot_mapping that is not 1-D and contiguous",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  SECTION("2-D") {
    call.slot_mapping = TensorView::contiguous(call.slot_data.data(), DType::i64, {2, 2});
    CHECK_REJECTED(call, "slot_mapping");
  }
  SECTION("strided") {
    call.slot_mapping = TensorView::strided(call.slot_data.data(), DType::i64, {2}, {2});
    CHECK_REJECTED(call, "slot_mapping");
  }
}

TEST_CASE("reshape_and_cache_flash rejects more slots than key or value rows",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  SECTION("key") {
    call.key = TensorView::contiguous(call.key_data.data(), DType::bf16, {3, 2, 8});
    CHECK_REJECTED(call, "slot_mapping");
  }
  SECTION("value") {
    call.value = TensorView::contiguous(call.value_data.data(), DType::bf16, {3, 2, 8});
    CHECK_REJECTED(call, "slot_mapping");
  }
}

TEST_CASE("reshape_and_cache_flash rejects a scale that is neither [1] nor [num_heads]",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  call.use_fp8();
  Buffer three = floats({1, 1, 1});
  call.k_scale = TensorView::contiguous(three.data(), DType::f32, {3});
  call.v_scale = call.k_scale;
  CHECK_REJECTED(call, "k_scale");
  CHECK_THROWS_WITH(call.call(), Contains("num_heads = 2"));
}

TEST_CASE("reshape_and_cache_flash rejects k_scale and v_scale of different shapes",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  call.use_fp8();
  call.k_scale = TensorView::contiguous(call.scale_data.data(), DType::f32, {2});  // per head
  call.v_scale = TensorView::contiguous(call.scale_data.data(), DType::f32, {1});  // per tensor
  CHECK_REJECTED(call, "v_scale");
}

TEST_CASE("reshape_and_cache_flash rejects a scale that is not f32", "[reshape_and_cache_flash]") {
  ValidCall call;
  call.use_fp8();
  call.v_scale.dtype = DType::f16;
  CHECK_REJECTED(call, "v_scale");
}

TEST_CASE("reshape_and_cache_flash rejects a missing scale for fp8 but ignores it for auto",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  call.k_scale.data = nullptr;
  CHECK_NOTHROW(call.call());  // "auto" never reads the scales
  call.k_scale = TensorView{};  // 0-d, null: still fine for "auto"
  call.v_scale = TensorView::contiguous(nullptr, DType::i32, {0});
  CHECK_NOTHROW(call.call());

  ValidCall fp8;
  fp8.use_fp8();
  fp8.k_scale.data = nullptr;
  CHECK_REJECTED(fp8, "k_scale");
}

TEST_CASE("reshape_and_cache_flash rejects key and value caches with different strides",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  // Same shape, value cache in HND order: upstream would address it with the key cache's strides.
  call.value_cache = TensorView::strided(call.value_cache_data.data(), DType::bf16, {3, 4, 2, 8},
                                         {64, 8, 32, 1});
  CHECK_REJECTED(call, "value_cache");
}

TEST_CASE("reshape_and_cache_flash rejects key and value caches with different shapes",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  call.value_cache =
      TensorView::contiguous(call.value_cache_data.data(), DType::bf16, {2, 4, 2, 8});
  CHECK_REJECTED(call, "value_cache");
}

TEST_CASE("reshape_and_cache_flash rejects inner dimensions that are not packed",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  SECTION("key heads apart") {
    call.key = TensorView::strided(call.key_data.data(), DType::bf16, {2, 2, 8}, {32, 9, 1});
    CHECK_REJECTED(call, "key");
  }
  SECTION("value elements apart") {
    call.value = TensorView::strided(call.value_data.data(), DType::bf16, {4, 2, 4}, {16, 8, 2});
    call.key = TensorView::contiguous(call.key_data.data(), DType::bf16, {4, 2, 4});
    CHECK_REJECTED(call, "value");
  }
  SECTION("cache elements apart") {
    call.key_cache = TensorView::strided(call.key_cache_data.data(), DType::bf16, {3, 2, 2, 8},
                                         {64, 32, 16, 2});
    call.value_cache = call.key_cache;
    call.value_cache.data = call.value_cache_data.data();
    CHECK_REJECTED(call, "key_cache");
  }
}

TEST_CASE("reshape_and_cache_flash rejects cache strides that overlap elements",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  // Blocks 32 elements apart but 64 elements long: block b + 1 starts in the middle of block b.
  call.key_cache = TensorView::strided(call.key_cache_data.data(), DType::bf16, {3, 4, 2, 8},
                                       {32, 16, 8, 1});
  call.value_cache = call.key_cache;
  call.value_cache.data = call.value_cache_data.data();
  CHECK_REJECTED(call, "key_cache");
}

TEST_CASE("reshape_and_cache_flash rejects one buffer passed as both caches",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  call.value_cache = call.key_cache;
  CHECK_REJECTED(call, "value_cache");
}

TEST_CASE("reshape_and_cache_flash rejects wrong ranks and negative strides",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  SECTION("key 2-D") {
    call.key = TensorView::contiguous(call.key_data.data(), DType::bf16, {4, 16});
    CHECK_REJECTED(call, "key");
  }
  SECTION("key_cache 5-D") {
    call.key_cache =
        TensorView::contiguous(call.key_cache_data.data(), DType::bf16, {3, 4, 2, 8, 1});
    CHECK_REJECTED(call, "key_cache");
  }
  SECTION("value negative row stride") {
    call.value.strides[0] = -16;
    CHECK_REJECTED(call, "value");
  }
}

TEST_CASE("reshape_and_cache_flash rejects null data pointers", "[reshape_and_cache_flash]") {
  ValidCall call;
  SECTION("key") {
    call.key.data = nullptr;
    CHECK_REJECTED(call, "key");
  }
  SECTION("value_cache") {
    call.value_cache.data = nullptr;
    CHECK_REJECTED(call, "value_cache");
  }
  SECTION("slot_mapping") {
    call.slot_mapping.data = nullptr;
    CHECK_REJECTED(call, "slot_mapping");
  }
}

TEST_CASE("reshape_and_cache_flash rejects a tensor on the wrong device",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  SECTION("CPU reference given a CUDA key") {
    call.key.device = Device::cuda;
    CHECK_REJECTED(call, "key");
  }
  SECTION("CPU reference given a CUDA slot_mapping") {
    call.slot_mapping.device = Device::cuda;
    CHECK_REJECTED(call, "slot_mapping");
  }
  SECTION("CPU reference given a CUDA fp8 scale") {
    call.use_fp8();
    call.k_scale.device = Device::cuda;
    CHECK_REJECTED(call, "k_scale");
  }
  // The device implementations refuse host memory before any CUDA call: no GPU needed.
  SECTION("naive given host tensors") {
    call.impl = Impl::naive;
    CHECK_REJECTED(call, "key");
    CHECK_THROWS_WITH(call.call(), Contains("cuda"));
  }
  SECTION("optimized given a host key cache") {
    call.impl = Impl::optimized;
    call.key.device = call.value.device = Device::cuda;
    CHECK_REJECTED(call, "key_cache");
  }
}

TEST_CASE("reshape_and_cache_flash rejects a token row too long for 32-bit indexing",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  // Views only: the contract refuses them before touching memory.
  call.key = TensorView::contiguous(call.key_data.data(), DType::bf16, {1, 1 << 15, 1 << 15});
  call.value = TensorView::contiguous(call.value_data.data(), DType::bf16, {1, 1 << 15, 1 << 15});
  CHECK_REJECTED(call, "key");
}

TEST_CASE("reshape_and_cache_flash with zero tokens is a no-op", "[reshape_and_cache_flash]") {
  ValidCall call;
  call.slot_mapping = TensorView::contiguous(nullptr, DType::i64, {0});
  CHECK_NOTHROW(call.call());
  CHECK(call.nothing_written());
  call.key = TensorView::contiguous(nullptr, DType::bf16, {0, 2, 8});  // no rows at all
  call.value = call.key;
  CHECK_NOTHROW(call.call());
  CHECK(call.nothing_written());
  const ReshapeAndCacheFlash::Plan plan =
      ReshapeAndCacheFlash::validate({call.key, call.value, call.key_cache, call.value_cache,
                                      call.slot_mapping, "auto", call.k_scale, call.v_scale},
                                     Impl::cpu);
  CHECK(plan.num_tokens == 0);
}

TEST_CASE("reshape_and_cache_flash skips padding slots and writes only the given tokens",
          "[reshape_and_cache_flash]") {
  ValidCall call;
  reinterpret_cast<std::int64_t*>(call.slot_data.data())[0] = -1;  // slots {-1, 5, -1, 11}
  call.call();
  // Exactly slots 5 and 11 (each 2 heads × 8 bf16 = 32 bytes) changed, in both caches.
  const Buffer fresh = poisoned(ValidCall::kCacheElements * 2);
  for (const Buffer* cache : {&call.key_cache_data, &call.value_cache_data}) {
    const Buffer& source = cache == &call.key_cache_data ? call.key_data : call.value_data;
    Buffer expected = copy_to(Memory::host, fresh);
    std::memcpy(expected.data() + 5 * 32, source.data() + 1 * 32, 32);   // token 1 → slot 5
    std::memcpy(expected.data() + 11 * 32, source.data() + 3 * 32, 32);  // token 3 → slot 11
    CHECK(same_bytes(*cache, expected, ValidCall::kCacheElements * 2));
  }
}

// ---------------------------------------------------------------------------------------------
// GPU: CPU reference vs naive vs optimized, byte for byte over whole poisoned caches.

enum class CacheLayout { nhd, hnd, joint_nhd, joint_hnd };

const char* layout_name(CacheLayout layout) {
  switch (layout) {
    case CacheLayout::nhd: return "NHD";
    case CacheLayout::hnd: return "HND";
    case CacheLayout::joint_nhd: return "joint NHD [N, 2, B, H, D]";
    case CacheLayout::joint_hnd: return "joint HND [N, 2, H, B, D]";
  }
  return "?";
}

struct ProblemSpec {
  DType activation = DType::bf16;
  std::string kv_cache_dtype = "auto";
  std::int64_t num_heads = 8;
  std::int64_t head_size = 128;
  std::int64_t block_size = 16;
  std::int64_t num_tokens = 300;
  CacheLayout layout = CacheLayout::nhd;
  bool padding = true;            // every fifth slot is -1
  bool contiguous_slots = false;  // slots start + t (prefill) instead of random unique slots
  bool qkv_rows = false;          // key/value rows sliced out of a fused [T, 4·H·D] QKV buffer
  bool misaligned = false;        // every base pointer one element past an aligned address
  bool per_head_scale = false;    // k_scale / v_scale of [num_heads] instead of [1]
  std::uint64_t seed = 1;

  std::string describe() const {
    return std::string(dtype_name(activation)) + " → \"" + kv_cache_dtype + "\", H=" +
           std::to_string(num_heads) + " D=" + std::to_string(head_size) +
           " block_size=" + std::to_string(block_size) + " T=" + std::to_string(num_tokens) +
           ", " + layout_name(layout) + (padding ? ", padding" : "") +
           (contiguous_slots ? ", contiguous slots" : ", random slots") +
           (qkv_rows ? ", QKV rows" : "") + (misaligned ? ", misaligned" : "") +
           (per_head_scale ? ", per-head scales" : ", per-tensor scales");
  }
};

// Host inputs and a poisoned cache, with views onto them.
struct HostProblem {
  Buffer activations;  // key and value rows (both inside one fused buffer if qkv_rows)
  Buffer cache;        // both caches, whatever the layout
  Buffer slots;
  Buffer scales;  // k_scale then v_scale
  TensorView key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale;
};

std::uint16_t half_or_bf16_bits(DType dtype, float x) {
  return dtype == DType::f16 ? numerics::float_to_half_bits(x) : numerics::float_to_bf16_bits(x);
}

// Writes `x` as element `index` of an activation buffer of `dtype`.
void set_activation(std::uint8_t* base, DType dtype, std::int64_t index, float x) {
  if (dtype == DType::f32) {
    std::memcpy(base + 4 * index, &x, 4);
  } else {
    const std::uint16_t bits = half_or_bf16_bits(dtype, x);
    std::memcpy(base + 2 * index, &bits, 2);
  }
}

HostProblem make_problem(const ProblemSpec& spec) {
  HostProblem p;
  const std::int64_t H = spec.num_heads, D = spec.head_size, T = spec.num_tokens;
  const std::int64_t row = H * D;
  const std::int64_t rows = T + 2;  // two padding rows past the slots (CUDA-graph padding)
  const std::int64_t act_bytes = dtype_size(spec.activation);
  const std::int64_t shift = spec.misaligned ? 1 : 0;  // elements

  // Activations: either [key rows | value rows] or one fused [rows, q (2H) | k (H) | v (H)].
  const std::int64_t pitch = spec.qkv_rows ? 4 * row : row;
  const std::int64_t act_elements = spec.qkv_rows ? rows * pitch : 2 * rows * row;
  p.activations = Buffer(Memory::host, (act_elements + shift) * act_bytes);
  test::fill_random(p.activations.data(), spec.activation, act_elements + shift, spec.seed);
  auto* act_base = p.activations.data() + shift * act_bytes;
  const std::int64_t key_first = spec.qkv_rows ? 2 * row : 0;
  const std::int64_t value_first = spec.qkv_rows ? 3 * row : rows * row;
  // Special values in the first key row: overflow and saturation, infinities, NaN, tiny.
  const float specials[] = {std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(), 60000.f, -1.0e4f, 1.0e-6f,
                            -0.f};
  for (std::int64_t i = 0; i < std::min<std::int64_t>(row, 7); ++i) {
    set_activation(act_base, spec.activation, key_first + i, specials[i]);
  }
  p.key = TensorView::strided(act_base + key_first * act_bytes, spec.activation, {rows, H, D},
                              {pitch, D, 1});
  p.value = TensorView::strided(act_base + value_first * act_bytes, spec.activation, {rows, H, D},
                                {pitch, D, 1});

  // Caches: num_blocks leaves room for random slots; both caches in one buffer.
  const bool fp8 = spec.kv_cache_dtype.rfind("fp8", 0) == 0;
  const DType cache_dtype = fp8 ? DType::u8 : spec.activation;
  const std::int64_t cache_elem = dtype_size(cache_dtype);
  const std::int64_t B = spec.block_size;
  const std::int64_t num_blocks = (T + B - 1) / B + 2;
  const std::int64_t block = B * H * D;  // elements of one block of one cache
  // Poisoned, slack past the end included: every byte the op must not touch is compared too.
  p.cache = poisoned(static_cast<std::size_t>((2 * num_blocks * block + shift) * cache_elem));
  auto* cache_base = p.cache.data() + shift * cache_elem;
  const bool joint = spec.layout == CacheLayout::joint_nhd || spec.layout == CacheLayout::joint_hnd;
  const bool hnd = spec.layout == CacheLayout::hnd || spec.layout == CacheLayout::joint_hnd;
  const std::int64_t block_stride = joint ? 2 * block : block;
  const std::int64_t page_stride = hnd ? D : H * D;
  const std::int64_t head_stride = hnd ? B * D : D;
  const std::int64_t value_offset = joint ? block : num_blocks * block;
  p.key_cache = TensorView::strided(cache_base, cache_dtype, {num_blocks, B, H, D},
                                    {block_stride, page_stride, head_stride, 1});
  p.value_cache = TensorView::strided(cache_base + value_offset * cache_elem, cache_dtype,
                                      {num_blocks, B, H, D},
                                      {block_stride, page_stride, head_stride, 1});

  // Slots: unique, random or contiguous; every fifth one padding.
  std::mt19937_64 rng(spec.seed * 7919 + 17);
  const std::int64_t num_slots = num_blocks * B;
  std::vector<std::int64_t> slots(T);
  if (spec.contiguous_slots) {
    const std::int64_t start = static_cast<std::int64_t>(rng() % (num_slots - T + 1));
    std::iota(slots.begin(), slots.end(), start);
  } else {
    std::vector<std::int64_t> all(num_slots);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng);
    std::copy(all.begin(), all.begin() + T, slots.begin());
  }
  if (spec.padding) {
    for (std::int64_t t = 2; t < T; t += 5) slots[t] = -1;
  }
  p.slots = int64s(slots);
  p.slot_mapping = TensorView::contiguous(p.slots.data(), DType::i64, {T});

  // Scales: per-tensor or per-head, spread so that some values saturate and some are subnormal.
  const std::int64_t num_scales = spec.per_head_scale ? H : 1;
  std::vector<float> scales(2 * num_scales);
  std::uniform_real_distribution<float> log_scale(-6.f, 2.f);
  for (float& s : scales) s = std::exp2(log_scale(rng));
  p.scales = floats(scales);
  auto* scale_floats = reinterpret_cast<float*>(p.scales.data());
  p.k_scale = TensorView::contiguous(scale_floats, DType::f32, {num_scales});
  p.v_scale = TensorView::contiguous(scale_floats + num_scales, DType::f32, {num_scales});
  return p;
}

// The same call on device copies of the inputs and of the poisoned cache; returns the cache.
Buffer run_on_device(Impl impl, const HostProblem& p, const std::string& kv_cache_dtype) {
  const Buffer activations = copy_to(Memory::device, p.activations);
  const Buffer cache = copy_to(Memory::device, p.cache);
  const Buffer slots = copy_to(Memory::device, p.slots);
  const Buffer scales = copy_to(Memory::device, p.scales);
  const auto on_device = [](const TensorView& view, const Buffer& host, const Buffer& device) {
    return test::rebase(view, host.data(), device.data(), Device::cuda);
  };
  run(impl, on_device(p.key, p.activations, activations),
      on_device(p.value, p.activations, activations), on_device(p.key_cache, p.cache, cache),
      on_device(p.value_cache, p.cache, cache), on_device(p.slot_mapping, p.slots, slots),
      kv_cache_dtype, on_device(p.k_scale, p.scales, scales),
      on_device(p.v_scale, p.scales, scales));
  PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  Buffer result(Memory::host, p.cache.size());
  cache.download(result.data(), p.cache.size());
  return result;
}

// CPU reference, naive and optimized on the same problem: whole caches byte-identical.
void check_three_way(const ProblemSpec& spec) {
  INFO(spec.describe());
  const HostProblem problem = make_problem(spec);
  Buffer expected = copy_to(Memory::host, problem.cache);
  const auto on_copy = [&](const TensorView& view) {
    return test::rebase(view, problem.cache.data(), expected.data(), Device::cpu);
  };
  pagedkv::run<ReshapeAndCacheFlash>(
      Impl::cpu,
      {problem.key, problem.value, on_copy(problem.key_cache), on_copy(problem.value_cache),
       problem.slot_mapping, spec.kv_cache_dtype, problem.k_scale, problem.v_scale});
  // The reference must have written something (a test of nothing proves nothing).
  REQUIRE(test::first_difference(expected.data(), problem.cache.data(), problem.cache.size()) >= 0);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    const Buffer actual = run_on_device(impl, problem, spec.kv_cache_dtype);
    CHECK(same_bytes(actual, expected, problem.cache.size()));
  }
}

TEST_CASE("reshape_and_cache_flash GPU: head sizes × layouts × block sizes",
          "[reshape_and_cache_flash][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  std::tie(spec.head_size, spec.num_heads) = GENERATE(table<std::int64_t, std::int64_t>(
      {{64, 8}, {80, 8}, {96, 13}, {120, 1}, {128, 8}, {576, 1}, {46, 13},
       // Fewer than 32 elements per token (upstream's per-head path loops forever there).
       {8, 2}, {16, 1}}));
  spec.layout = GENERATE(CacheLayout::nhd, CacheLayout::hnd, CacheLayout::joint_nhd,
                         CacheLayout::joint_hnd);
  spec.block_size = GENERATE(1, 8, 16, 32, 64);
  spec.kv_cache_dtype = GENERATE("auto", "fp8_e4m3");
  spec.per_head_scale = spec.num_heads > 1;
  spec.num_tokens = 300;
  check_three_way(spec);
}

TEST_CASE("reshape_and_cache_flash GPU: dtypes × cache kinds × scales",
          "[reshape_and_cache_flash][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.activation = GENERATE(DType::f32, DType::f16, DType::bf16);
  spec.kv_cache_dtype = GENERATE("auto", "fp8", "fp8_e4m3", "fp8_e5m2");
  spec.per_head_scale = GENERATE(false, true);
  spec.layout = GENERATE(CacheLayout::nhd, CacheLayout::hnd);
  spec.num_tokens = 257;
  check_three_way(spec);
}

TEST_CASE("reshape_and_cache_flash GPU: kv_cache_dtype bfloat16 and float16 copy like auto",
          "[reshape_and_cache_flash][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  std::tie(spec.activation, spec.kv_cache_dtype) = GENERATE(table<DType, std::string>(
      {{DType::bf16, "bfloat16"}, {DType::f16, "float16"}}));
  spec.layout = GENERATE(CacheLayout::nhd, CacheLayout::joint_hnd);
  check_three_way(spec);
}

TEST_CASE("reshape_and_cache_flash GPU: strided and misaligned activations and caches",
          "[reshape_and_cache_flash][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.activation = GENERATE(DType::bf16, DType::f16, DType::f32);
  spec.kv_cache_dtype = GENERATE("auto", "fp8_e4m3");
  spec.qkv_rows = GENERATE(false, true);
  spec.misaligned = GENERATE(false, true);  // 2 bytes off for 16-bit types, 1 byte for fp8
  spec.layout = GENERATE(CacheLayout::nhd, CacheLayout::joint_hnd);
  std::tie(spec.head_size, spec.num_heads) =
      GENERATE(table<std::int64_t, std::int64_t>({{128, 8}, {46, 13}, {80, 8}}));
  spec.per_head_scale = true;
  check_three_way(spec);
}

TEST_CASE("reshape_and_cache_flash GPU: token counts × slot patterns × padding",
          "[reshape_and_cache_flash][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.num_tokens = GENERATE(1, 7, 300, 1000);
  spec.contiguous_slots = GENERATE(false, true);
  spec.padding = GENERATE(false, true);
  spec.layout = GENERATE(CacheLayout::nhd, CacheLayout::hnd);
  spec.kv_cache_dtype = GENERATE("auto", "fp8_e4m3");
  spec.per_head_scale = spec.kv_cache_dtype != "auto";
  spec.seed = static_cast<std::uint64_t>(spec.num_tokens);
  check_three_way(spec);
}

TEST_CASE("reshape_and_cache_flash GPU: zero tokens and auto without scales",
          "[reshape_and_cache_flash][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.num_tokens = 50;
  const HostProblem p = make_problem(spec);
  const Buffer activations = copy_to(Memory::device, p.activations);
  const Buffer slots = copy_to(Memory::device, p.slots);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    const Buffer cache = copy_to(Memory::device, p.cache);
    const auto key = test::rebase(p.key, p.activations.data(), activations.data(), Device::cuda);
    const auto value =
        test::rebase(p.value, p.activations.data(), activations.data(), Device::cuda);
    const auto key_cache = test::rebase(p.key_cache, p.cache.data(), cache.data(), Device::cuda);
    const auto value_cache =
        test::rebase(p.value_cache, p.cache.data(), cache.data(), Device::cuda);
    const TensorView no_scale;  // "auto" never reads the scales: null views are fine
    // Zero tokens: no launch, no error, nothing written (upstream: an empty-grid launch error).
    const TensorView no_slots = TensorView::contiguous(nullptr, DType::i64, {0}, Device::cuda);
    CHECK_NOTHROW(run(impl, key, value, key_cache, value_cache, no_slots, "auto", no_scale,
                      no_scale));
    PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
    Buffer after(Memory::host, p.cache.size());
    cache.download(after.data(), p.cache.size());
    CHECK(same_bytes(after, p.cache, p.cache.size()));
    // Real tokens with null scales, "auto": works and equals the CPU reference.
    const auto slot_mapping =
        test::rebase(p.slot_mapping, p.slots.data(), slots.data(), Device::cuda);
    CHECK_NOTHROW(run(impl, key, value, key_cache, value_cache, slot_mapping, "auto", no_scale,
                      no_scale));
    PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
    cache.download(after.data(), p.cache.size());
    Buffer expected = copy_to(Memory::host, p.cache);
    pagedkv::run<ReshapeAndCacheFlash>(
        Impl::cpu,
        {p.key, p.value, test::rebase(p.key_cache, p.cache.data(), expected.data(), Device::cpu),
         test::rebase(p.value_cache, p.cache.data(), expected.data(), Device::cpu), p.slot_mapping,
         "auto", no_scale, no_scale});
    CHECK(same_bytes(after, expected, p.cache.size()));
  }
}

TEST_CASE("reshape_and_cache_flash GPU: a slot beyond the cache is rejected and nothing written",
          "[reshape_and_cache_flash][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.num_tokens = 40;
  HostProblem p = make_problem(spec);
  const std::int64_t num_slots = p.key_cache.size(0) * p.key_cache.size(1);
  reinterpret_cast<std::int64_t*>(p.slots.data())[17] = num_slots;  // one past the end
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    CHECK_THROWS_AS(run_on_device(impl, p, spec.kv_cache_dtype), InvalidArgument);
    CHECK_THROWS_WITH(run_on_device(impl, p, spec.kv_cache_dtype),
                      Contains("slot_mapping[17]"));
  }
  // run_on_device throws before downloading: check "nothing written" explicitly.
  const Buffer activations = copy_to(Memory::device, p.activations);
  const Buffer cache = copy_to(Memory::device, p.cache);
  const Buffer slots = copy_to(Memory::device, p.slots);
  const Buffer scales = copy_to(Memory::device, p.scales);
  CHECK_THROWS_AS(
      pagedkv::run<ReshapeAndCacheFlash>(
          Impl::optimized,
          {test::rebase(p.key, p.activations.data(), activations.data(), Device::cuda),
           test::rebase(p.value, p.activations.data(), activations.data(), Device::cuda),
           test::rebase(p.key_cache, p.cache.data(), cache.data(), Device::cuda),
           test::rebase(p.value_cache, p.cache.data(), cache.data(), Device::cuda),
           test::rebase(p.slot_mapping, p.slots.data(), slots.data(), Device::cuda), "auto",
           test::rebase(p.k_scale, p.scales.data(), scales.data(), Device::cuda),
           test::rebase(p.v_scale, p.scales.data(), scales.data(), Device::cuda)}),
      InvalidArgument);
  Buffer after(Memory::host, p.cache.size());
  cache.download(after.data(), p.cache.size());
  CHECK(same_bytes(after, p.cache, p.cache.size()));
}

}  // namespace
