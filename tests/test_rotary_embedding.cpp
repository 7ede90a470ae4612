// Tests of rotary_embedding (vLLM csrc/pos_encoding_kernels.cu @0f5257e).
//
// CPU part ([cpu], runs everywhere): the chapter's worked example for both pair styles; every
// tensor form (flat, [T, H, D], batched, padded heads), partial rotary with rope_dim_offset,
// inverse, an f32 or 16-bit cos_sin_cache and no key, against the rotation written from the
// spec's coordinates (elements outside the rotated range, the value heads and the padding must
// keep their bytes); the exact fp32 operations (fma where the kernels fuse, nothing else);
// inverse = the rotation by negated sines, and it undoes an exact rotation; and one test per
// validation rule: InvalidArgument naming the argument, and nothing written.
//
// GPU part ([gpu]): the CPU reference, the naive and the optimized kernel from the same inputs:
// the whole buffer behind query and key must be byte-identical.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cache_element.h"
#include "numerics.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/rotary_embedding.h"
#include "pagedkv/registry.h"
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
// A problem of any tensor form: one buffer of token rows, query's heads then key's, each head
// `head_size + head_pad` elements apart, each row `row_pad` elements longer than its heads.

enum class Form { flat, heads, batched_flat, batched_heads };

const char* form_name(Form form) {
  switch (form) {
    case Form::flat: return "[T, H * D]";
    case Form::heads: return "[T, H, D]";
    case Form::batched_flat: return "[B, S, H * D]";
    case Form::batched_heads: return "[B, S, H, D]";
  }
  return "?";
}

struct ProblemSpec {
  DType dtype = DType::bf16;
  DType cache_dtype = DType::bf16;
  bool is_neox = true;
  bool inverse = false;
  Form form = Form::flat;
  std::int64_t num_tokens = 6;  // batched forms: B = 2, S = num_tokens / 2
  std::int64_t num_heads = 4, num_kv_heads = 2;  // num_kv_heads 0: no key
  std::int64_t head_size = 16, rot_dim = 16, rope_dim_offset = 0;
  std::int64_t head_pad = 0;  // heads forms only: elements between heads
  std::int64_t row_pad = 3;   // elements after each token's heads (a value part, say)
  bool misaligned = false;    // every buffer one element off
  std::int64_t max_position = 37;
  std::uint64_t seed = 1;

  bool batched() const { return form == Form::batched_flat || form == Form::batched_heads; }
  bool explicit_heads() const { return form == Form::heads || form == Form::batched_heads; }
  std::int64_t head_pitch() const { return head_size + (explicit_heads() ? head_pad : 0); }
  std::int64_t row() const { return (num_heads + num_kv_heads) * head_pitch() + row_pad; }
  std::string describe() const {
    return std::string(dtype_name(dtype)) + " cache " + std::string(dtype_name(cache_dtype)) +
           " " + (is_neox ? "NeoX" : "GPT-J") + (inverse ? " inverse " : " ") + form_name(form) +
           " T=" + std::to_string(num_tokens) + " H=" + std::to_string(num_heads) +
           " KVH=" + std::to_string(num_kv_heads) + " D=" + std::to_string(head_size) +
           " rot=" + std::to_string(rot_dim) + " offset=" + std::to_string(rope_dim_offset) +
           " head_pad=" + std::to_string(head_pad) + (misaligned ? " misaligned" : "");
  }
};

struct Problem {
  ProblemSpec spec;
  Buffer positions, qkv, cos_sin;
  RotaryEmbedding::Args args;
};

