// process_kv, flatten_kv and get_cache_block_size (LMDeploy TurboMind's paged KV): the block
// size against the bytes the writer really produces; the round trip (policy 0 exact, int8 and
// int4 within the stated bound); the int4 nibble order and a hand-computed int8 row; the shared
// RoPE arithmetic against double precision; bad input rejected with nothing written; on a GPU,
// the naive and optimized kernels against the CPU reference byte for byte, for every policy,
// both activation types, both head sizes, every RoPE type, context parallelism, read-only
// blocks and biases.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "lmdeploy/turbomind_math.h"
#include "numerics.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/flatten_kv.h"
#include "pagedkv/ops/process_kv.h"
#include "pagedkv/turbomind_kv.h"
#include "support.h"

namespace {

using namespace pagedkv;
using Catch::Matchers::Contains;

// ---------------------------------------------------------------------------------------------
// One problem: a batch of sequences, their new tokens, a pool of blocks, in host memory.

struct Spec {
  DType dtype = DType::bf16;
  std::int64_t heads = 2;
  std::int64_t dim = 128;
  std::int64_t block_seq_len = 16;
  std::int64_t layers = 2;
  std::int64_t layer_id = 1;
  std::int64_t policy = 8;
  std::vector<std::int64_t> q_lens = {5, 40, 0, 17};
  std::vector<std::int64_t> histories = {0, 23, 7, 16};
  std::string rope_type = "none";
  std::int64_t rope_dim = 0;
  bool bias = false;
  bool readonly = false;
  std::int64_t cp_rank = 0, cp_size = 1;
  std::uint64_t seed = 1;
  bool special_rows = false;  // overwrite rows with zeros of both signs, NaN, inf, constants
};

struct Problem {
  Spec spec;
  Buffer activation;  // [rows, 2 × heads, dim]: K the first heads, V the last
  Buffer bias;        // [2, heads, dim]
  Buffer pool;        // [num_blocks, block_bytes]
  Buffer cu;          // cu_q_len, cu_k_len, cu_block_num: 3 × (batch + 1) i32
  Buffer readonly;    // [batch] i32
  Buffer offsets;     // [total_blocks] i64
  Buffer bases;       // [batch] f32 (dynamic)
  std::int64_t rows = 0, num_blocks = 0, block_bytes = 0, batch = 0, max_q = 0, max_k = 0;
  std::vector<std::int64_t> k_lens;

  ProcessKv::Args process_args() const {
    ProcessKv::Args a;
    const std::int64_t n = batch + 1;
    auto* c = reinterpret_cast<std::int32_t*>(cu.data());
    a.kv_cache = TensorView::contiguous(pool.data(), DType::u8, {num_blocks, block_bytes});
    a.blocks = TensorView::contiguous(offsets.data(), DType::i64,
                                      {static_cast<std::int64_t>(offsets.size() / 8)});
    const std::int64_t h = spec.heads, d = spec.dim;
    auto* act = reinterpret_cast<std::uint16_t*>(activation.data());
    a.k = TensorView::strided(act, spec.dtype, {rows, h, d}, {2 * h * d, d, 1});
    a.v = TensorView::strided(act + h * d, spec.dtype, {rows, h, d}, {2 * h * d, d, 1});
    if (spec.bias) {
      auto* bias_bits = reinterpret_cast<std::uint16_t*>(bias.data());
      a.k_bias = TensorView::contiguous(bias_bits, spec.dtype, {h, d});
      a.v_bias = TensorView::contiguous(bias_bits + h * d, spec.dtype, {h, d});
    }
    a.cu_q_len = TensorView::contiguous(c, DType::i32, {n});
    a.cu_k_len = TensorView::contiguous(c + n, DType::i32, {n});
    a.cu_block_num = TensorView::contiguous(c + 2 * n, DType::i32, {n});
    if (spec.readonly) a.readonly_block_num = TensorView::contiguous(readonly.data(), DType::i32, {batch});
    set_rope(a);
    a.block_seq_len = spec.block_seq_len;
    a.layer_id = spec.layer_id;
    a.cp_rank = spec.cp_rank;
    a.cp_size = spec.cp_size;
    a.max_q_len = max_q;
    a.quant_policy = spec.policy;
    return a;
  }

