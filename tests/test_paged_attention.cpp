// Tests of paged_attention_v1, paged_attention_v2 and paged_attention_rocm (vLLM
// csrc/attention/attention_kernels.cuh, csrc/rocm/attention.cu; chapter "Attention over a paged
// cache"), tag [paged_attention].
//
// CPU part (runs everywhere): the worked examples of the op headers; GQA's head mapping; fp8
// dequantized in the loop equals a cache of the dequantized values, bit for bit; ALiBi; NaN
// bytes in every slot no sequence owns never reach the result; strided views; v2's partitions
// re-merged by their log-sum-exp equal v1; the end-to-end invariant (sequences written with
// reshape_and_cache, auto and fp8, then decoded, equal dense softmax attention in float64);
// zero sequences; one test per validation rule (InvalidArgument naming the argument, no output
// byte changed); the deferred sequence check words each rule as the synchronous check does.
//
// GPU part ([gpu]): naive and optimized against the CPU reference within attention_tolerance()
// over dtypes × cache kinds × every head size and block size × GQA ratios × lengths (1 token,
// block edges, partition edges, long), ALiBi, strided and misaligned layouts, the optimized v1's
// split and unsplit paths; the end-to-end invariant on the device; a deferred call with a bad
// length writes nothing and reports the synchronous message.
//
// paged_attention_rocm (CPU): the header's worked example (256-token partitions, the single
// partition merged), agreement with v2 and with dense attention, query_start_loc (only
// sequences with one query token decoded, into their own rows; nothing else written), the fp8
// output (e4m3 of out / fp8_out_scale, saturating), the end-to-end invariant, and its own rules.
// GPU ([gpu]): naive and optimized against the CPU reference over its limits, with
// query_start_loc and the fp8 output.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "numerics.h"
#include "pagedkv/agreement.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"
#include "pagedkv/ops/paged_attention_rocm.h"
#include "pagedkv/ops/paged_attention_v1.h"
#include "pagedkv/ops/paged_attention_v2.h"
#include "pagedkv/ops/reshape_and_cache.h"
#include "support.h"

namespace {

using namespace pagedkv;
using Catch::Matchers::Contains;
using test::poisoned;

// ---------------------------------------------------------------------------------------------
// Building a call.

struct Spec {
  std::vector<std::int64_t> lengths = {5};  // tokens per sequence
  std::int64_t num_heads = 4, num_kv_heads = 2, head_size = 64, block_size = 16;
  DType dtype = DType::bf16;
  std::string kv_cache_dtype = "auto";
  bool alibi = false;
  bool strided = false;     // query, out and the workspaces with padded strides
  bool misaligned = false;  // caches one element past a 16-byte boundary (optimized: naive)
  std::int64_t extra_max = 0;  // max_seq_len beyond the longest sequence
  float range = 1.f;           // |q|, |k|, |v| below it
  float scale = 0.f;           // 0: 1 / sqrt(head_size)
  std::uint64_t seed = 1;
  std::int64_t partition = 512;  // tokens per partition of the workspaces (rocm: 256)
};

std::string describe(const Spec& s) {
  std::ostringstream out;
  out << "lengths [";
  for (std::size_t i = 0; i < s.lengths.size(); ++i) out << (i ? ", " : "") << s.lengths[i];
  out << "], heads " << s.num_heads << "/" << s.num_kv_heads << " x " << s.head_size
      << ", block " << s.block_size << ", " << dtype_name(s.dtype) << " \"" << s.kv_cache_dtype
      << "\"" << (s.alibi ? ", alibi" : "") << (s.strided ? ", strided" : "")
      << (s.misaligned ? ", misaligned" : "") << ", seed " << s.seed;
  return out.str();
}

bool fp8(const Spec& s) { return s.kv_cache_dtype.rfind("fp8", 0) == 0; }

// The host (or device) memory of one call and its views.
struct Call {
  Spec spec;
  std::int64_t S = 0, x = 0, cache_bytes = 0, num_blocks = 0, width = 0, max_seq_len = 0;
  std::int64_t partitions = 0, q_pitch = 0, out_pitch = 0, ws_pitch = 0;
  Buffer query, key_cache, value_cache, tables, lens, alibi, k_scale, v_scale;
  Buffer out, exp_sums, max_logits, tmp_out;
  std::int64_t cache_offset = 0;  // elements (misaligned caches)
  std::vector<std::int32_t> table_values;

  Call() = default;
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;
  Call(Call&&) = default;
  Call& operator=(Call&&) = default;

  TensorView view(const Buffer& b, DType dtype, std::initializer_list<std::int64_t> shape,
                  std::initializer_list<std::int64_t> strides, Device device,
                  std::int64_t offset = 0) const {
    return TensorView::strided(b.data() + offset * dtype_size(dtype), dtype, shape, strides,
                               device);
  }
  Device device() const {
    return query.memory() == Memory::device ? Device::cuda : Device::cpu;
  }
  DType cache_dtype() const { return fp8(spec) ? DType::u8 : spec.dtype; }
  TensorView q_view() const {
    return view(query, spec.dtype, {S, spec.num_heads, spec.head_size},
                {q_pitch, spec.head_size, 1}, device());
  }
  TensorView out_view() const {
    return view(out, spec.dtype, {S, spec.num_heads, spec.head_size},
                {out_pitch, spec.head_size, 1}, device());
  }
  TensorView key_view() const {
    const std::int64_t D = spec.head_size, B = spec.block_size, H = spec.num_kv_heads;
    return view(key_cache, cache_dtype(), {num_blocks, H, D / x, B, x},
                {H * D * B, D * B, B * x, x, 1}, device(), cache_offset);
  }
  TensorView value_view() const {
    const std::int64_t D = spec.head_size, B = spec.block_size, H = spec.num_kv_heads;
    return view(value_cache, cache_dtype(), {num_blocks, H, D, B}, {H * D * B, D * B, B, 1},
                device(), cache_offset);
  }
  TensorView stats_view(const Buffer& b) const {
    return view(b, DType::f32, {S, spec.num_heads, partitions},
                {spec.num_heads * ws_pitch, ws_pitch, 1}, device());
  }
  TensorView tmp_view() const {
    const std::int64_t D = spec.head_size;
    return view(tmp_out, spec.dtype, {S, spec.num_heads, partitions, D},
                {spec.num_heads * partitions * (D + (spec.strided ? 8 : 0)),
                 partitions * (D + (spec.strided ? 8 : 0)), D + (spec.strided ? 8 : 0), 1},
                device());
  }
  TensorView alibi_view() const {
    return spec.alibi ? view(alibi, DType::f32, {spec.num_heads}, {1}, device()) : TensorView{};
  }
  double scale() const {
    return spec.scale != 0.f ? spec.scale : 1.0 / std::sqrt(static_cast<double>(spec.head_size));
  }

