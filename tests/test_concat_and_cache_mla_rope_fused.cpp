// Tests of concat_and_cache_mla_rope_fused (vLLM csrc/cache_kernels_fused.cu @f401c4b).
//
// CPU part (runs everywhere): a hand-computed rotation (NeoX and GPT-J pairs), upstream's
// padding behaviour (q rotated, k and the cache untouched), the exact fp32 operations the
// kernels perform (fma where they fuse, nothing else fused), a round trip of the entry, and one
// test per validation rule: InvalidArgument naming the argument, and nothing written (cache,
// q_pe and k_pe unchanged).
//
// GPU part ([gpu]): the CPU reference, the naive and the optimized kernel from the same inputs:
// the cache, q_pe and k_pe must be byte-identical.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "numerics.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/concat_and_cache_mla_rope_fused.h"
#include "support.h"

namespace {

using namespace pagedkv;
using Catch::Matchers::Contains;
using test::floats;
using test::int64s;
using test::poisoned;
using test::same_bytes;

const float* as_floats(const Buffer& buffer) {
  return reinterpret_cast<const float*>(buffer.data());
}

// ---------------------------------------------------------------------------------------------
// A small f32 problem: T tokens, H query heads, rot_dim 4 (2 pairs), kv_lora_rank 2, a cache
// [2 blocks, block_size 2, 6], positions into a 3-row cos_sin_cache.

struct SmallCase {
  static constexpr int T = 3, H = 2, R = 4, L = 2, E = L + R;
  Buffer positions = int64s({2, 0, 1});
  Buffer q = floats({1, 2, 3, 4, 5, 6, 7, 8,  //
                     1, 1, 1, 1, 2, 2, 2, 2,  //
                     3, 0, 0, 3, 0, 3, 3, 0});
  Buffer k = floats({1, 2, 3, 4,  //
                     5, 6, 7, 8,  //
                     9, 10, 11, 12});
  Buffer kv_c = floats({-1, -2, -3, -4, -5, -6});
  // Row p: cos0, cos1, sin0, sin1. Row 0: the identity; row 1: 90 degrees; row 2: (0.5, 2) / (3, 0.25).
  Buffer cos_sin = floats({1, 1, 0, 0,  //
                           0, 0, 1, 1,  //
                           0.5f, 2, 3, 0.25f});
  Buffer slots = int64s({3, -1, 0});
  Buffer cache = poisoned(4 * E * 4);
  Buffer scale = floats({1.f});
  bool is_neox = true;
  std::string kind = "auto";

