// What the fuzzer (tests/fuzz/) found while it was built, each pinned by a focused test:
//
// 1. No op checked that its outputs keep clear of its other arguments. An output placed over an
//    index input (a block table, slot mapping, sequence bounds) was accepted: the CPU reference
//    then overwrote the indices that validation had just checked and followed them out of
//    bounds (a segmentation fault in the gathers and in the rope-fused cache write). The rule
//    now lives once, derived from the op's argument list (check_outputs_apart in op.h, with
//    share_memory in core/memory_overlap.cpp), so every op has it; the layouts that interleave
//    on purpose (the key and value halves of one joint cache) stay accepted.
// 2. concat_and_cache_mla_rope_fused accepted q_pe and k_pe (rotated in place) with a stride
//    of 0, so several elements shared one address and were rotated several times.
#include <catch2/catch.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "fuzz/fuzz_call.h"
#include "fuzz/valid_calls.h"
#include "pagedkv/error.h"
#include "pagedkv/memory_overlap.h"
#include "pagedkv/registry.h"
#include "support.h"

using pagedkv::Device;
using pagedkv::DType;
using pagedkv::TensorView;

namespace {

// The bytes a view covers, listed one by one (the obviously right answer).
std::set<std::uintptr_t> bytes_of(const TensorView& view) {
  std::set<std::uintptr_t> bytes;
  const std::int64_t element = view.element_size();
  pagedkv::fuzz::for_each_element(
      view.ndim, view.shape, view.strides, element, [&](std::int64_t offset) {
        for (std::int64_t b = 0; b < element; ++b)
          bytes.insert(reinterpret_cast<std::uintptr_t>(view.data) + offset + b);
      });
  return bytes;
}

bool brute_force_share(const TensorView& a, const TensorView& b) {
  const std::set<std::uintptr_t> in_a = bytes_of(a);
  for (std::uintptr_t byte : bytes_of(b)) {
    if (in_a.count(byte)) return true;
  }
  return false;
}

// A valid registry call of `name` (its standard point number `seed`, shrunk from `seed`).
pagedkv::fuzz::BaseCall registry_call(const std::string& name, std::uint64_t seed) {
  pagedkv::fuzz::Rng rng(seed);
  pagedkv::fuzz::BaseCall base;
  std::string why;
  for (int attempt = 0; attempt < 16; ++attempt) {
    if (pagedkv::fuzz::draw_base_call(pagedkv::find_op(name), seed + attempt, rng, base, why))
      return base;
  }
  FAIL("no registry call of " << name << ": " << why);
  return base;
}

bool is_output(pagedkv::ArgKind kind) { return pagedkv::is_written(kind); }

}  // namespace

TEST_CASE("fuzz findings: share_memory tells interleaved views apart exactly", "[fuzz_findings]") {
  std::vector<std::uint8_t> memory(4096);
  void* base = memory.data();
  auto at = [&](std::int64_t byte) { return static_cast<void*>(memory.data() + byte); };
  // The key and value halves of a joint cache [blocks 4, 2, slots 2, heads 2, dim 8] bf16.
  const TensorView key = TensorView::strided(base, DType::bf16, {4, 2, 2, 8}, {64, 16, 8, 1});
  TensorView value = key;
  value.data = at(32 * 2);
  CHECK_FALSE(pagedkv::share_memory(key, value));
  value.data = at(31 * 2);  // one element early: the last element of a key block
  CHECK(pagedkv::share_memory(key, value));
  // kv_c and k_pe as slices of one [T, 576] row: apart, unless k_pe starts one element early.
  const TensorView kv_c = TensorView::strided(base, DType::bf16, {3, 512}, {576, 1});
  TensorView k_pe = TensorView::strided(at(512 * 2), DType::bf16, {3, 64}, {576, 1});
  CHECK_FALSE(pagedkv::share_memory(kv_c, k_pe));
  k_pe.data = at(511 * 2);
  CHECK(pagedkv::share_memory(kv_c, k_pe));
  // Another device's memory, or no elements, shares nothing.
  TensorView on_gpu = kv_c;
  on_gpu.device = Device::cuda;
  CHECK_FALSE(pagedkv::share_memory(kv_c, on_gpu));
  CHECK_FALSE(
      pagedkv::share_memory(kv_c, TensorView::strided(base, DType::bf16, {0, 512}, {576, 1})));

  SECTION("random small views agree with listing every byte") {
    std::mt19937_64 rng(14);
    auto random_view = [&]() {
      TensorView v;
      v.dtype = (rng() % 2) ? DType::bf16 : DType::f32;
      v.ndim = 1 + static_cast<int>(rng() % 3);
      std::int64_t low = 0;
      for (int d = 0; d < v.ndim; ++d) {
        v.shape[d] = 1 + static_cast<std::int64_t>(rng() % 4);
        v.strides[d] = static_cast<std::int64_t>(rng() % 24) - 6;  // negative and zero too
        if (v.strides[d] < 0) low += (v.shape[d] - 1) * v.strides[d];
      }
      v.data = at((-low + static_cast<std::int64_t>(rng() % 64)) * v.element_size());
      return v;
    };
    for (int trial = 0; trial < 20000; ++trial) {
      const TensorView a = random_view(), b = random_view();
      INFO("a = " << a.describe() << " at " << a.data << ", b = " << b.describe() << " at "
                  << b.data);
      REQUIRE(pagedkv::share_memory(a, b) == brute_force_share(a, b));
    }
  }
}