  template <class Args>
  void set_rope(Args& a) const {
    a.rope_type = spec.rope_type;
    a.rope_dim = spec.rope_dim;
    a.rope_base = 10000.0;
    a.rope_factor = 4.0;
    a.max_position_embeddings = 4096;
    a.yarn_attention_factor = 1.1386;
    a.llama3_original_max_position_embeddings = 64;  // small, so the blend has all three regions
    if (spec.rope_type == "dynamic")
      a.rope_bases = TensorView::contiguous(bases.data(), DType::f32, {batch});
  }
};

// Rows a kernel's min / max and code rounding can get wrong while random rows pass: all +0,
// zeros of both signs (the CPU's order puts −0 below +0), NaN among numbers (skipped by the
// range), all NaN, ±inf, one value repeated (scale 0, so 1 / scale is inf) and subnormals.
// Every seventh row of K and V heads is left random. Bits are the dtype's own.
void add_special_rows(Buffer& activation, DType dtype, std::int64_t rows, std::int64_t dim) {
  const bool half = dtype == DType::f16;
  const std::uint16_t plus_zero = 0x0000, minus_zero = 0x8000;
  const std::uint16_t nan = half ? 0x7E00 : 0x7FC0, minus_nan = half ? 0xFE00 : 0xFFC0;
  const std::uint16_t inf = half ? 0x7C00 : 0x7F80, minus_inf = half ? 0xFC00 : 0xFF80;
  const std::uint16_t one_and_half = half ? 0x3E00 : 0x3FC0, tiny = 0x0003;  // 3 × min subnormal
  auto* bits = reinterpret_cast<std::uint16_t*>(activation.data());
  for (std::int64_t r = 0; r < rows; ++r) {
    std::uint16_t* row = bits + r * dim;
    for (std::int64_t d = 0; d < dim; ++d) {
      switch (r % 7) {
        case 0: row[d] = plus_zero; break;
        case 1: row[d] = d % 3 == 1 ? minus_zero : plus_zero; break;
        case 2: if (d % 5 == 2) row[d] = d % 2 ? minus_nan : nan; break;
        case 3: row[d] = nan; break;
        case 4: if (d == 3) row[d] = inf; if (d == dim - 2) row[d] = minus_inf; break;
        case 5: row[d] = one_and_half; break;
        case 6: row[d] = d % 4 == 0 ? tiny : (d % 4 == 1 ? static_cast<std::uint16_t>(tiny | 0x8000) : row[d]); break;
      }
    }
  }
}

Problem make_problem(const Spec& spec) {
  Problem p;
  p.spec = spec;
  p.batch = static_cast<std::int64_t>(spec.q_lens.size());
  std::vector<std::int32_t> cu(static_cast<std::size_t>(3 * (p.batch + 1)), 0);
  const std::int64_t n = p.batch + 1;
  cu[0] = 3;  // cu_q_len is absolute: the first sequence's rows start at row 3
  std::int64_t total_blocks = 0;
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const std::int64_t q = spec.q_lens[b], k = q + spec.histories[b];
    p.k_lens.push_back(k);
    cu[b + 1] = cu[b] + static_cast<std::int32_t>(q);
    cu[n + b + 1] = cu[n + b] + static_cast<std::int32_t>(k);
    const std::int64_t local = k > spec.cp_rank ? (k - spec.cp_rank + spec.cp_size - 1) / spec.cp_size : 0;
    const std::int64_t blocks = (local + spec.block_seq_len - 1) / spec.block_seq_len + (b % 2);
    cu[2 * n + b + 1] = cu[2 * n + b] + static_cast<std::int32_t>(blocks);
    total_blocks += blocks;
    p.max_q = std::max(p.max_q, q);
    p.max_k = std::max(p.max_k, k);
  }
  p.rows = cu[p.batch] + 2;  // two spare rows after the last sequence
  p.cu = Buffer(Memory::host, cu.size() * 4);
  std::memcpy(p.cu.data(), cu.data(), p.cu.size());
  p.block_bytes = get_cache_block_size(spec.policy, spec.layers, spec.heads, spec.dim,
                                       spec.block_seq_len);
  p.num_blocks = total_blocks * 2 + 3;
  p.pool = test::poisoned(static_cast<std::size_t>(p.num_blocks * p.block_bytes));
  std::mt19937_64 rng(spec.seed);
  std::vector<std::int64_t> ids(static_cast<std::size_t>(p.num_blocks));
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int64_t>(i);
  std::shuffle(ids.begin(), ids.end(), rng);
  p.offsets = Buffer(Memory::host, static_cast<std::size_t>(std::max<std::int64_t>(total_blocks, 1)) * 8);
  auto* off = reinterpret_cast<std::int64_t*>(p.offsets.data());
  for (std::int64_t i = 0; i < total_blocks; ++i) off[i] = ids[static_cast<std::size_t>(i)] * p.block_bytes;
  if (total_blocks == 0) p.offsets = Buffer(Memory::host, 8), off = reinterpret_cast<std::int64_t*>(p.offsets.data()), off[0] = 0;
  const std::int64_t elements = p.rows * 2 * spec.heads * spec.dim;
  p.activation = Buffer(Memory::host, static_cast<std::size_t>(elements * 2));
  test::fill_random(p.activation.data(), spec.dtype, elements, spec.seed + 1);
  if (spec.special_rows) add_special_rows(p.activation, spec.dtype, elements / spec.dim, spec.dim);
  p.bias = Buffer(Memory::host, static_cast<std::size_t>(2 * spec.heads * spec.dim * 2));
  test::fill_random(p.bias.data(), spec.dtype, 2 * spec.heads * spec.dim, spec.seed + 2, 0.5f);
  p.readonly = Buffer(Memory::host, static_cast<std::size_t>(std::max<std::int64_t>(p.batch, 1)) * 4);
  for (std::int64_t b = 0; b < p.batch; ++b)
    reinterpret_cast<std::int32_t*>(p.readonly.data())[b] = static_cast<std::int32_t>(b % 3 == 1 ? 1 : 0);
  p.bases = Buffer(Memory::host, static_cast<std::size_t>(std::max<std::int64_t>(p.batch, 1)) * 4);
  for (std::int64_t b = 0; b < p.batch; ++b)
    reinterpret_cast<float*>(p.bases.data())[b] = 10000.f * (1.f + 0.37f * static_cast<float>(b));
  return p;
}

