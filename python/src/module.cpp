// pagedkv._core: the compiled half of the Python package.
//
//   _core.cpu / _core.naive / _core.optimized   the three implementations, identical signatures
//   _core.cuda_available()                      a usable CUDA device and driver?
//   _core.ops()                                 the op registry (names, family, role, sources)
//   _core.InvalidArgument / _core.CudaError     the C++ exceptions, as ValueError / RuntimeError
//
// The pure-Python package (python/pagedkv/*.py) wraps these functions: it accepts ml_dtypes and
// float8 arrays, turns Python floats into scale arrays and picks the current torch stream.

#include <algorithm>
#include <array>
#include <memory>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "op_bindings.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"
#include "pagedkv/registry.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

// One registry entry as a plain dict (what pagedkv.ops() returns).
nb::dict op_entry_dict(const pagedkv::OpEntry& entry) {
  nb::dict d;
  d["name"] = entry.name;
  d["family"] = entry.family;
  d["role"] = entry.role;
  d["upstream"] = entry.upstream;
  d["cpu_source"] = entry.cpu_source;
  d["naive_source"] = entry.naive_source;
  d["optimized_source"] = entry.optimized_source;
  d["byte_model"] = entry.byte_model;
  d["agreement_rule"] = entry.agreement_rule;
  nb::list workloads;
  for (const std::string& w : entry.workloads) workloads.append(w);
  d["workloads"] = workloads;
  d["workload_notes"] = entry.workload_notes;
  nb::list arguments;
  for (const pagedkv::ArgInfo& arg : entry.arguments) {
    nb::dict a;
    a["name"] = arg.name;
    a["kind"] = pagedkv::kind_name(arg.kind);
    a["schema_type"] = pagedkv::schema_type(arg.kind);
    a["doc"] = arg.doc;
    a["default"] = arg.default_value;  // "" when the argument has none
    arguments.append(a);
  }
  d["arguments"] = arguments;
  return d;
}

// The bytes of a host view's elements in row-major order (strides followed, a packed copy).
std::string packed_bytes(const pagedkv::TensorView& view) {
  const std::int64_t element = pagedkv::dtype_size(view.dtype);
  std::string bytes;
  bytes.reserve(static_cast<std::size_t>(view.numel() * element));
  std::array<std::int64_t, pagedkv::kMaxDims> index{};
  if (view.numel() == 0) return bytes;
  const auto* base = static_cast<const char*>(view.data);
  while (true) {
    std::int64_t offset = 0;
    for (int d = 0; d < view.ndim; ++d) offset += index[d] * view.strides[d];
    bytes.append(base + offset * element, static_cast<std::size_t>(element));
    int d = view.ndim - 1;
    while (d >= 0 && ++index[d] == view.shape[d]) index[d--] = 0;
    if (d < 0) return bytes;
  }
}