TEST_CASE("fuzz findings: every op rejects an output placed over one of its integer inputs",
          "[fuzz_findings]") {
  for (const pagedkv::OpEntry& op : pagedkv::op_registry()) {
    const pagedkv::fuzz::BaseCall base = registry_call(op.name, 20261206);
    int tried = 0;
    for (std::size_t o = 0; o < base.spec.args.size(); ++o) {
      const auto& out = base.spec.args[o];
      if (!out.is_tensor || out.tensor.absent || !is_output(op.arguments[o].kind)) continue;
      for (std::size_t j = 0; j < base.spec.args.size(); ++j) {
        const auto& index = base.spec.args[j];
        if (j == o || !index.is_tensor || index.tensor.absent || is_output(op.arguments[j].kind))
          continue;
        if (index.tensor.dtype != DType::i32 && index.tensor.dtype != DType::i64) continue;
        if (index.tensor.source.numel() == 0 || out.tensor.source.numel() == 0) continue;
        pagedkv::fuzz::CallSpec spec = base.spec;
        spec.args[o].tensor.shares_memory_with = static_cast<int>(j);
        pagedkv::fuzz::FuzzCall call = pagedkv::fuzz::build(spec, 7);
        const std::vector<std::uint8_t> before = call.snapshot();
        INFO(op.name << ": " << op.arguments[o].name << " over " << op.arguments[j].name << " ("
                     << base.point << ")");
        CHECK_THROWS_WITH(op.run(pagedkv::Impl::cpu, call.values, nullptr),
                          Catch::Matchers::Contains(op.arguments[o].name) &&
                              Catch::Matchers::Contains(op.arguments[j].name));
        CHECK(call.snapshot() == before);
        ++tried;
      }
    }
    INFO(op.name << ": calls tried " << tried);
    SUCCEED();
  }
}

TEST_CASE(
    "fuzz findings: concat_and_cache_mla_rope_fused rejects q_pe or k_pe with overlapping "
    "elements",
    "[fuzz_findings]") {
  // A call of two tokens or more (a stride of 0 over one token overlaps nothing).
  pagedkv::fuzz::BaseCall base;
  for (std::uint64_t seed = 5; base.spec.op == nullptr || base.spec.args[1].tensor.shape[0] < 2;
       ++seed) {
    REQUIRE(seed < 1000);
    base = registry_call("concat_and_cache_mla_rope_fused", seed);
  }
  const pagedkv::OpEntry& op = *base.spec.op;
  REQUIRE(op.arguments[1].name == "q_pe");
  for (const char* name : {"q_pe", "k_pe"}) {
    pagedkv::fuzz::CallSpec spec = base.spec;
    for (std::size_t i = 0; i < op.arguments.size(); ++i) {
      if (op.arguments[i].name == name)
        spec.args[i].tensor.strides[0] = 0;  // every token's row at one address
    }
    pagedkv::fuzz::FuzzCall call = pagedkv::fuzz::build(spec, 3);
    const std::vector<std::uint8_t> before = call.snapshot();
    INFO(name << " (" << base.point << ")");
    CHECK_THROWS_AS(op.run(pagedkv::Impl::cpu, call.values, nullptr), pagedkv::InvalidArgument);
    CHECK_THROWS_WITH(op.run(pagedkv::Impl::cpu, call.values, nullptr),
                      Catch::Matchers::Contains(std::string(name) + ": strides"));
    CHECK(call.snapshot() == before);
  }
}
