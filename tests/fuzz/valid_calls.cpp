// Valid calls drawn from the op registry, and layouts that keep their meaning (valid_calls.h).
#include "valid_calls.h"

#include <algorithm>
#include <exception>
#include <map>
#include <numeric>
#include <tuple>
#include <vector>

namespace pagedkv::fuzz {

namespace {

// The edge sizes come often: zero tokens (an empty batch), one, two; else a few.
std::int64_t draw_size(Rng& rng) {
  const std::int64_t r = below(rng, 10);
  if (r == 0) return 0;
  if (r <= 2) return 1;
  if (r == 3) return 2;
  return 3 + below(rng, 14);
}

}  // namespace

bool draw_base_call(const OpEntry& op, std::size_t index, Rng& rng, BaseCall& base,
                    std::string& why) {
  std::vector<WorkloadPoint> points;
  for (const std::string& workload : op.workloads) {
    for (const WorkloadPoint& p : op.points(workload, /*quick=*/true)) points.push_back(p);
  }
  if (points.empty()) {
    why = "the op's card lists no workload points";
    return false;
  }
  WorkloadPoint point = points[index % points.size()];
  // Small enough for thousands of CPU runs: a few tokens (or blocks) in a cache of a few
  // blocks, never fewer blocks than the tokens need when each token takes a block of its own.
  const std::int64_t full_size = point.size;
  point.size = std::min(full_size, draw_size(rng));
  const std::uint64_t seed = rng();
  // A point whose builder needs more (a skewed batch needs room for its long requests) is
  // grown step by step towards its standard size.
  while (true) {
    if (point.num_blocks > 0) point.num_blocks = std::max(point.size, 1 + below(rng, 8));
    base.point = point.workload + " " + point.variant + ", " + point.slots + ", " +
                 std::to_string(point.size) + " " + point.size_unit + ", " +
                 std::to_string(point.num_blocks) + " blocks";
    try {
      base.owner = op.make_case(point, seed);
      break;
    } catch (const std::exception& error) {
      if (point.size >= full_size) {
        why = "make_case(" + base.point + "): " + error.what();
        return false;
      }
      point.size = std::min(full_size, std::max<std::int64_t>(2 * point.size, 16));
    }
  }
  base.spec = spec_of(op, base.owner->cpu_arguments());
  return true;
}

CallSpec with_random_layouts(const CallSpec& base, Rng& rng) {
  CallSpec spec = base;
  // Tensors that share dtype, shape and strides (a key cache and its value cache, key and
  // value rows of one qkv activation) usually must keep sharing them: one transform per group.
  using Key = std::tuple<DType, int, std::array<std::int64_t, kMaxDims>,
                         std::array<std::int64_t, kMaxDims>>;
  std::map<Key, std::vector<std::size_t>> groups;
  for (std::size_t i = 0; i < spec.args.size(); ++i) {
    const ArgSpec& a = spec.args[i];
    if (!a.is_tensor || a.tensor.absent) continue;
    groups[Key{a.tensor.dtype, a.tensor.ndim, a.tensor.shape, a.tensor.strides}].push_back(i);
  }
  for (const auto& [key, members] : groups) {
    const bool pad = below(rng, 2) == 0;
    const bool permute = below(rng, 5) == 0;
    const std::int64_t offset = below(rng, 4) == 0 ? 1 + below(rng, 3) : 0;
    const TensorSpec& first = spec.args[members[0]].tensor;
    const int ndim = first.ndim;
    // The dimensions from outermost to innermost in memory (largest stride first).
    std::vector<int> order(static_cast<std::size_t>(ndim));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      return std::abs(first.strides[a]) > std::abs(first.strides[b]);
    });
    if (permute && ndim >= 3) std::shuffle(order.begin(), order.end() - 1, rng);
    // Packed innermost dimension (most ops need it), each outer one stepping over the inner
    // ones plus a few elements of padding when `pad`.
    std::array<std::int64_t, kMaxDims> strides{};
    std::int64_t step = 1;
    for (int k = ndim - 1; k >= 0; --k) {
      const int d = order[static_cast<std::size_t>(k)];
      strides[d] = step;
      step = step * std::max<std::int64_t>(first.shape[d], 1) + (pad ? below(rng, 4) : 0);
    }
    for (std::size_t i : members) {
      // An op that moves rows of stride(0) bytes ties its scalars to the layout
      // (swap_blocks' block_size_in_bytes): only the first element moves.
      if (!base.op->addresses_rows) spec.args[i].tensor.strides = strides;
      spec.args[i].tensor.offset = offset;
    }
  }
  return spec;
}

}  // namespace pagedkv::fuzz