  ConcatAndCacheMlaRopeFused::Args args() {
    return {TensorView::contiguous(positions.data(), DType::i64, {T}),
            TensorView::contiguous(q.data(), DType::f32, {T, H, R}),
            TensorView::contiguous(k.data(), DType::f32, {T, R}),
            TensorView::contiguous(kv_c.data(), DType::f32, {T, L}),
            TensorView::contiguous(cos_sin.data(), DType::f32, {3, R}),
            is_neox,
            TensorView::contiguous(slots.data(), DType::i64, {T}),
            TensorView::contiguous(cache.data(), DType::f32, {2, 2, E}),
            kind,
            TensorView::contiguous(scale.data(), DType::f32, {1})};
  }
};

// (x c - y s, y c + x s) as the kernels compute it.
float rotated_x(float x, float y, float c, float s) { return std::fma(x, c, -(y * s)); }
float rotated_y(float x, float y, float c, float s) { return std::fma(y, c, x * s); }

TEST_CASE("concat_and_cache_mla_rope_fused CPU: NeoX and GPT-J pairs, hand-computed",
          "[concat_and_cache_mla_rope_fused]") {
  SmallCase c;
  c.is_neox = GENERATE(true, false);
  CAPTURE(c.is_neox);
  const Buffer q_before = copy_to(Memory::host, c.q);
  const Buffer k_before = copy_to(Memory::host, c.k);
  run<ConcatAndCacheMlaRopeFused>(Impl::cpu, c.args());
  const float* cos_sin = as_floats(c.cos_sin);
  const auto* positions = reinterpret_cast<const std::int64_t*>(c.positions.data());
  // Expected rotation of one head `in` (4 values) at position p.
  const auto rotate = [&](const float* in, std::int64_t p, float* out) {
    for (int i = 0; i < 2; ++i) {
      const int a = c.is_neox ? i : 2 * i, b = c.is_neox ? 2 + i : 2 * i + 1;
      const float cs = cos_sin[p * 4 + i], sn = cos_sin[p * 4 + 2 + i];
      out[a] = rotated_x(in[a], in[b], cs, sn);
      out[b] = rotated_y(in[a], in[b], cs, sn);
    }
  };
  // Every query head is rotated, token 1 (padding) included.
  for (int t = 0; t < 3; ++t) {
    for (int h = 0; h < 2; ++h) {
      float expected[4];
      rotate(as_floats(q_before) + (t * 2 + h) * 4, positions[t], expected);
      CHECK(same_bytes(c.q.data() + (t * 2 + h) * 16, reinterpret_cast<std::uint8_t*>(expected),
                       16));
    }
  }
  // Token 0 at position 2, NeoX, head 0 (1, 2, 3, 4): pair (1, 3) with (0.5, 3): (0.5 - 9, 1.5
  // + 1.5) = (-8.5, 4.5)... checked generally above; one literal value keeps the formula honest.
  if (c.is_neox) CHECK(as_floats(c.q)[0] == -8.5f);
  // Keys: tokens 0 and 2 rotated, token 1 (padding) untouched.
  float k0[4], k2[4];
  rotate(as_floats(k_before), 2, k0);
  rotate(as_floats(k_before) + 8, 1, k2);
  CHECK(same_bytes(c.k.data(), reinterpret_cast<std::uint8_t*>(k0), 16));
  CHECK(same_bytes(c.k.data() + 16, k_before.data() + 16, 16));
  CHECK(same_bytes(c.k.data() + 32, reinterpret_cast<std::uint8_t*>(k2), 16));
  // Cache: slot 3 (block 1, offset 1) holds [kv_c[0], rotated k[0]], slot 0 [kv_c[2], k[2]].
  Buffer expected = poisoned(4 * 6 * 4);
  const float entry0[6] = {-1, -2, k0[0], k0[1], k0[2], k0[3]};
  const float entry2[6] = {-5, -6, k2[0], k2[1], k2[2], k2[3]};
  std::memcpy(expected.data() + 3 * 24, entry0, 24);
  std::memcpy(expected.data(), entry2, 24);
  CHECK(same_bytes(c.cache.data(), expected.data(), 4 * 24));
}

TEST_CASE("concat_and_cache_mla_rope_fused CPU: the fused multiply-add is where the kernels "
          "put it", "[concat_and_cache_mla_rope_fused]") {
  // x c - y s computed as fma(x, c, -(y s)) differs from the twice-rounded x c - y s for these
  // f32 values: the test would catch a reference (or a kernel) that fuses elsewhere or nowhere.
  SmallCase c;
  float* q = reinterpret_cast<float*>(c.q.data());
  float* cos_sin = reinterpret_cast<float*>(c.cos_sin.data());
  const float x = 1.0f + 0x1p-23f, y = 1.0f - 0x1p-24f, cs = 1.0f - 0x1p-23f, sn = 1.0f;
  q[0] = x;
  q[2] = y;
  cos_sin[2 * 4 + 0] = cs;
  cos_sin[2 * 4 + 2] = sn;
  run<ConcatAndCacheMlaRopeFused>(Impl::cpu, c.args());
  const float fused = std::fma(x, cs, -(y * sn));
  volatile float product_x = x * cs;  // volatile: rounded to fp32 here, not fused
  volatile float product_y = y * sn;
  const float unfused = product_x - product_y;
  REQUIRE(test::bits_of(fused) != test::bits_of(unfused));
  CHECK(test::bits_of(q[0]) == test::bits_of(fused));
}

TEST_CASE("concat_and_cache_mla_rope_fused CPU: 16-bit values are rounded once, after the fp32 "
          "rotation", "[concat_and_cache_mla_rope_fused]") {
  const DType dtype = GENERATE(DType::f16, DType::bf16);
  CAPTURE(dtype_name(dtype));
  constexpr int T = 5, H = 3, R = 8, L = 16, P = 7;
  Buffer positions = int64s({6, 0, 3, 3, 1});
  Buffer q(Memory::host, T * H * R * 2), k(Memory::host, T * R * 2), kv_c(Memory::host, T * L * 2),
      cos_sin(Memory::host, P * R * 2);
  test::fill_random(q.data(), dtype, T * H * R, 1);
  test::fill_random(k.data(), dtype, T * R, 2);
  test::fill_random(kv_c.data(), dtype, T * L, 3);
  test::fill_random(cos_sin.data(), dtype, P * R, 4, 1.f);
  const Buffer q_before = copy_to(Memory::host, q);
  Buffer slots = int64s({0, 1, 2, 3, 4});
  Buffer cache = poisoned(T * (L + R) * 2);
  run<ConcatAndCacheMlaRopeFused>(
      Impl::cpu, {TensorView::contiguous(positions.data(), DType::i64, {T}),
                  TensorView::contiguous(q.data(), dtype, {T, H, R}),
                  TensorView::contiguous(k.data(), dtype, {T, R}),
                  TensorView::contiguous(kv_c.data(), dtype, {T, L}),
                  TensorView::contiguous(cos_sin.data(), dtype, {P, R}), false,
                  TensorView::contiguous(slots.data(), DType::i64, {T}),
                  TensorView::contiguous(cache.data(), dtype, {T, 1, L + R}), "auto",
                  TensorView{}});
  const auto value = [&](const Buffer& b, int i) {
    std::uint16_t bits;
    std::memcpy(&bits, b.data() + 2 * i, 2);
    return dtype == DType::f16 ? numerics::half_bits_to_float(bits)
                               : numerics::bf16_bits_to_float(bits);
  };
  const auto round = [&](float v) {
    return dtype == DType::f16 ? numerics::float_to_half_bits(v) : numerics::float_to_bf16_bits(v);
  };
  const auto* pos = reinterpret_cast<const std::int64_t*>(positions.data());
  int mismatches = 0;
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < R / 2; ++i) {
        const int a = (t * H + h) * R + 2 * i;
        const float cs = value(cos_sin, static_cast<int>(pos[t]) * R + i);
        const float sn = value(cos_sin, static_cast<int>(pos[t]) * R + R / 2 + i);
        const float x = value(q_before, a), y = value(q_before, a + 1);
        std::uint16_t got_x, got_y;
        std::memcpy(&got_x, q.data() + 2 * a, 2);
        std::memcpy(&got_y, q.data() + 2 * (a + 1), 2);
        mismatches += got_x != round(rotated_x(x, y, cs, sn));
        mismatches += got_y != round(rotated_y(x, y, cs, sn));
      }
  CHECK(mismatches == 0);
  // Round trip of the "auto" entry: kv_c bits, then the rotated k_pe bits.
  for (int t = 0; t < T; ++t) {
    CHECK(same_bytes(cache.data() + t * (L + R) * 2, kv_c.data() + t * L * 2, L * 2));
    CHECK(same_bytes(cache.data() + (t * (L + R) + L) * 2, k.data() + t * R * 2, R * 2));
  }
}

