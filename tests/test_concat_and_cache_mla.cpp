// Tests of concat_and_cache_mla (vLLM csrc/cache_kernels.cu @9803b00: concat_and_cache_mla).
//
// CPU part (runs everywhere): hand-computed entries ("auto", fp8, the 656-byte fp8_ds_mla
// byte map), round trips through a CPU decode (exact for "auto", the fp8 rounding of the input
// for fp8 and fp8_ds_mla; untouched slots keep their poison, padding tokens change nothing), and
// one test per validation rule: the call throws InvalidArgument naming the argument, and no
// cache byte changes.
//
// GPU part ([gpu]): the CPU reference, the naive and the optimized kernel write whole poisoned
// caches, which must be byte-identical over dtypes, cache kinds, widths, block sizes, token
// counts, slot patterns, strided and misaligned rows and caches.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cache_element.h"
#include "numerics.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/concat_and_cache_mla.h"
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

float bf16_value(const std::uint8_t* bytes) {
  std::uint16_t bits;
  std::memcpy(&bits, bytes, 2);
  return numerics::bf16_bits_to_float(bits);
}

// The CPU decode of one fp8_ds_mla entry: 512 latent values (fp8 × tile scale) then 64 RoPE
// values (bf16 bits). What a reader of the cache (cp_gather_and_upconvert) computes, in fp32.
std::vector<float> decode_ds_mla_entry(const std::uint8_t* entry) {
  std::vector<float> values(576);
  for (int tile = 0; tile < 4; ++tile) {
    float scale;
    std::memcpy(&scale, entry + 512 + 4 * tile, 4);
    for (int i = 0; i < 128; ++i) {
      values[128 * tile + i] = numerics::fp8_e4m3_to_float(entry[128 * tile + i]) * scale;
    }
  }
  for (int j = 0; j < 64; ++j) values[512 + j] = bf16_value(entry + 528 + 2 * j);
  return values;
}

// ---------------------------------------------------------------------------------------------
// CPU reference: hand-computed entries.

TEST_CASE("concat_and_cache_mla CPU: auto concatenates kv_c and a strided k_pe into the slot",
          "[concat_and_cache_mla]") {
  // kv_lora_rank 3, rope_dim 2, f32. k_pe is a view into a [T, 5] projection (row pitch 5, at
  // column 3), as in the model. Cache [2 blocks, block_size 2, 5]: 20 floats.
  Buffer kv_c = floats({1, 2, 3,  //
                        4, 5, 6,  //
                        7, 8, 9});
  Buffer projection = floats({0, 0, 0, 10, 11,  //
                              0, 0, 0, 12, 13,  //
                              0, 0, 0, 14, 15});
  Buffer cache = poisoned(20 * 4);
  Buffer slots = int64s({3, -1, 0});  // token 1 is padding
  Buffer scale = floats({1.f});
  run<ConcatAndCacheMla>(
      Impl::cpu, {TensorView::contiguous(kv_c.data(), DType::f32, {3, 3}),
                  TensorView::strided(reinterpret_cast<float*>(projection.data()) + 3, DType::f32,
                                      {3, 2}, {5, 1}),
                  TensorView::contiguous(cache.data(), DType::f32, {2, 2, 5}),
                  TensorView::contiguous(slots.data(), DType::i64, {3}), "auto",
                  TensorView::contiguous(scale.data(), DType::f32, {1})});
  // Slot 3 = block 1 offset 1 = floats 15..19: token 0. Slot 0 = floats 0..4: token 2.
  Buffer expected = poisoned(20 * 4);
  const float token0[5] = {1, 2, 3, 10, 11};
  const float token2[5] = {7, 8, 9, 14, 15};
  std::memcpy(expected.data() + 15 * 4, token0, sizeof token0);
  std::memcpy(expected.data(), token2, sizeof token2);
  CHECK(same_bytes(cache, expected, 20 * 4));
}

TEST_CASE("concat_and_cache_mla CPU: fp8 bytes are the numerics' encoding of x / scale",
          "[concat_and_cache_mla]") {
  const std::string kind = GENERATE("fp8", "fp8_e4m3", "fp8_e5m2");
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  CAPTURE(kind, dtype_name(dtype));
  constexpr int kTokens = 4, kRank = 32, kRope = 16, kEntry = kRank + kRope;
  const std::int64_t bytes = dtype_size(dtype);
  Buffer kv_c(Memory::host, kTokens * kRank * bytes);
  Buffer k_pe(Memory::host, kTokens * kRope * bytes);
  test::fill_random(kv_c.data(), dtype, kTokens * kRank, 3, 300.f);
  test::fill_random(k_pe.data(), dtype, kTokens * kRope, 4, 3.f);
  const float scale_value = 0.37f;
  Buffer scale = floats({scale_value});
  Buffer cache = poisoned(kTokens * kEntry);
  Buffer slots = int64s({0, 1, 2, 3});
  run<ConcatAndCacheMla>(Impl::cpu,
                         {TensorView::contiguous(kv_c.data(), dtype, {kTokens, kRank}),
                          TensorView::contiguous(k_pe.data(), dtype, {kTokens, kRope}),
                          TensorView::contiguous(cache.data(), DType::u8, {kTokens, 1, kEntry}),
                          TensorView::contiguous(slots.data(), DType::i64, {kTokens}), kind,
                          TensorView::contiguous(scale.data(), DType::f32, {1})});
  const auto encode = [&](float x) {
    return kind == "fp8_e5m2" ? numerics::float_to_fp8_e5m2(x) : numerics::float_to_fp8_e4m3(x);
  };
  int mismatches = 0;
  for (int t = 0; t < kTokens; ++t) {
    for (int i = 0; i < kEntry; ++i) {
      const std::uint8_t* source = i < kRank ? kv_c.data() + (t * kRank + i) * bytes
                                             : k_pe.data() + (t * kRope + i - kRank) * bytes;
      mismatches += cache.data()[t * kEntry + i] != encode(load_activation(source, dtype) /
                                                           scale_value);
    }
  }
  CHECK(mismatches == 0);
}

