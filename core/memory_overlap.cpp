// Whether two strided views share a byte (pagedkv/memory_overlap.h): the test behind the rule
// that an output never shares memory with another argument.
//
// A view's bytes are a set of runs: after dropping dimensions of size 1, turning negative
// strides around and sorting the rest by stride, the innermost dimensions that follow each
// other without a gap form one contiguous run, and the outer dimensions place copies of it.
// Most pairs of arguments are far apart, and comparing their first and last bytes settles it.
// Views that interleave (key and value caches as halves of one [num_blocks, 2, ...] allocation,
// kv_c and k_pe as slices of one projection row) usually step alike, one outer stride each,
// and an arithmetic test settles those. Anything else is settled by listing both sets of runs.
/// \cond INTERNAL
#include "pagedkv/memory_overlap.h"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace pagedkv {

namespace {

// A view's bytes: `run` contiguous bytes at `start`, repeated over `outer` (size, byte step),
// steps positive and sorted from the smallest.
struct Runs {
  std::int64_t start = 0;
  std::int64_t run = 0;
  std::vector<std::pair<std::int64_t, std::int64_t>> outer;
};

Runs runs_of(const TensorView& view) {
  Runs r;
  r.start = static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(view.data));
  const std::int64_t element = view.element_size();
  std::vector<std::pair<std::int64_t, std::int64_t>> dims;  // (byte step, size)
  for (int d = 0; d < view.ndim; ++d) {
    if (view.shape[d] <= 1) continue;
    std::int64_t step = view.strides[d] * element;
    if (step == 0) continue;  // the same bytes again: nothing new
    if (step < 0) {           // walk it the other way: same bytes
      r.start += (view.shape[d] - 1) * step;
      step = -step;
    }
    dims.emplace_back(step, view.shape[d]);
  }
  std::sort(dims.begin(), dims.end());
  r.run = element;
  std::size_t d = 0;
  while (d < dims.size() && dims[d].first == r.run) r.run *= dims[d++].second;
  for (; d < dims.size(); ++d) r.outer.emplace_back(dims[d].second, dims[d].first);
  return r;
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

// Whether [a, a + a_run) meets one of the runs b + j × step (j in [0, count)) of b_run bytes.
bool meets_progression(std::int64_t a, std::int64_t a_run, std::int64_t b, std::int64_t b_run,
                       std::int64_t step, std::int64_t count) {
  // The first j whose run ends after a starts: b + j × step + b_run > a.
  std::int64_t j = floor_div(a - b_run - b, step) + 1;
  j = std::max<std::int64_t>(j, 0);
  return j < count && b + j * step < a + a_run;
}

// Every run's first byte, listed.
std::vector<std::int64_t> starts_of(const Runs& r) {
  std::vector<std::int64_t> starts = {r.start};
  for (const auto& [size, step] : r.outer) {
    const std::size_t before = starts.size();
    for (std::int64_t k = 1; k < size; ++k) {
      for (std::size_t s = 0; s < before; ++s) starts.push_back(starts[s] + k * step);
    }
  }
  std::sort(starts.begin(), starts.end());
  return starts;
}

// Listing more runs than this is not worth it: such views are reported as sharing memory
// (no real layout gets there: a joint K/V cache has one run per block).
constexpr std::int64_t kMaxListedRuns = std::int64_t{1} << 22;

std::int64_t run_count(const Runs& r) {
  std::int64_t count = 1;
  for (const auto& [size, step] : r.outer) {
    if (count > kMaxListedRuns / size) return kMaxListedRuns + 1;
    count *= size;
  }
  return count;
}

}  // namespace

bool share_memory(const TensorView& a, const TensorView& b) {
  if (a.device != b.device || a.data == nullptr || b.data == nullptr) return false;
  if (a.numel() == 0 || b.numel() == 0) return false;
  const Runs ra = runs_of(a), rb = runs_of(b);
  // First and last bytes: most pairs are apart here.
  auto last = [](const Runs& r) {
    std::int64_t end = r.start + r.run;
    for (const auto& [size, step] : r.outer) end += (size - 1) * step;
    return end;
  };
  if (last(ra) <= rb.start || last(rb) <= ra.start) return false;
  // One run against a progression of runs, or two progressions with one common step.
  if (ra.outer.empty() && rb.outer.size() <= 1) {
    const auto [count, step] =
        rb.outer.empty() ? std::pair<std::int64_t, std::int64_t>{1, 1} : rb.outer[0];
    return meets_progression(ra.start, ra.run, rb.start, rb.run, step, count);
  }
  if (rb.outer.empty() && ra.outer.size() == 1) {
    return meets_progression(rb.start, rb.run, ra.start, ra.run, ra.outer[0].second,
                             ra.outer[0].first);
  }
  if (ra.outer.size() == 1 && rb.outer.size() == 1 && ra.outer[0].second == rb.outer[0].second) {
    // Runs a + i × step and b + j × step meet iff a meets b + k × step for k = j - i, which
    // spans (-(n_a - 1)) .. (n_b - 1): one progression of n_a + n_b - 1 runs.
    const std::int64_t step = ra.outer[0].second;
    const std::int64_t na = ra.outer[0].first, nb = rb.outer[0].first;
    return meets_progression(ra.start, ra.run, rb.start - (na - 1) * step, rb.run, step,
                             na + nb - 1);
  }
  if (run_count(ra) > kMaxListedRuns || run_count(rb) > kMaxListedRuns) return true;
  // List both, then walk them in address order.
  const std::vector<std::int64_t> sa = starts_of(ra), sb = starts_of(rb);
  std::size_t i = 0, j = 0;
  while (i < sa.size() && j < sb.size()) {
    if (sa[i] + ra.run <= sb[j]) {
      ++i;
    } else if (sb[j] + rb.run <= sa[i]) {
      ++j;
    } else {
      return true;
    }
  }
  return false;
}

}  // namespace pagedkv
/// \endcond
