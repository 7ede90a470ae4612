// Every op of the registry, bound once for all: `call(op, args, stream)` and `prepare(op, args)`
// in each of the three submodules. The arguments arrive as a list in the op's order; each is
// converted by the kind the op's description gives it (a tensor through DLPack, an int, a
// float, a bool, a string), then the registry's type-erased entry point validates and runs.
// Validation is the op's own, so a Python caller gets exactly the C++ error messages.

#include "op_bindings.h"

#include <nanobind/stl/string.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"
#include "pagedkv/registry.h"
#include "tensor_args.h"

namespace pagedkv::python {

namespace {

using namespace nb::literals;

cudaStream_t as_stream(std::uintptr_t handle) { return reinterpret_cast<cudaStream_t>(handle); }

// find_op() by a hash lookup: every Python call names its op, and find_op() compares names one
// by one (and spells the list of known names as it goes, for its error message).
const OpEntry& op_named(const std::string& name) {
  static const std::unordered_map<std::string, const OpEntry*> by_name = [] {
    std::unordered_map<std::string, const OpEntry*> map;
    for (const OpEntry& entry : op_registry()) map.emplace(entry.name, &entry);
    return map;
  }();
  const auto found = by_name.find(name);
  return found != by_name.end() ? *found->second : find_op(name);  // find_op() explains
}

// One call's converted arguments: the values the registry takes, and the arrays behind the
// tensor values (kept alive as long as the call, or the PreparedCall, needs them).
struct ConvertedArgs {
  std::vector<ArgValue> values;
  std::vector<TensorArg> tensors;

  int cuda_device() const { return first_cuda_device(tensors); }
};

ConvertedArgs convert(const OpEntry& op, const nb::sequence& args) {
  const std::size_t given = nb::len(args);
  PAGEDKV_CHECK(given == op.arguments.size(), op.name, ": expected ", op.arguments.size(),
                " arguments, got ", given);
  ConvertedArgs converted;
  converted.tensors.reserve(op.arguments.size());
  for (std::size_t i = 0; i < given; ++i) {
    const ArgInfo& info = op.arguments[i];
    nb::handle object = args[i];
    const char* name = info.name.c_str();
    if (is_tensor(info.kind)) {
      const bool optional =
          info.kind == ArgKind::optional_input || info.kind == ArgKind::optional_inout;
      if (optional && object.is_none()) {
        converted.values.emplace_back(TensorView{});  // no data: the argument is absent
        continue;
      }
      const Access access = is_written(info.kind) ? Access::write : Access::read;
      converted.tensors.push_back(tensor_arg(object, name, access));
      converted.values.emplace_back(converted.tensors.back().view);
    } else if (info.kind == ArgKind::integer) {
      converted.values.emplace_back(nb::cast<std::int64_t>(object));
    } else if (info.kind == ArgKind::real) {
      converted.values.emplace_back(nb::cast<double>(object));
    } else if (info.kind == ArgKind::boolean) {
      converted.values.emplace_back(nb::cast<bool>(object));
    } else {
      converted.values.emplace_back(nb::cast<std::string>(object));
    }
  }
  return converted;
}

}  // namespace

/// \brief An op call whose arguments were converted and validated once; calling it runs the op
/// again on the same arrays (which it keeps alive).
class PreparedCall {
 public:
  PreparedCall(std::string description, std::shared_ptr<ConvertedArgs> args,
               std::function<void(cudaStream_t)> run)
      : description_(std::move(description)), args_(std::move(args)), run_(std::move(run)) {}
  /// \brief Runs the op once on `stream` (ignored by the CPU reference).
  void operator()(std::uintptr_t stream) const {
    CudaDeviceGuard guard(args_->cuda_device());
    nb::gil_scoped_release no_gil;
    run_(as_stream(stream));
  }
  /// \brief The implementation and the op it runs, as "<implementation> <op>".
  const std::string& description() const { return description_; }

 private:
  std::string description_;
  std::shared_ptr<ConvertedArgs> args_;
  std::function<void(cudaStream_t)> run_;
};

void bind_prepared_call(nb::module_& module) {
  nb::class_<PreparedCall>(module, "PreparedCall",
                           "An op call converted and validated once; call it to run the op "
                           "again on the same arrays.")
      .def("__call__", &PreparedCall::operator(), "stream"_a = 0,
           "Runs the op once on `stream` (an integer cudaStream_t; ignored by cpu).")
      .def_prop_ro("description", &PreparedCall::description)
      .def("__repr__", [](const PreparedCall& call) {
        return "<pagedkv PreparedCall: " + call.description() + ">";
      });
}

void bind_ops(nb::module_& module, Impl impl) {
  module.def(
      "call",
      [impl](const std::string& op_name, nb::sequence args, std::uintptr_t stream,
             bool prefer_deferred) {
        const OpEntry& op = op_named(op_name);
        const ConvertedArgs converted = convert(op, args);
        CudaDeviceGuard guard(converted.cuda_device());
        nb::gil_scoped_release no_gil;
        if (prefer_deferred) {
          PreferDeferredErrors deferred;
          op.run(impl, converted.values, as_stream(stream));
        } else {
          op.run(impl, converted.values, as_stream(stream));
        }
      },
      "op"_a, "args"_a, "stream"_a = 0, "prefer_deferred"_a = false,
      "Validates and runs op `op` on `args` (a list in the op's argument order) on `stream` (an "
      "integer cudaStream_t; 0 = the legacy default stream; ignored by cpu). With "
      "`prefer_deferred`, the checks of device index values defer their errors unless the "
      "error mode is 'synchronous' (what pagedkv.vllm_ops asks for).");

  module.def(
      "prepare",
      [impl](const std::string& op_name, nb::sequence args) {
        const OpEntry& op = op_named(op_name);
        auto converted = std::make_shared<ConvertedArgs>(convert(op, args));
        std::function<void(cudaStream_t)> run;
        {
          CudaDeviceGuard guard(converted->cuda_device());
          run = op.prepare(impl, converted->values);
        }
        return PreparedCall(std::string(impl_name(impl)) + " " + op.name, converted,
                            std::move(run));
      },
      "op"_a, "args"_a,
      "Validates one call of op `op` on `args` once and returns a PreparedCall that runs the "
      "validated plan (no checks, no synchronization) each time it is called.");
}

}  // namespace pagedkv::python