// A view of `heads` heads of every token row, starting `first_head` heads into the row.
TensorView heads_view(const ProblemSpec& s, std::uint8_t* base, std::int64_t first_head,
                      std::int64_t heads) {
  std::uint8_t* start = base + first_head * s.head_pitch() * dtype_size(s.dtype);
  const std::int64_t T = s.num_tokens, B = 2, S = s.num_tokens / 2, row = s.row();
  const std::int64_t D = s.head_size, pitch = s.head_pitch();
  switch (s.form) {
    case Form::flat: return TensorView::strided(start, s.dtype, {T, heads * D}, {row, 1});
    case Form::heads:
      return TensorView::strided(start, s.dtype, {T, heads, D}, {row, pitch, 1});
    case Form::batched_flat:
      return TensorView::strided(start, s.dtype, {B, S, heads * D}, {S * row, row, 1});
    case Form::batched_heads:
      return TensorView::strided(start, s.dtype, {B, S, heads, D}, {S * row, row, pitch, 1});
  }
  return {};
}

Problem make_problem(const ProblemSpec& spec) {
  Problem p;
  p.spec = spec;
  const std::int64_t T = spec.num_tokens, b = dtype_size(spec.dtype);
  const std::int64_t shift = spec.misaligned ? 1 : 0;
  std::mt19937_64 rng(spec.seed);
  std::vector<std::int64_t> positions(static_cast<std::size_t>(T));
  for (auto& v : positions) v = static_cast<std::int64_t>(rng() % spec.max_position);
  p.positions = int64s(positions);
  p.qkv = Buffer(Memory::host, static_cast<std::size_t>((T * spec.row() + shift) * b));
  test::fill_random(p.qkv.data(), spec.dtype, T * spec.row() + shift, spec.seed + 1);
  const std::int64_t cache_elements = spec.max_position * spec.rot_dim + shift;
  const std::int64_t cb = dtype_size(spec.cache_dtype);
  p.cos_sin = Buffer(Memory::host, static_cast<std::size_t>(cache_elements * cb));
  test::fill_random(p.cos_sin.data(), spec.cache_dtype, cache_elements, spec.seed + 2, 1.f);

  std::uint8_t* qkv = p.qkv.data() + shift * b;
  p.args.positions =
      spec.batched()
          ? TensorView::contiguous(p.positions.data(), DType::i64, {2, T / 2})
          : TensorView::contiguous(p.positions.data(), DType::i64, {T});
  p.args.query = heads_view(spec, qkv, 0, spec.num_heads);
  if (spec.num_kv_heads > 0) p.args.key = heads_view(spec, qkv, spec.num_heads, spec.num_kv_heads);
  p.args.head_size = spec.head_size;
  p.args.cos_sin_cache = TensorView::contiguous(p.cos_sin.data() + shift * cb, spec.cache_dtype,
                                                {spec.max_position, spec.rot_dim});
  p.args.is_neox = spec.is_neox;
  p.args.rope_dim_offset = spec.rope_dim_offset;
  p.args.inverse = spec.inverse;
  return p;
}

void store_value(std::uint8_t* at, DType dtype, float value) {
  if (dtype == DType::f32) {
    std::memcpy(at, &value, 4);
    return;
  }
  const std::uint16_t bits = dtype == DType::f16 ? numerics::float_to_half_bits(value)
                                                 : numerics::float_to_bf16_bits(value);
  std::memcpy(at, &bits, 2);
}