// A DeepSeek-shaped bf16 input: kv_c [T, 512], k_pe [T, 64].
struct DsMlaInput {
  int tokens;
  Buffer kv_c, k_pe;
  explicit DsMlaInput(int t, std::uint64_t seed = 5)
      : tokens(t), kv_c(Memory::host, t * 512 * 2), k_pe(Memory::host, t * 64 * 2) {
    test::fill_random(kv_c.data(), DType::bf16, t * 512, seed, 20.f);
    test::fill_random(k_pe.data(), DType::bf16, t * 64, seed + 1, 2.f);
  }
  ConcatAndCacheMla::Args args(Buffer& cache, Buffer& slots, int num_blocks, int block_size,
                               const std::string& kind = "fp8_ds_mla") {
    return {TensorView::contiguous(kv_c.data(), DType::bf16, {tokens, 512}),
            TensorView::contiguous(k_pe.data(), DType::bf16, {tokens, 64}),
            TensorView::contiguous(cache.data(), DType::u8, {num_blocks, block_size, 656}),
            TensorView::contiguous(slots.data(), DType::i64, {tokens}), kind,
            TensorView{}};
  }
};

TEST_CASE("concat_and_cache_mla CPU: the fp8_ds_mla byte map (hand-computed tile)",
          "[concat_and_cache_mla]") {
  // One token. Tile 0 holds 0.5, 1, 1.5, ... (i + 1) / 2 up to 64 = amax: scale 64 / 448 = 1/7,
  // so element i is stored as fp8((i + 1) / 2 × 7). Tile 1 is all zeros: scale FLT_MIN, bytes 0.
  // Tile 2 holds a single -448 and zeros: scale 1, byte 0xFE (-448) then 0. Tile 3 holds NaN and
  // 2: the NaN is left out of the amax (scale 2 / 448), its byte is 0x7F.
  DsMlaInput input(1);
  std::uint16_t* latent = reinterpret_cast<std::uint16_t*>(input.kv_c.data());
  for (int i = 0; i < 128; ++i) latent[i] = numerics::float_to_bf16_bits((i + 1) / 2.f);
  for (int i = 128; i < 384; ++i) latent[i] = 0;
  latent[256] = numerics::float_to_bf16_bits(-448.f);
  for (int i = 384; i < 512; ++i) latent[i] = numerics::float_to_bf16_bits(2.f);
  latent[384] = 0x7FC0;  // bf16 NaN
  Buffer cache = poisoned(2 * 656);
  Buffer slots = int64s({1});
  run<ConcatAndCacheMla>(Impl::cpu, input.args(cache, slots, 2, 1));
  const std::uint8_t* entry = cache.data() + 656;
  CHECK(same_bytes(cache, poisoned(656), 656));  // slot 0 untouched

  const float scale0 = 64.f / 448.f;
  float stored[4];
  std::memcpy(stored, entry + 512, 16);
  CHECK(test::bits_of(stored[0]) == test::bits_of(scale0));
  CHECK(stored[1] == FLT_MIN);
  CHECK(stored[2] == 1.f);
  CHECK(test::bits_of(stored[3]) == test::bits_of(2.f / 448.f));
  for (int i = 0; i < 128; ++i) {
    CAPTURE(i);
    CHECK(entry[i] == numerics::float_to_fp8_e4m3(((i + 1) / 2.f) / scale0));
  }
  CHECK(entry[127] == 0x7E);  // the amax itself becomes 448
  for (int i = 128; i < 256; ++i) CHECK(entry[i] == 0);
  CHECK(entry[256] == 0xFE);
  CHECK(entry[384] == 0x7F);                              // NaN stays NaN
  CHECK(entry[385] == numerics::float_to_fp8_e4m3(448.f));  // 2 / (2 / 448)
  CHECK(same_bytes(entry + 528, input.k_pe.data(), 128));  // RoPE bits copied
}

// ---------------------------------------------------------------------------------------------
// Round trips: write, then decode on the CPU.