// The pool's total blocks as a tensor of one block count (for the offsets view).
FlattenKv::Args flatten_args(const Problem& p, const Buffer& out) {
  FlattenKv::Args a;
  const std::int64_t n = p.batch + 1, h = p.spec.heads, d = p.spec.dim;
  auto* c = reinterpret_cast<std::int32_t*>(p.cu.data());
  const std::int64_t rows = c[n + p.batch] - c[n] + 1;
  auto* o = reinterpret_cast<std::uint16_t*>(out.data());
  a.k_out = TensorView::strided(o, p.spec.dtype, {rows, h, d}, {2 * h * d, d, 1});
  a.v_out = TensorView::strided(o + h * d, p.spec.dtype, {rows, h, d}, {2 * h * d, d, 1});
  a.kv_cache = TensorView::contiguous(p.pool.data(), DType::u8, {p.num_blocks, p.block_bytes});
  a.blocks = TensorView::contiguous(p.offsets.data(), DType::i64,
                                    {static_cast<std::int64_t>(p.offsets.size() / 8)});
  a.cu_k_len = TensorView::contiguous(c + n, DType::i32, {n});
  a.cu_block_num = TensorView::contiguous(c + 2 * n, DType::i32, {n});
  a.block_seq_len = p.spec.block_seq_len;
  a.layer_id = p.spec.layer_id;
  a.cp_rank = p.spec.cp_rank;
  a.cp_size = p.spec.cp_size;
  a.max_seq_len = std::min(p.max_k, rows);
  a.quant_policy = p.spec.policy;
  return a;
}

std::int64_t flatten_rows(const Problem& p) {
  auto* c = reinterpret_cast<std::int32_t*>(p.cu.data());
  return c[2 * p.batch + 1] - c[p.batch + 1] + 1;
}