TEST_CASE("concat_and_cache_mla_rope_fused CPU: fp8 entries hold the fp8 of the rotated key",
          "[concat_and_cache_mla_rope_fused]") {
  SmallCase c;
  c.kind = GENERATE("fp8_e4m3", "fp8_e5m2");
  CAPTURE(c.kind);
  c.scale = floats({0.5f});
  c.cache = poisoned(4 * 6);
  ConcatAndCacheMlaRopeFused::Args args = c.args();
  args.kv_cache = TensorView::contiguous(c.cache.data(), DType::u8, {2, 2, 6});
  run<ConcatAndCacheMlaRopeFused>(Impl::cpu, args);
  const auto encode = [&](float v) {
    return c.kind == "fp8_e4m3" ? numerics::float_to_fp8_e4m3(v / 0.5f)
                                : numerics::float_to_fp8_e5m2(v / 0.5f);
  };
  const float* k = as_floats(c.k);  // rotated in place
  const std::uint8_t* entry0 = c.cache.data() + 3 * 6;
  CHECK(entry0[0] == encode(-1.f));
  CHECK(entry0[1] == encode(-2.f));
  for (int j = 0; j < 4; ++j) CHECK(entry0[2 + j] == encode(k[j]));
  CHECK(same_bytes(c.cache.data() + 6, poisoned(24).data() + 6, 12));  // slots 1, 2 untouched
}