TEST_CASE("concat_and_cache_mla round trip: auto gives back the input exactly",
          "[concat_and_cache_mla][round_trip]") {
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  const std::string kind = dtype == DType::bf16 ? "bfloat16" : dtype == DType::f16 ? "float16"
                                                                                   : "auto";
  CAPTURE(dtype_name(dtype), kind);
  constexpr int kTokens = 9, kRank = 24, kRope = 8, kEntry = kRank + kRope, kBlocks = 3,
                kBlockSize = 4;
  const std::int64_t bytes = dtype_size(dtype);
  Buffer kv_c(Memory::host, kTokens * kRank * bytes);
  Buffer k_pe(Memory::host, kTokens * kRope * bytes);
  test::fill_random(kv_c.data(), dtype, kTokens * kRank, 8);
  test::fill_random(k_pe.data(), dtype, kTokens * kRope, 9);
  const std::vector<std::int64_t> slot_values = {11, -1, 0, 5, 6, -1, 2, 9, 1};
  Buffer slots = int64s(slot_values);
  const std::size_t cache_bytes = kBlocks * kBlockSize * kEntry * bytes;
  Buffer cache = poisoned(cache_bytes);
  run<ConcatAndCacheMla>(Impl::cpu,
                         {TensorView::contiguous(kv_c.data(), dtype, {kTokens, kRank}),
                          TensorView::contiguous(k_pe.data(), dtype, {kTokens, kRope}),
                          TensorView::contiguous(cache.data(), dtype, {kBlocks, kBlockSize, kEntry}),
                          TensorView::contiguous(slots.data(), DType::i64, {kTokens}), kind,
                          TensorView{}});
  const Buffer fresh = poisoned(cache_bytes);
  std::vector<bool> written(kBlocks * kBlockSize, false);
  for (int t = 0; t < kTokens; ++t) {
    const std::int64_t slot = slot_values[t];
    if (slot < 0) continue;
    written[slot] = true;
    const std::uint8_t* entry = cache.data() + slot * kEntry * bytes;
    CHECK(same_bytes(entry, kv_c.data() + t * kRank * bytes, kRank * bytes));
    CHECK(same_bytes(entry + kRank * bytes, k_pe.data() + t * kRope * bytes, kRope * bytes));
  }
  for (int slot = 0; slot < kBlocks * kBlockSize; ++slot) {
    if (written[slot]) continue;
    CAPTURE(slot);  // untouched slots (3, 4, 7, 8, 10) keep their poison
    CHECK(same_bytes(cache.data() + slot * kEntry * bytes, fresh.data() + slot * kEntry * bytes,
                     kEntry * bytes));
  }
}

TEST_CASE("concat_and_cache_mla round trip: fp8 gives back the fp8 rounding of the input",
          "[concat_and_cache_mla][round_trip]") {
  const std::string kind = GENERATE("fp8_e4m3", "fp8_e5m2");
  CAPTURE(kind);
  constexpr int kTokens = 6, kRank = 32, kRope = 16, kEntry = kRank + kRope;
  Buffer kv_c(Memory::host, kTokens * kRank * 2);
  Buffer k_pe(Memory::host, kTokens * kRope * 2);
  test::fill_random(kv_c.data(), DType::bf16, kTokens * kRank, 21, 100.f);
  test::fill_random(k_pe.data(), DType::bf16, kTokens * kRope, 22, 1.f);
  const float scale_value = 0.25f;  // a power of two: x / scale is exact, so is the decode
  Buffer scale = floats({scale_value});
  const std::vector<std::int64_t> slot_values = {4, -1, 1, 7, -1, 2};
  Buffer slots = int64s(slot_values);
  Buffer cache = poisoned(8 * kEntry);
  run<ConcatAndCacheMla>(Impl::cpu,
                         {TensorView::contiguous(kv_c.data(), DType::bf16, {kTokens, kRank}),
                          TensorView::contiguous(k_pe.data(), DType::bf16, {kTokens, kRope}),
                          TensorView::contiguous(cache.data(), DType::u8, {4, 2, kEntry}),
                          TensorView::contiguous(slots.data(), DType::i64, {kTokens}), kind,
                          TensorView::contiguous(scale.data(), DType::f32, {1})});
  const bool e4m3 = kind == "fp8_e4m3";
  const auto round_trip = [&](float x) {  // what decode(encode(x)) must give
    const std::uint8_t byte = e4m3 ? numerics::float_to_fp8_e4m3(x / scale_value)
                                   : numerics::float_to_fp8_e5m2(x / scale_value);
    return (e4m3 ? numerics::fp8_e4m3_to_float(byte) : numerics::fp8_e5m2_to_float(byte)) *
           scale_value;
  };
  const Buffer fresh = poisoned(8 * kEntry);
  int mismatches = 0;
  for (int t = 0; t < kTokens; ++t) {
    const std::int64_t slot = slot_values[t];
    if (slot < 0) continue;
    for (int i = 0; i < kEntry; ++i) {
      const std::uint8_t byte = cache.data()[slot * kEntry + i];
      const float decoded =
          (e4m3 ? numerics::fp8_e4m3_to_float(byte) : numerics::fp8_e5m2_to_float(byte)) *
          scale_value;
      const float x = i < kRank ? bf16_value(kv_c.data() + 2 * (t * kRank + i))
                                : bf16_value(k_pe.data() + 2 * (t * kRope + i - kRank));
      mismatches += test::bits_of(decoded) != test::bits_of(round_trip(x));
    }
  }
  CHECK(mismatches == 0);
  for (int slot : {0, 3, 5, 6}) {  // untouched
    CHECK(same_bytes(cache.data() + slot * kEntry, fresh.data() + slot * kEntry, kEntry));
  }
}