float value_at(const std::uint8_t* base, std::int64_t element, DType dtype) {
  std::uint16_t bits;
  std::memcpy(&bits, base + 2 * element, 2);
  return dtype == DType::f16 ? numerics::half_bits_to_float(bits) : numerics::bf16_bits_to_float(bits);
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("get_cache_block_size: the header's worked sizes and the bytes the writer produces",
          "[process_kv][cpu]") {
  CHECK(get_cache_block_size(0, 1, 8, 128, 64) == 262144);
  CHECK(get_cache_block_size(8, 1, 8, 128, 64) == 135168);
  CHECK(get_cache_block_size(4, 1, 8, 128, 64) == 69632);
  CHECK(get_cache_block_size(0, 32, 8, 128, 64) == 8388608);
  CHECK(get_cache_block_size(8, 32, 8, 128, 64) == 4325376);
  CHECK_THROWS_WITH(get_cache_block_size(16, 1, 8, 128, 64), Contains("quant_policy"));
  CHECK_THROWS_WITH(get_cache_block_size(0, 1, 8, 96, 64), Contains("head_dim"));

  // A block of get_cache_block_size(2 layers) bytes; filling every row of layer 1 with two
  // different poisons first writes every byte of [layer_size, 2 × layer_size) (the bytes agree
  // after both runs) and none of layer 0 (they keep each poison).
  for (std::int64_t policy : {0, 8, 4}) {
    for (std::int64_t dim : {64, 128}) {
      INFO("policy " << policy << ", head_dim " << dim);
      Spec spec;
      spec.policy = policy;
      spec.dim = dim;
      spec.heads = 3;
      spec.block_seq_len = 8;
      spec.q_lens = {8};
      spec.histories = {0};
      Problem p = make_problem(spec);
      const std::int64_t layer_size = p.block_bytes / 2;
      std::vector<std::vector<std::uint8_t>> runs;
      for (std::uint8_t poison : {std::uint8_t{0x00}, std::uint8_t{0xFF}}) {
        p.pool.fill(poison);
        run<ProcessKv>(Impl::cpu, p.process_args());
        runs.emplace_back(p.pool.data(), p.pool.data() + p.pool.size());
      }
      const std::int64_t block = reinterpret_cast<std::int64_t*>(p.offsets.data())[0];
      std::int64_t layer0_written = 0, layer1_unwritten = 0;
      for (std::int64_t i = 0; i < p.block_bytes; ++i) {
        const bool same = runs[0][block + i] == runs[1][block + i];
        if (i < layer_size && same) ++layer0_written;
        if (i >= layer_size && !same) ++layer1_unwritten;
      }
      CHECK(layer0_written == 0);
      CHECK(layer1_unwritten == 0);
    }
  }
}

// One token of one head (head_dim 64, blocks of 4 tokens, bf16) whose K row is `k_bits`,
// written by the CPU reference with the given quant policy.
Problem one_k_row_problem(std::int64_t policy, const std::vector<std::uint16_t>& k_bits) {
  Spec spec;
  spec.policy = policy;
  spec.dim = 64;
  spec.heads = 1;
  spec.block_seq_len = 4;
  spec.q_lens = {1};
  spec.histories = {0};
  Problem p = make_problem(spec);
  std::memcpy(p.activation.data() + 3 * 2 * 64 * 2, k_bits.data(), 128);  // cu_q_len[0] = 3
  run<ProcessKv>(Impl::cpu, p.process_args());
  return p;
}

// The layer region that problem writes (layer 1 of its first block).
const std::uint8_t* layer_one(const Problem& p) {
  return p.pool.data() + reinterpret_cast<const std::int64_t*>(p.offsets.data())[0] +
         p.block_bytes / 2;
}

TEST_CASE("process_kv: int4 codes go 8 to a word, nibbles e0 e2 e4 e6 e1 e3 e5 e7", "[process_kv][cpu]") {
  CHECK(turbomind::int4_shift(0) == 0);
  CHECK(turbomind::int4_shift(2) == 4);
  CHECK(turbomind::int4_shift(6) == 12);
  CHECK(turbomind::int4_shift(1) == 16);
  CHECK(turbomind::int4_shift(7) == 28);
  // A row 0, 1, ..., 15 repeated (bf16, exact): min 0, max 15, scale 1, codes = the values.
  std::vector<std::uint16_t> k_bits(64);
  for (int d = 0; d < 64; ++d)
    k_bits[static_cast<std::size_t>(d)] = numerics::float_to_bf16_bits(static_cast<float>(d % 16));
  const Problem p = one_k_row_problem(4, k_bits);
  const std::uint8_t* block = layer_one(p);
  // Elements 0..7 = 0..7: byte0 = e0 | e2 << 4 = 0x20, byte1 = e4 | e6 << 4 = 0x64, byte2 =
  // e1 | e3 << 4 = 0x31, byte3 = e5 | e7 << 4 = 0x75.
  CHECK(block[0] == 0x20);
  CHECK(block[1] == 0x64);
  CHECK(block[2] == 0x31);
  CHECK(block[3] == 0x75);
  // [scale, zero] of K, after the 2 × 4 rows of 32 bytes of data: scale 1, zero 0.
  CHECK(value_at(block + 2 * 4 * 32, 0, DType::bf16) == 1.f);
  CHECK(value_at(block + 2 * 4 * 32, 1, DType::bf16) == 0.f);
}

// The range rules of the CPU reference, which the kernels must reproduce bit for bit (the
// [gpu] test below runs these rows through them): −0 is below +0, a NaN is skipped, an all-NaN
// row stores NaN, a constant row has scale 0 and codes 0.
TEST_CASE("process_kv: the row's range orders -0 below +0, skips NaN, keeps all-NaN as NaN",
          "[process_kv][cpu]") {
  struct Row {
    const char* what;
    std::vector<std::uint16_t> bits;   // 64 bf16 values of K, head 0
    std::uint16_t scale, zero;         // the stored [scale, zero] bits
  };
  std::vector<std::uint16_t> signed_zeros(64, 0x0000), with_nan(64), all_nan(64, 0x7FC0),
      constant(64, 0x3FC0);
  for (int d = 0; d < 64; d += 3) signed_zeros[static_cast<std::size_t>(d)] = 0x8000;
  for (int d = 0; d < 64; ++d)
    with_nan[static_cast<std::size_t>(d)] = numerics::float_to_bf16_bits(static_cast<float>(d + 1));
  with_nan[0] = 0xFFC0;   // −NaN where the minimum would be
  with_nan[63] = 0x7FC0;  // NaN where the maximum would be
  const std::vector<Row> rows = {
      {"zeros of both signs", signed_zeros, 0x0000, 0x8000},
      // min 2, max 63, scale T(61 / 255) = 0.2392578125 (bf16 0x3E75)
      {"NaN at both ends", with_nan, numerics::float_to_bf16_bits(61.f * 0x1.010102p-8f),
       numerics::float_to_bf16_bits(2.f)},
      {"all NaN", all_nan, 0x7FFF, 0x7FFF},
      {"constant 1.5", constant, 0x0000, 0x3FC0},
  };
  for (const Row& row : rows) {
    INFO(row.what);
    const Problem p = one_k_row_problem(8, row.bits);
    const std::uint8_t* block = layer_one(p);
    std::uint16_t param[2];
    std::memcpy(param, block + 2 * 4 * 64, 4);  // after 2 × 4 rows of 64 bytes of codes
    CHECK(param[0] == row.scale);
    CHECK(param[1] == row.zero);
    if (row.scale == 0x0000) {  // scale 0: every code 0 (x − zero = 0, × inf = NaN → 0)
      for (int d = 0; d < 64; ++d) CHECK(block[d] == 0);
    }
  }
}

// The optimized kernel's range (integer min / max over order keys, in a butterfly order) against
// the CPU's (min_of / max_of in a loop): the same bits for rows drawn from zeros of both signs,
// NaNs of both signs, infinities, subnormals and ordinary values, all-NaN rows included.
TEST_CASE("process_kv: the range by integer keys equals min_of / max_of, bit for bit",
          "[process_kv][cpu]") {
  const float specials[] = {0.f, -0.f, std::numeric_limits<float>::quiet_NaN(),
                            -std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), 0x1p-140f, -0x1p-140f,
                            std::numeric_limits<float>::max(), -std::numeric_limits<float>::max()};
  std::mt19937_64 rng(7);
  std::int64_t rows = 0, all_nan = 0;
  for (int trial = 0; trial < 200000; ++trial) {
    const int n = 1 << (1 + trial % 7);  // 2 .. 128 values
    std::vector<float> row(static_cast<std::size_t>(n));
    const bool nan_row = trial % 97 == 0;
    for (float& x : row) {
      const std::uint64_t r = rng();
      if (nan_row) {
        x = specials[2 + r % 2];
      } else if (r % 4 == 0) {
        x = specials[(r >> 8) % 10];
      } else {
        x = std::ldexp(static_cast<float>(static_cast<std::int64_t>(r >> 40) - (1 << 23)), -20);
      }
    }
    float lo = row[0], hi = row[0];
    for (float x : row) {
      lo = turbomind::min_of(lo, x);
      hi = turbomind::max_of(hi, x);
    }
    // A butterfly over the keys, as the kernel's lanes and shuffles reduce them.
    std::vector<std::int32_t> lo_key(row.size()), hi_key(row.size());
    for (std::size_t i = 0; i < row.size(); ++i) {
      lo_key[i] = turbomind::range_min_key(row[i]);
      hi_key[i] = turbomind::range_max_key(row[i]);
    }
    for (std::size_t step = row.size() / 2; step > 0; step /= 2)
      for (std::size_t i = 0; i < step; ++i) {
        lo_key[i] = std::min(lo_key[i], lo_key[i + step]);
        hi_key[i] = std::max(hi_key[i], hi_key[i + step]);
      }
    const float key_lo = turbomind::key_float(lo_key[0]), key_hi = turbomind::key_float(hi_key[0]);
    if (lo != lo) {  // all NaN: both NaN (stored as the canonical NaN either way)
      ++all_nan;
      REQUIRE(key_lo != key_lo);
      REQUIRE(key_hi != key_hi);
      continue;
    }
    ++rows;
    REQUIRE(turbomind::bits_of(key_lo) == turbomind::bits_of(lo));
    REQUIRE(turbomind::bits_of(key_hi) == turbomind::bits_of(hi));
  }
  CHECK(rows > 190000);
  CHECK(all_nan > 1000);
}

