// The op registry: every entry complete and unique, its sources real files, its workload points
// the standard ones, its cases buildable, its CPU reference runnable; on a GPU, the naive and
// optimized versions agree with the CPU reference (under the op's rule) on one quick point of
// every op.
#include <algorithm>
#include <filesystem>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "pagedkv/error.h"
#include "pagedkv/registry.h"
#include "support.h"

#ifndef PAGEDKV_SOURCE_DIR
#error "PAGEDKV_SOURCE_DIR (the repository root) must be defined by the build"
#endif

namespace {

using pagedkv::OpEntry;
using pagedkv::WorkloadPoint;

std::vector<WorkloadPoint> all_points(const OpEntry& op, bool quick) {
  std::vector<WorkloadPoint> points;
  for (const std::string& workload : op.workloads)
    for (const WorkloadPoint& p : op.points(workload, quick)) points.push_back(p);
  return points;
}

std::set<std::int64_t> sizes_of(const std::vector<WorkloadPoint>& points) {
  std::set<std::int64_t> sizes;
  for (const auto& p : points) sizes.insert(p.size);
  return sizes;
}

std::set<std::string> variants_of(const std::vector<WorkloadPoint>& points) {
  std::set<std::string> variants;
  for (const auto& p : points) variants.insert(p.variant);
  return variants;
}

}  // namespace

TEST_CASE("registry: every entry is complete", "[registry]") {
  const auto& ops = pagedkv::op_registry();
  REQUIRE(ops.size() >= 3);
  for (const OpEntry& op : ops) {
    CAPTURE(op.name);
    for (const std::string* field :
         {&op.name, &op.family, &op.role, &op.upstream, &op.cpu_source, &op.naive_source,
          &op.optimized_source, &op.byte_model, &op.agreement_rule})
      CHECK_FALSE(field->empty());
    CHECK_FALSE(op.workloads.empty());
    CHECK_FALSE(op.workload_notes.empty());
    REQUIRE(op.points != nullptr);
    REQUIRE(op.make_case != nullptr);
    // Copy, quantize and penalty ops are bit-exact; the activations state their ulp bound;
    // reductions state their tolerance rule.
    CHECK((op.agreement_rule.rfind("bit-exact", 0) == 0 ||
           op.agreement_rule.rfind("ulp-bounded", 0) == 0 ||
           op.agreement_rule.rfind("norm-wise relative error", 0) == 0));
    for (const std::string& workload : op.workloads) {
      CAPTURE(workload);
      CHECK_FALSE(op.points(workload, false).empty());
      CHECK_FALSE(op.points(workload, true).empty());
    }
    CHECK(op.points("W99", false).empty());  // a workload the op does not run
  }
}

TEST_CASE("registry: names are unique and find_op finds each", "[registry]") {
  std::set<std::string> names;
  for (const OpEntry& op : pagedkv::op_registry()) {
    CHECK(names.insert(op.name).second);
    CHECK(&pagedkv::find_op(op.name) == &op);
  }
  CHECK(names.count("swap_blocks") == 1);
  CHECK(names.count("reshape_and_cache") == 1);
  CHECK(names.count("reshape_and_cache_flash") == 1);
  CHECK(names.count("rms_norm") == 1);
  CHECK(names.count("fused_add_rms_norm") == 1);
  CHECK(names.count("concat_and_cache_mla") == 1);
  CHECK(names.count("indexer_k_quant_and_cache") == 1);
  CHECK(names.count("cp_gather_indexer_k_quant_cache") == 1);
  CHECK(names.count("concat_and_cache_mla_rope_fused") == 1);
  CHECK(names.count("convert_fp8") == 1);
  CHECK(names.count("cp_gather_cache") == 1);
  CHECK(names.count("gather_and_maybe_dequant_cache") == 1);
  CHECK(names.count("cp_gather_and_upconvert_fp8_kv_cache") == 1);
  CHECK(names.count("quantize_and_insert_k_cache") == 1);
  CHECK(names.count("dequantize_and_gather_k_cache") == 1);
  CHECK(names.count("merge_attn_states") == 1);
}

TEST_CASE("registry: find_op rejects an unknown name and lists the known ones", "[registry]") {
  CHECK_THROWS_AS(pagedkv::find_op("reshape_and_cache_flashh"), pagedkv::InvalidArgument);
  CHECK_THROWS_WITH(pagedkv::find_op("nope"),
                    Catch::Contains("reshape_and_cache_flash") && Catch::Contains("\"nope\""));
}

