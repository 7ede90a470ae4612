// Registry entry of indexer_k_quant_and_cache, and its workload points (W5, indexer_case.h).
//
// One point: k [T, 128] bf16 contiguous, one cache [4096, 64, 132] u8, slots random or
// contiguous, scales fp32 or ue8m0.
#include "pagedkv/ops/indexer_k_quant_and_cache.h"

#include <memory>
#include <string>
#include <vector>

#include "indexer_case.h"
#include "pagedkv/error.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

// What a W5 write point adds to the shared slot-writer case (cache_write_case.h).
struct IndexerWriteSpec {
  static IndexerWriteShape shape(const WorkloadPoint& point) { return indexer_write_shape(point); }
  static KeySlotInputs inputs(const IndexerWriteShape& shape, std::uint64_t seed, int set) {
    return make_indexer_write_inputs(shape, seed, set);
  }
  static std::int64_t cache_bytes(const IndexerWriteShape& shape) { return shape.cache_bytes(); }
  static std::int64_t bytes_moved(const IndexerWriteShape& shape) { return shape.write_bytes(); }
  static TensorView cache_view(const IndexerWriteShape& shape, const Buffer& cache,
                               Device device) {
    return indexer_cache_view(shape.num_blocks, cache, device);
  }
  static IndexerKQuantAndCache::Args args(const IndexerWriteShape& shape, const KeySlotInputs& in,
                                          const TensorView& cache) {
    return {in.k, cache, in.slot_mapping, kIndexerQuantBlock, shape.ue8m0 ? "ue8m0" : ""};
  }
};

std::vector<WorkloadPoint> points(const std::string& workload, bool quick) {
  if (workload != "W5") return {};
  return indexer_write_points(quick);
}

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<KeySlotWriterCase<IndexerKQuantAndCache, IndexerWriteSpec>>(point,
                                                                                   seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry IndexerKQuantAndCache::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "cache writes";
  entry.role =
      "Quantizes each new token's sparse-attention indexer key (DeepSeek-V3.2) to fp8 E4M3 with "
      "one scale per 128 elements and stores codes and scales in the indexer's block-planar "
      "paged K cache, which the indexer's MQA-logits kernel reads.";
  entry.upstream =
      "vLLM csrc/cache_kernels.cu: indexer_k_quant_and_cache (indexer_k_quant_and_cache_kernel)";
  entry.cpu_source = "reference_cpu/indexer_k_quant_and_cache.cpp";
  entry.naive_source = "kernels/indexer/indexer_k_quant_and_cache/naive.cu";
  entry.optimized_source = "kernels/indexer/indexer_k_quant_and_cache/optimized.cu";
  entry.byte_model =
      "k rows read once (tokens x 128 x 2 bytes), each slot written once (128 code bytes + 4 "
      "scale bytes), slot_mapping read once (8 bytes per token)";
  entry.agreement_rule =
      "bit-exact: the whole cache, untouched slots included, equals the CPU reference byte for "
      "byte";
  entry.workloads = {"W5"};
  entry.workload_notes = indexer_workload_notes();
  entry.points = &points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