// The round trip: process_kv then flatten_kv gives the input (policy 0) or its quantization
// within the bound B = scale / 2 + 4u (|x| + |zero| + (max - min)), u the unit roundoff of the
// activation type (2^-8 bf16, 2^-11 f16): half a quantization step, plus the five roundings to
// the activation type on the way (x - zero, × inv, inv itself, code × scale, + zero), each at
// most u times a magnitude below |x| + |zero| + (max - min).
TEST_CASE("process_kv then flatten_kv: policy 0 exact, int8 and int4 within the stated bound",
          "[process_kv][flatten_kv][cpu]") {
  for (DType dtype : {DType::bf16, DType::f16}) {
    for (std::int64_t policy : {0, 8, 4}) {
      INFO(dtype_name(dtype) << ", policy " << policy);
      Spec spec;
      spec.dtype = dtype;
      spec.policy = policy;
      spec.bias = true;
      Problem p = make_problem(spec);
      run<ProcessKv>(Impl::cpu, p.process_args());
      Buffer out = test::poisoned(static_cast<std::size_t>(flatten_rows(p) * 2 * spec.heads * spec.dim * 2));
      FlattenKv::Args f = flatten_args(p, out);
      run<FlattenKv>(Impl::cpu, f);
      const double u = dtype == DType::bf16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
      auto* c = reinterpret_cast<std::int32_t*>(p.cu.data());
      const std::int64_t n = p.batch + 1;
      double worst = 0;
      std::int64_t checked = 0;
      for (std::int64_t b = 0; b < p.batch; ++b) {
        const std::int64_t q = spec.q_lens[b], history = spec.histories[b];
        for (std::int64_t qi = 0; qi < q; ++qi) {
          const std::int64_t out_row = c[n + b] - c[n] + history + qi;
          for (int kv = 0; kv < 2; ++kv) {
            for (std::int64_t h = 0; h < spec.heads; ++h) {
              std::vector<double> x(spec.dim), y(spec.dim);
              const std::uint8_t* in = p.activation.data() +
                                       (((c[b] + qi) * 2 + kv) * spec.heads + h) * spec.dim * 2;
              const std::uint8_t* bias = p.bias.data() + (kv * spec.heads + h) * spec.dim * 2;
              const std::uint8_t* got = out.data() + ((out_row * 2 + kv) * spec.heads + h) * spec.dim * 2;
              for (std::int64_t d = 0; d < spec.dim; ++d) {
                const float sum = value_at(in, d, dtype) + value_at(bias, d, dtype);
                x[d] = dtype == DType::f16 ? numerics::half_bits_to_float(numerics::float_to_half_bits(sum))
                                           : numerics::bf16_bits_to_float(numerics::float_to_bf16_bits(sum));
                y[d] = value_at(got, d, dtype);
              }
              const double lo = *std::min_element(x.begin(), x.end());
              const double hi = *std::max_element(x.begin(), x.end());
              const double q_max = policy == 8 ? 255 : 15;
              for (std::int64_t d = 0; d < spec.dim; ++d) {
                ++checked;
                if (policy == 0) {
                  REQUIRE(y[d] == x[d]);
                  continue;
                }
                const double bound = (hi - lo) / q_max / 2 + 4 * u * (std::fabs(x[d]) + std::fabs(lo) + (hi - lo));
                worst = std::max(worst, std::fabs(y[d] - x[d]) / bound);
              }
            }
          }
        }
      }
      CHECK(checked > 0);
      CHECK(worst <= 1.0);
    }
  }
}