// The spec's rotation (§3.3) written from coordinates: token t = b·S + s, head h (query heads
// first, then key heads), element rope_dim_offset + i of the head, on a copy of the qkv buffer.
Buffer rotated_by_coordinates(const Problem& p) {
  const ProblemSpec& s = p.spec;
  Buffer out = copy_to(Memory::host, p.qkv);
  const std::int64_t b = dtype_size(s.dtype), cb = dtype_size(s.cache_dtype);
  const std::int64_t half = s.rot_dim / 2, shift = s.misaligned ? 1 : 0;
  const auto* positions = reinterpret_cast<const std::int64_t*>(p.positions.data());
  for (std::int64_t t = 0; t < s.num_tokens; ++t) {
    const std::uint8_t* row = p.cos_sin.data() + (shift + positions[t] * s.rot_dim) * cb;
    for (std::int64_t h = 0; h < s.num_heads + s.num_kv_heads; ++h) {
      std::uint8_t* head = out.data() + (shift + t * s.row() + h * s.head_pitch()) * b;
      for (std::int64_t i = 0; i < half; ++i) {
        const std::int64_t first = s.rope_dim_offset + (s.is_neox ? i : 2 * i);
        const std::int64_t second = s.rope_dim_offset + (s.is_neox ? half + i : 2 * i + 1);
        const float x = load_activation(head + first * b, s.dtype);
        const float y = load_activation(head + second * b, s.dtype);
        const float c = load_activation(row + i * cb, s.cache_dtype);
        const float sine = load_activation(row + (half + i) * cb, s.cache_dtype);
        const float sn = s.inverse ? -sine : sine;
        // One product and one FMA per value, as §3.3's x c - y s and y c + x s with the FMA
        // where the kernels put it (an FMA's addend is never contracted further).
        store_value(head + first * b, s.dtype, std::fma(x, c, -(y * sn)));
        store_value(head + second * b, s.dtype, std::fma(y, c, x * sn));
      }
    }
  }
  return out;
}

// Runs `impl` on copies of the problem's buffers; returns the qkv buffer.
Buffer run_copy(Impl impl, const Problem& p) {
  const Memory memory = impl == Impl::cpu ? Memory::host : Memory::device;
  const Device device = impl == Impl::cpu ? Device::cpu : Device::cuda;
  Buffer positions = copy_to(memory, p.positions);
  Buffer qkv = copy_to(memory, p.qkv);
  Buffer cos_sin = copy_to(memory, p.cos_sin);
  RotaryEmbedding::Args args = p.args;
  args.positions = test::rebase(args.positions, p.positions.data(), positions.data(), device);
  args.query = test::rebase(args.query, p.qkv.data(), qkv.data(), device);
  if (args.key.ndim > 0) args.key = test::rebase(args.key, p.qkv.data(), qkv.data(), device);
  args.cos_sin_cache = test::rebase(args.cos_sin_cache, p.cos_sin.data(), cos_sin.data(), device);
  run<RotaryEmbedding>(impl, args);
  if (impl != Impl::cpu) PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  return copy_to(Memory::host, qkv);
}

void check_cpu_against_coordinates(const ProblemSpec& spec) {
  INFO(spec.describe());
  const Problem problem = make_problem(spec);
  const Buffer expected = rotated_by_coordinates(problem);
  const Buffer actual = run_copy(Impl::cpu, problem);
  CHECK(same_bytes(actual, expected, expected.size()));
}

// ---------------------------------------------------------------------------------------------
// CPU: the chapter's worked example, every form, partial rotary, inverse, no key.

TEST_CASE("rotary_embedding CPU: the worked example, NeoX and GPT-J", "[rotary_embedding][cpu]") {
  // rot_dim 4 = head_size; row 1 of the cache: cosines (0, 1), sines (1, 0): pair 0 turns by
  // 90 degrees, pair 1 stays.
  const bool is_neox = GENERATE(true, false);
  CAPTURE(is_neox);
  Buffer positions = int64s({1});
  Buffer query = floats({1, 2, 3, 4});
  Buffer cos_sin = floats({1, 1, 0, 0,  //
                           0, 1, 1, 0});
  run<RotaryEmbedding>(Impl::cpu, {TensorView::contiguous(positions.data(), DType::i64, {1}),
                                   TensorView::contiguous(query.data(), DType::f32, {1, 4}),
                                   TensorView{}, 4,
                                   TensorView::contiguous(cos_sin.data(), DType::f32, {2, 4}),
                                   is_neox, 0, false});
  // NeoX pairs (1, 3), (2, 4): (1, 3) -> (-3, 1). GPT-J pairs (1, 2), (3, 4): (1, 2) -> (-2, 1).
  const Buffer expected = is_neox ? floats({-3, 2, 1, 4}) : floats({-2, 1, 3, 4});
  CHECK(same_bytes(query, expected, 16));
}