// One valid call of an op, from the first quick point of its card with a few tokens: each
// argument a Python value, each tensor a (bytes, dtype name, shape) triple of packed
// row-major elements, an absent optional tensor None. What registry-driven Python tests use.
nb::list sample_call(const std::string& name, std::int64_t size) {
  const pagedkv::OpEntry& op = pagedkv::find_op(name);
  PAGEDKV_CHECK(!op.workloads.empty(), name, ": its card lists no workload");
  std::vector<pagedkv::WorkloadPoint> points = op.points(op.workloads.front(), true);
  PAGEDKV_CHECK(!points.empty(), name, ": its card lists no quick point");
  pagedkv::WorkloadPoint point = points.front();
  std::unique_ptr<pagedkv::OpCase> made;
  for (point.size = std::min(point.size, size);; point.size = std::min(points.front().size, point.size * 2)) {
    if (point.num_blocks > 0) point.num_blocks = std::max<std::int64_t>(point.size, 8);
    try {
      made = op.make_case(point, 1234);
      break;
    } catch (const std::exception&) {
      if (point.size >= points.front().size) throw;  // a builder that needs more grows
    }
  }
  nb::list values;
  for (const pagedkv::ArgValue& value : made->cpu_arguments()) {
    if (const auto* view = std::get_if<pagedkv::TensorView>(&value)) {
      if (view->data == nullptr && view->ndim == 0) {
        values.append(nb::none());
        continue;
      }
      nb::list shape;
      for (int d = 0; d < view->ndim; ++d) shape.append(view->shape[d]);
      const std::string bytes = packed_bytes(*view);
      values.append(nb::make_tuple(nb::bytes(bytes.data(), bytes.size()),
                                   std::string(pagedkv::dtype_name(view->dtype)), nb::tuple(shape)));
    } else {
      std::visit([&](const auto& scalar) {
        using T = std::decay_t<decltype(scalar)>;
        if constexpr (!std::is_same_v<T, pagedkv::TensorView>) values.append(nb::cast(scalar));
      }, value);
    }
  }
  return values;
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "pagedkv's compiled ops: the CPU reference, the naive and the optimized CUDA kernels.";
  m.attr("__version__") = PAGEDKV_VERSION_STRING;
  m.attr("cuda_architectures") = PAGEDKV_CUDA_ARCHITECTURES_STRING;

  // InvalidArgument is a ValueError and CudaError a RuntimeError for Python callers; the message
  // is the C++ message unchanged. Registering the exact classes also lets callers catch
  // pagedkv.InvalidArgument specifically.
  nb::exception<pagedkv::InvalidArgument>(m, "InvalidArgument", PyExc_ValueError);
  nb::exception<pagedkv::CudaError>(m, "CudaError", PyExc_RuntimeError);

  m.def("cuda_available", &pagedkv::cuda_device_available,
        "True when a CUDA device and driver can be used (False without a GPU: never raises).");

  m.def(
      "ops",
      []() {
        nb::list entries;
        for (const pagedkv::OpEntry& entry : pagedkv::op_registry())
          entries.append(op_entry_dict(entry));
        return entries;
      },
      "The op registry: one dict per op (name, family, role, upstream, cpu_source, "
      "naive_source, optimized_source, byte_model, agreement_rule, workloads, workload_notes, "
      "arguments: a "
      "list of dicts with name, kind, schema_type and doc).");

  m.def(
      "set_error_mode",
      [](const std::string& mode) {
        if (mode == "automatic") {
          pagedkv::set_error_mode(pagedkv::ErrorMode::automatic);
        } else if (mode == "synchronous") {
          pagedkv::set_error_mode(pagedkv::ErrorMode::synchronous);
        } else if (mode == "deferred") {
          pagedkv::set_error_mode(pagedkv::ErrorMode::deferred);
        } else {
          pagedkv::reject("mode: expected \"automatic\", \"synchronous\" or \"deferred\", got \"",
                          mode, "\"");
        }
      },
      "mode"_a,
      "Sets when the checks of device index values report a bad value (see error_mode()).");
  m.def(
      "error_mode",
      []() { return std::string(pagedkv::error_mode_name(pagedkv::error_mode())); },
      "\"automatic\" (the default: synchronous errors for pagedkv.naive/optimized, deferred "
      "for pagedkv.vllm_ops and inside CUDA graph captures), \"synchronous\" or \"deferred\" "
      "(PAGEDKV_ERRORS=sync|deferred sets the first value).");
  m.def(
      "check_errors",
      []() {
        nb::gil_scoped_release no_gil;
        pagedkv::check_errors();
      },
      "Waits for the current CUDA device and raises the error a deferred index check found "
      "since the last report (ValueError naming the op, the argument and the element); does "
      "nothing when there is none. Not inside a CUDA graph capture.");

  m.def("sample_call", &sample_call, "op"_a, "size"_a = 4,
        "One valid call of op `op` from its registry card (about `size` tokens, blocks or "
        "sequences): a list in the op's argument order, each tensor a (bytes, dtype name, "
        "shape) triple of packed row-major host elements, an absent optional tensor None. For "
        "registry-driven tests.");

  pagedkv::python::bind_prepared_call(m);
  for (pagedkv::Impl impl : pagedkv::kAllImpls) {
    const std::string name(pagedkv::impl_name(impl));
    nb::module_ sub = m.def_submodule(name.c_str(), ("pagedkv's " + name + " implementation").c_str());
    pagedkv::python::bind_ops(sub, impl);
  }
}