TEST_CASE("concat_and_cache_mla round trip: fp8_ds_mla decodes to each tile's fp8 rounding",
          "[concat_and_cache_mla][round_trip]") {
  DsMlaInput input(5, 31);
  const std::vector<std::int64_t> slot_values = {6, -1, 0, 3, -1};
  Buffer slots = int64s(slot_values);
  Buffer cache = poisoned(8 * 656);
  run<ConcatAndCacheMla>(Impl::cpu, input.args(cache, slots, 2, 4));
  const Buffer fresh = poisoned(8 * 656);
  for (int t = 0; t < input.tokens; ++t) {
    const std::int64_t slot = slot_values[t];
    if (slot < 0) continue;
    CAPTURE(t, slot);
    const std::vector<float> decoded = decode_ds_mla_entry(cache.data() + slot * 656);
    int mismatches = 0;
    for (int tile = 0; tile < 4; ++tile) {
      float amax = 0.f;
      for (int i = 0; i < 128; ++i) {
        amax = std::max(amax, std::fabs(bf16_value(input.kv_c.data() + 2 * (t * 512 + 128 * tile + i))));
      }
      const float scale = std::max(amax / 448.f, FLT_MIN);
      for (int i = 0; i < 128; ++i) {
        const float x = bf16_value(input.kv_c.data() + 2 * (t * 512 + 128 * tile + i));
        const float expected = numerics::fp8_e4m3_to_float(numerics::float_to_fp8_e4m3(x / scale)) * scale;
        mismatches += test::bits_of(decoded[128 * tile + i]) != test::bits_of(expected);
        // The fp8 rounding is close: within half an E4M3 step of the tile's largest value.
        mismatches += std::fabs(decoded[128 * tile + i] - x) > amax / 16.f;
      }
    }
    for (int j = 0; j < 64; ++j) {
      mismatches += decoded[512 + j] != bf16_value(input.k_pe.data() + 2 * (t * 64 + j));
    }
    CHECK(mismatches == 0);
  }
  for (int slot : {1, 2, 4, 5, 7}) {  // untouched
    CHECK(same_bytes(cache.data() + slot * 656, fresh.data() + slot * 656, 656));
  }
}

TEST_CASE("concat_and_cache_mla: tokens whose slot is negative change nothing",
          "[concat_and_cache_mla][round_trip]") {
  const std::string kind = GENERATE("auto", "fp8_e4m3", "fp8_ds_mla");
  CAPTURE(kind);
  DsMlaInput input(4);
  Buffer slots = int64s({-1, -1, -7, -1});
  const bool ds = kind == "fp8_ds_mla";
  const int entry_bytes = ds ? 656 : kind == "auto" ? 576 * 2 : 576;
  Buffer cache = poisoned(4 * entry_bytes);
  Buffer scale = floats({1.f});
  ConcatAndCacheMla::Args args = input.args(cache, slots, 2, 2, kind);
  if (!ds) {
    args.kv_cache = TensorView::contiguous(cache.data(), kind == "auto" ? DType::bf16 : DType::u8,
                                           {2, 2, 576});
    args.scale = TensorView::contiguous(scale.data(), DType::f32, {1});
  }
  CHECK_NOTHROW(run<ConcatAndCacheMla>(Impl::cpu, args));
  CHECK(same_bytes(cache, poisoned(4 * entry_bytes), 4 * entry_bytes));
}

// ---------------------------------------------------------------------------------------------
// Validation: one test per rule. A valid bf16 call, which each test breaks in exactly one way;
// then the call must throw InvalidArgument naming the argument, and no cache byte may change.

struct ValidCall {
  static constexpr int kRows = 4, kRank = 16, kRope = 8, kBlocks = 3, kBlockSize = 4;
  static constexpr int kEntry = kRank + kRope;
  static constexpr int kCacheBytes = kBlocks * kBlockSize * 656 * 2;  // room for every variant

  Buffer kv_c_data{Memory::host, kRows * 512 * 4};
  Buffer k_pe_data{Memory::host, kRows * 64 * 4};
  Buffer cache_data = poisoned(kCacheBytes);
  Buffer slot_data = int64s({0, 5, -1, 11});
  Buffer scale_data = floats({0.5f, 0.25f});

  TensorView kv_c = TensorView::contiguous(kv_c_data.data(), DType::bf16, {kRows, kRank});
  TensorView k_pe = TensorView::contiguous(k_pe_data.data(), DType::bf16, {kRows, kRope});
  TensorView kv_cache =
      TensorView::contiguous(cache_data.data(), DType::bf16, {kBlocks, kBlockSize, kEntry});
  TensorView slot_mapping = TensorView::contiguous(slot_data.data(), DType::i64, {4});
  std::string kv_cache_dtype = "auto";
  TensorView scale = TensorView::contiguous(scale_data.data(), DType::f32, {1});
  Impl impl = Impl::cpu;

