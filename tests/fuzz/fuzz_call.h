// A call of any registered op, described so that the fuzzer can change one thing and build it
// again (CallSpec), and the call built in memory the fuzzer owns (FuzzCall).
//
// Every tensor of a FuzzCall lives in a buffer of its own, surrounded by guard bytes; the
// bytes between its elements (the gaps a padded layout leaves) belong to the buffer too. The
// fuzzer can therefore tell, for any run, whether an op wrote a byte it had no business
// writing: an input, a gap, a guard, or anything at all when the call was rejected.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "pagedkv/buffers.h"
#include "pagedkv/op.h"
#include "pagedkv/registry.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv::fuzz {

/// Bytes of guard on each side of every tensor's memory.
inline constexpr std::int64_t kGuardBytes = 64;

/// How to build one tensor argument: where its logical contents come from (`source`, a view of
/// the registry case's host memory) and the view the op will receive (dtype, shape, strides,
/// device tag, first element `offset` elements into its memory).
struct TensorSpec {
  TensorView source;            // the values, as the registry case drew them
  DType dtype = DType::f32;     // the dtype the op sees (differs from source only by mutation)
  Device device = Device::cpu;  // the device tag the op sees (the memory is host memory)
  int ndim = 0;
  std::array<std::int64_t, kMaxDims> shape{};
  std::array<std::int64_t, kMaxDims> strides{};  // in elements; may be negative or overlap
  // Elements of this dtype between the start of the tensor's memory and its lowest element (a
  // misaligned view); for a tensor that shares another's memory, elements after that one's
  // data pointer.
  std::int64_t offset = 0;
  bool null_data = false;       // the op sees data == nullptr
  bool absent = false;          // an optional tensor the case left out (no data, no buffer)
  int shares_memory_with = -1;  // argument index whose buffer this tensor lives in (aliasing)
};

/// One argument: a tensor, or a scalar value as the op receives it.
struct ArgSpec {
  bool is_tensor = false;
  TensorSpec tensor;  // when is_tensor
  ArgValue scalar;    // otherwise
};

/// A whole call: the op and one ArgSpec per argument, in the op's order.
struct CallSpec {
  const OpEntry* op = nullptr;
  std::vector<ArgSpec> args;
};

/// The spec that reproduces a registry case's call exactly (same layouts, host memory).
/// \param op the op.
/// \param values the case's cpu_arguments().
CallSpec spec_of(const OpEntry& op, const std::vector<ArgValue>& values);

/// A call built from a CallSpec: its values and the host memory behind them.
struct FuzzCall {
  std::vector<ArgValue> values;      // what the op receives
  std::vector<Buffer> buffers;       // one per tensor with memory (host)
  std::vector<int> buffer_of;        // per argument: index into buffers, or -1
  std::vector<std::int64_t> origin;  // per argument: byte offset of its lowest element

  /// All bytes of all buffers, in order (to compare before and after a run).
  std::vector<std::uint8_t> snapshot() const;
};

/// Builds `spec` in fresh host memory: guards and gaps filled with a fixed pattern, the elements
/// present in the source copied, every other element given random bytes valid for its dtype.
/// \param spec the call.
/// \param seed seeds the random bytes.
FuzzCall build(const CallSpec& spec, std::uint64_t seed);

/// Calls fn(byte offset from the view's data pointer) for every element of a view, in
/// row-major logical order.
template <class Fn>
void for_each_element(int ndim, const std::array<std::int64_t, kMaxDims>& shape,
                      const std::array<std::int64_t, kMaxDims>& strides, std::int64_t element_bytes,
                      Fn&& fn) {
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] == 0) return;
  }
  std::array<std::int64_t, kMaxDims> index{};
  while (true) {
    std::int64_t offset = 0;
    for (int d = 0; d < ndim; ++d) offset += index[d] * strides[d];
    fn(offset * element_bytes);
    int d = ndim - 1;
    while (d >= 0 && ++index[d] == shape[d]) index[d--] = 0;
    if (d < 0) return;
  }
}

/// Calls fn(byte offset, bytes) for runs of a view's elements in row-major logical order:
/// whole rows when the last dimension is packed (stride 1), else single elements. Much faster
/// than one call per element (the fuzzer walks every byte of every output several times).
template <class Fn>
void for_each_run(int ndim, const std::array<std::int64_t, kMaxDims>& shape,
                  const std::array<std::int64_t, kMaxDims>& strides, std::int64_t element_bytes,
                  Fn&& fn) {
  if (ndim >= 1 && strides[ndim - 1] == 1) {
    if (shape[ndim - 1] == 0) return;
    const std::int64_t row = shape[ndim - 1] * element_bytes;
    for_each_element(ndim - 1, shape, strides, element_bytes,
                     [&](std::int64_t offset) { fn(offset, row); });
  } else {
    for_each_element(ndim, shape, strides, element_bytes,
                     [&](std::int64_t offset) { fn(offset, element_bytes); });
  }
}

/// For each buffer of `call`, which bytes the op may write: the elements of its output and
/// inout tensors (1 where it may). Everything else (inputs, gaps, guards) must keep its bytes.
std::vector<std::vector<std::uint8_t>> writable_bytes(const CallSpec& spec, const FuzzCall& call);

/// The bytes of every output and inout element in logical order (what two runs of one op on
/// differently laid out memory must agree on).
std::vector<std::uint8_t> logical_outputs(const CallSpec& spec, const FuzzCall& call);

/// "key_cache: bf16[2, 16, 8, 128] strides [...] +3 on cpu", one line per argument.
std::string describe(const CallSpec& spec);

}  // namespace pagedkv::fuzz
