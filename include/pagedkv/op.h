/// \file
/// \brief How an op describes itself once, and the checked entry point derived from it.
///
/// An op is one struct (e.g. pagedkv::RmsNorm in pagedkv/ops/rms_norm.h) that holds:
/// - `name`: the upstream name, used everywhere;
/// - `Args`: its arguments, in vLLM's order, with vLLM's names;
/// - `arguments(arg)`: the one list that gives each argument its kind and its documentation;
/// - `Plan`: what validation derives from the arguments (sizes, strides, dtypes);
/// - `validate(args, impl)`: the contract, shared by the three implementations;
/// - `cpu(plan, args)`, `naive(plan, args, stream)`, `optimized(plan, args, stream)`: the three
///   implementations, which trust the plan;
/// - `card()`: its card in the op registry (family, sources, workloads), written in
///   `core/entries/<op>.cpp`.
///
/// Everything else is derived from that struct: run() below (validate, then launch), the op
/// registry's entry, the Python bindings, the `vllm_ops` wrappers and the API page.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <cuda_runtime_api.h>

#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"
#include "pagedkv/impl.h"
#include "pagedkv/memory_overlap.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

struct OpEntry;  // pagedkv/registry.h: what Op::card() returns

/// \brief What one argument of an op is. The names follow vLLM's torch schemas: a tensor the op
/// writes is `Tensor!` there, an optional one `Tensor?`.
enum class ArgKind {
  input,           ///< a tensor the op only reads (`Tensor`)
  output,          ///< a tensor the op writes (`Tensor!`)
  inout,           ///< a tensor the op reads and overwrites (`Tensor!`)
  optional_input,  ///< a tensor the op reads, or none: a view with no data (`Tensor?`)
  optional_inout,  ///< a tensor the op reads and overwrites, or none: no data (`Tensor!?`)
  integer,         ///< a std::int64_t (`int`)
  real,            ///< a double (`float`)
  boolean,         ///< a bool (`bool`)
  string,          ///< a std::string (`str`)
};

/// \brief The kind's name as vLLM's torch schema spells the type ("Tensor!", "float", ...).
/// \param kind the argument kind.
/// \return the schema type.
constexpr const char* schema_type(ArgKind kind) {
  switch (kind) {
    case ArgKind::input: return "Tensor";
    case ArgKind::output: return "Tensor!";
    case ArgKind::inout: return "Tensor!";
    case ArgKind::optional_input: return "Tensor?";
    case ArgKind::optional_inout: return "Tensor!?";
    case ArgKind::integer: return "int";
    case ArgKind::real: return "float";
    case ArgKind::boolean: return "bool";
    case ArgKind::string: return "str";
  }
  return "?";
}

/// \brief "input", "output", "inout", "optional_input", "optional_inout", "int", "float", "bool"
/// or "str".
/// \param kind the argument kind.
/// \return its name in `pagedkv list --json` and in Python.
constexpr const char* kind_name(ArgKind kind) {
  switch (kind) {
    case ArgKind::input: return "input";
    case ArgKind::output: return "output";
    case ArgKind::inout: return "inout";
    case ArgKind::optional_input: return "optional_input";
    case ArgKind::optional_inout: return "optional_inout";
    case ArgKind::integer: return "int";
    case ArgKind::real: return "float";
    case ArgKind::boolean: return "bool";
    case ArgKind::string: return "str";
  }
  return "?";
}

/// \brief True for the five tensor kinds.
/// \param kind the argument kind.
/// \return whether the argument is a tensor.
constexpr bool is_tensor(ArgKind kind) {
  return kind == ArgKind::input || kind == ArgKind::output || kind == ArgKind::inout ||
         kind == ArgKind::optional_input || kind == ArgKind::optional_inout;
}

/// \brief True for the tensor kinds the op writes (`Tensor!`, `Tensor!?`).
/// \param kind the argument kind.
/// \return whether the op writes the argument.
constexpr bool is_written(ArgKind kind) {
  return kind == ArgKind::output || kind == ArgKind::inout || kind == ArgKind::optional_inout;
}

/// \brief One argument as the rest of the project sees it: the registry, the bindings and the
/// docs read these.
struct ArgInfo {
  std::string name;  ///< vLLM's name
  ArgKind kind;      ///< tensor role or scalar type
  std::string doc;   ///< shape, dtype and meaning: the one place this is written
  /// The default of an argument vLLM's Python wrapper lets the caller leave out, as Python
  /// writes it ("0", "False"); empty when the argument has none (Op::default_value()).
  std::string default_value;
};

/// \cond INTERNAL
namespace detail {
// Whether Op declares `static const char* default_value(std::string_view argument)`: the
// defaults of vLLM's wrapper (nullptr for an argument without one).
template <class Op, class = void>
struct declares_defaults : std::false_type {};
template <class Op>
struct declares_defaults<Op, std::void_t<decltype(Op::default_value(std::string_view{}))>>
    : std::true_type {};
}  // namespace detail
/// \endcond

/// \brief The C++ type that holds an argument of `kind`.
/// \tparam T the member's type in the op's Args.
/// \param kind the kind the op declares for it.
/// \return whether they belong together.
template <typename T>
constexpr bool kind_fits(ArgKind kind) {
  if constexpr (std::is_same_v<T, TensorView>) return is_tensor(kind);
  if constexpr (std::is_same_v<T, std::int64_t>) return kind == ArgKind::integer;
  if constexpr (std::is_same_v<T, double>) return kind == ArgKind::real;
  if constexpr (std::is_same_v<T, bool>) return kind == ArgKind::boolean;
  if constexpr (std::is_same_v<T, std::string>) return kind == ArgKind::string;
  return false;
}