  ValidCall() {
    test::fill_random(kv_c_data.data(), DType::bf16, kRows * 512 * 2, 1);
    test::fill_random(k_pe_data.data(), DType::bf16, kRows * 64 * 2, 2);
  }

  void use_fp8() {
    kv_cache_dtype = "fp8_e4m3";
    kv_cache.dtype = DType::u8;
  }

  void use_ds_mla() {
    kv_cache_dtype = "fp8_ds_mla";
    kv_c = TensorView::contiguous(kv_c_data.data(), DType::bf16, {kRows, 512});
    k_pe = TensorView::contiguous(k_pe_data.data(), DType::bf16, {kRows, 64});
    kv_cache = TensorView::contiguous(cache_data.data(), DType::u8, {kBlocks, kBlockSize, 656});
  }

  void call() const {
    run<ConcatAndCacheMla>(impl, {kv_c, k_pe, kv_cache, slot_mapping, kv_cache_dtype, scale});
  }

  bool nothing_written() const {
    const Buffer fresh = poisoned(kCacheBytes);
    return same_bytes(cache_data, fresh, kCacheBytes);
  }
};

TEST_CASE("concat_and_cache_mla: the valid calls used by the rule tests pass",
          "[concat_and_cache_mla]") {
  ValidCall call;
  CHECK_NOTHROW(call.call());
  ValidCall fp8;
  fp8.use_fp8();
  CHECK_NOTHROW(fp8.call());
  ValidCall ds;
  ds.use_ds_mla();
  CHECK_NOTHROW(ds.call());
}

TEST_CASE("concat_and_cache_mla rejects an entry size other than kv_lora_rank + rope_dim",
          "[concat_and_cache_mla]") {
  ValidCall call;
  call.kv_cache = TensorView::contiguous(call.cache_data.data(), DType::bf16, {3, 4, 25});
  CHECK_REJECTED(call, "kv_cache");
  CHECK_THROWS_WITH(call.call(), Contains("kv_lora_rank + rope_dim = 24"));
}

TEST_CASE("concat_and_cache_mla rejects an fp8_ds_mla entry that is not 656 bytes",
          "[concat_and_cache_mla]") {
  ValidCall call;
  call.use_ds_mla();
  SECTION("576 bytes") {
    call.kv_cache = TensorView::contiguous(call.cache_data.data(), DType::u8, {3, 4, 576});
  }
  SECTION("328 bf16 (656 bytes, but not a byte tensor)") {
    call.kv_cache = TensorView::contiguous(call.cache_data.data(), DType::bf16, {3, 4, 328});
  }
  CHECK_REJECTED(call, "kv_cache");
}

TEST_CASE("concat_and_cache_mla rejects fp8_ds_mla with kv_lora_rank or rope_dim not 512 / 64",
          "[concat_and_cache_mla]") {
  ValidCall call;
  call.use_ds_mla();
  SECTION("kv_lora_rank 256") {
    call.kv_c = TensorView::contiguous(call.kv_c_data.data(), DType::bf16, {4, 256});
    CHECK_REJECTED(call, "kv_c");
    CHECK_THROWS_WITH(call.call(), Contains("512"));
  }
  SECTION("rope_dim 32") {
    call.k_pe = TensorView::contiguous(call.k_pe_data.data(), DType::bf16, {4, 32});
    CHECK_REJECTED(call, "k_pe");
  }
}

TEST_CASE("concat_and_cache_mla rejects f16 and f32 input for fp8_ds_mla",
          "[concat_and_cache_mla]") {
  ValidCall call;
  call.use_ds_mla();
  const DType dtype = GENERATE(DType::f16, DType::f32);
  call.kv_c.dtype = dtype;
  call.k_pe.dtype = dtype;
  CHECK_REJECTED(call, "kv_c");
  CHECK_THROWS_WITH(call.call(), Contains("bf16"));
}

TEST_CASE("concat_and_cache_mla rejects a slot beyond the cache", "[concat_and_cache_mla]") {
  ValidCall call;
  SECTION("auto") {}
  SECTION("fp8_ds_mla") { call.use_ds_mla(); }
  reinterpret_cast<std::int64_t*>(call.slot_data.data())[1] = 12;  // 3 blocks × 4 slots
  CHECK_REJECTED(call, "slot_mapping");
  CHECK_THROWS_WITH(call.call(), Contains("slot_mapping[1] = 12"));
}

TEST_CASE("concat_and_cache_mla rejects an int32 slot_mapping", "[concat_and_cache_mla]") {
  ValidCall call;
  Buffer slots32(Memory::host, 16);
  const std::int32_t values[4] = {0, 5, -1, 11};
  std::memcpy(slots32.data(), values, sizeof values);
  call.slot_mapping = TensorView::contiguous(slots32.data(), DType::i32, {4});
  CHECK_REJECTED(call, "slot_mapping");
  CHECK_THROWS_WITH(call.call(), Contains("i64"));
}