TEST_CASE("rotary_embedding CPU: every tensor form, as the spec's coordinates say",
          "[rotary_embedding][cpu]") {
  ProblemSpec spec;
  spec.form = GENERATE(Form::flat, Form::heads, Form::batched_flat, Form::batched_heads);
  spec.is_neox = GENERATE(true, false);
  const std::int64_t head_pad = GENERATE(0, 5);  // padded heads: a [.., H, D + 5] buffer's [:D]
  spec.head_pad = spec.explicit_heads() ? head_pad : 0;
  check_cpu_against_coordinates(spec);
}

TEST_CASE("rotary_embedding CPU: partial rotary, rope_dim_offset, inverse, dtypes, no key",
          "[rotary_embedding][cpu]") {
  ProblemSpec spec;
  std::tie(spec.head_size, spec.rot_dim, spec.rope_dim_offset) =
      GENERATE(table<std::int64_t, std::int64_t, std::int64_t>(
          {{16, 16, 0}, {16, 8, 0}, {16, 8, 8}, {16, 6, 3}, {80, 32, 48}, {6, 2, 4}}));
  spec.dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  spec.cache_dtype = GENERATE(true, false) ? DType::f32 : spec.dtype;
  spec.inverse = GENERATE(false, true);
  spec.is_neox = GENERATE(true, false);
  spec.num_kv_heads = GENERATE(2, 0);
  spec.form = Form::heads;
  check_cpu_against_coordinates(spec);
}

TEST_CASE("rotary_embedding CPU: the fused multiply-add is where the kernels put it",
          "[rotary_embedding][cpu]") {
  // x c - y s as fma(x, c, -(y s)) differs from the twice-rounded x c - y s for these f32
  // values (and from fma(-y, s, x c)): a reference that fused elsewhere or nowhere would fail.
  const float x = 1.0f + 0x1p-23f, y = 1.0f - 0x1p-24f, c = 1.0f - 0x1p-23f, s = 1.0f;
  const float fused = std::fma(x, c, -(y * s));
  const float xc = x * c;  // named products: the compiler may not contract them
  const float ys = y * s;
  REQUIRE(fused != xc - ys);
  Buffer positions = int64s({0});
  Buffer query = floats({x, y});
  Buffer cos_sin = floats({c, s});
  run<RotaryEmbedding>(Impl::cpu, {TensorView::contiguous(positions.data(), DType::i64, {1}),
                                   TensorView::contiguous(query.data(), DType::f32, {1, 2}),
                                   TensorView{}, 2,
                                   TensorView::contiguous(cos_sin.data(), DType::f32, {1, 2}),
                                   true, 0, false});
  CHECK(test::bits_of(reinterpret_cast<const float*>(query.data())[0]) == test::bits_of(fused));
  CHECK(test::bits_of(reinterpret_cast<const float*>(query.data())[1]) ==
        test::bits_of(std::fma(y, c, x * s)));
}