  PagedAttentionV1::Args v1() const {
    PagedAttentionV1::Args a;
    a.out = out_view();
    a.query = q_view();
    a.key_cache = key_view();
    a.value_cache = value_view();
    a.num_kv_heads = spec.num_kv_heads;
    a.scale = scale();
    a.block_tables = view(tables, DType::i32, {S, width}, {width, 1}, device());
    a.seq_lens = view(lens, DType::i32, {S}, {1}, device());
    a.block_size = spec.block_size;
    a.max_seq_len = max_seq_len;
    a.alibi_slopes = alibi_view();
    a.kv_cache_dtype = spec.kv_cache_dtype;
    a.k_scale = view(k_scale, DType::f32, {1}, {1}, device());
    a.v_scale = view(v_scale, DType::f32, {1}, {1}, device());
    return a;
  }
  PagedAttentionV2::Args v2() const {
    const PagedAttentionV1::Args a = v1();
    PagedAttentionV2::Args b;
    b.out = a.out;
    b.exp_sum = stats_view(exp_sums);
    b.max_logits = stats_view(max_logits);
    b.tmp_out = tmp_view();
    b.query = a.query;
    b.key_cache = a.key_cache;
    b.value_cache = a.value_cache;
    b.num_kv_heads = a.num_kv_heads;
    b.scale = a.scale;
    b.block_tables = a.block_tables;
    b.seq_lens = a.seq_lens;
    b.block_size = a.block_size;
    b.max_seq_len = a.max_seq_len;
    b.alibi_slopes = a.alibi_slopes;
    b.kv_cache_dtype = a.kv_cache_dtype;
    b.k_scale = a.k_scale;
    b.v_scale = a.v_scale;
    return b;
  }
  PagedAttentionRocm::Args rocm() const {
    const PagedAttentionV2::Args a = v2();
    PagedAttentionRocm::Args b;
    b.out = a.out;
    b.exp_sum = a.exp_sum;
    b.max_logits = a.max_logits;
    b.tmp_out = a.tmp_out;
    b.query = a.query;
    b.key_cache = a.key_cache;
    b.value_cache = a.value_cache;
    b.num_kv_heads = a.num_kv_heads;
    b.scale = a.scale;
    b.block_tables = a.block_tables;
    b.seq_lens = a.seq_lens;
    b.block_size = a.block_size;
    b.max_seq_len = a.max_seq_len;
    b.alibi_slopes = a.alibi_slopes;
    b.kv_cache_dtype = a.kv_cache_dtype;
    b.k_scale = a.k_scale;
    b.v_scale = a.v_scale;
    return b;
  }
  // The cache element of token t of sequence s, kv head g, element d, as the kernels read it.
  double key_at(std::int64_t s, std::int64_t t, std::int64_t g, std::int64_t d) const;
  double value_at(std::int64_t s, std::int64_t t, std::int64_t g, std::int64_t d) const;
};

double element(const std::uint8_t* bytes, DType dtype) {
  switch (dtype) {
    case DType::f32: {
      float v;
      std::memcpy(&v, bytes, 4);
      return v;
    }
    case DType::f16: {
      std::uint16_t b;
      std::memcpy(&b, bytes, 2);
      return numerics::half_bits_to_float(b);
    }
    default: {
      std::uint16_t b;
      std::memcpy(&b, bytes, 2);
      return numerics::bf16_bits_to_float(b);
    }
  }
}

// round_T(value) for T = dtype.
double round_to(DType dtype, double value) {
  const float f = static_cast<float>(value);
  if (dtype == DType::f32) return f;
  if (dtype == DType::f16) return numerics::half_bits_to_float(numerics::float_to_half_bits(f));
  return numerics::bf16_bits_to_float(numerics::float_to_bf16_bits(f));
}

double cache_read(const Call& c, const std::uint8_t* base, std::int64_t index, float scale) {
  if (!fp8(c.spec)) return element(base + index * c.cache_bytes, c.spec.dtype);
  const std::uint8_t byte = base[index];
  const float decoded = c.spec.kv_cache_dtype == "fp8_e5m2" ? numerics::fp8_e5m2_to_float(byte)
                                                            : numerics::fp8_e4m3_to_float(byte);
  return round_to(c.spec.dtype, decoded * scale);
}

double Call::key_at(std::int64_t s, std::int64_t t, std::int64_t g, std::int64_t d) const {
  const std::int64_t B = spec.block_size, D = spec.head_size;
  const std::int64_t block = table_values[s * width + t / B];
  const std::int64_t index = cache_offset + (block * spec.num_kv_heads + g) * D * B +
                             (d / x) * B * x + (t % B) * x + d % x;
  float scale;
  std::memcpy(&scale, k_scale.data(), 4);
  return cache_read(*this, key_cache.data(), index, scale);
}

double Call::value_at(std::int64_t s, std::int64_t t, std::int64_t g, std::int64_t d) const {
  const std::int64_t B = spec.block_size, D = spec.head_size;
  const std::int64_t block = table_values[s * width + t / B];
  const std::int64_t index = cache_offset + (block * spec.num_kv_heads + g) * D * B + d * B + t % B;
  float scale;
  std::memcpy(&scale, v_scale.data(), 4);
  return cache_read(*this, value_cache.data(), index, scale);
}

// Random fp8 bytes of the whole range, no NaN (E5M2: no inf either).
void fill_fp8(std::uint8_t* bytes, std::int64_t count, bool e5m2, std::mt19937_64& rng) {
  for (std::int64_t i = 0; i < count; ++i) {
    std::uint8_t b = static_cast<std::uint8_t>(rng());
    if (e5m2 ? (b & 0x7C) == 0x7C : (b & 0x7F) == 0x7F) b = static_cast<std::uint8_t>(b & 0xBB);
    bytes[i] = b;
  }
}

// A call in host memory: random query and caches over a pool of twice the blocks the
// sequences need (distinct random blocks, -1 in unused columns); every slot no sequence owns
// holds 0xFF (NaN in every format); v2's workspaces hold random finite values.
Call make_call(const Spec& spec) {
  Call c;
  c.spec = spec;
  std::mt19937_64 rng(spec.seed);
  c.S = static_cast<std::int64_t>(spec.lengths.size());
  const std::int64_t H = spec.num_heads, KVH = spec.num_kv_heads, D = spec.head_size;
  const std::int64_t B = spec.block_size, T_bytes = dtype_size(spec.dtype);
  c.cache_bytes = fp8(spec) ? 1 : T_bytes;
  c.x = 16 / c.cache_bytes;
  std::int64_t longest = 0, needed = 0;
  for (std::int64_t n : spec.lengths) {
    longest = std::max(longest, n);
    needed += (n + B - 1) / B;
  }
  c.max_seq_len = std::max<std::int64_t>(longest + spec.extra_max, c.S > 0 ? 1 : 0);
  c.width = std::max<std::int64_t>((c.max_seq_len + B - 1) / B, 1);
  c.num_blocks = 2 * needed + 1;
  c.partitions = (c.max_seq_len + spec.partition - 1) / spec.partition;
  c.q_pitch = H * D + (spec.strided ? 24 : 0);
  c.out_pitch = H * D + (spec.strided ? 40 : 0);
  c.ws_pitch = c.partitions + (spec.strided ? 3 : 0);
  c.cache_offset = spec.misaligned ? 1 : 0;

  c.query = Buffer(Memory::host, static_cast<std::size_t>(std::max<std::int64_t>(c.S * c.q_pitch, 1) * T_bytes));
  test::fill_random(c.query.data(), spec.dtype, c.query.size() / T_bytes, rng(), spec.range);
  const std::int64_t cache_elements = c.num_blocks * KVH * D * B + c.cache_offset;
  c.key_cache = Buffer(Memory::host, static_cast<std::size_t>(cache_elements * c.cache_bytes));
  c.value_cache = Buffer(Memory::host, static_cast<std::size_t>(cache_elements * c.cache_bytes));
  std::memset(c.key_cache.data(), 0xFF, c.key_cache.size());
  std::memset(c.value_cache.data(), 0xFF, c.value_cache.size());
  // Blocks: distinct, random.
  std::vector<std::int32_t> pool(static_cast<std::size_t>(c.num_blocks));
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  c.table_values.assign(static_cast<std::size_t>(std::max<std::int64_t>(c.S, 1) * c.width), -1);
  std::size_t next = 0;
  for (std::int64_t s = 0; s < c.S; ++s) {
    for (std::int64_t j = 0; j < (spec.lengths[s] + B - 1) / B; ++j) {
      c.table_values[s * c.width + j] = pool[next++];
    }
  }
  // Every slot a sequence owns: random values.
  Buffer values(Memory::host, static_cast<std::size_t>(D * T_bytes));
  for (std::int64_t s = 0; s < c.S; ++s) {
    for (std::int64_t t = 0; t < spec.lengths[s]; ++t) {
      const std::int64_t block = c.table_values[s * c.width + t / B];
      for (std::int64_t g = 0; g < KVH; ++g) {
        for (int which = 0; which < 2; ++which) {
          std::uint8_t* base = (which == 0 ? c.key_cache : c.value_cache).data();
          std::vector<std::uint8_t> bytes(static_cast<std::size_t>(D * c.cache_bytes));
          if (fp8(spec)) {
            fill_fp8(bytes.data(), D, spec.kv_cache_dtype == "fp8_e5m2", rng);
          } else {
            test::fill_random(bytes.data(), spec.dtype, D, rng(), spec.range);
          }
          for (std::int64_t d = 0; d < D; ++d) {
            const std::int64_t index =
                c.cache_offset + (block * KVH + g) * D * B +
                (which == 0 ? (d / c.x) * B * c.x + (t % B) * c.x + d % c.x : d * B + t % B);
            std::memcpy(base + index * c.cache_bytes, bytes.data() + d * c.cache_bytes,
                        c.cache_bytes);
          }
        }
      }
    }
  }
  c.tables = Buffer(Memory::host, c.table_values.size() * 4);
  std::memcpy(c.tables.data(), c.table_values.data(), c.tables.size());
  c.lens = Buffer(Memory::host, static_cast<std::size_t>(std::max<std::int64_t>(c.S, 1) * 4));
  for (std::int64_t s = 0; s < c.S; ++s) {
    const auto n = static_cast<std::int32_t>(spec.lengths[s]);
    std::memcpy(c.lens.data() + 4 * s, &n, 4);
  }
  c.alibi = Buffer(Memory::host, static_cast<std::size_t>(H * 4));
  for (std::int64_t h = 0; h < H; ++h) {
    const float slope = std::pow(2.f, -8.f * static_cast<float>(h + 1) / static_cast<float>(H));
    std::memcpy(c.alibi.data() + 4 * h, &slope, 4);
  }
  // fp8 bytes of E4M3's range (±448), E5M2's (±57344): scales that bring them near |1|.
  const float k = spec.kv_cache_dtype == "fp8_e5m2" ? 1.f / 4096.f : 1.f / 128.f;
  c.k_scale = test::floats({k});
  c.v_scale = test::floats({k * 1.5f});
  c.out = poisoned(static_cast<std::size_t>(std::max<std::int64_t>(c.S * c.out_pitch, 1) * T_bytes));
  const std::int64_t stats = std::max<std::int64_t>(c.S * H * c.ws_pitch, 1);
  c.exp_sums = Buffer(Memory::host, static_cast<std::size_t>(stats * 4));
  c.max_logits = Buffer(Memory::host, static_cast<std::size_t>(stats * 4));
  test::fill_random(c.exp_sums.data(), DType::f32, stats, rng());
  test::fill_random(c.max_logits.data(), DType::f32, stats, rng());
  const std::int64_t tmp = std::max<std::int64_t>(c.S * H * c.partitions * (D + (spec.strided ? 8 : 0)), 1);
  c.tmp_out = Buffer(Memory::host, static_cast<std::size_t>(tmp * T_bytes));
  test::fill_random(c.tmp_out.data(), spec.dtype, tmp, rng());
  return c;
}

// The same call in another kind of memory (the views follow the buffers).
Call moved_to(const Call& c, Memory memory) {
  Call d;
  d.spec = c.spec;
  d.S = c.S, d.x = c.x, d.cache_bytes = c.cache_bytes, d.num_blocks = c.num_blocks;
  d.width = c.width, d.max_seq_len = c.max_seq_len, d.partitions = c.partitions;
  d.q_pitch = c.q_pitch, d.out_pitch = c.out_pitch, d.ws_pitch = c.ws_pitch;
  d.cache_offset = c.cache_offset;
  d.table_values = c.table_values;
  for (auto [to, from] : {std::pair{&d.query, &c.query}, std::pair{&d.key_cache, &c.key_cache},
                          std::pair{&d.value_cache, &c.value_cache}, std::pair{&d.tables, &c.tables},
                          std::pair{&d.lens, &c.lens}, std::pair{&d.alibi, &c.alibi},
                          std::pair{&d.k_scale, &c.k_scale}, std::pair{&d.v_scale, &c.v_scale},
                          std::pair{&d.out, &c.out}, std::pair{&d.exp_sums, &c.exp_sums},
                          std::pair{&d.max_logits, &c.max_logits},
                          std::pair{&d.tmp_out, &c.tmp_out}}) {
    *to = copy_to(memory, *from);
  }
  return d;
}

void run_v1(Impl impl, const Call& c) { run<PagedAttentionV1>(impl, c.v1()); }
void run_v2(Impl impl, const Call& c) { run<PagedAttentionV2>(impl, c.v2()); }
void run_rocm(Impl impl, const Call& c) { run<PagedAttentionRocm>(impl, c.rocm()); }

// out[s, h, :] of a call's output buffer, as doubles, in order (s, h, d).
std::vector<double> outputs(const Call& c, const Buffer& out) {
  const Buffer host = copy_to(Memory::host, out);
  std::vector<double> values;
  for (std::int64_t s = 0; s < c.S; ++s) {
    for (std::int64_t h = 0; h < c.spec.num_heads; ++h) {
      for (std::int64_t d = 0; d < c.spec.head_size; ++d) {
        values.push_back(element(
            host.data() + (s * c.out_pitch + h * c.spec.head_size + d) * dtype_size(c.spec.dtype),
            c.spec.dtype));
      }
    }
  }
  return values;
}

double relative(const std::vector<double>& actual, const std::vector<double>& reference) {
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    if (!std::isfinite(actual[i])) return INFINITY;
    diff += (actual[i] - reference[i]) * (actual[i] - reference[i]);
    norm += reference[i] * reference[i];
  }
  return norm == 0 ? std::sqrt(diff) : std::sqrt(diff / norm);
}