TEST_CASE("concat_and_cache_mla rejects more slots than kv_c or k_pe rows",
          "[concat_and_cache_mla]") {
  ValidCall call;
  SECTION("kv_c") { call.kv_c = TensorView::contiguous(call.kv_c_data.data(), DType::bf16, {3, 16}); }
  SECTION("k_pe") { call.k_pe = TensorView::contiguous(call.k_pe_data.data(), DType::bf16, {3, 8}); }
  CHECK_REJECTED(call, "slot_mapping");
}

TEST_CASE("concat_and_cache_mla rejects a scale that is not one f32 on the right device",
          "[concat_and_cache_mla]") {
  ValidCall call;
  call.use_fp8();
  SECTION("two elements") {
    call.scale = TensorView::contiguous(call.scale_data.data(), DType::f32, {2});
  }
  SECTION("f16") { call.scale.dtype = DType::f16; }
  SECTION("on the GPU for the CPU reference") { call.scale.device = Device::cuda; }
  SECTION("null") { call.scale.data = nullptr; }
  CHECK_REJECTED(call, "scale");
}

TEST_CASE("concat_and_cache_mla ignores the scale for auto and fp8_ds_mla",
          "[concat_and_cache_mla]") {
  ValidCall call;
  call.scale = TensorView{};
  CHECK_NOTHROW(call.call());
  ValidCall ds;
  ds.use_ds_mla();
  ds.scale = TensorView::contiguous(ds.scale_data.data(), DType::f32, {2});
  CHECK_NOTHROW(ds.call());
}

TEST_CASE("concat_and_cache_mla rejects an unsupported kv_cache_dtype",
          "[concat_and_cache_mla]") {
  ValidCall call;
  call.kv_cache_dtype = GENERATE("int8", "fp8_inc", "", "FP8_DS_MLA");
  CAPTURE(call.kv_cache_dtype);
  CHECK_REJECTED(call, "kv_cache_dtype");
}

TEST_CASE("concat_and_cache_mla rejects an auto cache of another dtype than kv_c",
          "[concat_and_cache_mla]") {
  ValidCall call;
  call.kv_cache.dtype = DType::f16;
  CHECK_REJECTED(call, "kv_cache");
}

TEST_CASE("concat_and_cache_mla rejects k_pe of another dtype than kv_c",
          "[concat_and_cache_mla]") {
  ValidCall call;
  call.k_pe.dtype = DType::f16;
  CHECK_REJECTED(call, "k_pe");
}

TEST_CASE("concat_and_cache_mla rejects rows or entries that are not packed",
          "[concat_and_cache_mla]") {
  ValidCall call;
  SECTION("kv_c elements apart") {
    call.kv_c = TensorView::strided(call.kv_c_data.data(), DType::bf16, {4, 16}, {32, 2});
    CHECK_REJECTED(call, "kv_c");
  }
  SECTION("k_pe 3-D") {
    call.k_pe = TensorView::contiguous(call.k_pe_data.data(), DType::bf16, {4, 2, 4});
    CHECK_REJECTED(call, "k_pe");
  }
  SECTION("cache elements apart") {
    call.kv_cache = TensorView::strided(call.cache_data.data(), DType::bf16, {3, 4, 24},
                                        {192, 48, 2});
    CHECK_REJECTED(call, "kv_cache");
  }
}

TEST_CASE("concat_and_cache_mla rejects entries that overlap", "[concat_and_cache_mla]") {
  ValidCall call;
  SECTION("slot stride shorter than an entry") {
    call.kv_cache = TensorView::strided(call.cache_data.data(), DType::bf16, {3, 4, 24},
                                        {96, 20, 1});
  }
  SECTION("block stride shorter than a block") {
    call.kv_cache = TensorView::strided(call.cache_data.data(), DType::bf16, {3, 4, 24},
                                        {48, 24, 1});
  }
  CHECK_REJECTED(call, "kv_cache");
}

TEST_CASE("concat_and_cache_mla rejects a tensor on the wrong device", "[concat_and_cache_mla]") {
  ValidCall call;
  SECTION("CPU reference given a CUDA kv_c") {
    call.kv_c.device = Device::cuda;
    CHECK_REJECTED(call, "kv_c");
  }
  SECTION("naive given host tensors") {
    call.impl = Impl::naive;
    CHECK_REJECTED(call, "kv_c");
    CHECK_THROWS_WITH(call.call(), Contains("cuda"));
  }
  SECTION("optimized given a host cache") {
    call.impl = Impl::optimized;
    call.kv_c.device = call.k_pe.device = Device::cuda;
    CHECK_REJECTED(call, "kv_cache");
  }
}

TEST_CASE("concat_and_cache_mla rejects null data pointers", "[concat_and_cache_mla]") {
  ValidCall call;
  SECTION("kv_c") { call.kv_c.data = nullptr; CHECK_REJECTED(call, "kv_c"); }
  SECTION("kv_cache") { call.kv_cache.data = nullptr; CHECK_REJECTED(call, "kv_cache"); }
}