TEST_CASE("registry: every source named by an entry is a file of the repository", "[registry]") {
  const std::filesystem::path root = PAGEDKV_SOURCE_DIR;
  for (const OpEntry& op : pagedkv::op_registry()) {
    for (const std::string& source : {op.cpu_source, op.naive_source, op.optimized_source}) {
      CAPTURE(op.name, source);
      CHECK(std::filesystem::is_regular_file(root / source));
    }
  }
}

TEST_CASE("registry: the standard workloads have the sizes and variants of the README",
          "[registry]") {
  const auto w1_sizes = std::set<std::int64_t>{1, 16, 256, 4096, 16384, 65536};
  const auto flash = all_points(pagedkv::find_op("reshape_and_cache_flash"), false);
  CHECK(sizes_of(flash) == w1_sizes);
  CHECK(variants_of(flash) ==
        std::set<std::string>{"NHD bf16", "HND bf16", "NHD fp8_e4m3", "HND fp8_e4m3"});
  CHECK(flash.size() == 4 * 2 * 6);  // variants × {random, contiguous} × sizes
  const auto legacy = all_points(pagedkv::find_op("reshape_and_cache"), false);
  CHECK(sizes_of(legacy) == w1_sizes);
  CHECK(variants_of(legacy) == std::set<std::string>{"bf16", "fp8_e4m3"});
  for (const auto& p : flash) {
    CHECK(p.workload == "W1");
    CHECK(p.num_blocks == 16384);
    CHECK((p.slots == "random" || p.slots == "contiguous"));
    CHECK(p.size_unit == "tokens");
  }
  const auto swap = all_points(pagedkv::find_op("swap_blocks"), false);
  CHECK(sizes_of(swap) == std::set<std::int64_t>{16, 256, 2048});
  CHECK(variants_of(swap) == std::set<std::string>{"H2D", "D2H", "D2D"});
  for (const auto& p : swap) CHECK(p.size_unit == "blocks");
  // W3: one request of 60 K or 300 K tokens, skewed batches of 64 K or 300 K tokens.
  const auto gather = all_points(pagedkv::find_op("gather_and_maybe_dequant_cache"), false);
  CHECK(sizes_of(gather) == std::set<std::int64_t>{61440, 65536, 307200});
  CHECK(variants_of(gather) == std::set<std::string>{"bf16", "fp8_e4m3", "fp8_ds_mla"});
  for (const auto& p : gather) CHECK((p.workload == "W3" && (p.slots == "one" || p.slots == "skewed")));
  const auto upconvert = all_points(pagedkv::find_op("cp_gather_and_upconvert_fp8_kv_cache"), false);
  CHECK(variants_of(upconvert) == std::set<std::string>{"fp8_ds_mla"});
  for (const char* name : {"rms_norm", "fused_add_rms_norm"}) {
    CAPTURE(name);
    const auto norm = all_points(pagedkv::find_op(name), false);
    CHECK(sizes_of(norm) == std::set<std::int64_t>{1, 16, 64, 256, 1024, 4096, 16384});
    CHECK(variants_of(norm) ==
          std::set<std::string>{"hidden 4096 bf16", "hidden 4096 f16", "hidden 7168 bf16",
                                "hidden 7168 f16", "hidden 8192 bf16", "hidden 8192 f16"});
    CHECK(norm.size() == 6 * 7);
    for (const auto& p : norm) {
      CHECK(p.workload == "W9");
      CHECK(p.size_unit == "tokens");
    }
    const auto quick = all_points(pagedkv::find_op(name), true);
    CHECK(variants_of(quick) == std::set<std::string>{"hidden 4096 bf16"});
    CHECK(sizes_of(quick) == std::set<std::int64_t>{1, 64, 1024});
  }

  const auto indexer_write = all_points(pagedkv::find_op("indexer_k_quant_and_cache"), false);
  CHECK(sizes_of(indexer_write) == w1_sizes);
  CHECK(variants_of(indexer_write) == std::set<std::string>{"fp32 scale", "ue8m0"});
  CHECK(indexer_write.size() == 2 * 2 * 6);  // variants × {random, contiguous} × sizes
  const auto indexer_gather =
      all_points(pagedkv::find_op("cp_gather_indexer_k_quant_cache"), false);
  CHECK(sizes_of(indexer_gather) == std::set<std::int64_t>{256, 4096, 16384, 61440, 307200});
  CHECK(variants_of(indexer_gather) == std::set<std::string>{"1 request", "16 skewed"});
  for (const auto& p : indexer_write) CHECK(p.workload == "W5");
  for (const auto& p : indexer_gather) CHECK(p.workload == "W5");

  // W4: DeepSeek V4's K cache, 1 to 262144 tokens.
  const std::set<std::int64_t> w4_sizes{1, 16, 256, 4096, 16384, 65536, 262144};
  const auto dsv4_insert = all_points(pagedkv::find_op("quantize_and_insert_k_cache"), false);
  CHECK(sizes_of(dsv4_insert) == w4_sizes);
  CHECK(variants_of(dsv4_insert) == std::set<std::string>{"block 64"});
  CHECK(dsv4_insert.size() == 2 * 7);  // {random, contiguous} × sizes
  const auto dsv4_gather = all_points(pagedkv::find_op("dequantize_and_gather_k_cache"), false);
  CHECK(sizes_of(dsv4_gather) == w4_sizes);
  CHECK(variants_of(dsv4_gather) == std::set<std::string>{"1 request", "4 requests"});
  for (const auto& p : dsv4_insert) CHECK(p.workload == "W4");
  for (const auto& p : dsv4_gather) CHECK(p.workload == "W4");

  // W12: merges of 16, 32 or 128 heads of 128, 1 to 65536 tokens.
  const auto merge = all_points(pagedkv::find_op("merge_attn_states"), false);
  CHECK(sizes_of(merge) == std::set<std::int64_t>{1, 16, 256, 4096, 16384, 65536});
  CHECK(variants_of(merge) == std::set<std::string>{"heads 16", "heads 32", "heads 128",
                                                    "heads 128, output_lse"});
  for (const auto& p : merge) CHECK((p.workload == "W12" && p.size_unit == "tokens"));

  // Quick points: variants of the full run (the cache ops and swap_blocks keep all of them),
  // small sizes only.
  for (const OpEntry& op : pagedkv::op_registry()) {
    CAPTURE(op.name);
    const auto quick = all_points(op, true);
    const auto full = all_points(op, false);
    const auto quick_variants = variants_of(quick), full_variants = variants_of(full);
    CHECK(std::includes(full_variants.begin(), full_variants.end(), quick_variants.begin(),
                        quick_variants.end()));
    if (op.family != "model ops") CHECK(quick_variants == full_variants);
    CHECK(*sizes_of(quick).rbegin() <= (op.family == "model ops" ? 1024 : 256));
  }
}

