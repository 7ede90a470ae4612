// Building a fuzzed call in guarded host memory (see fuzz_call.h).
#include "fuzz_call.h"

#include <algorithm>
#include <cstring>
#include <sstream>
#include <type_traits>

#include "support.h"

namespace pagedkv::fuzz {

namespace {

// Byte range [lo, hi) that a view's elements cover, relative to its data pointer. A view with
// no elements covers nothing.
struct Extent {
  std::int64_t lo = 0, hi = 0;
};

Extent element_extent(const TensorSpec& t) {
  const std::int64_t element = dtype_size(t.dtype);
  Extent e;
  for (int d = 0; d < t.ndim; ++d) {
    if (t.shape[d] == 0) return {};
  }
  for (int d = 0; d < t.ndim; ++d) {
    const std::int64_t reach = (t.shape[d] - 1) * t.strides[d] * element;
    if (reach < 0) e.lo += reach;
    if (reach > 0) e.hi += reach;
  }
  e.hi += element;
  return e;
}

// Bytes of the size(0) rows of stride(0) elements that an op with OpEntry::addresses_rows
// touches (0 when that is not a sensible positive span).
std::int64_t row_bytes(const TensorSpec& t) {
  if (t.ndim == 0 || t.shape[0] <= 0 || t.strides[0] <= 0) return 0;
  return t.shape[0] * t.strides[0] * dtype_size(t.dtype);
}

// The memory an op may touch through a tensor: its elements, and for an op that addresses
// rows, the whole rows.
Extent extent_of(const TensorSpec& t, bool rows) {
  Extent e = element_extent(t);
  if (rows) e.hi = std::max(e.hi, row_bytes(t));
  return e;
}

bool is_output(ArgKind kind) { return is_written(kind); }

// The pattern of guards and gaps: recognisable, and not the registry's poison byte (0xFF), so
// a stray copy of an output's poison is seen too.
constexpr std::uint8_t kGuardByte = 0xA5;

// Fills `bytes` bytes with random values of `dtype` (finite floats, small integers): one tile
// of 4 KiB drawn with the tests' generator, repeated (drawing every element costs more than
// all the rest of the fuzzer).
void fill_plausible(std::uint8_t* dst, std::int64_t bytes, DType dtype, std::uint64_t seed) {
  constexpr std::int64_t kTile = 4096;  // a multiple of every element size
  std::uint8_t tile[kTile] = {};
  test::fill_random(tile, dtype, kTile / dtype_size(dtype), seed);
  for (std::int64_t at = 0; at < bytes; at += kTile) {
    std::memcpy(dst + at, tile, static_cast<std::size_t>(std::min(kTile, bytes - at)));
  }
}

}  // namespace

CallSpec spec_of(const OpEntry& op, const std::vector<ArgValue>& values) {
  CallSpec spec;
  spec.op = &op;
  for (const ArgValue& value : values) {
    ArgSpec arg;
    if (const TensorView* view = std::get_if<TensorView>(&value)) {
      arg.is_tensor = true;
      TensorSpec& t = arg.tensor;
      t.source = *view;
      t.dtype = view->dtype;
      t.device = view->device;
      t.ndim = view->ndim;
      t.shape = view->shape;
      t.strides = view->strides;
      t.absent = view->data == nullptr;  // an optional tensor left out, or an unread scale
    } else {
      arg.scalar = value;
    }
    spec.args.push_back(arg);
  }
  return spec;
}

std::vector<std::uint8_t> FuzzCall::snapshot() const {
  std::vector<std::uint8_t> bytes;
  for (const Buffer& buffer : buffers) {
    bytes.insert(bytes.end(), buffer.data(), buffer.data() + buffer.size());
  }
  return bytes;
}

FuzzCall build(const CallSpec& spec, std::uint64_t seed) {
  const std::size_t n = spec.args.size();
  FuzzCall call;
  call.values.resize(n);
  call.buffer_of.assign(n, -1);
  call.origin.assign(n, 0);
  for (std::size_t i = 0; i < n; ++i) {
    if (!spec.args[i].is_tensor) call.values[i] = spec.args[i].scalar;
  }
  // Every tensor that owns memory (it shares nobody's) gets one buffer, big enough for itself
  // and for the tensors that alias it. Positions are relative to the owner's data pointer.
  for (std::size_t home = 0; home < n; ++home) {
    const ArgSpec& owner = spec.args[home];
    if (!owner.is_tensor) continue;
    const TensorSpec& h = owner.tensor;
    if (h.absent) {
      call.values[home] = h.source;  // left out by the case: passed on exactly as it was
      continue;
    }
    if (h.shares_memory_with >= 0) continue;
    const std::int64_t h_element = dtype_size(h.dtype);
    const bool rows = spec.op->addresses_rows;
    const Extent he = extent_of(h, rows);
    // The owner's data pointer sits `offset` elements after the start of its elements'
    // memory: a misaligned view.
    std::int64_t lo = std::min<std::int64_t>(he.lo, 0) - h.offset * h_element;
    std::int64_t hi = std::max<std::int64_t>(he.hi, h_element);  // room for one element at least
    for (std::size_t i = 0; i < n; ++i) {
      const ArgSpec& a = spec.args[i];
      if (!a.is_tensor || a.tensor.absent || a.tensor.shares_memory_with != static_cast<int>(home))
        continue;
      const std::int64_t at = a.tensor.offset * dtype_size(a.tensor.dtype);
      const Extent e = extent_of(a.tensor, rows);
      lo = std::min(lo, at + e.lo);
      hi = std::max(hi, at + e.hi);
    }
    const std::int64_t interior = hi - lo;
    Buffer buffer(Memory::host, static_cast<std::size_t>(interior + 2 * kGuardBytes));
    buffer.fill(kGuardByte);
    // The interior: random values of the owner's dtype (finite floats, small integers), so
    // elements the source does not provide hold something plausible.
    std::uint8_t* interior_start = buffer.data() + kGuardBytes;
    fill_plausible(interior_start, interior, h.dtype, seed ^ (home * 0x9E37ull));
    std::uint8_t* data = interior_start - lo;
    // The owner's logical contents, copied from the source where the source has the element
    // (same dtype and rank, index inside the source's shape).
    const TensorSpec& t = h;
    if (t.source.data != nullptr && t.source.dtype == t.dtype && t.source.ndim == t.ndim) {
      std::array<std::int64_t, kMaxDims> shared_shape{};
      for (int d = 0; d < t.ndim; ++d) shared_shape[d] = std::min(t.shape[d], t.source.shape[d]);
      // Row by row when both last dimensions are packed, else element by element; both walks
      // visit the same logical indices in the same order.
      const bool rows =
          t.ndim >= 1 && t.source.strides[t.ndim - 1] == 1 && t.strides[t.ndim - 1] == 1;
      std::vector<std::int64_t> from, to;
      std::int64_t run = h_element;
      auto walk = [&](const std::array<std::int64_t, kMaxDims>& strides,
                      std::vector<std::int64_t>& offsets) {
        auto keep = [&](std::int64_t offset, std::int64_t bytes) {
          offsets.push_back(offset);
          run = bytes;
        };
        if (rows) {
          for_each_run(t.ndim, shared_shape, strides, h_element, keep);
        } else {
          for_each_element(t.ndim, shared_shape, strides, h_element,
                           [&](std::int64_t offset) { keep(offset, h_element); });
        }
      };
      walk(t.source.strides, from);
      walk(t.strides, to);
      const auto* src = static_cast<const std::uint8_t*>(t.source.data);
      for (std::size_t k = 0; k < from.size(); ++k) {
        std::memcpy(data + to[k], src + from[k], static_cast<std::size_t>(run));
      }
    }
    const int index = static_cast<int>(call.buffers.size());
    for (std::size_t i = 0; i < n; ++i) {
      const ArgSpec& a = spec.args[i];
      if (!a.is_tensor || a.tensor.absent) continue;
      const bool owned = i == home;
      if (!owned && a.tensor.shares_memory_with != static_cast<int>(home)) continue;
      const TensorSpec& m = a.tensor;
      std::uint8_t* m_data = owned ? data : data + m.offset * dtype_size(m.dtype);
      TensorView view;
      view.data = m.null_data ? nullptr : m_data;
      view.dtype = m.dtype;
      view.device = m.device;
      view.ndim = m.ndim;
      view.shape = m.shape;
      view.strides = m.strides;
      call.values[i] = view;
      call.buffer_of[i] = index;
      call.origin[i] = m_data - buffer.data();
    }
    call.buffers.push_back(std::move(buffer));
  }
  return call;
}

std::vector<std::vector<std::uint8_t>> writable_bytes(const CallSpec& spec, const FuzzCall& call) {
  std::vector<std::vector<std::uint8_t>> writable;
  for (const Buffer& buffer : call.buffers) writable.emplace_back(buffer.size(), false);
  for (std::size_t i = 0; i < spec.args.size(); ++i) {
    if (!spec.args[i].is_tensor || call.buffer_of[i] < 0) continue;
    if (!is_output(spec.op->arguments[i].kind)) continue;
    const TensorSpec& t = spec.args[i].tensor;
    std::vector<std::uint8_t>& mask = writable[static_cast<std::size_t>(call.buffer_of[i])];
    auto allow = [&](std::int64_t from, std::int64_t bytes) {
      const std::int64_t begin = std::max<std::int64_t>(call.origin[i] + from, 0);
      const std::int64_t end =
          std::min<std::int64_t>(call.origin[i] + from + bytes, static_cast<std::int64_t>(mask.size()));
      if (begin < end) std::memset(mask.data() + begin, 1, static_cast<std::size_t>(end - begin));
    };
    const std::int64_t element = dtype_size(t.dtype);
    for_each_run(t.ndim, t.shape, t.strides, element, allow);
    if (spec.op->addresses_rows) allow(0, row_bytes(t));
  }
  return writable;
}

std::vector<std::uint8_t> logical_outputs(const CallSpec& spec, const FuzzCall& call) {
  std::vector<std::uint8_t> bytes;
  for (std::size_t i = 0; i < spec.args.size(); ++i) {
    if (!spec.args[i].is_tensor || call.buffer_of[i] < 0) continue;
    if (!is_output(spec.op->arguments[i].kind)) continue;
    const TensorSpec& t = spec.args[i].tensor;
    const std::uint8_t* data =
        call.buffers[static_cast<std::size_t>(call.buffer_of[i])].data() + call.origin[i];
    const std::int64_t element = dtype_size(t.dtype);
    for_each_run(t.ndim, t.shape, t.strides, element, [&](std::int64_t offset, std::int64_t run) {
      bytes.insert(bytes.end(), data + offset, data + offset + run);
    });
  }
  return bytes;
}

std::string describe(const CallSpec& spec) {
  std::ostringstream out;
  for (std::size_t i = 0; i < spec.args.size(); ++i) {
    const ArgSpec& a = spec.args[i];
    out << "    " << spec.op->arguments[i].name << " = ";
    if (!a.is_tensor) {
      std::visit(
          [&](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, TensorView>) {
              out << "?";
            } else if constexpr (std::is_same_v<T, std::string>) {
              out << '"' << v << '"';
            } else {
              out << v;
            }
          },
          a.scalar);
    } else if (a.tensor.absent) {
      out << "(no tensor)";
    } else {
      const TensorSpec& t = a.tensor;
      out << dtype_name(t.dtype) << "[";
      for (int d = 0; d < t.ndim; ++d) out << (d ? ", " : "") << t.shape[d];
      out << "] strides [";
      for (int d = 0; d < t.ndim; ++d) out << (d ? ", " : "") << t.strides[d];
      out << "] on " << device_name(t.device);
      if (t.offset != 0) out << ", offset " << t.offset << " elements";
      if (t.null_data) out << ", data = nullptr";
      if (t.shares_memory_with >= 0)
        out << ", in the memory of " << spec.op->arguments[t.shares_memory_with].name;
    }
    out << "\n";
  }
  return out.str();
}

}  // namespace pagedkv::fuzz