TEST_CASE("concat_and_cache_mla with zero tokens is a no-op", "[concat_and_cache_mla]") {
  ValidCall call;
  SECTION("auto") {}
  SECTION("fp8") { call.use_fp8(); }
  SECTION("fp8_ds_mla") { call.use_ds_mla(); }
  call.slot_mapping = TensorView::contiguous(nullptr, DType::i64, {0});
  CHECK_NOTHROW(call.call());
  CHECK(call.nothing_written());
  call.kv_c = TensorView::contiguous(nullptr, DType::bf16, {0, call.kv_c.size(1)});
  call.k_pe = TensorView::contiguous(nullptr, DType::bf16, {0, call.k_pe.size(1)});
  CHECK_NOTHROW(call.call());
  CHECK(call.nothing_written());
}

// ---------------------------------------------------------------------------------------------
// GPU: CPU reference vs naive vs optimized, byte for byte over whole poisoned caches.

struct ProblemSpec {
  DType activation = DType::bf16;
  std::string kv_cache_dtype = "auto";
  std::int64_t kv_lora_rank = 512;
  std::int64_t rope_dim = 64;
  std::int64_t block_size = 64;
  std::int64_t num_tokens = 300;
  bool padding = true;            // every fifth slot is -1
  bool contiguous_slots = false;  // one run of slots (prefill) instead of random unique slots
  bool model_rows = true;         // k_pe a strided view into a [T, rank + rope] projection
  bool misaligned = false;        // rows and cache one element past an aligned address
  bool padded_entries = false;    // cache entries 16 elements apart more than needed
  std::uint64_t seed = 1;

  std::string describe() const {
    return std::string(dtype_name(activation)) + " → \"" + kv_cache_dtype +
           "\", rank=" + std::to_string(kv_lora_rank) + " rope=" + std::to_string(rope_dim) +
           " block_size=" + std::to_string(block_size) + " T=" + std::to_string(num_tokens) +
           (padding ? ", padding" : "") + (contiguous_slots ? ", contiguous" : ", random") +
           (model_rows ? ", strided k_pe" : "") + (misaligned ? ", misaligned" : "") +
           (padded_entries ? ", padded entries" : "");
  }
};

struct HostProblem {
  Buffer kv_c_data, projection, cache, slots, scale;
  ConcatAndCacheMla::Args args;
};

HostProblem make_problem(const ProblemSpec& spec) {
  HostProblem p;
  const std::int64_t T = spec.num_tokens, L = spec.kv_lora_rank, R = spec.rope_dim;
  const std::int64_t rows = T + 2;  // CUDA-graph padding rows past the slots
  const std::int64_t bytes = dtype_size(spec.activation);
  const std::int64_t shift = spec.misaligned ? 1 : 0;
  p.kv_c_data = Buffer(Memory::host, (rows * L + shift) * bytes);
  test::fill_random(p.kv_c_data.data(), spec.activation, rows * L + shift, spec.seed, 30.f);
  const std::int64_t pitch = spec.model_rows ? L + R : R;
  p.projection = Buffer(Memory::host, (rows * pitch + shift) * bytes);
  test::fill_random(p.projection.data(), spec.activation, rows * pitch + shift, spec.seed + 1);
  // Special values: inf, NaN, a huge value and a tiny one in token 0's latent row.
  const float specials[] = {std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(), 60000.f, 1.0e-6f};
  for (int i = 0; i < 4 && spec.kv_cache_dtype != "fp8_ds_mla"; ++i) {
    std::uint8_t* at = p.kv_c_data.data() + (shift + 3 * i) * bytes;
    if (spec.activation == DType::f32) {
      std::memcpy(at, &specials[i], 4);
    } else {
      const std::uint16_t bits = spec.activation == DType::f16
                                     ? numerics::float_to_half_bits(specials[i])
                                     : numerics::float_to_bf16_bits(specials[i]);
      std::memcpy(at, &bits, 2);
    }
  }
  p.args.kv_c = TensorView::contiguous(p.kv_c_data.data() + shift * bytes, spec.activation,
                                       {rows, L});
  p.args.k_pe = TensorView::strided(
      p.projection.data() + (shift + (spec.model_rows ? L : 0)) * bytes, spec.activation,
      {rows, R}, {pitch, 1});

  const bool ds = spec.kv_cache_dtype == "fp8_ds_mla";
  const bool fp8 = spec.kv_cache_dtype.rfind("fp8", 0) == 0;
  const DType cache_dtype = fp8 ? DType::u8 : spec.activation;
  const std::int64_t entry = ds ? 656 : L + R;
  const std::int64_t entry_stride = entry + (spec.padded_entries ? 16 : 0);
  const std::int64_t B = spec.block_size;
  const std::int64_t num_blocks = (T + B - 1) / B + 2;
  const std::int64_t cache_elements = num_blocks * B * entry_stride;
  p.cache = poisoned(static_cast<std::size_t>((cache_elements + shift) * dtype_size(cache_dtype)));
  p.args.kv_cache = TensorView::strided(p.cache.data() + shift * dtype_size(cache_dtype),
                                        cache_dtype, {num_blocks, B, entry},
                                        {B * entry_stride, entry_stride, 1});

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
  p.args.slot_mapping = TensorView::contiguous(p.slots.data(), DType::i64, {T});
  p.scale = floats({0.07f});
  p.args.scale = TensorView::contiguous(p.scale.data(), DType::f32, {1});
  p.args.kv_cache_dtype = spec.kv_cache_dtype;
  return p;
}