TEST_CASE("registry: every quick point builds its case", "[registry]") {
  for (const OpEntry& op : pagedkv::op_registry()) {
    for (const WorkloadPoint& p : all_points(op, true)) {
      CAPTURE(op.name, p.workload, p.variant, p.slots, p.size);
      const auto c = op.make_case(p, 7);
      REQUIRE(c != nullptr);
      CHECK(c->bytes_moved() > 0);
      CHECK(c->buffer_sets() == 1);
    }
  }
}

TEST_CASE("registry: byte models count each input and output byte once", "[registry]") {
  auto bytes = [](const char* op, const char* variant, const char* workload, std::int64_t size) {
    for (const WorkloadPoint& p : all_points(pagedkv::find_op(op), true))
      if (p.variant == variant && p.workload == workload && p.size == size)
        return pagedkv::find_op(op).make_case(p, 1)->bytes_moved();
    FAIL("no such point");
    return std::int64_t{0};
  };
  // One token, 8 heads × 128: key + value read as bf16 (4096 B), written as bf16 (4096 B) or
  // fp8 (2048 B), plus one 8-byte slot.
  CHECK(bytes("reshape_and_cache_flash", "NHD bf16", "W1", 1) == 4096 + 4096 + 8);
  CHECK(bytes("reshape_and_cache_flash", "HND fp8_e4m3", "W1", 1) == 4096 + 2048 + 8);
  CHECK(bytes("reshape_and_cache", "bf16", "W1", 16) == 16 * (4096 + 4096 + 8));
  // 16 blocks of 32 KiB: once across the bus, read + written within the device.
  CHECK(bytes("swap_blocks", "H2D", "W6", 16) == 16 * 32768);
  CHECK(bytes("swap_blocks", "D2H", "W6", 16) == 16 * 32768);
  CHECK(bytes("swap_blocks", "D2D", "W6", 16) == 2 * 16 * 32768);
  // One token of 4096 bf16 (8192 B): rms_norm reads input, writes out; fused_add_rms_norm reads
  // and writes input and residual; both read the 8192-byte weight.
  CHECK(bytes("rms_norm", "hidden 4096 bf16", "W9", 1) == 2 * 8192 + 8192);
  CHECK(bytes("fused_add_rms_norm", "hidden 4096 bf16", "W9", 64) == 4 * 64 * 8192 + 8192);
  // One indexer key: 128 bf16 read (256 B), one 132-byte slot written, one 8-byte slot read.
  CHECK(bytes("indexer_k_quant_and_cache", "ue8m0", "W5", 16) == 16 * (256 + 132 + 8));
  // 256 gathered tokens of one sequence: 132 bytes read and written each, 4 block ids of 64
  // tokens, cu_seq_lens [2].
  CHECK(bytes("cp_gather_indexer_k_quant_cache", "1 request", "W5", 256) ==
        256 * 2 * 132 + 4 * 4 + 4 * 2);
  // One DeepSeek V4 key: 512 bf16 read (1024 B), a 576-byte record and an 8-byte scale record
  // written, one 8-byte slot read.
  CHECK(bytes("quantize_and_insert_k_cache", "block 64", "W4", 16) == 16 * (1024 + 584 + 8));
  // 256 tokens of one request: 584 bytes read and 1024 written each, 4 page ids, seq_lens [1].
  CHECK(bytes("dequantize_and_gather_k_cache", "1 request", "W4", 256) ==
        256 * (584 + 1024) + 4 * 4 + 4);
  // 4 requests of 25, 51, 76 and 104 tokens after a prefix of 100: pages touched 1, 2, 2 and 3,
  // seq_lens and gather_lens [4] each.
  CHECK(bytes("dequantize_and_gather_k_cache", "4 requests", "W4", 256) ==
        256 * (584 + 1024) + 4 * 8 + 8 * 4);
  // 16 tokens of 32 heads × 128 bf16: prefix_output, suffix_output read and output written
  // (3 × 16 × 32 × 256 B), both LSEs read (2 × 16 × 32 × 4 B); the output_lse variant (128
  // heads) writes one more LSE.
  CHECK(bytes("merge_attn_states", "heads 32", "W12", 16) == 3 * 16 * 32 * 256 + 2 * 16 * 32 * 4);
  CHECK(bytes("merge_attn_states", "heads 128, output_lse", "W12", 1) ==
        3 * 128 * 256 + 3 * 128 * 4);
}