// ---------------------------------------------------------------------------------------------
// Validation: a valid bf16 call broken in exactly one way; the call throws InvalidArgument
// naming the argument, and neither the cache nor q_pe nor k_pe changes.

struct ValidCall {
  static constexpr int T = 4, H = 2, R = 8, L = 16, P = 10, kBlocks = 3, kBlockSize = 4;
  Buffer positions_data = int64s({0, 9, 3, 3, 2, 2});  // two padding elements past T
  Buffer q_data{Memory::host, T * H * R * 2 * 2};
  Buffer k_data{Memory::host, T * R * 2 * 2};
  Buffer kv_c_data{Memory::host, T * L * 2};
  Buffer cos_sin_data{Memory::host, P * (R + 2) * 2};
  Buffer slot_data = int64s({0, 5, -1, 11});
  Buffer cache_data = poisoned(kBlocks * kBlockSize * (L + R) * 2);
  Buffer scale_data = floats({0.5f, 0.25f});
  Buffer q_before, k_before;

  TensorView positions = TensorView::contiguous(positions_data.data(), DType::i64, {6});
  TensorView q_pe = TensorView::contiguous(q_data.data(), DType::bf16, {T, H, R});
  TensorView k_pe = TensorView::contiguous(k_data.data(), DType::bf16, {T, R});
  TensorView kv_c = TensorView::contiguous(kv_c_data.data(), DType::bf16, {T, L});
  TensorView cos_sin_cache = TensorView::contiguous(cos_sin_data.data(), DType::bf16, {P, R});
  bool is_neox = true;
  TensorView slot_mapping = TensorView::contiguous(slot_data.data(), DType::i64, {T});
  TensorView kv_cache = TensorView::contiguous(cache_data.data(), DType::bf16,
                                               {kBlocks, kBlockSize, L + R});
  std::string kv_cache_dtype = "auto";
  TensorView kv_cache_scale = TensorView::contiguous(scale_data.data(), DType::f32, {1});
  Impl impl = Impl::cpu;

  ValidCall() {
    test::fill_random(q_data.data(), DType::bf16, T * H * R * 2, 1);
    test::fill_random(k_data.data(), DType::bf16, T * R * 2, 2);
    test::fill_random(kv_c_data.data(), DType::bf16, T * L, 3);
    test::fill_random(cos_sin_data.data(), DType::bf16, P * (R + 2), 4, 1.f);
    q_before = copy_to(Memory::host, q_data);
    k_before = copy_to(Memory::host, k_data);
  }

  void use_fp8() {
    kv_cache_dtype = "fp8_e4m3";
    kv_cache.dtype = DType::u8;
  }

  void call() const {
    run<ConcatAndCacheMlaRopeFused>(impl, {positions, q_pe, k_pe, kv_c, cos_sin_cache, is_neox,
                                           slot_mapping, kv_cache, kv_cache_dtype,
                                           kv_cache_scale});
  }

  bool nothing_written() const {
    const Buffer fresh = poisoned(cache_data.size());
    return same_bytes(cache_data.data(), fresh.data(), cache_data.size()) &&
           same_bytes(q_data.data(), q_before.data(), q_data.size()) &&
           same_bytes(k_data.data(), k_before.data(), k_data.size());
  }
};

