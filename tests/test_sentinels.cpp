// Padding and sentinel invariants of every op that takes slots, block tables or positions,
// driven by the op registry (no per-op code): a new op with a `slot_mapping`, a `block_table`
// (`block_tables`) or `positions` argument is covered when its card is registered.
//
// Upstream's silent failures that these invariants rule out: a -1 padding slot turned into the
// last slot (Python floor division), slot -1 sent below the cache base (signed division), slot
// 0 poisoned with NaN and spread by 0 × NaN. The invariants:
//  1. Every slot negative (-1, -2, large negative values): the cache keeps every byte.
//  2. Slot 0 and the last slot behave like any other: tokens are independent. For a token t,
//     the call with t alone (every other slot -1) changes some output bytes (from the call with
//     every slot negative); the full call has
//     the same bytes there, and the call with t padded leaves exactly those bytes alone and
//     matches the full call everywhere else. Checked for the token at slot 0, the one at the
//     last slot (found by asking the op which slots it accepts) and a token in the middle.
//  3. A padded token's inputs are never read: its rows of every per-token float input (key,
//     value, kv_c, ...) are NaN in the padded call, and the outputs are those without NaN.
//  4. What no index names never reaches an output: the cache blocks that no block_table entry
//     (or block_mapping source) names, and the cos_sin_cache rows that no position names, are
//     filled with NaN bytes; the outputs are those of the clean call.
// On a GPU ([sentinels][gpu]) every call of 1–4 also runs on the naive and the optimized
// kernels, which must agree with the CPU reference byte for byte (or under the op's rule).
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "fuzz/device_check.h"
#include "fuzz/fuzz_call.h"
#include "fuzz/valid_calls.h"
#include "pagedkv/error.h"
#include "pagedkv/registry.h"
#include "support.h"