TEST_CASE("rotary_embedding CPU: inverse is the rotation by the negated sines, and undoes an "
          "exact one", "[rotary_embedding][cpu]") {
  ProblemSpec spec;
  spec.dtype = GENERATE(DType::f32, DType::bf16);
  spec.cache_dtype = spec.dtype;
  spec.is_neox = GENERATE(true, false);
  spec.inverse = true;
  Problem inverse = make_problem(spec);
  // The same problem, forward, with every sine negated (exact) in its own cache.
  Problem negated = make_problem(spec);
  negated.args.inverse = false;
  const std::int64_t cb = dtype_size(spec.cache_dtype);
  for (std::int64_t p = 0; p < spec.max_position; ++p) {
    for (std::int64_t i = spec.rot_dim / 2; i < spec.rot_dim; ++i) {
      std::uint8_t* at = negated.cos_sin.data() + (p * spec.rot_dim + i) * cb;
      at[cb - 1] ^= 0x80;  // the sign bit (little-endian)
    }
  }
  const Buffer a = run_copy(Impl::cpu, inverse);
  const Buffer b = run_copy(Impl::cpu, negated);
  CHECK(same_bytes(a, b, a.size()));

  // Angles of 0, 90, 180 and 270 degrees are exact: forward then inverse gives the input back.
  Problem exact = make_problem(spec);
  exact.spec.inverse = exact.args.inverse = false;
  for (std::int64_t p = 0; p < spec.max_position; ++p) {
    for (std::int64_t i = 0; i < spec.rot_dim / 2; ++i) {
      const int quarter = static_cast<int>((p + i) % 4);
      const float c = quarter == 0 ? 1.f : quarter == 2 ? -1.f : 0.f;
      const float s = quarter == 1 ? 1.f : quarter == 3 ? -1.f : 0.f;
      store_value(exact.cos_sin.data() + (p * spec.rot_dim + i) * cb, spec.cache_dtype, c);
      store_value(exact.cos_sin.data() + (p * spec.rot_dim + spec.rot_dim / 2 + i) * cb,
                  spec.cache_dtype, s);
    }
  }
  const Buffer original = copy_to(Memory::host, exact.qkv);
  run<RotaryEmbedding>(Impl::cpu, exact.args);
  CHECK_FALSE(same_bytes(exact.qkv, original, original.size()));
  exact.args.inverse = true;
  run<RotaryEmbedding>(Impl::cpu, exact.args);
  CHECK(same_bytes(exact.qkv, original, original.size()));
}

TEST_CASE("rotary_embedding CPU: an f32 cos_sin_cache of 16-bit values gives the 16-bit "
          "cache's bytes", "[rotary_embedding][cpu]") {
  ProblemSpec spec;
  spec.dtype = GENERATE(DType::f16, DType::bf16);
  spec.cache_dtype = spec.dtype;
  Problem narrow = make_problem(spec);
  spec.cache_dtype = DType::f32;
  Problem wide = make_problem(spec);
  const std::int64_t n = spec.max_position * spec.rot_dim;
  for (std::int64_t i = 0; i < n; ++i) {
    const float v = load_activation(narrow.cos_sin.data() + 2 * i, spec.dtype);
    std::memcpy(wide.cos_sin.data() + 4 * i, &v, 4);
  }
  const Buffer a = run_copy(Impl::cpu, narrow);
  const Buffer b = run_copy(Impl::cpu, wide);
  CHECK(same_bytes(a, b, a.size()));
}

TEST_CASE("rotary_embedding: the W11 workload has the sizes and variants of the design",
          "[rotary_embedding][cpu]") {
  const OpEntry& op = find_op("rotary_embedding");
  std::set<std::int64_t> sizes;
  std::set<std::string> variants;
  for (const WorkloadPoint& p : op.points("W11", false)) {
    sizes.insert(p.size);
    variants.insert(p.variant);
    CHECK(p.size_unit == "tokens");
  }
  CHECK(sizes == std::set<std::int64_t>{1, 16, 256, 4096, 32768, 131072});
  CHECK(variants == std::set<std::string>{"bf16", "bf16, f32 cache"});
  // A quick point's CPU run: the value heads are untouched, query and key are rotated.
  const auto one = op.make_case(op.points("W11", true).at(1), 7);
  CHECK_NOTHROW(one->run_cpu());
}

// ---------------------------------------------------------------------------------------------
// Validation: each rule names its argument, and nothing is written.

struct ValidCall {
  static constexpr int T = 4, H = 2, KVH = 1, D = 8, P = 10;
  Buffer positions_data = int64s({0, 9, 3, 3});
  Buffer qkv_data{Memory::host, T * (H + KVH) * D * 2};
  Buffer cos_sin_data{Memory::host, P * D * 4};
  Buffer qkv_before;