TEST_CASE("concat_and_cache_mla_rope_fused: the valid calls used by the rule tests pass",
          "[concat_and_cache_mla_rope_fused]") {
  ValidCall call;
  CHECK_NOTHROW(call.call());
  CHECK_FALSE(call.nothing_written());
  ValidCall fp8;
  fp8.use_fp8();
  CHECK_NOTHROW(fp8.call());
}

TEST_CASE("concat_and_cache_mla_rope_fused rejects a position beyond cos_sin_cache or negative",
          "[concat_and_cache_mla_rope_fused]") {
  ValidCall call;
  auto* positions = reinterpret_cast<std::int64_t*>(call.positions_data.data());
  SECTION("beyond") {
    positions[2] = 10;
    CHECK_REJECTED(call, "positions[2] = 10");
  }
  SECTION("negative") {
    positions[3] = -1;
    CHECK_REJECTED(call, "positions[3] = -1");
  }
  SECTION("padding past T is never read") {
    positions[5] = 1000;
    CHECK_NOTHROW(call.call());
  }
}

TEST_CASE("concat_and_cache_mla_rope_fused rejects an odd rot_dim or one unlike the head",
          "[concat_and_cache_mla_rope_fused]") {
  ValidCall call;
  SECTION("odd") {
    call.q_pe = TensorView::contiguous(call.q_data.data(), DType::bf16, {4, 2, 7});
    call.k_pe = TensorView::contiguous(call.k_data.data(), DType::bf16, {4, 7});
    call.cos_sin_cache = TensorView::contiguous(call.cos_sin_data.data(), DType::bf16, {10, 7});
    call.kv_cache = TensorView::contiguous(call.cache_data.data(), DType::bf16, {3, 4, 23});
    CHECK_REJECTED(call, "cos_sin_cache");
    CHECK_THROWS_WITH(call.call(), Contains("even"));
  }
  SECTION("larger than the head") {
    call.cos_sin_cache = TensorView::contiguous(call.cos_sin_data.data(), DType::bf16, {10, 10});
    CHECK_REJECTED(call, "cos_sin_cache");
    CHECK_THROWS_WITH(call.call(), Contains("q_pe.size(2) = 8"));
  }
}

TEST_CASE("concat_and_cache_mla_rope_fused rejects an entry size other than kv_lora_rank + "
          "rot_dim", "[concat_and_cache_mla_rope_fused]") {
  ValidCall call;
  call.kv_cache = TensorView::contiguous(call.cache_data.data(), DType::bf16, {3, 4, 20});
  CHECK_REJECTED(call, "kv_cache");
  CHECK_THROWS_WITH(call.call(), Contains("kv_lora_rank + rope_dim = 24"));
}

TEST_CASE("concat_and_cache_mla_rope_fused rejects fp8_ds_mla", "[concat_and_cache_mla_rope_fused]") {
  ValidCall call;
  call.kv_cache_dtype = "fp8_ds_mla";
  CHECK_REJECTED(call, "kv_cache_dtype");
}

TEST_CASE("concat_and_cache_mla_rope_fused rejects a slot beyond the cache",
          "[concat_and_cache_mla_rope_fused]") {
  ValidCall call;
  reinterpret_cast<std::int64_t*>(call.slot_data.data())[1] = 12;
  CHECK_REJECTED(call, "slot_mapping[1] = 12");
}

TEST_CASE("concat_and_cache_mla_rope_fused rejects an int32 slot_mapping or positions",
          "[concat_and_cache_mla_rope_fused]") {
  ValidCall call;
  Buffer int32s(Memory::host, 64);
  std::memset(int32s.data(), 0, 64);
  SECTION("slot_mapping") {
    call.slot_mapping = TensorView::contiguous(int32s.data(), DType::i32, {4});
    CHECK_REJECTED(call, "slot_mapping");
  }
  SECTION("positions") {
    call.positions = TensorView::contiguous(int32s.data(), DType::i32, {4});
    CHECK_REJECTED(call, "positions");
  }
}

