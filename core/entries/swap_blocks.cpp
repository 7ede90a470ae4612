// Registry entry of swap_blocks, and its workload points (W6).
//
// One point: a source and a destination pool of 32 KiB blocks (one Llama-3-8B layer's K or V
// block: 16 slots × 8 kv heads × 128 × bf16), seen as bf16 [pool_blocks, 16, 8, 128]; a random
// mapping of distinct source blocks to distinct destination blocks. The host side of H2D and D2H
// is pinned, as an engine's swap space is (pageable memory would make every copy synchronous).
#include "pagedkv/ops/swap_blocks.h"

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "harness.h"
#include "library_baseline.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/error.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

// One block = [block_size 16, kv heads 8, head_size 128] bf16 = 32 KiB.
constexpr std::int64_t kSlotsPerBlock = 16;
constexpr std::int64_t kKvHeads = 8;
constexpr std::int64_t kHeadSize = 128;
constexpr std::int64_t kBlockBytes = kSlotsPerBlock * kKvHeads * kHeadSize * 2;

// The block ids of one buffer set: [num_pairs, 2] i64 (src_block, dst_block), on the host.
struct Mapping {
  Buffer pairs;
  TensorView view;
};

Mapping make_mapping(std::int64_t num_pairs, std::int64_t pool_blocks, std::uint64_t seed) {
  const std::vector<std::int64_t> src = draw_unique(num_pairs, pool_blocks, seed ^ 0x5A5A0001ull);
  const std::vector<std::int64_t> dst = draw_unique(num_pairs, pool_blocks, seed ^ 0xA5A50002ull);
  Mapping mapping;
  mapping.pairs = Buffer(Memory::host, static_cast<std::size_t>(num_pairs * 2 * 8));
  auto* ids = reinterpret_cast<std::int64_t*>(mapping.pairs.data());
  for (std::int64_t i = 0; i < num_pairs; ++i) {
    ids[2 * i] = src[static_cast<std::size_t>(i)];
    ids[2 * i + 1] = dst[static_cast<std::size_t>(i)];
  }
  mapping.view = TensorView::contiguous(mapping.pairs.data(), DType::i64, {num_pairs, 2});
  return mapping;
}

class SwapBlocksCase final : public PlannedCase<SwapBlocks>, public LibraryBaseline {
 public:
  SwapBlocksCase(const WorkloadPoint& point, std::uint64_t seed)
      : num_pairs_(point.size),
        pool_blocks_(point.num_blocks),
        seed_(seed),
        host_src_(Memory::host, static_cast<std::size_t>(pool_blocks_ * kBlockBytes)),
        host_dst_(Memory::host, static_cast<std::size_t>(pool_blocks_ * kBlockBytes)) {
    PAGEDKV_CHECK(point.workload == "W6", "swap_blocks runs workload W6, got ", point.workload);
    if (point.variant == "H2D") {
      kind_ = CopyKind::host_to_device;
    } else if (point.variant == "D2H") {
      kind_ = CopyKind::device_to_host;
    } else if (point.variant == "D2D") {
      kind_ = CopyKind::device_to_device;
    } else {
      reject("swap_blocks W6 variant: expected H2D, D2H or D2D, got \"", point.variant, "\"");
    }
    PAGEDKV_CHECK(num_pairs_ <= pool_blocks_, "swap_blocks W6: ", num_pairs_,
                  " blocks do not fit a pool of ", pool_blocks_);
    fill_random(host_src_.data(), DType::bf16, pool_blocks_ * kBlockBytes / 2, seed);
    host_dst_.fill(kPoisonByte);
    mappings_.push_back(make_mapping(num_pairs_, pool_blocks_, seed));
  }

  std::int64_t bytes_moved() const override {
    // Host↔device: the bytes crossing the bus once. Device↔device: read once and written once.
    const std::int64_t payload = num_pairs_ * kBlockBytes;
    return kind_ == CopyKind::device_to_device ? 2 * payload : payload;
  }
  CopyKind copy_kind() const override { return kind_; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    const Memory src_memory = kind_ == CopyKind::host_to_device ? Memory::pinned : Memory::device;
    const Memory dst_memory = kind_ == CopyKind::device_to_host ? Memory::pinned : Memory::device;
    src_ = copy_to(src_memory, host_src_);
    dst_ = Buffer(dst_memory, host_dst_.size());
    dst_.fill(kPoisonByte);
    src_view_ = pool_view(src_, src_memory == Memory::device ? Device::cuda : Device::cpu);
    dst_view_ = pool_view(dst_, dst_memory == Memory::device ? Device::cuda : Device::cpu);
    // Each set copies other blocks of the same pools (set 0 is the CPU reference's mapping).
    for (int set = 1; set < sets; ++set)
      mappings_.push_back(make_mapping(num_pairs_, pool_blocks_, set_seed(seed_, set)));
    for (const Mapping& mapping : mappings_) {
      // Validation happens here, once per set and implementation, never inside the timed region.
      calls_.add({src_view_, dst_view_, kBlockBytes, mapping.view});
      device_pairs_.push_back(copy_to(Memory::device, mapping.pairs));
    }
  }