TEST_CASE("TurboMind RoPE arithmetic: sin, cos, exp2 and log2 against double precision",
          "[process_kv][cpu]") {
  // The shared float functions the CPU reference and the kernels both call. Over the angles of
  // positions up to 65,536 the error against sin / cos of the float angle stays within 2^-22
  // absolute (a few float ulps), finer than __sincosf.
  double worst_trig = 0;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<float> angle(-70000.f, 70000.f);
  for (int i = 0; i < 200000; ++i) {
    const float x = i < 1000 ? static_cast<float>(i) * 0.001f : angle(rng);
    float s, c;
    turbomind::sincos_rn(x, &s, &c);
    worst_trig = std::max({worst_trig, std::fabs(s - std::sin(static_cast<double>(x))),
                           std::fabs(c - std::cos(static_cast<double>(x)))});
  }
  CHECK(worst_trig <= std::ldexp(1.0, -22));
  double worst_exp = 0, worst_log = 0;
  for (int i = 0; i <= 4000; ++i) {
    const float x = -30.f + static_cast<float>(i) * 0.0075f;
    const double e = std::exp2(static_cast<double>(x));
    worst_exp = std::max(worst_exp, std::fabs(turbomind::exp2_rn(x) - e) / e);
    const float y = 1.f + static_cast<float>(i) * 250.f;
    worst_log = std::max(worst_log, std::fabs(turbomind::log2_rn(y) - std::log2(static_cast<double>(y))));
  }
  CHECK(worst_exp <= std::ldexp(1.0, -22));
  CHECK(worst_log <= std::ldexp(1.0, -19));
}

// ---------------------------------------------------------------------------------------------
// Bad input: a clear error naming the argument, nothing written.