  TensorView positions = TensorView::contiguous(positions_data.data(), DType::i64, {T});
  TensorView query = TensorView::strided(qkv_data.data(), DType::bf16, {T, H * D},
                                         {(H + KVH) * D, 1});
  TensorView key = TensorView::strided(qkv_data.data() + H * D * 2, DType::bf16, {T, KVH * D},
                                       {(H + KVH) * D, 1});
  std::int64_t head_size = D;
  TensorView cos_sin_cache = TensorView::contiguous(cos_sin_data.data(), DType::bf16, {P, D});
  bool is_neox = true;
  std::int64_t rope_dim_offset = 0;
  bool inverse = false;
  Impl impl = Impl::cpu;

  ValidCall() {
    test::fill_random(qkv_data.data(), DType::bf16, T * (H + KVH) * D, 1);
    test::fill_random(cos_sin_data.data(), DType::f32, P * D, 2, 1.f);
    qkv_before = copy_to(Memory::host, qkv_data);
  }

  void call() const {
    run<RotaryEmbedding>(impl, {positions, query, key, head_size, cos_sin_cache, is_neox,
                                rope_dim_offset, inverse});
  }

  bool nothing_written() const {
    return same_bytes(qkv_data.data(), qkv_before.data(), qkv_data.size());
  }
};

TEST_CASE("rotary_embedding: the valid call used by the rule tests passes",
          "[rotary_embedding][cpu]") {
  ValidCall call;
  CHECK_NOTHROW(call.call());
  CHECK_FALSE(call.nothing_written());
  ValidCall no_key;
  no_key.key = TensorView{};
  CHECK_NOTHROW(no_key.call());
}

TEST_CASE("rotary_embedding rejects a position beyond cos_sin_cache or negative",
          "[rotary_embedding][cpu]") {
  ValidCall call;
  auto* positions = reinterpret_cast<std::int64_t*>(call.positions_data.data());
  SECTION("one past the last row") { positions[2] = ValidCall::P; }
  SECTION("negative") { positions[1] = -1; }
  SECTION("the most negative") { positions[3] = INT64_MIN; }
  CHECK_REJECTED(call, "positions[");
}

TEST_CASE("rotary_embedding rejects a bad rot_dim or rope_dim_offset", "[rotary_embedding][cpu]") {
  ValidCall call;
  SECTION("odd rot_dim") {
    call.cos_sin_cache = TensorView::contiguous(call.cos_sin_data.data(), DType::bf16, {10, 7});
    CHECK_REJECTED(call, "cos_sin_cache");
  }
  SECTION("rot_dim + rope_dim_offset > head_size") {
    call.rope_dim_offset = 2;
    CHECK_REJECTED(call, "rope_dim_offset");
  }
  SECTION("negative rope_dim_offset") {
    call.rope_dim_offset = -2;
    CHECK_REJECTED(call, "rope_dim_offset");
  }
  SECTION("rot_dim wider than the head") {
    call.cos_sin_cache = TensorView::contiguous(call.cos_sin_data.data(), DType::bf16, {5, 16});
    CHECK_REJECTED(call, "rope_dim_offset");
  }
}

TEST_CASE("rotary_embedding rejects leading dims that disagree with positions",
          "[rotary_embedding][cpu]") {
  ValidCall call;
  SECTION("query") {
    call.query.shape[0] = 3;
    CHECK_REJECTED(call, "query");
  }
  SECTION("key") {
    call.key.shape[0] = 3;
    CHECK_REJECTED(call, "key");
  }
  SECTION("positions [2, 2] against a [4, ...] query") {
    call.positions = TensorView::contiguous(call.positions_data.data(), DType::i64, {2, 2});
    CHECK_REJECTED(call, "query");
  }
  SECTION("positions with three dims") {
    call.positions = TensorView::contiguous(call.positions_data.data(), DType::i64, {2, 2, 1});
    CHECK_REJECTED(call, "positions");
  }
  SECTION("batch dims that do not flatten to one token stride") {
    call.positions = TensorView::contiguous(call.positions_data.data(), DType::i64, {2, 2});
    call.query = TensorView::strided(call.qkv_data.data(), DType::bf16, {2, 2, 16}, {24, 48, 1});
    call.key = TensorView{};
    CHECK_REJECTED(call, "query");
  }
}