// Dense softmax attention in float64 over the cache's elements as the kernels read them:
// no rounding, no epsilon.
std::vector<double> dense_attention(const Call& c) {
  const Spec& s = c.spec;
  const std::int64_t G = s.num_heads / s.num_kv_heads, D = s.head_size;
  std::vector<double> result;
  const Buffer q = copy_to(Memory::host, c.query);
  for (std::int64_t seq = 0; seq < c.S; ++seq) {
    const std::int64_t L = s.lengths[seq];
    for (std::int64_t h = 0; h < s.num_heads; ++h) {
      const std::int64_t g = h / G;
      float slope = 0.f;
      if (s.alibi) std::memcpy(&slope, c.alibi.data() + 4 * h, 4);
      std::vector<double> logit(static_cast<std::size_t>(L));
      double m = -INFINITY;
      for (std::int64_t t = 0; t < L; ++t) {
        double dot = 0;
        for (std::int64_t d = 0; d < D; ++d) {
          dot += element(q.data() + (seq * c.q_pitch + h * D + d) * dtype_size(s.dtype), s.dtype) *
                 c.key_at(seq, t, g, d);
        }
        logit[t] = static_cast<double>(static_cast<float>(c.scale())) * dot +
                   static_cast<double>(slope) * static_cast<double>(t - L + 1);
        m = std::max(m, logit[t]);
      }
      double sum = 0;
      for (std::int64_t t = 0; t < L; ++t) sum += std::exp(logit[t] - m);
      for (std::int64_t d = 0; d < D; ++d) {
        double acc = 0;
        for (std::int64_t t = 0; t < L; ++t) acc += std::exp(logit[t] - m) / sum * c.value_at(seq, t, g, d);
        result.push_back(acc);
      }
    }
  }
  return result;
}

// The bound against dense attention: the op's tolerance plus one unit of T for what the dense
// evaluation does not round (the op rounds its probabilities and v2 its partition outputs).
double dense_tolerance(const Call& c) {
  return attention_tolerance(c.spec.dtype, c.max_seq_len, c.spec.head_size) +
         unit_roundoff(c.spec.dtype);
}

// ---------------------------------------------------------------------------------------------
// CPU reference: hand-computed cases and properties.

TEST_CASE("paged_attention_v1 CPU: the header's worked example", "[paged_attention]") {
  // One sequence of 2 tokens, one head of 32 (the smallest size), f32: q = e_0, k_0 = 0,
  // k_1 = ln 3 e_0, v_0 = 4 e_0, v_1 = 8 e_0 + 4 e_1. Logits 0 and ln 3: probabilities 1/4
  // and 3/4 (times 4 / (4 + 1e-6)): out = (7, 3, 0, ...).
  Spec spec;
  spec.lengths = {2};
  spec.num_heads = 1, spec.num_kv_heads = 1, spec.head_size = 32, spec.block_size = 8;
  spec.dtype = DType::f32;
  spec.scale = 1.f;
  Call c = make_call(spec);
  std::vector<float> q(32, 0.f);
  q[0] = 1.f;
  std::memcpy(c.query.data(), q.data(), 32 * 4);
  const auto set = [&](Buffer& cache, bool key, std::int64_t t, std::int64_t d, float value) {
    const std::int64_t block = c.table_values[0];
    const std::int64_t index = key ? block * 32 * 8 + (d / 4) * 8 * 4 + t * 4 + d % 4
                                   : block * 32 * 8 + d * 8 + t;
    std::memcpy(cache.data() + index * 4, &value, 4);
  };
  for (std::int64_t t = 0; t < 2; ++t) {
    for (std::int64_t d = 0; d < 32; ++d) {
      set(c.key_cache, true, t, d, 0.f);
      set(c.value_cache, false, t, d, 0.f);
    }
  }
  set(c.key_cache, true, 1, 0, std::log(3.f));
  set(c.value_cache, false, 0, 0, 4.f);
  set(c.value_cache, false, 1, 0, 8.f);
  set(c.value_cache, false, 1, 1, 4.f);
  run_v1(Impl::cpu, c);
  const std::vector<double> out = outputs(c, c.out);
  CHECK(out[0] == Approx(7.0).epsilon(1e-6));
  CHECK(out[1] == Approx(3.0).epsilon(1e-6));
  for (std::size_t d = 2; d < 32; ++d) CHECK(out[d] == 0.0);
  // v2 with one partition copies it: the same bytes.
  Buffer v1_out = copy_to(Memory::host, c.out);
  c.out = poisoned(c.out.size());
  run_v2(Impl::cpu, c);
  CHECK(test::same_bytes(c.out, v1_out, v1_out.size()));
  float m, sum;
  std::memcpy(&m, c.max_logits.data(), 4);
  std::memcpy(&sum, c.exp_sums.data(), 4);
  CHECK(m == std::log(3.f));
  CHECK(sum == Approx(4.0 / 3.0).epsilon(1e-6));  // e^(0 - ln 3) + e^0
}

TEST_CASE("paged_attention_v2 CPU: the header's worked example, two partitions merged",
          "[paged_attention]") {
  // 1000 tokens: partition 0 holds tokens 0..511, partition 1 512..999. Each writes its max
  // logit, its exp sum and its own normalized output; merged they give v1's softmax.
  const DType dtype = GENERATE(DType::f32, DType::bf16);
  Spec spec;
  spec.lengths = {1000};
  spec.num_heads = 2, spec.num_kv_heads = 1, spec.head_size = 32, spec.block_size = 16;
  spec.dtype = dtype;
  spec.range = 2.f;
  Call c = make_call(spec);
  run_v2(Impl::cpu, c);
  const std::vector<double> v2 = outputs(c, c.out);
  c.out = poisoned(c.out.size());
  run_v1(Impl::cpu, c);
  const std::vector<double> v1 = outputs(c, c.out);
  CHECK(relative(v2, v1) <= attention_tolerance(dtype, 1000, 32) + unit_roundoff(dtype));
  // Partition statistics, recomputed in float64 from the cache.
  const Buffer q = copy_to(Memory::host, c.query);
  for (std::int64_t h = 0; h < 2; ++h) {
    for (std::int64_t p = 0; p < 2; ++p) {
      double m = -INFINITY, sum = 0;
      std::vector<double> logits;
      for (std::int64_t t = p * 512; t < std::min<std::int64_t>(1000, p * 512 + 512); ++t) {
        double dot = 0;
        for (std::int64_t d = 0; d < 32; ++d) {
          dot += element(q.data() + (h * 32 + d) * dtype_size(dtype), dtype) * c.key_at(0, t, 0, d);
        }
        logits.push_back(static_cast<double>(static_cast<float>(c.scale())) * dot);
        m = std::max(m, logits.back());
      }
      for (double l : logits) sum += std::exp(l - m);
      float got_m, got_sum;
      std::memcpy(&got_m, c.max_logits.data() + 4 * (h * c.ws_pitch + p), 4);
      std::memcpy(&got_sum, c.exp_sums.data() + 4 * (h * c.ws_pitch + p), 4);
      CHECK(got_m == static_cast<float>(m));
      CHECK(got_sum == static_cast<float>(sum));
    }
  }
}

TEST_CASE("paged attention CPU: query head h reads kv head h / (num_heads / num_kv_heads)",
          "[paged_attention]") {
  // Every value of kv head g is g + 1: the output of query head h is (h / G) + 1 everywhere
  // (the probabilities sum to 1 up to their rounding and the 1e-6).
  Spec spec;
  spec.lengths = {7, 20};
  spec.num_heads = 8, spec.num_kv_heads = 2, spec.head_size = 64, spec.block_size = 8;
  spec.dtype = DType::f32;
  Call c = make_call(spec);
  for (std::int64_t s = 0; s < c.S; ++s) {
    for (std::int64_t t = 0; t < spec.lengths[s]; ++t) {
      const std::int64_t block = c.table_values[s * c.width + t / 8];
      for (std::int64_t g = 0; g < 2; ++g) {
        for (std::int64_t d = 0; d < 64; ++d) {
          const float value = static_cast<float>(g + 1);
          std::memcpy(c.value_cache.data() + ((block * 2 + g) * 64 * 8 + d * 8 + t % 8) * 4,
                      &value, 4);
        }
      }
    }
  }
  run_v1(Impl::cpu, c);
  const std::vector<double> out = outputs(c, c.out);
  for (std::int64_t s = 0; s < 2; ++s) {
    for (std::int64_t h = 0; h < 8; ++h) {
      CAPTURE(s, h);
      CHECK(out[(s * 8 + h) * 64 + 5] == Approx(static_cast<double>(h / 4 + 1)).epsilon(1e-5));
    }
  }
}

TEST_CASE("paged attention CPU: an fp8 cache reads as a cache of its dequantized values",
          "[paged_attention]") {
  // round_T(float(fp8) × scale) in the loop is exactly what an "auto" cache holding those
  // values gives: bit for bit, v1 and v2.
  const std::string kind = GENERATE(std::string("fp8_e4m3"), std::string("fp8_e5m2"));
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  CAPTURE(kind, dtype_name(dtype));
  Spec spec;
  spec.lengths = {30, 600};
  spec.num_heads = 4, spec.num_kv_heads = 2, spec.head_size = 64, spec.block_size = 16;
  spec.dtype = dtype;
  spec.kv_cache_dtype = kind;
  Call quantized = make_call(spec);
  Spec plain_spec = spec;
  plain_spec.kv_cache_dtype = "auto";
  Call plain = make_call(plain_spec);  // same shape; its cache is overwritten below
  plain.table_values = quantized.table_values;
  std::memcpy(plain.tables.data(), quantized.tables.data(), quantized.tables.size());
  std::memcpy(plain.query.data(), quantized.query.data(), quantized.query.size());
  for (std::int64_t s = 0; s < quantized.S; ++s) {
    for (std::int64_t t = 0; t < spec.lengths[s]; ++t) {
      const std::int64_t block = quantized.table_values[s * quantized.width + t / 16];
      for (std::int64_t g = 0; g < 2; ++g) {
        for (std::int64_t d = 0; d < 64; ++d) {
          const std::int64_t x = plain.x;
          const std::int64_t k = (block * 2 + g) * 64 * 16 + (d / x) * 16 * x + (t % 16) * x + d % x;
          const std::int64_t v = (block * 2 + g) * 64 * 16 + d * 16 + t % 16;
          std::uint8_t bits[4];
          for (int which = 0; which < 2; ++which) {
            const double value = which == 0 ? quantized.key_at(s, t, g, d) : quantized.value_at(s, t, g, d);
            const float f = static_cast<float>(value);
            if (dtype == DType::f32) {
              std::memcpy(bits, &f, 4);
            } else {
              const std::uint16_t b = dtype == DType::f16 ? numerics::float_to_half_bits(f)
                                                          : numerics::float_to_bf16_bits(f);
              std::memcpy(bits, &b, 2);
            }
            Buffer& cache = which == 0 ? plain.key_cache : plain.value_cache;
            std::memcpy(cache.data() + (which == 0 ? k : v) * dtype_size(dtype), bits,
                        dtype_size(dtype));
          }
        }
      }
    }
  }
  run_v1(Impl::cpu, quantized);
  run_v1(Impl::cpu, plain);
  CHECK(test::same_bytes(quantized.out, plain.out, plain.out.size()));
  quantized.out = poisoned(quantized.out.size());
  plain.out = poisoned(plain.out.size());
  run_v2(Impl::cpu, quantized);
  run_v2(Impl::cpu, plain);
  CHECK(test::same_bytes(quantized.out, plain.out, plain.out.size()));
}

