// pagedkv._core: the compiled half of the Python package.
//
//   _core.cpu / _core.naive / _core.optimized   the three implementations, identical signatures
//   _core.cuda_available()                      a usable CUDA device and driver?
//   _core.ops()                                 the op registry (names, family, role, sources)
//   _core.InvalidArgument / _core.CudaError     the C++ exceptions, as ValueError / RuntimeError
//
// The pure-Python package (python/pagedkv/*.py) wraps these functions: it accepts ml_dtypes and
// float8 arrays, turns Python floats into scale arrays and picks the current torch stream.

#include <string>

#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "op_bindings.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/error.h"
#include "pagedkv/registry.h"

namespace nb = nanobind;

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

  pagedkv::python::bind_prepared_call(m);
  for (pagedkv::Impl impl : pagedkv::kAllImpls) {
    const std::string name(pagedkv::impl_name(impl));
    nb::module_ sub = m.def_submodule(name.c_str(), ("pagedkv's " + name + " implementation").c_str());
    pagedkv::python::bind_ops(sub, impl);
  }
}