TEST_CASE("rotary_embedding rejects heads that do not fit head_size", "[rotary_embedding][cpu]") {
  ValidCall call;
  SECTION("flat last dim not a multiple of head_size") {
    call.head_size = 6;
    call.cos_sin_cache = TensorView::contiguous(call.cos_sin_data.data(), DType::bf16, {10, 6});
    CHECK_REJECTED(call, "query");
  }
  SECTION("[T, H, D] with D other than head_size") {
    call.query = TensorView::strided(call.qkv_data.data(), DType::bf16, {4, 4, 4}, {24, 4, 1});
    CHECK_REJECTED(call, "query");
  }
  SECTION("head_size 0") {
    call.head_size = 0;
    CHECK_REJECTED(call, "head_size");
  }
  SECTION("num_heads not a multiple of num_kv_heads") {
    // 3 query heads in a buffer of their own, 2 key heads in the qkv buffer.
    Buffer query_data = poisoned(4 * 3 * 8 * 2);
    call.query = TensorView::contiguous(query_data.data(), DType::bf16, {4, 3 * 8});
    call.key = TensorView::strided(call.qkv_data.data(), DType::bf16, {4, 2, 8}, {24, 8, 1});
    CHECK_REJECTED(call, "num_kv_heads");
  }
  SECTION("heads that share memory") {
    call.query = TensorView::strided(call.qkv_data.data(), DType::bf16, {4, 2, 8}, {24, 4, 1});
    CHECK_REJECTED(call, "query");
  }
}

TEST_CASE("rotary_embedding rejects a last dim that is not contiguous", "[rotary_embedding][cpu]") {
  ValidCall call;
  SECTION("query") {
    call.query = TensorView::strided(call.qkv_data.data(), DType::bf16, {4, 8}, {24, 2});
    CHECK_REJECTED(call, "query");
  }
  SECTION("key") {
    call.key = TensorView::strided(call.qkv_data.data() + 32, DType::bf16, {4, 4}, {24, 2});
    call.head_size = 4;
    call.query = TensorView::strided(call.qkv_data.data(), DType::bf16, {4, 16}, {24, 1});
    call.cos_sin_cache = TensorView::contiguous(call.cos_sin_data.data(), DType::bf16, {10, 4});
    CHECK_REJECTED(call, "key");
  }
}

TEST_CASE("rotary_embedding rejects wrong dtypes", "[rotary_embedding][cpu]") {
  ValidCall call;
  SECTION("positions i32") {
    call.positions.dtype = DType::i32;
    CHECK_REJECTED(call, "positions");
  }
  SECTION("query u8") {
    call.query.dtype = DType::u8;
    CHECK_REJECTED(call, "query");
  }
  SECTION("key f16 with a bf16 query") {
    call.key.dtype = DType::f16;
    CHECK_REJECTED(call, "key");
  }
  SECTION("cos_sin_cache f16 with a bf16 query") {
    call.cos_sin_cache.dtype = DType::f16;
    CHECK_REJECTED(call, "cos_sin_cache");
  }
  SECTION("cos_sin_cache f32 is accepted") {
    call.cos_sin_cache.dtype = DType::f32;
    CHECK_NOTHROW(call.call());
  }
}