TEST_CASE("concat_and_cache_mla_rope_fused rejects tensors with another token count",
          "[concat_and_cache_mla_rope_fused]") {
  ValidCall call;
  SECTION("k_pe") {
    call.k_pe = TensorView::contiguous(call.k_data.data(), DType::bf16, {5, 8});
    CHECK_REJECTED(call, "k_pe");
  }
  SECTION("kv_c") {
    call.kv_c = TensorView::contiguous(call.kv_c_data.data(), DType::bf16, {3, 16});
    CHECK_REJECTED(call, "kv_c");
  }
  SECTION("slot_mapping") {
    call.slot_mapping = TensorView::contiguous(call.slot_data.data(), DType::i64, {3});
    CHECK_REJECTED(call, "slot_mapping");
  }
  SECTION("positions shorter than T") {
    call.positions = TensorView::contiguous(call.positions_data.data(), DType::i64, {3});
    CHECK_REJECTED(call, "positions");
  }
}

TEST_CASE("concat_and_cache_mla_rope_fused rejects a scale of the wrong shape, dtype or device",
          "[concat_and_cache_mla_rope_fused]") {
  ValidCall call;
  call.use_fp8();
  SECTION("two elements") {
    call.kv_cache_scale = TensorView::contiguous(call.scale_data.data(), DType::f32, {2});
  }
  SECTION("f16") { call.kv_cache_scale.dtype = DType::f16; }
  SECTION("on the GPU for the CPU reference") { call.kv_cache_scale.device = Device::cuda; }
  CHECK_REJECTED(call, "kv_cache_scale");
}

TEST_CASE("concat_and_cache_mla_rope_fused rejects dtype mismatches",
          "[concat_and_cache_mla_rope_fused]") {
  ValidCall call;
  SECTION("k_pe") {
    call.k_pe.dtype = DType::f16;
    CHECK_REJECTED(call, "k_pe");
  }
  SECTION("cos_sin_cache") {
    call.cos_sin_cache.dtype = DType::f32;
    CHECK_REJECTED(call, "cos_sin_cache");
  }
  SECTION("auto cache") {
    call.kv_cache.dtype = DType::f16;
    CHECK_REJECTED(call, "kv_cache");
  }
  SECTION("kv_cache_dtype float16 with bf16") {
    call.kv_cache_dtype = "float16";
    CHECK_REJECTED(call, "kv_cache_dtype");
  }
}

TEST_CASE("concat_and_cache_mla_rope_fused rejects unpacked or non-contiguous tensors",
          "[concat_and_cache_mla_rope_fused]") {
  ValidCall call;
  SECTION("q_pe elements apart") {
    call.q_pe = TensorView::strided(call.q_data.data(), DType::bf16, {4, 2, 8}, {32, 16, 2});
    CHECK_REJECTED(call, "q_pe");
  }
  SECTION("cos_sin_cache rows apart") {
    call.cos_sin_cache =
        TensorView::strided(call.cos_sin_data.data(), DType::bf16, {5, 8}, {10, 1});
    CHECK_REJECTED(call, "cos_sin_cache");
  }
}

TEST_CASE("concat_and_cache_mla_rope_fused rejects a tensor on the wrong device",
          "[concat_and_cache_mla_rope_fused]") {
  ValidCall call;
  SECTION("CPU reference given a CUDA q_pe") {
    call.q_pe.device = Device::cuda;
    CHECK_REJECTED(call, "q_pe");
  }
  SECTION("naive given host tensors") {
    call.impl = Impl::naive;
    CHECK_REJECTED(call, "positions");
    CHECK_THROWS_WITH(call.call(), Contains("cuda"));
  }
}

TEST_CASE("concat_and_cache_mla_rope_fused with zero tokens is a no-op",
          "[concat_and_cache_mla_rope_fused]") {
  ValidCall call;
  call.q_pe = TensorView::contiguous(nullptr, DType::bf16, {0, 2, 8});
  call.k_pe = TensorView::contiguous(nullptr, DType::bf16, {0, 8});
  call.kv_c = TensorView::contiguous(nullptr, DType::bf16, {0, 16});
  call.slot_mapping = TensorView::contiguous(nullptr, DType::i64, {0});
  call.positions = TensorView::contiguous(nullptr, DType::i64, {0});
  CHECK_NOTHROW(call.call());
  CHECK(call.nothing_written());
}