  // The strategies `automatic` chooses between, each as a row of its own (issue: H2D that holds
  // its speed on every host): the zero-copy kernel and the copy engines in one batched call.
  // memcpy_runs is not listed: with random ids every run is one block, so it is the naive row.
  std::vector<std::string> alternatives() const override {
    return {"strategy:copy_kernel", "strategy:memcpy_batch"};
  }
  void launch_alternative(const std::string& name, int set, cudaStream_t stream) override {
    optimized::SwapStrategy strategy = optimized::SwapStrategy::automatic;
    if (name == "strategy:copy_kernel") {
      strategy = optimized::SwapStrategy::copy_kernel;
    } else if (name == "strategy:memcpy_batch") {
      strategy = optimized::SwapStrategy::memcpy_batch;
    } else {
      reject("alternative: expected strategy:copy_kernel or strategy:memcpy_batch, got \"", name,
             "\"");
    }
    const SwapBlocks::Args& args = calls_.args(set);
    optimized::launch_swap_blocks_with(calls_.optimized_plan(set), args.src, args.dst, strategy,
                                       stream);
  }

  void reset_outputs() override { dst_.fill(kPoisonByte); }

  Agreement compare_outputs() override {
    return compare_with_reference(dst_, host_dst_.data(), DType::bf16);
  }

  std::vector<UnitScatter> library_scatters(int set) const override {
    if (kind_ != CopyKind::device_to_device) return {};
    // One row = one block pair: 2048 units of 16 bytes gathered from the source block and
    // scattered to the destination block.
    UnitScatter blocks;
    blocks.rows = UnitScatter::Rows::pairs;
    blocks.unit_bytes = 16;
    blocks.num_rows = num_pairs_;
    blocks.row_units = kBlockBytes / 16;
    blocks.pairs = reinterpret_cast<const std::int64_t*>(
        device_pairs_.at(static_cast<std::size_t>(set)).data());
    blocks.src = src_.data();
    blocks.dst = dst_.data();
    return {blocks};
  }

 private:
  // The CPU reference's call on the host inputs (what run_cpu() runs and cpu_arguments()
  // lists).
  SwapBlocks::Args cpu_call() override {
    return SwapBlocks::Args{pool_view(host_src_, Device::cpu), pool_view(host_dst_, Device::cpu),
                            kBlockBytes, mappings_[0].view};
  }
  // bf16 [pool_blocks, 16, 8, 128]: block b is row b, 32 KiB.
  TensorView pool_view(const Buffer& pool, Device device) const {
    return TensorView::contiguous(pool.data(), DType::bf16,
                                  {pool_blocks_, kSlotsPerBlock, kKvHeads, kHeadSize}, device);
  }

  std::int64_t num_pairs_;
  std::int64_t pool_blocks_;
  std::uint64_t seed_;
  CopyKind kind_ = CopyKind::device_to_device;
  Buffer host_src_;  // the CPU reference's pools
  Buffer host_dst_;
  std::vector<Mapping> mappings_;  // one per buffer set, on the host
  Buffer src_, dst_;               // pinned or device pools, shared by all sets
  TensorView src_view_, dst_view_;
  std::vector<Buffer> device_pairs_;  // the mappings on the device, for the library row
};

std::vector<WorkloadPoint> points(const std::string& workload, bool quick) {
  if (workload != "W6") return {};
  const std::vector<std::int64_t> sizes =
      quick ? std::vector<std::int64_t>{16, 256} : std::vector<std::int64_t>{16, 256, 2048};
  std::vector<WorkloadPoint> result;
  for (const char* direction : {"H2D", "D2H", "D2D"})
    for (std::int64_t blocks : sizes)
      result.push_back({"W6", direction, "random", blocks, "blocks", quick ? 512 : 4096});
  return result;
}

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<SwapBlocksCase>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry SwapBlocks::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "moving blocks";
  entry.role =
      "Copies whole KV-cache blocks between GPU and CPU memory (or within the GPU) following a "
      "block mapping: swapping preempted sequences out and back in, offloading the cache.";
  entry.upstream = "vLLM csrc/cache_kernels.cu: swap_blocks";
  entry.cpu_source = "reference_cpu/swap_blocks.cpp";
  entry.naive_source = "kernels/swap_blocks/naive.cu";
  entry.optimized_source = "kernels/swap_blocks/optimized.cu";
  entry.byte_model =
      "H2D and D2H: blocks x block bytes, counted once (the bytes crossing the bus); D2D: blocks x "
      "block bytes read plus the same written";
  entry.agreement_rule =
      "bit-exact: the whole destination, blocks not in the mapping included, equals the CPU "
      "reference byte for byte";
  entry.workloads = {"W6"};
  entry.workload_notes =
      "W6: 32 KiB blocks (one Llama-3-8B layer's K or V block: 16 slots x 8 kv heads x 128 "
      "bf16), random and never zero, move between a source and a destination pool of 4096 "
      "blocks (512 in a quick run) following a random mapping of distinct blocks; the host pool "
      "of H2D / D2H is pinned, as an engine's swap space is.";
  entry.addresses_rows = true;  // src and dst are rows of stride(0) elements
  entry.points = &points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