TEST_CASE("rotary_embedding rejects non-contiguous positions or cos_sin_cache, overlapping "
          "outputs and tensors on the wrong device", "[rotary_embedding][cpu]") {
  ValidCall call;
  SECTION("positions") {
    call.positions = TensorView::strided(call.positions_data.data(), DType::i64, {2}, {2});
    call.query.shape[0] = call.key.shape[0] = 2;
    CHECK_REJECTED(call, "positions");
  }
  SECTION("cos_sin_cache") {
    call.cos_sin_cache = TensorView::strided(call.cos_sin_data.data(), DType::bf16, {5, 8}, {16, 1});
    CHECK_REJECTED(call, "cos_sin_cache");
  }
  SECTION("key inside query") {
    call.key = TensorView::strided(call.qkv_data.data() + 16, DType::bf16, {4, 8}, {24, 1});
    CHECK_REJECTED(call, "key");
  }
  SECTION("naive given host tensors") {
    call.impl = Impl::naive;
    CHECK_REJECTED(call, "positions");
    CHECK_THROWS_WITH(call.call(), Contains("cuda"));
  }
}

TEST_CASE("rotary_embedding with zero tokens is a no-op", "[rotary_embedding][cpu]") {
  ValidCall call;
  call.positions = TensorView::contiguous(nullptr, DType::i64, {0});
  call.query = TensorView::contiguous(nullptr, DType::bf16, {0, 16});
  call.key = TensorView::contiguous(nullptr, DType::bf16, {0, 8});
  CHECK_NOTHROW(call.call());
  CHECK(call.nothing_written());
}

// ---------------------------------------------------------------------------------------------
// GPU: CPU reference vs naive vs optimized, the whole qkv buffer byte for byte.

void check_three_way(const ProblemSpec& spec) {
  INFO(spec.describe());
  const Problem problem = make_problem(spec);
  const Buffer expected = run_copy(Impl::cpu, problem);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    INFO("implementation: " << impl_name(impl));
    const Buffer actual = run_copy(impl, problem);
    CHECK(same_bytes(actual, expected, expected.size()));
  }
}

TEST_CASE("rotary_embedding GPU: dtypes × cache dtypes × pair styles × inverse",
          "[rotary_embedding][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  spec.cache_dtype = GENERATE(true, false) ? DType::f32 : spec.dtype;
  spec.is_neox = GENERATE(true, false);
  spec.inverse = GENERATE(false, true);
  spec.num_heads = 32;
  spec.num_kv_heads = 8;
  spec.head_size = spec.rot_dim = 128;
  spec.num_tokens = 50;
  spec.max_position = 1000;
  check_three_way(spec);
}

TEST_CASE("rotary_embedding GPU: forms, partial rotary, offsets, misaligned and padded layouts",
          "[rotary_embedding][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  std::tie(spec.num_heads, spec.num_kv_heads, spec.head_size, spec.rot_dim,
           spec.rope_dim_offset) =
      GENERATE(table<std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t>(
          {{32, 8, 128, 128, 0}, {8, 8, 64, 32, 0}, {8, 2, 64, 32, 32}, {4, 1, 80, 80, 0},
           {1, 0, 2, 2, 0}, {3, 1, 10, 6, 3}, {16, 4, 256, 64, 64}, {64, 8, 128, 64, 16}}));
  spec.form = GENERATE(Form::flat, Form::heads, Form::batched_flat, Form::batched_heads);
  spec.head_pad = spec.explicit_heads() ? 64 : 0;
  spec.is_neox = GENERATE(true, false);
  spec.misaligned = GENERATE(false, true);
  spec.num_tokens = 38;
  check_three_way(spec);
}

TEST_CASE("rotary_embedding GPU: token counts", "[rotary_embedding][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  ProblemSpec spec;
  spec.num_heads = 32;
  spec.num_kv_heads = 8;
  spec.head_size = spec.rot_dim = 128;
  spec.num_tokens = GENERATE(2, 6, 1000, 4096);  // even: the batched forms split them in two
  spec.form = GENERATE(Form::flat, Form::batched_heads);
  spec.max_position = 5000;
  spec.seed = static_cast<std::uint64_t>(spec.num_tokens);
  check_three_way(spec);
}

}  // namespace