// ---------------------------------------------------------------------------------------------
// GPU: CPU reference vs naive vs optimized: cache, q_pe and k_pe byte for byte.

struct ProblemSpec {
  DType dtype = DType::bf16;
  std::string kv_cache_dtype = "auto";
  bool is_neox = false;
  std::int64_t num_heads = 16, rot_dim = 64, kv_lora_rank = 512, block_size = 64;
  std::int64_t num_tokens = 200;
  bool model_views = true;  // q_pe inside [T, H, 128 + rot], k_pe inside [T, rank + rot]
  bool misaligned = false;  // every buffer one element off
  std::uint64_t seed = 1;
  std::string describe() const {
    return std::string(dtype_name(dtype)) + " \"" + kv_cache_dtype + "\" " +
           (is_neox ? "NeoX" : "GPT-J") + " H=" + std::to_string(num_heads) +
           " rot=" + std::to_string(rot_dim) + " rank=" + std::to_string(kv_lora_rank) +
           " T=" + std::to_string(num_tokens) + (model_views ? " model views" : "") +
           (misaligned ? " misaligned" : "");
  }
};

struct Problem {
  Buffer positions, queries, projection, latent, cos_sin, slots, cache, scale;
  ConcatAndCacheMlaRopeFused::Args args;
};

Problem make_problem(const ProblemSpec& spec) {
  Problem p;
  const std::int64_t T = spec.num_tokens, H = spec.num_heads, R = spec.rot_dim,
                     L = spec.kv_lora_rank, P = 333;
  const std::int64_t b = dtype_size(spec.dtype), shift = spec.misaligned ? 1 : 0;
  const std::int64_t q_head = spec.model_views ? 128 + R : R;
  const std::int64_t k_row = spec.model_views ? L + R : R;
  std::mt19937_64 rng(spec.seed);
  std::vector<std::int64_t> positions(T + 3);
  for (auto& v : positions) v = static_cast<std::int64_t>(rng() % P);
  p.positions = int64s(positions);
  p.queries = Buffer(Memory::host, (T * H * q_head + shift) * b);
  test::fill_random(p.queries.data(), spec.dtype, T * H * q_head + shift, spec.seed + 1);
  p.projection = Buffer(Memory::host, (T * k_row + shift) * b);
  test::fill_random(p.projection.data(), spec.dtype, T * k_row + shift, spec.seed + 2);
  p.latent = Buffer(Memory::host, (T * L + shift) * b);
  test::fill_random(p.latent.data(), spec.dtype, T * L + shift, spec.seed + 3, 50.f);
  p.cos_sin = Buffer(Memory::host, (P * R + shift) * b);
  test::fill_random(p.cos_sin.data(), spec.dtype, P * R + shift, spec.seed + 4, 1.f);
  std::vector<std::int64_t> slots(T);
  const std::int64_t B = spec.block_size, N = (T + B - 1) / B + 2;
  std::vector<std::int64_t> all(N * B);
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng);
  std::copy(all.begin(), all.begin() + T, slots.begin());
  for (std::int64_t t = 2; t < T; t += 5) slots[t] = -1;
  p.slots = int64s(slots);
  const bool fp8 = spec.kv_cache_dtype != "auto";
  const DType cache_dtype = fp8 ? DType::u8 : spec.dtype;
  p.cache = poisoned((N * B * (L + R) + shift) * dtype_size(cache_dtype));
  p.scale = floats({0.03f});
  p.args.positions = TensorView::contiguous(p.positions.data(), DType::i64, {T + 3});
  p.args.q_pe = TensorView::strided(p.queries.data() + (shift + q_head - R) * b, spec.dtype,
                                    {T, H, R}, {H * q_head, q_head, 1});
  p.args.k_pe = TensorView::strided(p.projection.data() + (shift + k_row - R) * b, spec.dtype,
                                    {T, R}, {k_row, 1});
  p.args.kv_c = TensorView::contiguous(p.latent.data() + shift * b, spec.dtype, {T, L});
  p.args.cos_sin_cache = TensorView::contiguous(p.cos_sin.data() + shift * b, spec.dtype, {P, R});
  p.args.is_neox = spec.is_neox;
  p.args.slot_mapping = TensorView::contiguous(p.slots.data(), DType::i64, {T});
  p.args.kv_cache = TensorView::contiguous(p.cache.data() + shift * dtype_size(cache_dtype),
                                           cache_dtype, {N, B, L + R});
  p.args.kv_cache_dtype = spec.kv_cache_dtype;
  p.args.kv_cache_scale = TensorView::contiguous(p.scale.data(), DType::f32, {1});
  return p;
}