TEST_CASE("paged attention CPU: equals dense softmax attention in float64 (ALiBi, GQA, strides)",
          "[paged_attention]") {
  const bool alibi = GENERATE(false, true);
  const bool strided = GENERATE(false, true);
  const DType dtype = GENERATE(DType::f32, DType::f16, DType::bf16);
  CAPTURE(alibi, strided, dtype_name(dtype));
  Spec spec;
  spec.lengths = {1, 17, 513, 100};
  spec.num_heads = 6, spec.num_kv_heads = 2, spec.head_size = 80, spec.block_size = 16;
  spec.dtype = dtype, spec.alibi = alibi, spec.strided = strided;
  spec.extra_max = 30;
  Call c = make_call(spec);
  const std::vector<double> dense = dense_attention(c);
  run_v1(Impl::cpu, c);
  CHECK(relative(outputs(c, c.out), dense) <= dense_tolerance(c));
  c.out = poisoned(c.out.size());
  run_v2(Impl::cpu, c);
  CHECK(relative(outputs(c, c.out), dense) <= dense_tolerance(c));
}

TEST_CASE("paged attention CPU: NaN in every slot no sequence owns never reaches the result",
          "[paged_attention]") {
  // make_call fills unused blocks and the tails of last blocks with 0xFF: every output finite.
  const std::string kind = GENERATE(std::string("auto"), std::string("fp8_e4m3"));
  Spec spec;
  spec.lengths = {3, 9, 16, 33};
  spec.num_heads = 2, spec.num_kv_heads = 1, spec.head_size = 32, spec.block_size = 32;
  spec.kv_cache_dtype = kind;
  Call c = make_call(spec);
  run_v1(Impl::cpu, c);
  for (double v : outputs(c, c.out)) REQUIRE(std::isfinite(v));
  run_v2(Impl::cpu, c);
  for (double v : outputs(c, c.out)) REQUIRE(std::isfinite(v));
}

TEST_CASE("paged attention CPU: v2's partitions re-merged by their log-sum-exp equal v1",
          "[paged_attention]") {
  // The merge of merge_attn_states (chapter "Attention over a paged cache"): each partition p is
  // an attention result o_p with log-sum-exp lse_p = max_logits[p] + ln(exp_sums[p]);
  // out = Σ_p o_p exp(lse_p - lse) with lse = ln Σ_p exp(lse_p). Done here in float64 from v2's
  // workspaces; it equals v1's output within the tolerance.
  Spec spec;
  spec.lengths = {1500, 700};
  spec.num_heads = 4, spec.num_kv_heads = 4, spec.head_size = 64, spec.block_size = 16;
  spec.dtype = DType::bf16;
  Call c = make_call(spec);
  run_v2(Impl::cpu, c);
  std::vector<double> merged;
  for (std::int64_t s = 0; s < c.S; ++s) {
    const std::int64_t parts = (spec.lengths[s] + 511) / 512;
    for (std::int64_t h = 0; h < 4; ++h) {
      std::vector<double> lse(static_cast<std::size_t>(parts));
      double top = -INFINITY;
      for (std::int64_t p = 0; p < parts; ++p) {
        float m, sum;
        std::memcpy(&m, c.max_logits.data() + 4 * ((s * 4 + h) * c.ws_pitch + p), 4);
        std::memcpy(&sum, c.exp_sums.data() + 4 * ((s * 4 + h) * c.ws_pitch + p), 4);
        lse[p] = m + std::log(static_cast<double>(sum));
        top = std::max(top, lse[p]);
      }
      double total = 0;
      for (double l : lse) total += std::exp(l - top);
      for (std::int64_t d = 0; d < 64; ++d) {
        double acc = 0;
        for (std::int64_t p = 0; p < parts; ++p) {
          const double o = element(c.tmp_out.data() + (((s * 4 + h) * c.partitions + p) * 64 + d) * 2,
                                   DType::bf16);
          acc += o * std::exp(lse[p] - top) / total;
        }
        merged.push_back(acc);
      }
    }
  }
  c.out = poisoned(c.out.size());
  run_v1(Impl::cpu, c);
  CHECK(relative(merged, outputs(c, c.out)) <= attention_tolerance(DType::bf16, 1500, 64) +
                                                   unit_roundoff(DType::bf16));
}

// The end-to-end invariant: a batch written into the cache by reshape_and_cache (prefill, in
// random blocks), then decoded by v1 and v2 with `impl`, equals dense attention over the same
// keys and values (as stored: dequantized for fp8) in float64.
void end_to_end(Impl impl, const std::string& kind, DType dtype) {
  CAPTURE(impl_name(impl), kind, dtype_name(dtype));
  Spec spec;
  spec.lengths = {1, 40, 515, 1100};
  spec.num_heads = 8, spec.num_kv_heads = 2, spec.head_size = 128, spec.block_size = 16;
  spec.dtype = dtype, spec.kv_cache_dtype = kind;
  Call c = make_call(spec);  // its caches are overwritten by reshape_and_cache below
  std::memset(c.key_cache.data(), 0xFF, c.key_cache.size());
  std::memset(c.value_cache.data(), 0xFF, c.value_cache.size());
  std::int64_t tokens = 0;
  for (std::int64_t n : spec.lengths) tokens += n;
  const std::int64_t T_bytes = dtype_size(dtype), row = 2 * 128;  // 2 kv heads × 128
  Buffer key(Memory::host, static_cast<std::size_t>(tokens * row * T_bytes));
  Buffer value(Memory::host, key.size());
  test::fill_random(key.data(), dtype, tokens * row, 11, 1.f);
  test::fill_random(value.data(), dtype, tokens * row, 12, 1.f);
  std::vector<std::int64_t> slots;
  for (std::int64_t s = 0; s < c.S; ++s) {
    for (std::int64_t t = 0; t < spec.lengths[s]; ++t) {
      slots.push_back(c.table_values[s * c.width + t / 16] * 16 + t % 16);
    }
  }
  Buffer slot_buffer = test::int64s(slots);
  const Memory memory = impl == Impl::cpu ? Memory::host : Memory::device;
  Call d = moved_to(c, memory);
  const Device device = d.device();
  Buffer key_d = copy_to(memory, key), value_d = copy_to(memory, value);
  Buffer slots_d = copy_to(memory, slot_buffer);
  run<ReshapeAndCache>(
      impl, {TensorView::contiguous(key_d.data(), dtype, {tokens, 2, 128}, device),
             TensorView::contiguous(value_d.data(), dtype, {tokens, 2, 128}, device),
             d.key_view(), d.value_view(),
             TensorView::contiguous(slots_d.data(), DType::i64, {tokens}, device), kind,
             d.v1().k_scale, d.v1().v_scale});
  // The dense reference reads the cache as written (c's accessors on a host copy).
  c.key_cache = copy_to(Memory::host, d.key_cache);
  c.value_cache = copy_to(Memory::host, d.value_cache);
  const std::vector<double> dense = dense_attention(c);
  run_v1(impl, d);
  CHECK(relative(outputs(d, d.out), dense) <= dense_tolerance(d));
  d.out.fill(0xFF);
  run_v2(impl, d);
  CHECK(relative(outputs(d, d.out), dense) <= dense_tolerance(d));
  // paged_attention_rocm: the same batch with 256-token workspaces (its limits: f16 / bf16
  // queries, "auto" or E4M3 caches).
  if (dtype == DType::f32 || kind == "fp8_e5m2") return;
  Spec rocm_spec = spec;
  rocm_spec.partition = 256;
  Call r = make_call(rocm_spec);
  r.key_cache = copy_to(Memory::host, d.key_cache);
  r.value_cache = copy_to(Memory::host, d.value_cache);
  r.query = copy_to(Memory::host, d.query);
  Call rd = moved_to(r, memory);
  run_rocm(impl, rd);
  CHECK(relative(outputs(rd, rd.out), dense) <= dense_tolerance(rd));
}

TEST_CASE("paged attention CPU: written by reshape_and_cache, decoded, equals dense attention",
          "[paged_attention]") {
  const std::string kind =
      GENERATE(std::string("auto"), std::string("fp8_e4m3"), std::string("fp8_e5m2"));
  const DType dtype = GENERATE(DType::f32, DType::bf16, DType::f16);
  end_to_end(Impl::cpu, kind, dtype);
}

TEST_CASE("paged attention: zero sequences is a valid call that writes nothing",
          "[paged_attention]") {
  Spec spec;
  spec.lengths = {};
  Call c = make_call(spec);
  const Buffer before = copy_to(Memory::host, c.tmp_out);
  CHECK_NOTHROW(run_v1(Impl::cpu, c));
  CHECK_NOTHROW(run_v2(Impl::cpu, c));
  CHECK(test::same_bytes(c.tmp_out, before, before.size()));
}

// ---------------------------------------------------------------------------------------------
// Rules: each broken alone in a valid call; the message names the argument; nothing written.

struct ValidCall {
  Call c;
  bool v2 = false;
  Impl impl = Impl::cpu;
  PagedAttentionV1::Args a1;
  PagedAttentionV2::Args a2;
  Buffer out_before, tmp_before, exp_before, max_before;

  explicit ValidCall(bool use_v2 = false) : v2(use_v2) {
    Spec spec;
    spec.lengths = {5, 20};
    spec.num_heads = 4, spec.num_kv_heads = 2, spec.head_size = 64, spec.block_size = 16;
    spec.extra_max = 3;
    c = make_call(spec);
    a1 = c.v1();
    a2 = c.v2();
    out_before = copy_to(Memory::host, c.out);
    tmp_before = copy_to(Memory::host, c.tmp_out);
    exp_before = copy_to(Memory::host, c.exp_sums);
    max_before = copy_to(Memory::host, c.max_logits);
  }
  void call() const {
    if (v2) {
      run<PagedAttentionV2>(impl, a2);
    } else {
      run<PagedAttentionV1>(impl, a1);
    }
  }
  bool nothing_written() const {
    return test::same_bytes(c.out, out_before, out_before.size()) &&
           test::same_bytes(c.tmp_out, tmp_before, tmp_before.size()) &&
           test::same_bytes(c.exp_sums, exp_before, exp_before.size()) &&
           test::same_bytes(c.max_logits, max_before, max_before.size());
  }
  // Sets one element of seq_lens or block_tables (host memory).
  void poke_length(std::int64_t s, std::int32_t value) {
    std::memcpy(c.lens.data() + 4 * s, &value, 4);
  }
  void poke_block(std::int64_t s, std::int64_t column, std::int32_t value) {
    std::memcpy(c.tables.data() + 4 * (s * c.width + column), &value, 4);
  }
  // Applies the same change to both ops' arguments.
  template <class Edit>
  void edit(Edit&& e) {
    e(a1);
    e(a2);
  }
};