TEST_CASE("registry: Agreement applies the op's rule", "[registry]") {
  pagedkv::Agreement exact;  // a bit-exact op: tolerance 0
  CHECK_FALSE(exact.is_reduction());
  CHECK_FALSE(exact.agrees());
  exact.bit_exact = true;
  CHECK(exact.agrees());
  pagedkv::Agreement reduction;  // a reduction: rel_err within tolerance, exact part equal
  reduction.tolerance = 1e-3;
  reduction.rel_err = 5e-4;
  CHECK(reduction.is_reduction());
  CHECK(reduction.agrees());
  reduction.exact_part_equal = false;
  CHECK_FALSE(reduction.agrees());
  reduction.exact_part_equal = true;
  reduction.rel_err = 2e-3;
  CHECK_FALSE(reduction.agrees());
  reduction.rel_err = std::numeric_limits<double>::quiet_NaN();
  CHECK_FALSE(reduction.agrees());
  pagedkv::Agreement ulp;  // an element-wise op with transcendentals: max_ulp within ulp_bound
  ulp.ulp_bound = 4.0;
  ulp.max_ulp = 3.5;
  CHECK(ulp.is_ulp_bounded());
  CHECK_FALSE(ulp.is_reduction());
  CHECK(ulp.agrees());  // bytes may differ: the bound is the rule
  ulp.max_ulp = 4.5;
  CHECK_FALSE(ulp.agrees());
  ulp.max_ulp = std::numeric_limits<double>::infinity();
  CHECK_FALSE(ulp.agrees());
}

TEST_CASE("registry: the CPU reference runs on the smallest point of every op", "[registry]") {
  for (const OpEntry& op : pagedkv::op_registry()) {
    const auto points = all_points(op, true);
    const auto smallest = std::min_element(
        points.begin(), points.end(), [](const auto& a, const auto& b) { return a.size < b.size; });
    CAPTURE(op.name, smallest->variant, smallest->size);
    const auto c = op.make_case(*smallest, 3);
    CHECK_NOTHROW(c->run_cpu());
    CHECK_NOTHROW(c->run_cpu());  // running it again is allowed (the tool times several runs)
  }
}

