// The op registry: one OpEntry per op of AllOps (pagedkv/ops.h), in catalogue order. Each entry
// is the op's card (Op::card(), in core/entries/<op>.cpp) plus what entry_of() derives from the
// op's struct: its name, its arguments and two entry points that take their arguments as a
// list of values (what the Python bindings call).
#include "pagedkv/registry.h"

#include <algorithm>
#include <string>
#include <type_traits>

#include "pagedkv/cuda_runtime.h"
#include "pagedkv/error.h"
#include "pagedkv/ops.h"

namespace pagedkv {

namespace {

// The C++ type of an argument, for the message when a value of another type arrives.
template <typename T>
const char* value_type_name() {
  if constexpr (std::is_same_v<T, TensorView>) return "tensor";
  if constexpr (std::is_same_v<T, std::int64_t>) return "int";
  if constexpr (std::is_same_v<T, double>) return "float";
  if constexpr (std::is_same_v<T, bool>) return "bool";
  return "str";
}

// Op::Args from values in the order of Op::arguments.
template <class Op>
typename Op::Args args_from(const std::vector<ArgValue>& values) {
  typename Op::Args args{};
  std::size_t index = 0;
  Op::arguments([&](auto member, const char* name, ArgKind, const char*) {
    using T = std::remove_reference_t<decltype(args.*member)>;
    PAGEDKV_CHECK(index < values.size(), Op::name, ": expected ", arguments_of<Op>().size(),
                  " arguments, got ", values.size());
    const T* value = std::get_if<T>(&values[index]);
    PAGEDKV_CHECK(value != nullptr, name, ": expected a ", value_type_name<T>(), " (argument ",
                  index + 1, " of ", Op::name, ")");
    args.*member = *value;
    ++index;
  });
  PAGEDKV_CHECK(index == values.size(), Op::name, ": expected ", index, " arguments, got ",
                values.size());
  return args;
}

// The checked entry point (run() opens the CheckScope of pagedkv/deferred_checks.h).
template <class Op>
void run_values(Impl impl, const std::vector<ArgValue>& values, cudaStream_t stream) {
  run<Op>(impl, args_from<Op>(values), stream);
}

template <class Op>
std::function<void(cudaStream_t)> prepare_values(Impl impl, const std::vector<ArgValue>& values) {
  typename Op::Args args = args_from<Op>(values);
  typename Op::Plan plan = check_call<Op>(args, impl);
  return [impl, args = std::move(args), plan = std::move(plan)](cudaStream_t stream) {
    launch<Op>(impl, plan, args, stream);
  };
}

// The card of Op with the fields its struct gives.
template <class Op>
OpEntry entry_of() {
  OpEntry entry = Op::card();
  entry.name = Op::name;
  entry.arguments = arguments_of<Op>();
  entry.run = &run_values<Op>;
  entry.prepare = &prepare_values<Op>;
  if constexpr (detail::declares_sharing<Op>::value) {
    entry.may_share_memory = [](std::string_view output, std::string_view other) {
      return Op::may_share_memory(output, other);
    };
  }
  return entry;
}

template <class... Op>
std::vector<OpEntry> entries_of(OpList<Op...>) {
  return {entry_of<Op>()...};
}

}  // namespace

const std::vector<OpEntry>& op_registry() {
  // Built on first use (never at static-initialisation time), and never touches CUDA.
  static const std::vector<OpEntry> registry = entries_of(AllOps{});
  return registry;
}

const OpEntry& find_op(std::string_view name) {
  std::string known;
  for (const OpEntry& entry : op_registry()) {
    if (entry.name == name) return entry;
    known += (known.empty() ? "" : ", ") + entry.name;
  }
  reject("op: expected one of {", known, "}, got \"", name, "\"");
}

int buffer_sets_for(std::int64_t bytes_per_launch, std::int64_t l2_bytes) {
  if (bytes_per_launch <= 0) return 1;
  const std::int64_t wanted = (2 * l2_bytes) / bytes_per_launch + 1;  // strictly more than 2 × L2
  return static_cast<int>(std::clamp<std::int64_t>(wanted, 1, kMaxBufferSets));
}

Agreement OpCase::check(Impl impl) {
  PAGEDKV_CHECK(impl != Impl::cpu, "OpCase::check: impl must be naive or optimized, got cpu");
  reset_outputs();
  run_checked(impl);
  PAGEDKV_CUDA_CHECK(cudaGetLastError());
  PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  return compare_outputs();
}

void OpCase::launch_alternative(const std::string& name, int set, cudaStream_t stream) {
  (void)set, (void)stream;
  reject("alternative: this op offers none, got \"", name, "\"");
}

Agreement OpCase::check_alternative(const std::string& name, cudaStream_t stream) {
  reset_outputs();
  launch_alternative(name, 0, stream);
  PAGEDKV_CUDA_CHECK(cudaGetLastError());
  PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream));
  return compare_outputs();
}

}  // namespace pagedkv
