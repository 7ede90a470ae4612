// Registry entry of quantize_and_insert_k_cache, and its workload points (W4,
// deepseek_v4_case.h).
//
// One point: k [T, 512] bf16 contiguous, one cache [4096, 37440] u8 (pages of 64 tokens,
// padded as upstream's allocator pads them), slots random or contiguous.
#include "pagedkv/ops/quantize_and_insert_k_cache.h"

#include <memory>
#include <string>
#include <vector>

#include "deepseek_v4_case.h"
#include "pagedkv/error.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

// What a W4 insert point adds to the shared slot-writer case (cache_write_case.h).
struct Dsv4InsertSpec {
  static Dsv4InsertShape shape(const WorkloadPoint& point) { return dsv4_insert_shape(point); }
  static KeySlotInputs inputs(const Dsv4InsertShape& shape, std::uint64_t seed, int set) {
    return make_dsv4_insert_inputs(shape, seed, set);
  }
  static std::int64_t cache_bytes(const Dsv4InsertShape& shape) { return shape.cache_bytes(); }
  static std::int64_t bytes_moved(const Dsv4InsertShape& shape) { return shape.bytes(); }
  static TensorView cache_view(const Dsv4InsertShape& shape, const Buffer& cache, Device device) {
    return dsv4_cache_view(shape.num_blocks, cache, device);
  }
  static QuantizeAndInsertKCache::Args args(const Dsv4InsertShape&, const KeySlotInputs& in,
                                            const TensorView& cache) {
    return {in.k, cache, in.slot_mapping, kW4BlockSize, true, false};
  }
};

std::vector<WorkloadPoint> points(const std::string& workload, bool quick) {
  if (workload != "W4") return {};
  return dsv4_insert_points(quick);
}

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<KeySlotWriterCase<QuantizeAndInsertKCache, Dsv4InsertSpec>>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry QuantizeAndInsertKCache::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "cache writes";
  entry.role =
      "Quantizes each new token's DeepSeek V4 attention key to fp8 E4M3 with one power-of-two "
      "(UE8M0) scale per 64 elements, keeps its 64 RoPE dims in bf16, and stores both in the "
      "paged fp8_ds_mla K cache.";
  entry.upstream =
      "vLLM vllm/models/deepseek_v4/common/ops/cache_utils.py: quantize_and_insert_k_cache "
      "(Triton kernel _quantize_and_insert_k_cache)";
  entry.cpu_source = "reference_cpu/quantize_and_insert_k_cache.cpp";
  entry.naive_source = "kernels/deepseek_v4/quantize_and_insert_k_cache/naive.cu";
  entry.optimized_source = "kernels/deepseek_v4/quantize_and_insert_k_cache/optimized.cu";
  entry.byte_model =
      "k rows read once (tokens x 512 x 2 bytes), each token's 576-byte record and 8-byte scale "
      "record written once, slot_mapping read once (8 bytes per token)";
  entry.agreement_rule =
      "bit-exact: the whole cache, untouched slots and page padding included, equals the CPU "
      "reference byte for byte";
  entry.workloads = {"W4"};
  entry.workload_notes = dsv4_cache_workload_notes();
  entry.points = &points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