namespace {

using pagedkv::ArgKind;
using pagedkv::DType;
using pagedkv::Impl;
using pagedkv::OpEntry;
using pagedkv::TensorView;
using pagedkv::fuzz::CallSpec;
using pagedkv::fuzz::FuzzCall;
using Bytes = std::vector<std::uint8_t>;

// Registry calls drawn per op (each at a small random size, as the fuzzer draws them).
constexpr int kCasesPerOp = 12;

int argument_index(const OpEntry& op, const std::string& name) {
  for (std::size_t i = 0; i < op.arguments.size(); ++i) {
    if (op.arguments[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

bool is_output(ArgKind kind) { return is_written(kind); }
bool is_cache(const std::string& name) { return name.find("cache") != std::string::npos; }

// Calls fn(byte offset) for every element of a host view, in row-major logical order.
void each_element(const TensorView& v, const std::function<void(std::int64_t)>& fn) {
  pagedkv::fuzz::for_each_element(v.ndim, v.shape, v.strides, pagedkv::dtype_size(v.dtype), fn);
}

// The integers of an i32 / i64 host view, in logical order.
std::vector<std::int64_t> read_ints(const TensorView& v) {
  std::vector<std::int64_t> values;
  const auto* base = static_cast<const std::uint8_t*>(v.data);
  each_element(v, [&](std::int64_t at) {
    if (v.dtype == DType::i64) {
      std::int64_t x;
      std::memcpy(&x, base + at, 8);
      values.push_back(x);
    } else {
      std::int32_t x;
      std::memcpy(&x, base + at, 4);
      values.push_back(x);
    }
  });
  return values;
}

void write_ints(const TensorView& v, const std::vector<std::int64_t>& values) {
  auto* base = static_cast<std::uint8_t*>(v.data);
  std::size_t n = 0;
  each_element(v, [&](std::int64_t at) {
    const std::int64_t x = values[n++];
    if (v.dtype == DType::i64) {
      std::memcpy(base + at, &x, 8);
    } else {
      const auto narrow = static_cast<std::int32_t>(x);
      std::memcpy(base + at, &narrow, 4);
    }
  });
}

// Fills the rows `row` (index along dimension 0) of a host view for which poison(row) holds with
// 0xFF bytes: NaN in every float format (f32, f16, bf16, fp8 e4m3 / e5m2, an fp8_ds_mla entry's
// f32 scales), so a value read from there and used shows in the output.
void poison_rows(const TensorView& v, const std::function<bool(std::int64_t)>& poison) {
  if (v.ndim == 0) return;
  const std::int64_t element = pagedkv::dtype_size(v.dtype);
  auto* base = static_cast<std::uint8_t*>(v.data);
  std::array<std::int64_t, pagedkv::kMaxDims> shape{}, strides{};
  for (int d = 1; d < v.ndim; ++d) {
    shape[d - 1] = v.shape[d];
    strides[d - 1] = v.strides[d];
  }
  for (std::int64_t row = 0; row < v.shape[0]; ++row) {
    if (!poison(row)) continue;
    pagedkv::fuzz::for_each_element(v.ndim - 1, shape, strides, element, [&](std::int64_t at) {
      std::memset(base + (row * v.strides[0]) * element + at, 0xFF, element);
    });
  }
}

// One argument's elements' bytes, in logical order, after a run.
Bytes argument_bytes(const CallSpec& spec, const FuzzCall& call, std::size_t i) {
  const pagedkv::fuzz::TensorSpec& t = spec.args[i].tensor;
  Bytes out;
  if (t.absent || call.buffer_of[i] < 0) return out;
  const std::uint8_t* data =
      call.buffers[static_cast<std::size_t>(call.buffer_of[i])].data() + call.origin[i];
  pagedkv::fuzz::for_each_run(t.ndim, t.shape, t.strides, pagedkv::dtype_size(t.dtype),
                              [&](std::int64_t at, std::int64_t bytes) {
                                out.insert(out.end(), data + at, data + at + bytes);
                              });
  return out;
}

// The outputs of one run, split into the cache outputs and the others (an op may also write
// per-token outputs that are not the cache, e.g. the RoPE-fused writer's rotated q_pe and k_pe).
struct Outputs {
  Bytes cache, other;
  Bytes all() const {
    Bytes bytes = cache;
    bytes.insert(bytes.end(), other.begin(), other.end());
    return bytes;
  }
};

class SentinelChecker {
 public:
  SentinelChecker(const OpEntry& op, bool gpu) : op_(op), gpu_(gpu) {}

  int calls = 0;

  // Runs `spec` on the CPU (and on the GPU, compared with the CPU); returns whether the op
  // accepted it, and the outputs.
  bool run(const CallSpec& spec, std::uint64_t seed, Outputs* outputs, const std::string& what) {
    FuzzCall call = pagedkv::fuzz::build(spec, seed);
    try {
      op_.run(Impl::cpu, call.values, nullptr);
    } catch (const pagedkv::InvalidArgument&) {
      return false;
    }
    ++calls;
    if (outputs) {
      *outputs = Outputs{};
      for (std::size_t i = 0; i < spec.args.size(); ++i) {
        if (!spec.args[i].is_tensor || !is_output(op_.arguments[i].kind)) continue;
        Bytes& into = is_cache(op_.arguments[i].name) ? outputs->cache : outputs->other;
        const Bytes bytes = argument_bytes(spec, call, i);
        into.insert(into.end(), bytes.begin(), bytes.end());
      }
    }
    if (gpu_) {
      const std::string disagreement =
          pagedkv::fuzz::device_disagreement(op_, spec, nullptr, call, seed);
      INFO(op_.name << ", " << what << ": " << disagreement);
      CHECK(disagreement.empty());
    }
    return true;
  }

 private:
  const OpEntry& op_;
  bool gpu_;
};

// How many bytes differ (all of them, when the sizes differ): a count, not a dump of both.
std::int64_t differing(const Bytes& a, const Bytes& b) {
  if (a.size() != b.size()) return static_cast<std::int64_t>(std::max(a.size(), b.size()));
  std::int64_t n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
  return n;
}

// The cache outputs' bytes that `alone` changed from `initial`.
std::vector<bool> changed(const Bytes& initial, const Bytes& alone) {
  std::vector<bool> mask(initial.size());
  for (std::size_t b = 0; b < initial.size(); ++b) mask[b] = initial[b] != alone[b];
  return mask;
}

// Registry call number k of `op`, drawn at a small size as the fuzzer draws it; the same call
// every time for the same (op_index, k, salt).
bool draw(const OpEntry& op, std::size_t op_index, int k, std::uint64_t salt,
          pagedkv::fuzz::BaseCall& base, std::uint64_t& seed) {
  pagedkv::fuzz::Rng rng(salt * (op_index + 1) + static_cast<std::uint64_t>(k));
  std::string why;
  if (!pagedkv::fuzz::draw_base_call(op, static_cast<std::size_t>(k), rng, base, why))
    return false;
  seed = rng();
  return true;
}

// Invariants 1–3 for an op with a slot_mapping.
void check_slots(const OpEntry& op, std::size_t op_index, bool gpu) {
  constexpr std::uint64_t kSalt = 0x5e471e1ull;
  const int slot_arg = argument_index(op, "slot_mapping");
  SentinelChecker checker(op, gpu);
  int tried = 0;
  for (int k = 0; k < 4 * kCasesPerOp && tried < kCasesPerOp; ++k) {
    pagedkv::fuzz::BaseCall base;
    std::uint64_t seed = 0;
    if (!draw(op, op_index, k, kSalt, base, seed)) continue;
    const CallSpec& spec = base.spec;
    const TensorView slot_view = spec.args[slot_arg].tensor.source;
    const std::vector<std::int64_t> slots = read_ints(slot_view);
    const auto num_tokens = static_cast<std::int64_t>(slots.size());
    if (num_tokens < 2) continue;  // independence needs two tokens
    ++tried;
    INFO(op.name << ", " << base.point);

    // The last slot the op accepts: the largest s for which the call with token 0 at s (every
    // other token padded) is accepted. Rejection is the op's slot-range check.
    std::vector<std::int64_t> probe(slots.size(), -1);
    std::int64_t lo = 0, hi = std::int64_t{1} << 40;  // lo accepted, hi rejected
    probe[0] = 0;
    write_ints(slot_view, probe);
    REQUIRE(checker.run(spec, seed, nullptr, "token 0 alone at slot 0"));
    while (hi - lo > 1) {
      probe[0] = lo + (hi - lo) / 2;
      write_ints(slot_view, probe);
      (checker.run(spec, seed, nullptr, "probe") ? lo : hi) = probe[0];
    }
    const std::int64_t last_slot = lo;

    // Token 0 at slot 0, the last token at the last slot; another token that had one of these
    // slots is padded instead (slots stay distinct).
    const std::int64_t last_token = num_tokens - 1;
    std::vector<std::int64_t> placed = slots;
    for (std::int64_t t = 1; t < last_token; ++t) {
      if (placed[t] == 0 || placed[t] == last_slot) placed[t] = -1;
    }
    placed[0] = 0;
    placed[last_token] = last_slot;

    // 1. Every slot negative: the cache keeps its bytes.
    Outputs initial, full;
    write_ints(slot_view, placed);
    REQUIRE(checker.run(spec, seed, &full, "full call"));
    const std::int64_t negatives[] = {-1, -2, std::numeric_limits<std::int64_t>::min() / 2,
                                      std::numeric_limits<std::int32_t>::min()};
    std::vector<std::int64_t> padded_all(slots.size());
    for (std::size_t t = 0; t < slots.size(); ++t) padded_all[t] = negatives[t % 4];
    write_ints(slot_view, padded_all);
    REQUIRE(checker.run(spec, seed, &initial, "every slot negative"));
    {
      const FuzzCall untouched = pagedkv::fuzz::build(spec, seed);  // the cache as it was
      Bytes cache;
      for (std::size_t i = 0; i < spec.args.size(); ++i) {
        if (spec.args[i].is_tensor && is_output(op.arguments[i].kind) &&
            is_cache(op.arguments[i].name)) {
          const Bytes bytes = argument_bytes(spec, untouched, i);
          cache.insert(cache.end(), bytes.begin(), bytes.end());
        }
      }
      INFO("every slot negative: the cache keeps every byte");
      CHECK(differing(initial.cache, cache) == 0);
    }

    // 2 and 3. The token at slot 0, the one at the last slot and one in between.
    for (std::int64_t t : std::set<std::int64_t>{0, last_token, num_tokens / 2}) {
      if (placed[t] < 0) continue;
      INFO("token " << t << " at slot " << placed[t] << " (last slot " << last_slot << ")");
      std::vector<std::int64_t> only(slots.size(), -1), without = placed;
      only[t] = placed[t];
      without[t] = -1;
      Outputs alone, padded, padded_nan;
      write_ints(slot_view, only);
      REQUIRE(checker.run(spec, seed, &alone, "token alone"));
      write_ints(slot_view, without);
      REQUIRE(checker.run(spec, seed, &padded, "token padded"));
      // Count, byte by byte (one assertion per byte would be millions), over every output:
      // "initial" is the run with every slot negative.
      const Bytes before = initial.all(), with_all = full.all(), with_t = alone.all(),
                  without_t = padded.all();
      const std::vector<bool> mine = changed(before, with_t);
      std::int64_t wrote = 0, depends = 0, padded_wrote = 0, others_changed = 0;
      for (std::size_t b = 0; b < mine.size(); ++b) {
        if (mine[b]) {
          ++wrote;
          depends += with_all[b] != with_t[b];        // must not depend on the others
          padded_wrote += without_t[b] != before[b];  // padded, it writes none
        } else {
          others_changed += without_t[b] != with_all[b];  // and nothing else changes
        }
      }
      CHECK(depends == 0);
      CHECK(padded_wrote == 0);
      CHECK(others_changed == 0);
      CHECK(wrote > 0);  // a token with a valid slot writes something
      // 3. A fresh copy of the case with the padded token's rows of every float input NaN.
      pagedkv::fuzz::BaseCall nan_base;
      std::uint64_t nan_seed = 0;
      REQUIRE(draw(op, op_index, k, kSalt, nan_base, nan_seed));
      const CallSpec& nan_spec = nan_base.spec;
      write_ints(nan_spec.args[slot_arg].tensor.source, without);
      for (std::size_t i = 0; i < nan_spec.args.size(); ++i) {
        const pagedkv::fuzz::TensorSpec& ts = nan_spec.args[i].tensor;
        // Per-token inputs: float rows, one per token (not a scale, not a cache or table).
        if (!nan_spec.args[i].is_tensor || ts.absent || op.arguments[i].kind != ArgKind::input ||
            ts.source.ndim < 2 || ts.source.shape[0] < num_tokens ||
            !pagedkv::is_activation_dtype(ts.dtype) || is_cache(op.arguments[i].name))
          continue;
        poison_rows(ts.source, [t](std::int64_t row) { return row == t; });
      }
      REQUIRE(checker.run(nan_spec, nan_seed, &padded_nan, "token padded, its inputs NaN"));
      CHECK(differing(padded_nan.all(), padded.all()) == 0);
    }
  }
  std::printf("%-38s %3d cases %5d calls  (slots)\n", op.name.c_str(), tried, checker.calls);
  CHECK(tried > 0);
}

// Invariant 4 for an op with a block_table, a block_mapping or positions: the table rows that
// no index names are NaN; the outputs are the clean call's.
void check_unnamed_rows(const OpEntry& op, std::size_t op_index, bool gpu, const std::string& index,
                        const std::string& table) {
  const int index_arg = argument_index(op, index);
  const int table_arg = argument_index(op, table);
  SentinelChecker checker(op, gpu);
  int tried = 0;
  for (int k = 0; k < kCasesPerOp; ++k) {
    pagedkv::fuzz::BaseCall base;
    std::uint64_t seed = 0;
    if (!draw(op, op_index, k, 0x7ab1eull, base, seed)) continue;
    const CallSpec& spec = base.spec;
    INFO(op.name << ", " << base.point);
    Outputs clean, poisoned;
    if (!checker.run(spec, seed, &clean, "clean")) continue;
    std::vector<std::int64_t> named_values = read_ints(spec.args[index_arg].tensor.source);
    if (index == "block_mapping") {  // [n, 2] pairs: the sources are the even elements
      std::vector<std::int64_t> sources;
      for (std::size_t e = 0; e < named_values.size(); e += 2) sources.push_back(named_values[e]);
      named_values = sources;
    }
    const std::set<std::int64_t> named(named_values.begin(), named_values.end());
    const TensorView rows = spec.args[table_arg].tensor.source;
    if (rows.ndim == 0 || static_cast<std::int64_t>(named.size()) >= rows.shape[0]) continue;
    ++tried;
    poison_rows(rows, [&](std::int64_t row) { return named.count(row) == 0; });
    REQUIRE(checker.run(spec, seed, &poisoned, "unnamed rows NaN"));
    CHECK(differing(poisoned.cache, clean.cache) == 0);
    CHECK(differing(poisoned.other, clean.other) == 0);
  }
  std::printf("%-38s %3d cases %5d calls  (%s rows no %s names)\n", op.name.c_str(), tried,
              checker.calls, table.c_str(), index.c_str());
}

void check_every_op(bool gpu) {
  const auto& registry = pagedkv::op_registry();
  int ops = 0;
  for (std::size_t i = 0; i < registry.size(); ++i) {
    const OpEntry& op = registry[i];
    if (argument_index(op, "slot_mapping") >= 0) {
      check_slots(op, i, gpu);
      ++ops;
    }
    if (argument_index(op, "positions") >= 0 && argument_index(op, "cos_sin_cache") >= 0) {
      check_unnamed_rows(op, i, gpu, "positions", "cos_sin_cache");
      ++ops;
    }
    if (argument_index(op, "block_mapping") >= 0 && argument_index(op, "src") >= 0) {
      check_unnamed_rows(op, i, gpu, "block_mapping", "src");
      ++ops;
    }
    // The gathers' block_table, paged attention's block_tables (vLLM's names).
    for (const char* table : {"block_table", "block_tables"}) {
      if (argument_index(op, table) < 0) continue;
      for (const pagedkv::ArgInfo& arg : op.arguments) {
        if (arg.kind == ArgKind::input && is_cache(arg.name)) {
          check_unnamed_rows(op, i, gpu, table, arg.name);
          ++ops;
        }
      }
    }
  }
  CHECK(ops >= 13);  // 5 slot writers, 4 gathers, swap_blocks, RoPE positions, paged attention
}

}  // namespace

TEST_CASE("sentinels: padding slots, slot 0 and the last slot, unnamed rows (CPU)",
          "[sentinels]") {
  check_every_op(false);
}

TEST_CASE("sentinels: the same on the naive and optimized kernels", "[sentinels][gpu]") {
  PAGEDKV_REQUIRE_GPU();
  check_every_op(true);
}