TEST_CASE("paged attention: the valid call used by the rule tests passes", "[paged_attention]") {
  for (bool v2 : {false, true}) {
    ValidCall call(v2);
    CHECK_NOTHROW(call.call());
    CHECK_FALSE(call.nothing_written());
  }
}

TEST_CASE("paged attention rejects bad sequences and block ids, naming them",
          "[paged_attention]") {
  for (bool v2 : {false, true}) {
    CAPTURE(v2);
    {
      ValidCall call(v2);
      call.poke_length(1, 0);
      CHECK_REJECTED(call, "seq_lens[1] = 0: expected 1 <= seq_len <= max_seq_len = 23");
    }
    {
      ValidCall call(v2);
      call.poke_length(0, 24);
      CHECK_REJECTED(call, "seq_lens[0] = 24: expected 1 <= seq_len");
    }
    {
      ValidCall call(v2);
      call.poke_length(0, -3);
      CHECK_REJECTED(call, "seq_lens[0] = -3");
    }
    {  // 20 tokens need 2 columns; a view of one column is too narrow
      ValidCall call(v2);
      call.edit([](auto& a) { a.block_tables.shape[1] = 1; });
      CHECK_REJECTED(call, "block_tables: sequence 1 has 20 tokens, 2 blocks of 16, but "
                           "block_tables has 1 columns");
    }
    {
      ValidCall call(v2);
      call.poke_block(1, 1, static_cast<std::int32_t>(call.c.num_blocks));
      CHECK_REJECTED(call, "block_tables[1, 1] = " + std::to_string(call.c.num_blocks) +
                               ": expected a block of the cache");
    }
    {
      ValidCall call(v2);
      call.poke_block(0, 0, -1);
      CHECK_REJECTED(call, "block_tables[0, 0] = -1");
    }
    {  // a column past a sequence's end may hold anything
      ValidCall call(v2);
      call.poke_block(0, 1, -7);
      CHECK_NOTHROW(call.call());
    }
  }
}

TEST_CASE("paged attention rejects unsupported sizes and shapes, naming the argument",
          "[paged_attention]") {
  for (bool v2 : {false, true}) {
    CAPTURE(v2);
    const auto rejected = [&](auto edit, const std::string& text) {
      ValidCall call(v2);
      call.edit(edit);
      CHECK_REJECTED(call, text);
    };
    rejected([](auto& a) { a.query.shape[2] = 48; a.out.shape[2] = 48; },
             "query.size(2) (head_size): expected one of 32, 64, 80");
    rejected([](auto& a) { a.block_size = 64; }, "block_size: expected 8, 16 or 32");
    rejected([](auto& a) { a.block_size = 8; }, "key_cache.size(3): expected 8 (block_size)");
    rejected([](auto& a) { a.num_kv_heads = 3; }, "key_cache.size(1): expected 3");
    rejected([](auto& a) { a.num_kv_heads = 0; }, "num_kv_heads: expected at least 1");
    rejected([](auto& a) { a.query.shape[1] = 3; a.out.shape[1] = 3; },
             "num_kv_heads: expected a divisor of num_heads");
    rejected([](auto& a) { a.value_cache.strides[0] += 16; },
             "value_cache.stride(0): expected key_cache.stride(0)");
    rejected([](auto& a) { a.max_seq_len = 19; }, "seq_lens[1] = 20");
    rejected([](auto& a) { a.max_seq_len = -1; }, "max_seq_len");
    rejected([](auto& a) { a.scale = std::nan(""); }, "scale: expected a finite float");
    rejected([](auto& a) { a.blocksparse_vert_stride = 2; },
             "blocksparse_vert_stride: expected 0, got 2 (blocksparse attention is not "
             "implemented");
    rejected([](auto& a) { a.blocksparse_local_blocks = 1; }, "blocksparse_local_blocks");
    rejected([](auto& a) { a.blocksparse_block_size = 32; }, "blocksparse_block_size");
    rejected([](auto& a) { a.blocksparse_head_sliding_step = 1; },
             "blocksparse_head_sliding_step");
    rejected([](auto& a) { a.kv_cache_dtype = "fp8_ds_mla"; }, "kv_cache_dtype");
    rejected([](auto& a) { a.kv_cache_dtype = "fp8"; }, "key_cache");
    rejected([](auto& a) { a.out.dtype = DType::f16; }, "out: expected dtype bf16");
    rejected([](auto& a) { a.out.shape[0] = 1; }, "out.size(0)");
    rejected([](auto& a) { a.out.strides[0] = 0; }, "out: expected an output whose elements");
    rejected([](auto& a) { a.query.strides[2] = 2; }, "query: dimensions 2.. must be packed");
    rejected([](auto& a) { a.seq_lens.dtype = DType::i64; }, "seq_lens: expected dtype i32");
    rejected([](auto& a) { a.block_tables.shape[0] = 1; }, "block_tables: expected at least 2 rows");
    rejected([](auto& a) { a.alibi_slopes = a.seq_lens; },
             "alibi_slopes: expected dtype f32");
    rejected([](auto& a) { a.key_cache.device = Device::cuda; }, "key_cache: expected a tensor on cpu");
  }
}

TEST_CASE("paged attention rejects an fp8 cache whose head size is not a multiple of 16",
          "[paged_attention]") {
  // head_size 120 with one-byte elements: 120 / 16 chunks is not whole (upstream instantiates
  // it and reads past each head).
  Spec spec;
  spec.lengths = {3};
  spec.num_heads = 1, spec.num_kv_heads = 1, spec.head_size = 128;
  spec.kv_cache_dtype = "fp8_e4m3";
  Call c = make_call(spec);
  PagedAttentionV1::Args a = c.v1();
  a.query.shape[2] = 120;
  a.out.shape[2] = 120;
  CHECK_THROWS_WITH(run<PagedAttentionV1>(Impl::cpu, a),
                    Contains("query.size(2) (head_size): expected a multiple of x = 16"));
}

TEST_CASE("paged_attention_v2 rejects workspaces too small for max_seq_len, naming them",
          "[paged_attention]") {
  const auto rejected = [&](auto edit, const std::string& text) {
    ValidCall call(true);
    edit(call.a2);
    CHECK_REJECTED(call, text);
  };
  rejected([](auto& a) { a.max_seq_len = 513; },
           "exp_sum.size(2): expected at least ceil(max_seq_len / 512) = 2 partitions for "
           "max_seq_len = 513, got 1");
  rejected([](auto& a) { a.max_logits.shape[2] = 2; }, "max_logits.size(2): expected 1");
  rejected([](auto& a) { a.tmp_out.shape[3] = 32; }, "tmp_out.size(3): expected 64");
  rejected([](auto& a) { a.tmp_out.dtype = DType::f32; }, "tmp_out: expected dtype bf16");
  rejected([](auto& a) { a.exp_sum.dtype = DType::bf16; }, "exp_sum: expected dtype f32");
  rejected([](auto& a) { a.exp_sum.strides[1] = 0; }, "exp_sum: expected an output whose");
  rejected([](auto& a) { a.tmp_out = a.out; }, "tmp_out: expected 4 dimensions");
}

// The deferred sequence check (what the check kernel runs, on the host) finds the rule the
// synchronous check breaks and words it the same way.
TEST_CASE("paged attention: the deferred sequence check words each rule as the synchronous one",
          "[paged_attention]") {
  const auto without_note = [](const std::string& message) {
    return message.substr(0, message.find(" [deferred: "));
  };
  struct Broken {
    const char* what;
    std::int64_t s, column;  // column -1: seq_lens[s] = value
    std::int32_t value;
    FaultRule rule;
  } broken[] = {
      {"length 0", 1, -1, 0, FaultRule::length_range},
      {"length above max_seq_len", 0, -1, 24, FaultRule::length_range},
      {"block id past the pool", 1, 1, 1000, FaultRule::block_range},
      {"negative block id", 0, 0, -1, FaultRule::block_range},
  };
  for (const Broken& b : broken) {
    INFO(b.what);
    ValidCall call;
    if (b.column < 0) {
      call.poke_length(b.s, b.value);
    } else {
      call.poke_block(b.s, b.column, b.value);
    }
    std::string synchronous;
    try {
      call.call();
    } catch (const InvalidArgument& e) {
      synchronous = e.what();
    }
    REQUIRE_FALSE(synchronous.empty());
    checks::SequenceCheck check;
    check.wording = SequenceWording::paged_attention;
    check.seq_lens = reinterpret_cast<const std::int32_t*>(call.c.lens.data());
    check.block_table = reinterpret_cast<const std::int32_t*>(call.c.tables.data());
    check.table_stride = call.c.width;
    check.table_width = call.c.width;
    check.batch = call.c.S;
    check.block_size = 16;
    check.num_blocks = call.c.num_blocks;
    check.max_length = call.c.max_seq_len;
    check.argument[static_cast<int>(FaultRule::length_range)] =
        reinterpret_cast<std::uint64_t>("seq_lens");
    check.argument[static_cast<int>(FaultRule::column_range)] =
        reinterpret_cast<std::uint64_t>("block_tables");
    check.argument[static_cast<int>(FaultRule::block_range)] =
        reinterpret_cast<std::uint64_t>("block_tables");
    const DeviceFault fault = checks::find_sequence_fault(check, PagedAttentionV1::name);
    CHECK(fault.rule == static_cast<std::uint32_t>(b.rule));
    CHECK(without_note(describe_fault(fault)) == synchronous);
  }
  // A table too narrow for its sequence (the rule after the lengths).
  ValidCall narrow;
  narrow.a1.block_tables.shape[1] = 1;
  std::string synchronous;
  try {
    narrow.call();
  } catch (const InvalidArgument& e) {
    synchronous = e.what();
  }
  checks::SequenceCheck check;
  check.wording = SequenceWording::paged_attention;
  check.seq_lens = reinterpret_cast<const std::int32_t*>(narrow.c.lens.data());
  check.block_table = reinterpret_cast<const std::int32_t*>(narrow.c.tables.data());
  check.table_stride = narrow.c.width;
  check.table_width = 1;
  check.batch = narrow.c.S;
  check.block_size = 16;
  check.num_blocks = narrow.c.num_blocks;
  check.max_length = narrow.c.max_seq_len;
  const DeviceFault fault = checks::find_sequence_fault(check, PagedAttentionV1::name);
  CHECK(fault.rule == static_cast<std::uint32_t>(FaultRule::column_range));
  CHECK(without_note(describe_fault(fault)) == synchronous);
}

// ---------------------------------------------------------------------------------------------
// GPU: naive and optimized against the CPU reference.