struct ProcessCall {
  Problem problem;
  ProcessKv::Args args;
  std::vector<std::uint8_t> before;
  explicit ProcessCall(const Spec& spec) : problem(make_problem(spec)), args(problem.process_args()) {
    before.assign(problem.pool.data(), problem.pool.data() + problem.pool.size());
  }
  void call() const { run<ProcessKv>(Impl::cpu, args); }
  bool nothing_written() const {
    return std::memcmp(before.data(), problem.pool.data(), before.size()) == 0;
  }
};

TEST_CASE("process_kv: bad input is rejected, naming the argument, with nothing written",
          "[process_kv][cpu]") {
  Spec spec;
  {
    ProcessCall c(spec);
    c.args.quant_policy = 16;
    CHECK_REJECTED(c, "quant_policy");
  }
  {
    ProcessCall c(spec);
    c.args.k.shape[2] = c.args.v.shape[2] = 96;
    CHECK_REJECTED(c, "head_dim");
  }
  {
    ProcessCall c(spec);
    c.args.block_seq_len = 0;
    CHECK_REJECTED(c, "block_seq_len");
  }
  {
    ProcessCall c(spec);
    c.args.layer_id = 2;  // the block holds 2 layers
    CHECK_REJECTED(c, "layer_id");
  }
  {
    ProcessCall c(spec);
    c.args.layer_id = -1;
    CHECK_REJECTED(c, "layer_id");
  }
  {  // a decreasing cu_q_len
    ProcessCall c(spec);
    reinterpret_cast<std::int32_t*>(c.problem.cu.data())[2] = 1;
    CHECK_REJECTED(c, "cu_q_len");
  }
  {  // more new tokens than tokens
    ProcessCall c(spec);
    auto* cu = reinterpret_cast<std::int32_t*>(c.problem.cu.data());
    cu[5 + 1] = cu[5];  // sequence 0: k_len 0 < q_len 5
    CHECK_REJECTED(c, "cu_q_len");
  }
  {  // too few blocks for a sequence
    ProcessCall c(spec);
    auto* cu = reinterpret_cast<std::int32_t*>(c.problem.cu.data());
    cu[10 + 2] = cu[10 + 1];  // sequence 1 gets no block
    CHECK_REJECTED(c, "cu_block_num");
  }
  {  // q_len above max_q_len
    ProcessCall c(spec);
    c.args.max_q_len = 39;
    CHECK_REJECTED(c, "max_q_len");
  }
  {  // a block offset outside the pool, one not at a block's start, a negative one ("null")
    for (std::int64_t bad : {std::int64_t{1} << 40, std::int64_t{16}, std::int64_t{-1}}) {
      ProcessCall c(spec);
      reinterpret_cast<std::int64_t*>(c.problem.offsets.data())[3] = bad;
      CHECK_REJECTED(c, "blocks[3]");
    }
  }
  {
    ProcessCall c(spec);
    c.args.rope_type = "mrope";
    CHECK_REJECTED(c, "rope_type");
  }
  {
    ProcessCall c(spec);
    c.args.rope_type = "default";
    c.args.rope_dim = 12;
    CHECK_REJECTED(c, "rope_dim");
  }
  {
    ProcessCall c(spec);
    c.args.rope_type = "dynamic";
    c.args.rope_dim = 64;
    CHECK_REJECTED(c, "rope_bases");
  }
  {
    ProcessCall c(spec);
    c.args.cp_rank = 1;
    CHECK_REJECTED(c, "cp_rank");
  }
  {  // zero tokens: a valid call that writes nothing
    Spec empty = spec;
    empty.q_lens = {0, 0};
    empty.histories = {3, 0};
    ProcessCall c(empty);
    c.call();
    CHECK(c.nothing_written());
  }
}

// ---------------------------------------------------------------------------------------------
// GPU: naive and optimized against the CPU reference, byte for byte.

struct DeviceCopy {
  Buffer activation, bias, pool, cu, readonly, offsets, bases;
};

template <class Args>
Args on_device(const Args& host_args, const Problem& p, DeviceCopy& d) {
  d.activation = copy_to(Memory::device, p.activation);
  d.bias = copy_to(Memory::device, p.bias);
  d.pool = copy_to(Memory::device, p.pool);
  d.cu = copy_to(Memory::device, p.cu);
  d.readonly = copy_to(Memory::device, p.readonly);
  d.offsets = copy_to(Memory::device, p.offsets);
  d.bases = copy_to(Memory::device, p.bases);
  Args a = host_args;
  const auto move = [&](TensorView& view, const Buffer& from, const Buffer& to) {
    if (view.data == nullptr) return;
    view = test::rebase(view, from.data(), to.data(), Device::cuda);
  };
  if constexpr (std::is_same_v<Args, ProcessKv::Args>) {
    move(a.kv_cache, p.pool, d.pool);
    move(a.k, p.activation, d.activation);
    move(a.v, p.activation, d.activation);
    move(a.k_bias, p.bias, d.bias);
    move(a.v_bias, p.bias, d.bias);
    move(a.cu_q_len, p.cu, d.cu);
    move(a.readonly_block_num, p.readonly, d.readonly);
  } else {
    move(a.kv_cache, p.pool, d.pool);
  }
  move(a.blocks, p.offsets, d.offsets);
  move(a.cu_k_len, p.cu, d.cu);
  move(a.cu_block_num, p.cu, d.cu);
  move(a.rope_bases, p.bases, d.bases);
  return a;
}