// Runs `impl` on copies of the problem's buffers; returns (cache, queries, projection).
std::vector<Buffer> run_copy(Impl impl, const Problem& p) {
  const Memory memory = impl == Impl::cpu ? Memory::host : Memory::device;
  const Device device = impl == Impl::cpu ? Device::cpu : Device::cuda;
  std::vector<Buffer> copies;
  const Buffer* originals[] = {&p.cache, &p.queries, &p.projection, &p.positions,
                               &p.latent, &p.cos_sin, &p.slots,     &p.scale};
  for (const Buffer* b : originals) copies.push_back(copy_to(memory, *b));
  ConcatAndCacheMlaRopeFused::Args args = p.args;
  const auto move = [&](TensorView& view, int i) {
    view = test::rebase(view, originals[i]->data(), copies[i].data(), device);
  };
  move(args.kv_cache, 0);
  move(args.q_pe, 1);
  move(args.k_pe, 2);
  move(args.positions, 3);
  move(args.kv_c, 4);
  move(args.cos_sin_cache, 5);
  move(args.slot_mapping, 6);
  move(args.kv_cache_scale, 7);
  run<ConcatAndCacheMlaRopeFused>(impl, args);
  if (impl != Impl::cpu) PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<Buffer> results;
  for (int i = 0; i < 3; ++i) results.push_back(copy_to(Memory::host, copies[i]));
  return results;
}

void check_three_way(const ProblemSpec& spec) {
  INFO(spec.describe());
  const Problem problem = make_problem(spec);
  const std::vector<Buffer> expected = run_copy(Impl::cpu, problem);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    const std::vector<Buffer> actual = run_copy(impl, problem);
    for (int i = 0; i < 3; ++i) {
      INFO("buffer " << (i == 0 ? "kv_cache" : i == 1 ? "q_pe" : "k_pe"));
      CHECK(same_bytes(actual[i].data(), expected[i].data(), expected[i].size()));
    }
  }
}

TEST_CASE("concat_and_cache_mla_rope_fused GPU: dtypes × cache kinds × pair styles",
          "[concat_and_cache_mla_rope_fused][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  spec.kv_cache_dtype = GENERATE("auto", "fp8", "fp8_e5m2");
  spec.is_neox = GENERATE(false, true);
  check_three_way(spec);
}

TEST_CASE("concat_and_cache_mla_rope_fused GPU: shapes, misaligned and packed layouts",
          "[concat_and_cache_mla_rope_fused][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  std::tie(spec.num_heads, spec.rot_dim, spec.kv_lora_rank) =
      GENERATE(table<std::int64_t, std::int64_t, std::int64_t>(
          {{16, 64, 512}, {128, 64, 512}, {1, 2, 1}, {3, 6, 10}, {40, 32, 256}, {7, 128, 96}}));
  spec.is_neox = GENERATE(false, true);
  spec.model_views = GENERATE(false, true);
  spec.misaligned = GENERATE(false, true);
  spec.kv_cache_dtype = GENERATE("auto", "fp8_e4m3");
  spec.num_tokens = 37;
  check_three_way(spec);
}

TEST_CASE("concat_and_cache_mla_rope_fused GPU: token counts", "[concat_and_cache_mla_rope_fused][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.num_tokens = GENERATE(1, 5, 1000, 4096);
  spec.seed = static_cast<std::uint64_t>(spec.num_tokens);
  check_three_way(spec);
}

}  // namespace