Buffer run_on_device(Impl impl, const HostProblem& p) {
  const Buffer kv_c = copy_to(Memory::device, p.kv_c_data);
  const Buffer projection = copy_to(Memory::device, p.projection);
  const Buffer cache = copy_to(Memory::device, p.cache);
  const Buffer slots = copy_to(Memory::device, p.slots);
  const Buffer scale = copy_to(Memory::device, p.scale);
  ConcatAndCacheMla::Args args = p.args;
  args.kv_c = test::rebase(p.args.kv_c, p.kv_c_data.data(), kv_c.data(), Device::cuda);
  args.k_pe = test::rebase(p.args.k_pe, p.projection.data(), projection.data(), Device::cuda);
  args.kv_cache = test::rebase(p.args.kv_cache, p.cache.data(), cache.data(), Device::cuda);
  args.slot_mapping =
      test::rebase(p.args.slot_mapping, p.slots.data(), slots.data(), Device::cuda);
  args.scale = test::rebase(p.args.scale, p.scale.data(), scale.data(), Device::cuda);
  run<ConcatAndCacheMla>(impl, args);
  PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  Buffer result(Memory::host, p.cache.size());
  cache.download(result.data(), p.cache.size());
  return result;
}

void check_three_way(const ProblemSpec& spec) {
  INFO(spec.describe());
  const HostProblem problem = make_problem(spec);
  Buffer expected = copy_to(Memory::host, problem.cache);
  ConcatAndCacheMla::Args args = problem.args;
  args.kv_cache = test::rebase(args.kv_cache, problem.cache.data(), expected.data(), Device::cpu);
  run<ConcatAndCacheMla>(Impl::cpu, args);
  REQUIRE(test::first_difference(expected.data(), problem.cache.data(), problem.cache.size()) >= 0);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    const Buffer actual = run_on_device(impl, problem);
    CHECK(same_bytes(actual, expected, problem.cache.size()));
  }
}

TEST_CASE("concat_and_cache_mla GPU: dtypes × cache kinds", "[concat_and_cache_mla][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.activation = GENERATE(DType::f32, DType::f16, DType::bf16);
  spec.kv_cache_dtype = GENERATE("auto", "fp8", "fp8_e4m3", "fp8_e5m2");
  spec.model_rows = GENERATE(false, true);
  check_three_way(spec);
}

TEST_CASE("concat_and_cache_mla GPU: fp8_ds_mla layouts", "[concat_and_cache_mla][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.kv_cache_dtype = "fp8_ds_mla";
  spec.model_rows = GENERATE(false, true);
  spec.misaligned = GENERATE(false, true);  // the optimized version falls back to scalar code
  spec.padded_entries = GENERATE(false, true);
  spec.block_size = GENERATE(1, 16, 64);
  check_three_way(spec);
}

TEST_CASE("concat_and_cache_mla GPU: widths no vector fits, misaligned rows and caches",
          "[concat_and_cache_mla][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  std::tie(spec.kv_lora_rank, spec.rope_dim) = GENERATE(table<std::int64_t, std::int64_t>(
      {{512, 64}, {256, 32}, {500, 12}, {17, 3}, {1, 1}, {1024, 0}, {4096, 64}}));
  spec.activation = GENERATE(DType::bf16, DType::f32);
  spec.kv_cache_dtype = GENERATE("auto", "fp8_e4m3");
  spec.misaligned = GENERATE(false, true);
  spec.padded_entries = GENERATE(false, true);
  spec.num_tokens = 77;
  check_three_way(spec);
}

TEST_CASE("concat_and_cache_mla GPU: token counts × slot patterns × padding",
          "[concat_and_cache_mla][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.num_tokens = GENERATE(1, 7, 300, 2000);
  spec.contiguous_slots = GENERATE(false, true);
  spec.padding = GENERATE(false, true);
  spec.kv_cache_dtype = GENERATE("auto", "fp8_e4m3", "fp8_ds_mla");
  spec.block_size = GENERATE(16, 64);
  spec.seed = static_cast<std::uint64_t>(spec.num_tokens);
  check_three_way(spec);
}

TEST_CASE("concat_and_cache_mla GPU: a slot beyond the cache is rejected, nothing written",
          "[concat_and_cache_mla][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.num_tokens = 40;
  spec.kv_cache_dtype = GENERATE("auto", "fp8_ds_mla");
  HostProblem p = make_problem(spec);
  const std::int64_t num_slots = p.args.kv_cache.size(0) * p.args.kv_cache.size(1);
  reinterpret_cast<std::int64_t*>(p.slots.data())[17] = num_slots;
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    CHECK_THROWS_WITH(run_on_device(impl, p), Contains("slot_mapping[17]"));
  }
}

}  // namespace