/// \brief The op's arguments as ArgInfo, in order (what `Op::arguments` lists).
/// \tparam Op the op's struct.
/// \return one ArgInfo per argument.
template <class Op>
std::vector<ArgInfo> arguments_of() {
  std::vector<ArgInfo> list;
  Op::arguments([&](auto member, const char* name, ArgKind kind, const char* doc) {
    using Member = std::remove_reference_t<decltype(std::declval<typename Op::Args&>().*member)>;
    static_assert(kind_fits<Member>(ArgKind::input) || kind_fits<Member>(ArgKind::integer) ||
                      kind_fits<Member>(ArgKind::real) || kind_fits<Member>(ArgKind::boolean) ||
                      kind_fits<Member>(ArgKind::string),
                  "an op argument is a TensorView, std::int64_t, double, bool or std::string");
    ArgInfo info{name, kind, doc, {}};
    if constexpr (detail::declares_defaults<Op>::value) {
      if (const char* value = Op::default_value(name)) info.default_value = value;
    }
    list.push_back(std::move(info));
  });
  return list;
}

/// \cond INTERNAL
// Rejects a call in which an output or inout tensor shares a byte with any other tensor
// argument, naming both.
template <class Op>
void check_outputs_apart(const typename Op::Args& args) {
  struct Tensor {
    const char* name;
    bool writes;
    const TensorView* view;
  };
  std::vector<Tensor> tensors;
  Op::arguments([&](auto member, const char* name, ArgKind kind, const char*) {
    using T = std::remove_cv_t<std::remove_reference_t<decltype(args.*member)>>;
    if constexpr (std::is_same_v<T, TensorView>) {
      tensors.push_back({name, is_written(kind), &(args.*member)});
    }
  });
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (!tensors[i].writes) continue;
    for (std::size_t j = 0; j < tensors.size(); ++j) {
      if (j == i || (tensors[j].writes && j < i)) continue;  // each pair of outputs once
      if constexpr (detail::declares_sharing<Op>::value) {
        if (Op::may_share_memory(tensors[i].name, tensors[j].name)) continue;
      }
      PAGEDKV_CHECK(!share_memory(*tensors[i].view, *tensors[j].view), tensors[i].name,
                    ": expected memory of its own, but it shares bytes with ", tensors[j].name,
                    " (", tensors[i].view->describe(), " at ", tensors[i].view->data, "; ",
                    tensors[j].view->describe(), " at ", tensors[j].view->data, "): the op would ",
                    tensors[j].writes ? "write both" : "overwrite what it reads");
    }
  }
}

// The whole contract of a call: the op's own rules (Op::validate), then the rules every op
// shares, derived from its argument list. What run(), the registry's entry points and the
// comparison tool's plans validate with.
template <class Op>
typename Op::Plan check_call(const typename Op::Args& args, Impl impl) {
  typename Op::Plan plan = Op::validate(args, impl);
  check_outputs_apart<Op>(args);
  return plan;
}
/// \endcond

/// \brief Runs an already validated plan with implementation `impl` (nothing is checked, and
/// nothing synchronizes after a CUDA launch): what timing loops call.
/// \tparam Op the op's struct.
/// \param impl which implementation.
/// \param plan what Op::validate() returned for these arguments and this implementation.
/// \param args the arguments.
/// \param stream the CUDA stream (ignored by the CPU reference).
template <class Op>
void launch(Impl impl, const typename Op::Plan& plan, const typename Op::Args& args,
            cudaStream_t stream = nullptr) {
  switch (impl) {
    case Impl::cpu: Op::cpu(plan, args); return;
    case Impl::naive: Op::naive(plan, args, stream); return;
    case Impl::optimized: Op::optimized(plan, args, stream); return;
  }
}

/// \brief The checked entry point of every op: validate the arguments for `impl` (throws
/// InvalidArgument before anything is written), then run the implementation.
///
/// The checks of device index values run on `stream`, synchronously or deferred as the error
/// mode says (pagedkv/deferred_checks.h); on a capturing stream they always defer, so a call can
/// be captured into a CUDA graph.
///
/// \code
/// pagedkv::run<pagedkv::RmsNorm>(pagedkv::Impl::optimized, {out, input, weight, 1e-6}, stream);
/// \endcode
/// \tparam Op the op's struct.
/// \param impl which implementation.
/// \param args the arguments, in vLLM's order.
/// \param stream the CUDA stream (ignored by the CPU reference); nothing synchronizes after it.
template <class Op>
void run(Impl impl, const typename Op::Args& args, cudaStream_t stream = nullptr) {
  if (impl == Impl::cpu) {  // nothing on a device to check, nothing to defer
    launch<Op>(impl, check_call<Op>(args, impl), args, stream);
    return;
  }
  // Validation inside a CheckScope: the checks of device index values use the call's stream
  // and, when the call defers (a capture, pagedkv.vllm_ops, PAGEDKV_ERRORS=deferred), queue a
  // check kernel instead of reading the values back.
  const typename Op::Plan plan = [&] {
    CheckScope scope(Op::name, stream);
    return check_call<Op>(args, impl);
  }();
  launch<Op>(impl, plan, args, stream);
}

}  // namespace pagedkv