std::vector<Spec> device_specs() {
  std::vector<Spec> specs;
  std::uint64_t seed = 10;
  for (DType dtype : {DType::bf16, DType::f16})
    for (std::int64_t policy : {0, 8, 4})
      for (std::int64_t dim : {64, 128})
        for (const char* rope : {"none", "default", "linear", "dynamic", "yarn", "llama3"}) {
          Spec s;
          s.dtype = dtype;
          s.policy = policy;
          s.dim = dim;
          s.rope_type = rope;
          s.rope_dim = std::string(rope) == "none" ? 0 : (dim == 128 ? 96 : 64);
          s.bias = (seed % 2) == 0;
          s.readonly = (seed % 3) == 0;
          if (seed % 5 == 0) {
            s.cp_size = 2;
            s.cp_rank = 1;
          }
          s.seed = seed++;
          specs.push_back(s);
        }
  // Special rows, with and without RoPE and bias, for the quantized policies and policy 0.
  for (DType dtype : {DType::bf16, DType::f16})
    for (std::int64_t policy : {0, 8, 4})
      for (std::int64_t dim : {64, 128})
        for (const char* rope : {"none", "default"}) {
          Spec s;
          s.dtype = dtype;
          s.policy = policy;
          s.dim = dim;
          s.rope_type = rope;
          s.rope_dim = std::string(rope) == "none" ? 0 : dim;
          s.bias = std::string(rope) == "default";
          s.special_rows = true;
          s.seed = seed++;
          specs.push_back(s);
        }
  return specs;
}

TEST_CASE("process_kv and flatten_kv: naive and optimized equal the CPU reference byte for byte",
          "[process_kv][flatten_kv][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  for (const Spec& spec : device_specs()) {
    INFO(dtype_name(spec.dtype) << " policy " << spec.policy << " dim " << spec.dim << " rope "
                                << spec.rope_type << " cp " << spec.cp_rank << "/" << spec.cp_size
                                << (spec.special_rows ? " special rows" : ""));
    Problem p = make_problem(spec);
    const std::vector<std::uint8_t> poisoned_pool(p.pool.data(), p.pool.data() + p.pool.size());
    run<ProcessKv>(Impl::cpu, p.process_args());
    for (Impl impl : {Impl::naive, Impl::optimized}) {
      std::memcpy(p.pool.data(), poisoned_pool.data(), poisoned_pool.size());
      DeviceCopy d;
      const ProcessKv::Args args = on_device(p.process_args(), p, d);
      run<ProcessKv>(impl, args);
      PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
      Problem want = make_problem(spec);
      run<ProcessKv>(Impl::cpu, want.process_args());
      Buffer got = copy_to(Memory::host, d.pool);
      CHECK(test::first_difference(got.data(), want.pool.data(), got.size()) == -1);
    }
    // flatten_kv on the written pool (with the same RoPE on read, to exercise that path).
    run<ProcessKv>(Impl::cpu, p.process_args());
    const std::size_t out_bytes =
        static_cast<std::size_t>(flatten_rows(p) * 2 * spec.heads * spec.dim * 2);
    Buffer want = test::poisoned(out_bytes);
    FlattenKv::Args host_flatten = flatten_args(p, want);
    p.set_rope(host_flatten);
    run<FlattenKv>(Impl::cpu, host_flatten);
    for (Impl impl : {Impl::naive, Impl::optimized}) {
      Buffer out = test::poisoned(out_bytes);
      Buffer device_out = copy_to(Memory::device, out);
      DeviceCopy d;
      FlattenKv::Args args = on_device(host_flatten, p, d);
      args.k_out = test::rebase(args.k_out, want.data(), device_out.data(), Device::cuda);
      args.v_out = test::rebase(args.v_out, want.data(), device_out.data(), Device::cuda);
      run<FlattenKv>(impl, args);
      PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
      Buffer got = copy_to(Memory::host, device_out);
      CHECK(test::first_difference(got.data(), want.data(), out_bytes) == -1);
    }
  }
}

}  // namespace