// Runs `spec` on the CPU and with both kernels; every output within the tolerance, v2's
// workspaces too (over the partitions each sequence has), the other workspace entries and
// every byte around the outputs untouched.
void three_way(const Spec& spec) {
  INFO(describe(spec));
  const Call host = make_call(spec);
  for (bool v2 : {false, true}) {
    CAPTURE(v2);
    Call reference = moved_to(host, Memory::host);
    v2 ? run_v2(Impl::cpu, reference) : run_v1(Impl::cpu, reference);
    const std::vector<double> want = outputs(reference, reference.out);
    for (Impl impl : {Impl::naive, Impl::optimized}) {
      CAPTURE(impl_name(impl));
      Call d = moved_to(host, Memory::device);
      REQUIRE_NOTHROW(v2 ? run_v2(impl, d) : run_v1(impl, d));
      PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
      const double tolerance = attention_tolerance(spec.dtype, d.max_seq_len, spec.head_size);
      CHECK(relative(outputs(d, d.out), want) <= tolerance);
      // The padding of a strided out keeps its poison.
      const Buffer out = copy_to(Memory::host, d.out);
      for (std::int64_t s = 0; s < d.S; ++s) {
        const std::int64_t pad = d.out_pitch - spec.num_heads * spec.head_size;
        const std::int64_t T = dtype_size(spec.dtype);
        CHECK(std::memcmp(out.data() + (s * d.out_pitch + spec.num_heads * spec.head_size) * T,
                          host.out.data() + (s * d.out_pitch + spec.num_heads * spec.head_size) * T,
                          static_cast<std::size_t>(pad * T)) == 0);
      }
      if (!v2) continue;
      const Buffer exp_sums = copy_to(Memory::host, d.exp_sums);
      const Buffer max_logits = copy_to(Memory::host, d.max_logits);
      const Buffer tmp = copy_to(Memory::host, d.tmp_out);
      std::vector<double> got_stats, want_stats, got_rows, want_rows;
      bool untouched = true;
      const std::int64_t D = spec.head_size, T = dtype_size(spec.dtype);
      const std::int64_t tmp_pitch = D + (spec.strided ? 8 : 0);
      for (std::int64_t s = 0; s < d.S; ++s) {
        for (std::int64_t h = 0; h < spec.num_heads; ++h) {
          for (std::int64_t p = 0; p < d.ws_pitch; ++p) {
            const std::int64_t i = (s * spec.num_heads + h) * d.ws_pitch + p;
            float e[2], m[2];
            std::memcpy(&e[0], exp_sums.data() + 4 * i, 4);
            std::memcpy(&e[1], reference.exp_sums.data() + 4 * i, 4);
            std::memcpy(&m[0], max_logits.data() + 4 * i, 4);
            std::memcpy(&m[1], reference.max_logits.data() + 4 * i, 4);
            const bool used = p < (spec.lengths[s] + 511) / 512;
            if (used) {
              got_stats.insert(got_stats.end(), {e[0], m[0]});
              want_stats.insert(want_stats.end(), {e[1], m[1]});
            } else {
              untouched = untouched && std::memcmp(&e[0], &e[1], 4) == 0 &&
                          std::memcmp(&m[0], &m[1], 4) == 0;
            }
            if (p >= d.partitions) continue;
            const std::int64_t row = ((s * spec.num_heads + h) * d.partitions + p) * tmp_pitch;
            for (std::int64_t k = 0; k < tmp_pitch; ++k) {
              const std::uint8_t* g = tmp.data() + (row + k) * T;
              const std::uint8_t* w = reference.tmp_out.data() + (row + k) * T;
              if (used && k < D) {
                got_rows.push_back(element(g, spec.dtype));
                want_rows.push_back(element(w, spec.dtype));
              } else {
                untouched = untouched && std::memcmp(g, w, static_cast<std::size_t>(T)) == 0;
              }
            }
          }
        }
      }
      CHECK(untouched);
      CHECK(relative(got_rows, want_rows) <= tolerance);
      CHECK(relative(got_stats, want_stats) <=
            attention_tolerance(DType::f32, d.max_seq_len, spec.head_size));
    }
  }
}

TEST_CASE("paged attention GPU: naive and optimized agree with the CPU reference",
          "[paged_attention][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  std::uint64_t seed = 100;
  // Every dtype and cache kind at the common shape, ragged lengths across block and partition
  // edges.
  for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
    for (const char* kind : {"auto", "fp8_e4m3", "fp8_e5m2"}) {
      Spec spec;
      spec.lengths = {1, 15, 16, 17, 511, 512, 513, 1300};
      spec.num_heads = 8, spec.num_kv_heads = 2, spec.head_size = 128, spec.block_size = 16;
      spec.dtype = dtype, spec.kv_cache_dtype = kind, spec.seed = ++seed;
      three_way(spec);
    }
  }
  // Every head size and block size, GQA ratios 1 to 16, ALiBi and strided views on the way.
  const std::int64_t head_sizes[] = {32, 64, 80, 96, 112, 120, 128, 192, 256};
  int i = 0;
  for (std::int64_t head_size : head_sizes) {
    for (std::int64_t block_size : {8, 16, 32}) {
      ++i;
      Spec spec;
      spec.lengths = {3, 40 + i, 530, 9};
      const std::int64_t ratios[] = {1, 4, 16, 6};
      spec.num_kv_heads = 1 + i % 2;
      spec.num_heads = spec.num_kv_heads * ratios[i % 4];
      spec.head_size = head_size, spec.block_size = block_size;
      spec.dtype = i % 3 == 0 ? DType::f16 : DType::bf16;
      spec.kv_cache_dtype = head_size % 16 == 0 && i % 2 == 0 ? "fp8_e4m3" : "auto";
      spec.alibi = i % 4 == 1;
      spec.strided = i % 5 == 2;
      spec.extra_max = i % 3 == 0 ? 700 : 0;
      spec.seed = ++seed;
      three_way(spec);
    }
  }
}

TEST_CASE("paged attention GPU: long sequences, small and large batches (v1's split-K)",
          "[paged_attention][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  {  // one sequence: v1 splits it across thread blocks
    Spec spec;
    spec.lengths = {20000};
    spec.num_heads = 32, spec.num_kv_heads = 8, spec.head_size = 128, spec.block_size = 16;
    spec.seed = 7;
    three_way(spec);
  }
  {  // many sequences: one thread block each per kv head
    Spec spec;
    spec.lengths.assign(200, 0);
    for (std::size_t s = 0; s < spec.lengths.size(); ++s) spec.lengths[s] = 300 + 37 * s % 900;
    spec.num_heads = 32, spec.num_kv_heads = 8, spec.head_size = 128, spec.block_size = 16;
    spec.kv_cache_dtype = "fp8_e4m3";
    spec.seed = 8;
    three_way(spec);
  }
}

TEST_CASE("paged attention GPU: misaligned caches (the optimized kernel falls back)",
          "[paged_attention][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  Spec spec;
  spec.lengths = {33, 600};
  spec.misaligned = true;
  spec.seed = 9;
  three_way(spec);
}

TEST_CASE("paged attention GPU: written by reshape_and_cache, decoded, equals dense attention",
          "[paged_attention][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    for (const char* kind : {"auto", "fp8_e4m3", "fp8_e5m2"}) end_to_end(impl, kind, DType::bf16);
    end_to_end(impl, "fp8_e4m3", DType::f16);
  }
}

TEST_CASE("paged attention GPU: zero sequences writes nothing", "[paged_attention][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  Spec spec;
  spec.lengths = {};
  const Call host = make_call(spec);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    Call d = moved_to(host, Memory::device);
    CHECK_NOTHROW(run_v1(impl, d));
    CHECK_NOTHROW(run_v2(impl, d));
    PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
    CHECK(test::same_bytes(copy_to(Memory::host, d.tmp_out), host.tmp_out, host.tmp_out.size()));
  }
}