TEST_CASE("registry: buffer sets cover more than twice the L2", "[registry]") {
  const std::int64_t l2 = 50 << 20;
  CHECK(pagedkv::buffer_sets_for(std::int64_t{512} << 20, l2) == 1);
  CHECK(pagedkv::buffer_sets_for(2 * l2, l2) == 2);
  CHECK(pagedkv::buffer_sets_for(std::int64_t{8} << 20, l2) * (std::int64_t{8} << 20) > 2 * l2);
  CHECK(pagedkv::buffer_sets_for(4096, l2) == pagedkv::kMaxBufferSets);
  CHECK(pagedkv::buffer_sets_for(0, l2) == 1);
}

TEST_CASE("registry: naive and optimized agree with the CPU on a quick point",
          "[gpu][registry]") {
  PAGEDKV_REQUIRE_GPU();
  for (const OpEntry& op : pagedkv::op_registry()) {
    // One small size (the smallest quick one of at least 16), every variant and slot pattern.
    const auto points = all_points(op, true);
    std::int64_t size = 0;
    for (const std::int64_t s : sizes_of(points))
      if (s >= 16 && (size == 0 || s < size)) size = s;
    for (const WorkloadPoint& p : points) {
      if (p.size != size) continue;
      CAPTURE(op.name, p.variant, p.slots, p.size);
      const auto c = op.make_case(p, 11);
      c->run_cpu();
      // A small "L2" keeps the number of buffer sets small but above one, unless one set
      // alone moves more than twice it (apply_repetition_penalties' 128256-logit rows).
      constexpr std::int64_t kSmallL2 = std::int64_t{4} << 20;
      c->prepare_device(kSmallL2);
      CHECK((c->buffer_sets() > 1 || c->bytes_moved() >= 2 * kSmallL2));
      for (pagedkv::Impl impl : {pagedkv::Impl::naive, pagedkv::Impl::optimized}) {
        CAPTURE(pagedkv::impl_name(impl));
        const pagedkv::Agreement agreement = c->check(impl);
        CAPTURE(agreement.rel_err, agreement.tolerance);
        CHECK(agreement.agrees());
        CAPTURE(agreement.max_ulp, agreement.ulp_bound);
        if (!agreement.is_reduction() && !agreement.is_ulp_bounded()) {
          CHECK(agreement.bytes_differing == 0);
        }
        CHECK(agreement.bytes_compared > 0);
      }
      // The timed entry point computes what the checked one does.
      c->reset_outputs();
      c->launch(pagedkv::Impl::optimized, 0, nullptr);
      REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
      CHECK(c->compare_outputs().agrees());
      // So does every alternative the comparison tool times beside it (swap_blocks's
      // strategies), on a stream of its own (memcpy_batch refuses the legacy stream).
      cudaStream_t stream = nullptr;
      REQUIRE(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess);
      for (const std::string& name : c->alternatives()) {
        CAPTURE(name);
        const pagedkv::Agreement agreement = c->check_alternative(name, stream);
        CHECK(agreement.agrees());
        CHECK(agreement.bytes_differing == 0);
      }
      REQUIRE(cudaStreamDestroy(stream) == cudaSuccess);
    }
  }
}

TEST_CASE("registry: an alternative the case does not offer is refused by name",
          "[registry]") {
  for (const OpEntry& op : pagedkv::op_registry()) {
    const auto points = all_points(op, true);
    REQUIRE(!points.empty());
    CAPTURE(op.name);
    const auto c = op.make_case(points.front(), 11);
    const std::vector<std::string> offered = c->alternatives();
    for (const std::string& name : offered) CHECK(name.rfind("strategy:", 0) == 0);
    if (op.name == "swap_blocks") {
      CHECK(offered == std::vector<std::string>{"strategy:copy_kernel", "strategy:memcpy_batch"});
    }
    // Refused before anything runs, so no device is needed.
    CHECK_THROWS_WITH(c->launch_alternative("strategy:no_such_thing", 0, nullptr),
                      Catch::Matchers::Contains("alternative:") &&
                          Catch::Matchers::Contains("strategy:no_such_thing"));
  }
}
