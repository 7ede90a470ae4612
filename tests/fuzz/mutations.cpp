// One broken thing per call (mutations.h).
#include "mutations.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <regex>
#include <vector>

namespace pagedkv::fuzz {

namespace {

bool is_output(ArgKind kind) { return is_written(kind); }

std::int64_t numel(const TensorSpec& t) {
  std::int64_t n = 1;
  for (int d = 0; d < t.ndim; ++d) n *= t.shape[d];
  return n;
}

std::string shape_text(const TensorSpec& t) {
  std::string text = "[";
  for (int d = 0; d < t.ndim; ++d) text += (d ? ", " : "") + std::to_string(t.shape[d]);
  return text + "]";
}

// The tensor arguments that have memory, optionally only those with elements.
std::vector<std::size_t> tensors(const CallSpec& spec, bool with_elements) {
  std::vector<std::size_t> list;
  for (std::size_t i = 0; i < spec.args.size(); ++i) {
    const ArgSpec& a = spec.args[i];
    if (!a.is_tensor || a.tensor.absent) continue;
    if (with_elements && numel(a.tensor) == 0) continue;
    list.push_back(i);
  }
  return list;
}

template <class T>
const T& pick(Rng& rng, const std::vector<T>& list) {
  return list[static_cast<std::size_t>(below(rng, static_cast<std::int64_t>(list.size())))];
}

/// No tensor could be picked.
constexpr std::size_t kNone = static_cast<std::size_t>(-1);

// Picks one tensor argument (one with elements, if asked) and records it as the argument the
// mutation changes; kNone when the op has no such tensor.
std::size_t pick_tensor(Rng& rng, Mutation& m, bool with_elements) {
  const std::vector<std::size_t> list = tensors(m.spec, with_elements);
  if (list.empty()) return kNone;
  const std::size_t i = pick(rng, list);
  m.argument = m.spec.op->arguments[i].name;
  return i;
}

// The words a string argument's documentation quotes ("auto", "fp8_e4m3", ...): the values the
// op names as meaningful, so swapping one for another is a change the op must judge.
std::vector<std::string> quoted_words(const std::string& doc) {
  std::vector<std::string> words;
  static const std::regex quoted("\"([A-Za-z0-9_]+)\"");
  for (auto it = std::sregex_iterator(doc.begin(), doc.end(), quoted); it != std::sregex_iterator();
       ++it) {
    words.push_back((*it)[1]);
  }
  return words;
}

// Each kind of mutation: changes `m.spec` and describes it, or returns false when it does not
// apply to this call.
using Mutator = bool (*)(Rng&, Mutation&);

bool shape_step(Rng& rng, Mutation& m) {
  const std::size_t i = pick_tensor(rng, m, false);
  if (i == kNone) return false;
  TensorSpec& t = m.spec.args[i].tensor;
  if (t.ndim == 0) return false;
  const int d = static_cast<int>(below(rng, t.ndim));
  const std::int64_t delta = below(rng, 2) ? 1 : -1;
  if (t.shape[d] + delta < 0) return false;
  const std::string before = shape_text(t);
  t.shape[d] += delta;
  m.what = "shape " + before + " -> " + shape_text(t);
  return true;
}

bool dim_added(Rng& rng, Mutation& m) {
  const std::size_t i = pick_tensor(rng, m, false);
  if (i == kNone) return false;
  TensorSpec& t = m.spec.args[i].tensor;
  if (t.ndim == kMaxDims) return false;
  const int at = static_cast<int>(below(rng, t.ndim + 1));
  const std::string before = shape_text(t);
  for (int d = t.ndim; d > at; --d) {
    t.shape[d] = t.shape[d - 1];
    t.strides[d] = t.strides[d - 1];
  }
  t.shape[at] = 1;
  t.strides[at] = at < t.ndim ? t.strides[at + 1] * std::max<std::int64_t>(t.shape[at + 1], 1) : 1;
  ++t.ndim;
  m.what = "dimension added: " + before + " -> " + shape_text(t);
  return true;
}

bool dim_removed(Rng& rng, Mutation& m) {
  const std::size_t i = pick_tensor(rng, m, false);
  if (i == kNone) return false;
  TensorSpec& t = m.spec.args[i].tensor;
  if (t.ndim == 0) return false;
  const int gone = static_cast<int>(below(rng, t.ndim));
  const std::string before = shape_text(t);
  for (int d = gone; d + 1 < t.ndim; ++d) {
    t.shape[d] = t.shape[d + 1];
    t.strides[d] = t.strides[d + 1];
  }
  --t.ndim;
  m.what = "dimension removed: " + before + " -> " + shape_text(t);
  return true;
}

bool dtype_changed(Rng& rng, Mutation& m) {
  const std::size_t i = pick_tensor(rng, m, false);
  if (i == kNone) return false;
  TensorSpec& t = m.spec.args[i].tensor;
  static const std::vector<DType> all = {DType::f32,     DType::f16,     DType::bf16, DType::u8,
                                         DType::f8_e4m3, DType::f8_e5m2, DType::i32,  DType::i64};
  const DType to = pick(rng, all);
  if (to == t.dtype) return false;
  m.what = "dtype " + std::string(dtype_name(t.dtype)) + " -> " + std::string(dtype_name(to));
  t.dtype = to;
  return true;
}

// A negative stride: the same elements, walked backwards (build() copies them in logical
// order, so the call means the same; torch never makes such a view).
bool stride_negative(Rng& rng, Mutation& m) {
  const std::size_t i = pick_tensor(rng, m, true);
  if (i == kNone) return false;
  TensorSpec& t = m.spec.args[i].tensor;
  if (t.ndim == 0) return false;
  const int d = static_cast<int>(below(rng, t.ndim));
  if (t.shape[d] < 2 || t.strides[d] == 0) return false;
  m.what = "stride(" + std::to_string(d) + ") = " + std::to_string(-t.strides[d]) + " (was " +
           std::to_string(t.strides[d]) + ")";
  t.strides[d] = -t.strides[d];
  m.same_meaning = !m.spec.op->addresses_rows;  // rows ops copy raw rows: not the same call
  return true;
}

// A zero stride over a dimension of 2 or more: several elements at one address. For an
// output the writes would collide.
bool stride_overlap(Rng& rng, Mutation& m) {
  const std::size_t i = pick_tensor(rng, m, true);
  if (i == kNone) return false;
  TensorSpec& t = m.spec.args[i].tensor;
  if (t.ndim == 0) return false;
  const int d = static_cast<int>(below(rng, t.ndim));
  if (t.shape[d] < 2 || t.strides[d] == 0) return false;
  m.what = "stride(" + std::to_string(d) + ") = 0 (was " + std::to_string(t.strides[d]) +
           "): elements overlap";
  t.strides[d] = 0;
  // An op that moves whole rows of stride(0) bytes never addresses the elements themselves.
  m.must_reject = is_output(m.spec.op->arguments[i].kind) && !m.spec.op->addresses_rows;
  return true;
}

bool device_flipped(Rng& rng, Mutation& m) {
  const std::size_t i = pick_tensor(rng, m, false);
  if (i == kNone) return false;
  TensorSpec& t = m.spec.args[i].tensor;
  t.device = t.device == Device::cpu ? Device::cuda : Device::cpu;
  m.what = "device -> " + std::string(device_name(t.device));
  m.must_reject = is_output(m.spec.op->arguments[i].kind) && numel(t) > 0;
  return true;
}

bool null_data(Rng& rng, Mutation& m) {
  const std::size_t i = pick_tensor(rng, m, true);
  if (i == kNone) return false;
  m.spec.args[i].tensor.null_data = true;
  m.what = "data = nullptr with " + std::to_string(numel(m.spec.args[i].tensor)) + " elements";
  m.must_reject = is_output(m.spec.op->arguments[i].kind);
  return true;
}

// One entry of an integer tensor (slots, block ids, sequence bounds, positions) far out of
// any range, or negative (which some tensors accept as padding).
bool index_out_of_range(Rng& rng, Mutation& m) {
  std::vector<std::size_t> list;
  for (std::size_t i : tensors(m.spec, true)) {
    const TensorSpec& t = m.spec.args[i].tensor;
    if (t.dtype == DType::i32 || t.dtype == DType::i64) list.push_back(i);
  }
  if (list.empty()) return false;
  const std::size_t i = pick(rng, list);
  const TensorSpec& t = m.spec.args[i].tensor;
  const bool wide = t.dtype == DType::i64;
  const std::vector<std::int64_t> values = {
      wide ? (std::int64_t{1} << 40) : (std::int64_t{1} << 30),
      wide ? std::numeric_limits<std::int64_t>::max() : std::numeric_limits<std::int32_t>::max(),
      -1, -2,
      wide ? std::numeric_limits<std::int64_t>::min() : std::numeric_limits<std::int32_t>::min()};
  m.poke_argument = static_cast<int>(i);
  m.poke_element = below(rng, numel(t));
  m.poke_value = pick(rng, values);
  m.what = "element " + std::to_string(m.poke_element) + " = " + std::to_string(m.poke_value);
  m.argument = m.spec.op->arguments[i].name;
  return true;
}

// An output placed in the memory of another tensor argument (an input or another output),
// from its first element or a few elements further.
bool output_aliased(Rng& rng, Mutation& m) {
  std::vector<std::size_t> outputs, others = tensors(m.spec, true);
  for (std::size_t i : others) {
    if (is_output(m.spec.op->arguments[i].kind)) outputs.push_back(i);
  }
  if (outputs.empty() || others.size() < 2) return false;
  const std::size_t i = pick(rng, outputs);
  const std::size_t j = pick(rng, others);
  if (i == j) return false;
  TensorSpec& t = m.spec.args[i].tensor;
  t.shares_memory_with = static_cast<int>(j);
  // From the other tensor's first element or a few elements further, but inside its first
  // row of memory so that the two really share bytes.
  const TensorSpec& other = m.spec.args[j].tensor;
  std::int64_t inner = dtype_size(other.dtype);
  if (other.ndim > 0) inner *= std::max<std::int64_t>(1, std::abs(other.strides[other.ndim - 1]));
  t.offset = below(rng, 3);
  if (t.offset * dtype_size(t.dtype) >= inner) t.offset = 0;
  m.what = "placed in the memory of " + m.spec.op->arguments[j].name + ", " +
           std::to_string(t.offset) + " elements in";
  m.argument = m.spec.op->arguments[i].name;
  // Unless the op's description allows this pair to share memory (swap_blocks within a pool).
  const OpEntry& op = *m.spec.op;
  m.must_reject = !(op.may_share_memory != nullptr &&
                    op.may_share_memory(op.arguments[i].name, op.arguments[j].name));
  return true;
}

bool scalar_changed(Rng& rng, Mutation& m) {
  std::vector<std::size_t> list;
  for (std::size_t i = 0; i < m.spec.args.size(); ++i) {
    if (!m.spec.args[i].is_tensor) list.push_back(i);
  }
  if (list.empty()) return false;
  const std::size_t i = pick(rng, list);
  ArgValue& value = m.spec.args[i].scalar;
  if (auto* v = std::get_if<std::int64_t>(&value)) {
    const std::vector<std::int64_t> choices = {0, -1, *v + 1, *v - 1, std::int64_t{1} << 40};
    const std::int64_t to = pick(rng, choices);
    m.what = std::to_string(*v) + " -> " + std::to_string(to);
    *v = to;
  } else if (auto* r = std::get_if<double>(&value)) {
    const std::vector<double> choices = {std::nan(""), -1.0, 0.0,
                                         std::numeric_limits<double>::infinity()};
    const double to = pick(rng, choices);
    m.what = std::to_string(*r) + " -> " + std::to_string(to);
    *r = to;
  } else if (auto* b = std::get_if<bool>(&value)) {
    *b = !*b;
    m.what = std::string("flipped to ") + (*b ? "true" : "false");
  } else if (auto* s = std::get_if<std::string>(&value)) {
    std::vector<std::string> words = quoted_words(m.spec.op->arguments[i].doc);
    words.push_back("nonsense");
    words.push_back("");
    const std::string to = pick(rng, words);
    if (to == *s) return false;
    m.what = "\"" + *s + "\" -> \"" + to + "\"";
    *s = to;
  } else {
    return false;
  }
  m.argument = m.spec.op->arguments[i].name;
  return true;
}

}  // namespace

bool mutate(const CallSpec& valid, Rng& rng, Mutation& mutation) {
  static const Mutator kinds[] = {shape_step,         dim_added,      dim_removed,    dtype_changed,
                                  stride_negative,    stride_overlap, device_flipped, null_data,
                                  index_out_of_range, output_aliased, scalar_changed};
  for (int attempt = 0; attempt < 64; ++attempt) {
    mutation = Mutation{};
    mutation.spec = valid;
    const Mutator kind = kinds[below(rng, std::size(kinds))];
    if (kind(rng, mutation)) return true;
  }
  return false;
}

void apply_poke(const Mutation& mutation, FuzzCall& call) {
  if (mutation.poke_argument < 0) return;
  const auto i = static_cast<std::size_t>(mutation.poke_argument);
  const TensorSpec& t = mutation.spec.args[i].tensor;
  std::uint8_t* data =
      call.buffers[static_cast<std::size_t>(call.buffer_of[i])].data() + call.origin[i];
  std::int64_t element = 0, offset = -1;
  for_each_element(t.ndim, t.shape, t.strides, dtype_size(t.dtype), [&](std::int64_t at) {
    if (element++ == mutation.poke_element) offset = at;
  });
  if (offset < 0) return;
  if (t.dtype == DType::i64) {
    std::memcpy(data + offset, &mutation.poke_value, 8);
  } else {
    const auto value = static_cast<std::int32_t>(mutation.poke_value);
    std::memcpy(data + offset, &value, 4);
  }
}

}  // namespace pagedkv::fuzz