TEST_CASE("paged attention GPU: a deferred call with a bad length writes nothing and reports it",
          "[paged_attention][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  for (bool v2 : {false, true}) {
    CAPTURE(v2);
    ValidCall valid(v2);
    valid.poke_length(1, 0);
    Call d = moved_to(valid.c, Memory::device);
    std::string synchronous;
    try {
      valid.call();
    } catch (const InvalidArgument& e) {
      synchronous = e.what();
    }
    REQUIRE_FALSE(synchronous.empty());
    for (Impl impl : {Impl::naive, Impl::optimized}) {
      {
        PreferDeferredErrors deferred;
        CHECK_NOTHROW(v2 ? run_v2(impl, d) : run_v1(impl, d));
      }
      std::string reported;
      try {
        check_errors();
      } catch (const InvalidArgument& e) {
        reported = e.what();
      }
      CHECK_THAT(reported, Contains(synchronous) && Contains("deferred"));
      CHECK(test::same_bytes(copy_to(Memory::host, d.out), valid.c.out, valid.c.out.size()));
      CHECK(test::same_bytes(copy_to(Memory::host, d.tmp_out), valid.c.tmp_out,
                             valid.c.tmp_out.size()));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// paged_attention_rocm (vLLM csrc/rocm/attention.cu): v2's math with 256-token partitions.

// A rocm call: v2's shape with 256-token workspaces, f16 or bf16, head size 64 or 128.
Spec rocm_spec(std::vector<std::int64_t> lengths, std::uint64_t seed) {
  Spec spec;
  spec.lengths = std::move(lengths);
  spec.num_heads = 8, spec.num_kv_heads = 2, spec.head_size = 128, spec.block_size = 16;
  spec.partition = 256;
  spec.seed = seed;
  return spec;
}

TEST_CASE("paged_attention_rocm CPU: the header's worked example (partitions of 256, one merged)",
          "[paged_attention]") {
  // 300 tokens: partitions 0..255 and 256..299, merged as v2 merges; 200 tokens: one
  // partition, merged too: out = tmp_out[0] × S_0 / (S_0 + 1e-6), rounded to T.
  Spec spec = rocm_spec({300, 200}, 21);
  spec.num_heads = 2, spec.num_kv_heads = 1, spec.head_size = 64;
  spec.extra_max = 700;  // 4 partitions of workspace: the unused ones stay untouched
  Call c = make_call(spec);
  REQUIRE(c.partitions == 4);
  const Buffer exp_before = copy_to(Memory::host, c.exp_sums);
  run_rocm(Impl::cpu, c);
  const std::vector<double> rocm = outputs(c, c.out);
  Call v1 = moved_to(c, Memory::host);
  v1.out = poisoned(c.out.size());
  run_v1(Impl::cpu, v1);
  CHECK(relative(rocm, outputs(v1, v1.out)) <=
        attention_tolerance(spec.dtype, 1000, 64) + unit_roundoff(spec.dtype));
  for (std::int64_t h = 0; h < 2; ++h) {
    for (std::int64_t p = 0; p < 4; ++p) {  // written: 2 partitions of sequence 0, 1 of seq 1
      for (std::int64_t s = 0; s < 2; ++s) {
        const std::int64_t i = (s * 2 + h) * c.ws_pitch + p;
        const bool used = p < (spec.lengths[s] + 255) / 256;
        const bool written = std::memcmp(c.exp_sums.data() + 4 * i, exp_before.data() + 4 * i, 4) != 0;
        CHECK(written == used);
      }
    }
    // Sequence 1, one partition: out = round_T(tmp_out[0] × S / (S + 1e-6)).
    float sum;
    std::memcpy(&sum, c.exp_sums.data() + 4 * ((2 + h) * c.ws_pitch), 4);
    for (std::int64_t d = 0; d < 64; ++d) {
      const double tmp = element(c.tmp_out.data() + (((2 + h) * c.partitions) * 64 + d) * 2,
                                 spec.dtype);
      const double want = round_to(spec.dtype, tmp * sum / (static_cast<double>(sum) + 1e-6));
      CHECK(rocm[static_cast<std::size_t>((2 + h) * 64 + d)] == want);
    }
  }
}

TEST_CASE("paged_attention_rocm CPU: equals v2 and dense attention (auto, fp8, f16, bf16)",
          "[paged_attention]") {
  const DType dtype = GENERATE(DType::f16, DType::bf16);
  const std::string kind = GENERATE(std::string("auto"), std::string("fp8_e4m3"));
  Spec spec = rocm_spec({1, 17, 255, 256, 257, 700}, 22);
  spec.dtype = dtype, spec.kv_cache_dtype = kind;
  spec.alibi = kind == "auto";
  Call c = make_call(spec);
  run_rocm(Impl::cpu, c);
  const std::vector<double> rocm = outputs(c, c.out);
  CHECK(relative(rocm, dense_attention(c)) <= dense_tolerance(c));
  Spec v2_spec = spec;
  v2_spec.partition = 512;
  Call v2 = make_call(v2_spec);
  run_v2(Impl::cpu, v2);
  CHECK(relative(rocm, outputs(v2, v2.out)) <=
        attention_tolerance(dtype, c.max_seq_len, spec.head_size) + unit_roundoff(dtype));
}

// A rocm call whose sequences own the query rows of query_start_loc (5 sequences, 7 rows):
// sequence 0 row 0, sequence 1 rows 1..3 (several tokens: skipped), sequence 2 row 4,
// sequence 3 none (skipped), sequence 4 row 5; row 6 belongs to no sequence.
struct StartLocCall {
  Call c;  // one query row per sequence: what the decoded sequences' rows hold
  Buffer query, out, starts;
  std::vector<std::int32_t> start_values = {0, 1, 4, 5, 5, 6};
  std::vector<std::int64_t> row_of = {0, -1, 4, -1, 5};
  static constexpr std::int64_t kRows = 7;

  explicit StartLocCall(DType dtype = DType::bf16) {
    Spec spec = rocm_spec({40, 300, 7, 90, 513}, 23);
    spec.dtype = dtype;
    c = make_call(spec);
    const std::int64_t T = dtype_size(dtype), row = spec.num_heads * spec.head_size;
    query = Buffer(Memory::host, static_cast<std::size_t>(kRows * row * T));
    test::fill_random(query.data(), dtype, kRows * row, 5, 1.f);
    for (std::int64_t s = 0; s < c.S; ++s) {  // the decoded rows: c's query rows
      if (row_of[s] >= 0) {
        std::memcpy(query.data() + row_of[s] * row * T, c.query.data() + s * c.q_pitch * T,
                    static_cast<std::size_t>(row * T));
      }
    }
    out = poisoned(static_cast<std::size_t>(kRows * row * T));
    starts = Buffer(Memory::host, start_values.size() * 4);
    std::memcpy(starts.data(), start_values.data(), starts.size());
  }
  PagedAttentionRocm::Args args() const {
    PagedAttentionRocm::Args a = c.rocm();
    const std::int64_t H = c.spec.num_heads, D = c.spec.head_size;
    a.query = TensorView::contiguous(query.data(), c.spec.dtype, {kRows, H, D}, Device::cpu);
    a.out = TensorView::contiguous(out.data(), c.spec.dtype, {kRows, H, D}, Device::cpu);
    a.query_start_loc = TensorView::contiguous(starts.data(), DType::i32, {6}, Device::cpu);
    return a;
  }
};

TEST_CASE("paged_attention_rocm CPU: query_start_loc decodes the sequences of one query token",
          "[paged_attention]") {
  // Upstream's kernels return at once for a sequence whose query_start_loc span is not one
  // token (a prefill or a multi-token chunk, "taken care by another kernel"): its out rows and
  // its workspace entries stay as they were. A decoded sequence reads and writes row
  // query_start_loc[s].
  StartLocCall call;
  const Buffer exp_before = copy_to(Memory::host, call.c.exp_sums);
  const Buffer tmp_before = copy_to(Memory::host, call.c.tmp_out);
  run<PagedAttentionRocm>(Impl::cpu, call.args());
  Call plain = moved_to(call.c, Memory::host);  // the same sequences, one row each
  run_rocm(Impl::cpu, plain);
  const std::int64_t T = 2, row = 8 * 128 * T;
  const Buffer poison = poisoned(call.out.size());
  for (std::int64_t s = 0; s < call.c.S; ++s) {
    CAPTURE(s);
    const std::int64_t r = call.row_of[s];
    if (r >= 0) {
      CHECK(std::memcmp(call.out.data() + r * row, plain.out.data() + s * plain.out_pitch * T,
                        static_cast<std::size_t>(row)) == 0);
    }
    // Workspaces: a skipped sequence's entries untouched.
    const std::int64_t stats = 8 * call.c.ws_pitch * 4;
    const bool same = std::memcmp(call.c.exp_sums.data() + s * stats,
                                  exp_before.data() + s * stats, static_cast<std::size_t>(stats)) == 0;
    CHECK(same == (r < 0));
    const std::int64_t tmp = 8 * call.c.partitions * 128 * T;
    CHECK((std::memcmp(call.c.tmp_out.data() + s * tmp, tmp_before.data() + s * tmp,
                       static_cast<std::size_t>(tmp)) == 0) == (r < 0));
  }
  for (std::int64_t r : {1, 2, 3, 6}) {  // rows of skipped sequences and of none: untouched
    CHECK(std::memcmp(call.out.data() + r * row, poison.data() + r * row,
                      static_cast<std::size_t>(row)) == 0);
  }
}

TEST_CASE("paged_attention_rocm CPU: fp8_out_scale writes e4m3(out / scale), saturating",
          "[paged_attention]") {
  Spec spec = rocm_spec({5, 300}, 24);
  spec.kv_cache_dtype = "fp8_e4m3";
  Call c = make_call(spec);
  run_rocm(Impl::cpu, c);
  const std::vector<double> wide = outputs(c, c.out);
  double largest = 0;
  for (double v : wide) largest = std::max(largest, std::fabs(v));
  // A scale that maps the largest |out| just inside E4M3's ±448, and one far too small.
  for (float out_scale : {static_cast<float>(largest / 440.0), 1e-5f}) {
    CAPTURE(out_scale);
    Call f = moved_to(c, Memory::host);
    Buffer bytes = poisoned(static_cast<std::size_t>(c.S * c.out_pitch));
    Buffer scale = test::floats({out_scale});
    PagedAttentionRocm::Args a = f.rocm();
    a.out = TensorView::strided(bytes.data(), DType::f8_e4m3, {c.S, 8, 128}, {c.out_pitch, 128, 1},
                                Device::cpu);
    a.fp8_out_scale = TensorView::contiguous(scale.data(), DType::f32, {1}, Device::cpu);
    run<PagedAttentionRocm>(Impl::cpu, a);
    std::vector<double> decoded;
    bool saturated = false;
    for (std::int64_t s = 0; s < c.S; ++s) {
      for (std::int64_t i = 0; i < 8 * 128; ++i) {
        const std::uint8_t b = bytes.data()[s * c.out_pitch + i];
        REQUIRE((b & 0x7F) != 0x7F);  // never NaN
        saturated = saturated || (b & 0x7F) == 0x7E;
        decoded.push_back(static_cast<double>(numerics::fp8_e4m3_to_float(b)) * out_scale);
      }
    }
    if (out_scale > 1e-5f) {  // |out| / scale within E4M3's range: one e4m3 rounding
      CHECK(relative(decoded, wide) <= std::ldexp(1.0, -4) + unit_roundoff(spec.dtype));
    } else {  // |out| / scale beyond 448: clamped to ±448, not NaN
      CHECK(saturated);
      for (std::size_t i = 0; i < wide.size(); ++i) {
        if (std::fabs(wide[i]) / out_scale > 500) {
          CHECK(std::fabs(decoded[i]) == Approx(448.0 * out_scale));
        }
      }
    }
  }
}

// Rules: each broken alone in a valid rocm call; the message names the argument and what was
// expected; nothing written.
struct ValidRocmCall {
  Call c;
  PagedAttentionRocm::Args a;
  Buffer out_before, tmp_before, exp_before, max_before;

  ValidRocmCall() {
    Spec spec = rocm_spec({5, 20}, 25);
    spec.head_size = 64;
    spec.extra_max = 3;
    c = make_call(spec);
    a = c.rocm();
    out_before = copy_to(Memory::host, c.out);
    tmp_before = copy_to(Memory::host, c.tmp_out);
    exp_before = copy_to(Memory::host, c.exp_sums);
    max_before = copy_to(Memory::host, c.max_logits);
  }
  void call() const { run<PagedAttentionRocm>(Impl::cpu, a); }
  bool nothing_written() const {
    return test::same_bytes(c.out, out_before, out_before.size()) &&
           test::same_bytes(c.tmp_out, tmp_before, tmp_before.size()) &&
           test::same_bytes(c.exp_sums, exp_before, exp_before.size()) &&
           test::same_bytes(c.max_logits, max_before, max_before.size());
  }
};

TEST_CASE("paged_attention_rocm rejects what its kernel does not support, naming the argument",
          "[paged_attention]") {
  {
    ValidRocmCall valid;
    CHECK_NOTHROW(valid.call());
    CHECK_FALSE(valid.nothing_written());
  }
  const auto rejected = [](auto edit, const std::string& text) {
    ValidRocmCall call;
    edit(call.a);
    CHECK_REJECTED(call, text);
  };
  using Args = PagedAttentionRocm::Args;
  rejected([](Args& a) { a.query.shape[2] = 32; a.out.shape[2] = 32; },
           "query.size(2) (head_size): expected 64 or 128 (the head sizes of vLLM's ROCm kernel, "
           "which fails with \"Unsupported head size\" otherwise), got 32");
  rejected([](Args& a) { a.query.shape[2] = 256; a.out.shape[2] = 256; },
           "query.size(2) (head_size): expected 64 or 128");
  rejected([](Args& a) { a.block_size = 8; },
           "block_size: expected 16 or 32 (the block sizes of vLLM's ROCm kernel");
  rejected([](Args& a) { a.query.dtype = DType::f32; a.out.dtype = DType::f32; },
           "query: expected dtype in {f16, bf16}, got f32");
  rejected([](Args& a) { a.kv_cache_dtype = "fp8_e5m2"; },
           "kv_cache_dtype: expected \"auto\", \"fp8\" or \"fp8_e4m3\"");
  rejected([](Args& a) { a.kv_cache_dtype = "bfloat16"; }, "kv_cache_dtype: expected \"auto\"");
  rejected([](Args& a) {  // 34 query heads over 2 kv heads: 17 each
             a.query.shape[1] = 34, a.out.shape[1] = 34;
             a.query.strides[0] = 34 * 64, a.out.strides[0] = 34 * 64;
           },
           "num_kv_heads: expected num_heads / num_kv_heads between 1 and 16");
  rejected([](Args& a) { a.max_seq_len = 131073; },
           "max_seq_len: expected at most 131072 (512 partitions of 256 tokens");
  rejected([](Args& a) { a.mfma_type = "bf16"; }, "mfma_type: expected \"f16\" or \"fp8\"");
  rejected([](Args& a) { a.use_interleaved_v_cache = true; },
           "use_interleaved_v_cache: expected False");
  rejected([](Args& a) { a.max_seq_len = 257; },
           "exp_sum.size(2): expected at least ceil(max_seq_len / 256) = 2 partitions");
  rejected([](Args& a) { a.tmp_out.shape[2] = 2; }, "tmp_out.size(2): expected 1");
  rejected([](Args& a) { a.out.dtype = DType::f8_e4m3; }, "out: expected dtype bf16");
  rejected([](Args& a) { a.fp8_out_scale = a.k_scale; },
           "out: expected dtype f8_e4m3 (fp8 E4M3) because fp8_out_scale is given, got bf16");
  rejected([](Args& a) { a.out.dtype = DType::f8_e4m3; a.fp8_out_scale = a.seq_lens; },
           "fp8_out_scale: expected dtype f32");
  rejected([](Args& a) { a.query_start_loc = a.seq_lens; },  // 2 entries: 1 sequence
           "exp_sum.size(0): expected 1 (num_seqs = query_start_loc.size(0) - 1)");
  rejected([](Args& a) { a.query_start_loc = a.block_tables; },
           "query_start_loc: expected [num_seqs + 1]");
  rejected([](Args& a) { a.seq_lens.dtype = DType::i64; }, "seq_lens: expected dtype i32");
  // mfma_type "fp8" is accepted: the same math on NVIDIA.
  ValidRocmCall fp8_mfma;
  fp8_mfma.a.mfma_type = "fp8";
  CHECK_NOTHROW(fp8_mfma.call());
}

TEST_CASE("paged_attention_rocm rejects a bad query_start_loc, naming the entry",
          "[paged_attention]") {
  struct Bad {
    StartLocCall s;
    Buffer out_before = copy_to(Memory::host, s.out);
    void call() const { run<PagedAttentionRocm>(Impl::cpu, s.args()); }
    bool nothing_written() const { return test::same_bytes(s.out, out_before, out_before.size()); }
  };
  const auto rejected = [](std::vector<std::int32_t> starts, const std::string& text) {
    Bad bad;
    std::memcpy(bad.s.starts.data(), starts.data(), 24);
    CHECK_REJECTED(bad, text);
  };
  rejected({0, 1, 4, 3, 5, 6}, "query_start_loc[3] = 3: expected query_start_loc to never "
                               "decrease, query_start_loc[2] = 4");
  rejected({0, 1, 4, 5, 5, 8}, "query_start_loc[5] = 8: expected at most query.size(0) = 7");
  rejected({-1, 1, 4, 5, 5, 6}, "query_start_loc[0] = -1: expected a query row, >= 0");
}

// ---------------------------------------------------------------------------------------------
// GPU: paged_attention_rocm's naive and optimized kernels against its CPU reference.

// Runs a rocm call on the CPU and with both kernels: out and the workspaces each sequence has
// within the tolerance, every other byte untouched.
void three_way_rocm(const Spec& spec) {
  INFO(describe(spec));
  const Call host = make_call(spec);
  Call reference = moved_to(host, Memory::host);
  run_rocm(Impl::cpu, reference);
  const std::vector<double> want = outputs(reference, reference.out);
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    CAPTURE(impl_name(impl));
    Call d = moved_to(host, Memory::device);
    REQUIRE_NOTHROW(run_rocm(impl, d));
    PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
    const double tolerance = attention_tolerance(spec.dtype, d.max_seq_len, spec.head_size);
    CHECK(relative(outputs(d, d.out), want) <= tolerance);
    const Buffer exp_sums = copy_to(Memory::host, d.exp_sums);
    std::vector<double> got, expected;
    bool untouched = true;
    for (std::int64_t s = 0; s < d.S; ++s) {
      for (std::int64_t h = 0; h < spec.num_heads; ++h) {
        for (std::int64_t p = 0; p < d.ws_pitch; ++p) {
          const std::int64_t i = (s * spec.num_heads + h) * d.ws_pitch + p;
          float e[2];
          std::memcpy(&e[0], exp_sums.data() + 4 * i, 4);
          std::memcpy(&e[1], reference.exp_sums.data() + 4 * i, 4);
          if (p < (spec.lengths[s] + 255) / 256) {
            got.push_back(e[0]);
            expected.push_back(e[1]);
          } else {
            untouched = untouched && std::memcmp(&e[0], &e[1], 4) == 0;
          }
        }
      }
    }
    CHECK(untouched);
    CHECK(relative(got, expected) <= attention_tolerance(DType::f32, d.max_seq_len, spec.head_size));
  }
}

TEST_CASE("paged_attention_rocm GPU: naive and optimized agree with the CPU reference",
          "[paged_attention][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  std::uint64_t seed = 300;
  int i = 0;
  for (DType dtype : {DType::f16, DType::bf16}) {
    for (const char* kind : {"auto", "fp8", "fp8_e4m3"}) {
      for (std::int64_t head_size : {64, 128}) {
        for (std::int64_t block_size : {16, 32}) {
          ++i;
          Spec spec = rocm_spec({1, 15, 255, 256, 257, 1300}, ++seed);
          const std::int64_t ratios[] = {1, 4, 5, 16};
          spec.num_kv_heads = 1 + i % 2;
          spec.num_heads = spec.num_kv_heads * ratios[i % 4];
          spec.dtype = dtype, spec.kv_cache_dtype = kind;
          spec.head_size = head_size, spec.block_size = block_size;
          spec.alibi = i % 3 == 1;
          spec.strided = i % 5 == 2;
          spec.extra_max = i % 4 == 0 ? 600 : 0;
          three_way_rocm(spec);
        }
      }
    }
  }
  {  // a long sequence: many partitions merged
    Spec spec = rocm_spec({20000, 3}, 399);
    three_way_rocm(spec);
  }
}

TEST_CASE("paged_attention_rocm GPU: query_start_loc and the fp8 output, as the CPU reference",
          "[paged_attention][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  StartLocCall host;
  run<PagedAttentionRocm>(Impl::cpu, host.args());
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    CAPTURE(impl_name(impl));
    StartLocCall call;
    Call d = moved_to(call.c, Memory::device);
    Buffer query = copy_to(Memory::device, call.query), out = copy_to(Memory::device, call.out);
    Buffer starts = copy_to(Memory::device, call.starts);
    PagedAttentionRocm::Args a = d.rocm();
    a.query = TensorView::contiguous(query.data(), DType::bf16, {7, 8, 128}, Device::cuda);
    a.out = TensorView::contiguous(out.data(), DType::bf16, {7, 8, 128}, Device::cuda);
    a.query_start_loc = TensorView::contiguous(starts.data(), DType::i32, {6}, Device::cuda);
    REQUIRE_NOTHROW(run<PagedAttentionRocm>(impl, a));
    PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
    const Buffer got = copy_to(Memory::host, out);
    const std::int64_t row = 8 * 128 * 2;
    for (std::int64_t r = 0; r < 7; ++r) {
      CAPTURE(r);
      const bool decoded = r == 0 || r == 4 || r == 5;
      std::vector<double> g, w;
      for (std::int64_t k = 0; k < 8 * 128; ++k) {
        g.push_back(element(got.data() + r * row + 2 * k, DType::bf16));
        w.push_back(element(host.out.data() + r * row + 2 * k, DType::bf16));
      }
      if (decoded) {
        CHECK(relative(g, w) <= attention_tolerance(DType::bf16, 513 + 0, 128));
      } else {
        CHECK(std::memcmp(got.data() + r * row, host.out.data() + r * row,
                          static_cast<std::size_t>(row)) == 0);
      }
    }
    // fp8 output: within one e4m3 rounding of the CPU reference's bytes.
    Buffer bytes(Memory::device, static_cast<std::size_t>(d.S * d.out_pitch));
    bytes.fill(0xFF);
    Buffer scale = copy_to(Memory::device, test::floats({1.f / 256.f}));
    PagedAttentionRocm::Args f = d.rocm();
    f.out = TensorView::strided(bytes.data(), DType::f8_e4m3, {d.S, 8, 128}, {d.out_pitch, 128, 1},
                                Device::cuda);
    f.fp8_out_scale = TensorView::contiguous(scale.data(), DType::f32, {1}, Device::cuda);
    REQUIRE_NOTHROW(run<PagedAttentionRocm>(impl, f));
    Call c = moved_to(call.c, Memory::host);
    Buffer want_bytes = poisoned(static_cast<std::size_t>(c.S * c.out_pitch));
    Buffer host_scale = test::floats({1.f / 256.f});
    PagedAttentionRocm::Args fc = c.rocm();
    fc.out = TensorView::strided(want_bytes.data(), DType::f8_e4m3, {c.S, 8, 128},
                                 {c.out_pitch, 128, 1}, Device::cpu);
    fc.fp8_out_scale = TensorView::contiguous(host_scale.data(), DType::f32, {1}, Device::cpu);
    run<PagedAttentionRocm>(Impl::cpu, fc);
    const Buffer got_bytes = copy_to(Memory::host, bytes);
    std::vector<double> g, w;
    for (std::int64_t s = 0; s < c.S; ++s) {
      for (std::int64_t k = 0; k < 8 * 128; ++k) {
        g.push_back(numerics::fp8_e4m3_to_float(got_bytes.data()[s * c.out_pitch + k]));
        w.push_back(numerics::fp8_e4m3_to_float(want_bytes.data()[s * c.out_pitch + k]));
      }
    }
    CHECK(relative(g, w) <= std::ldexp(1.0, -4));
  }
}

}  // namespace
