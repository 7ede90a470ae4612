// The three ops, bound once per implementation. Each binding converts its Python arguments to
// TensorViews (tensor_args.h), makes the tensors' CUDA device current, releases the GIL and calls
// the C++ entry point of the chosen implementation. Validation is the op's own validate_<op>()
// (called inside the entry point), so a Python caller gets exactly the C++ error messages.

#include "op_bindings.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nanobind/stl/string.h>

#include "pagedkv/ops/reshape_and_cache.h"
#include "pagedkv/ops/reshape_and_cache_flash.h"
#include "pagedkv/ops/swap_blocks.h"
#include "tensor_args.h"

namespace pagedkv::python {

namespace {

using namespace nb::literals;

cudaStream_t as_stream(std::uintptr_t handle) { return reinterpret_cast<cudaStream_t>(handle); }

// ---------------------------------------------------------------------------------------------
// Argument bundles: one per op, converted once and kept alive as long as the call needs them.

struct SwapBlocksArgs {
  TensorArg src, dst, block_mapping;
  std::int64_t block_size_in_bytes = 0;

  SwapBlocksArgs(nb::handle src_, nb::handle dst_, std::int64_t block_size_in_bytes_,
                 nb::handle block_mapping_)
      : src(tensor_arg(src_, "src", Access::read)),
        dst(tensor_arg(dst_, "dst", Access::write)),
        block_mapping(tensor_arg(block_mapping_, "block_mapping", Access::read)),
        block_size_in_bytes(block_size_in_bytes_) {}

  int cuda_device() const { return first_cuda_device({&src, &dst, &block_mapping}); }
};

// reshape_and_cache and reshape_and_cache_flash take the same arguments.
struct CacheWriteArgs {
  TensorArg key, value, key_cache, value_cache, slot_mapping, k_scale, v_scale;
  std::string kv_cache_dtype;

  CacheWriteArgs(nb::handle key_, nb::handle value_, nb::handle key_cache_,
                 nb::handle value_cache_, nb::handle slot_mapping_, std::string kv_cache_dtype_,
                 nb::handle k_scale_, nb::handle v_scale_)
      : key(tensor_arg(key_, "key", Access::read)),
        value(tensor_arg(value_, "value", Access::read)),
        key_cache(tensor_arg(key_cache_, "key_cache", Access::write)),
        value_cache(tensor_arg(value_cache_, "value_cache", Access::write)),
        slot_mapping(tensor_arg(slot_mapping_, "slot_mapping", Access::read)),
        k_scale(tensor_arg(k_scale_, "k_scale", Access::read)),
        v_scale(tensor_arg(v_scale_, "v_scale", Access::read)),
        kv_cache_dtype(std::move(kv_cache_dtype_)) {}

  int cuda_device() const {
    return first_cuda_device({&key, &value, &key_cache, &value_cache, &slot_mapping, &k_scale,
                              &v_scale});
  }
};

// ---------------------------------------------------------------------------------------------
// Checked calls: validate, then run (what pagedkv.<impl>.<op>() does).

void call_swap_blocks(Impl impl, const SwapBlocksArgs& a, std::uintptr_t stream) {
  CudaDeviceGuard guard(a.cuda_device());
  nb::gil_scoped_release no_gil;
  switch (impl) {
    case Impl::cpu:
      cpu::swap_blocks(a.src.view, a.dst.view, a.block_size_in_bytes, a.block_mapping.view);
      break;
    case Impl::naive:
      naive::swap_blocks(a.src.view, a.dst.view, a.block_size_in_bytes, a.block_mapping.view,
                         as_stream(stream));
      break;
    case Impl::optimized:
      optimized::swap_blocks(a.src.view, a.dst.view, a.block_size_in_bytes,
                             a.block_mapping.view, as_stream(stream));
      break;
  }
}

void call_reshape_and_cache(Impl impl, const CacheWriteArgs& a, std::uintptr_t stream) {
  CudaDeviceGuard guard(a.cuda_device());
  nb::gil_scoped_release no_gil;
  switch (impl) {
    case Impl::cpu:
      cpu::reshape_and_cache(a.key.view, a.value.view, a.key_cache.view, a.value_cache.view,
                             a.slot_mapping.view, a.kv_cache_dtype, a.k_scale.view,
                             a.v_scale.view);
      break;
    case Impl::naive:
      naive::reshape_and_cache(a.key.view, a.value.view, a.key_cache.view, a.value_cache.view,
                               a.slot_mapping.view, a.kv_cache_dtype, a.k_scale.view,
                               a.v_scale.view, as_stream(stream));
      break;
    case Impl::optimized:
      optimized::reshape_and_cache(a.key.view, a.value.view, a.key_cache.view,
                                   a.value_cache.view, a.slot_mapping.view, a.kv_cache_dtype,
                                   a.k_scale.view, a.v_scale.view, as_stream(stream));
      break;
  }
}

void call_reshape_and_cache_flash(Impl impl, const CacheWriteArgs& a, std::uintptr_t stream) {
  CudaDeviceGuard guard(a.cuda_device());
  nb::gil_scoped_release no_gil;
  switch (impl) {
    case Impl::cpu:
      cpu::reshape_and_cache_flash(a.key.view, a.value.view, a.key_cache.view,
                                   a.value_cache.view, a.slot_mapping.view, a.kv_cache_dtype,
                                   a.k_scale.view, a.v_scale.view);
      break;
    case Impl::naive:
      naive::reshape_and_cache_flash(a.key.view, a.value.view, a.key_cache.view,
                                     a.value_cache.view, a.slot_mapping.view, a.kv_cache_dtype,
                                     a.k_scale.view, a.v_scale.view, as_stream(stream));
      break;
    case Impl::optimized:
      optimized::reshape_and_cache_flash(a.key.view, a.value.view, a.key_cache.view,
                                         a.value_cache.view, a.slot_mapping.view,
                                         a.kv_cache_dtype, a.k_scale.view, a.v_scale.view,
                                         as_stream(stream));
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// Prepared calls: validate once, launch many times (for timing from Python). The CUDA
// implementations keep the validated plan and call launch_<op>() (no re-validation, no slot
// check, no synchronization); the CPU reference has no separate launch step and simply runs the
// checked call again.

}  // namespace

/// \brief An op call whose arguments were converted and validated once; calling it runs the op
/// again on the same arrays (which it keeps alive).
class PreparedCall {
 public:
  PreparedCall(std::string description, std::function<void(std::uintptr_t)> run)
      : description_(std::move(description)), run_(std::move(run)) {}
  /// \brief Runs the op once on `stream` (ignored by the CPU reference).
  void operator()(std::uintptr_t stream) const { run_(stream); }
  /// \brief "optimized reshape_and_cache_flash".
  const std::string& description() const { return description_; }

 private:
  std::string description_;
  std::function<void(std::uintptr_t)> run_;
};

namespace {

PreparedCall prepare_swap_blocks(Impl impl, nb::handle src, nb::handle dst,
                                 std::int64_t block_size_in_bytes, nb::handle block_mapping) {
  auto args = std::make_shared<SwapBlocksArgs>(src, dst, block_size_in_bytes, block_mapping);
  const std::string what = std::string(impl_name(impl)) + " swap_blocks";
  if (impl == Impl::cpu) {
    // Validate now so that a bad call fails at prepare time for every implementation.
    validate_swap_blocks(args->src.view, args->dst.view, block_size_in_bytes,
                         args->block_mapping.view, impl);
    return PreparedCall(what, [args](std::uintptr_t s) { call_swap_blocks(Impl::cpu, *args, s); });
  }
  SwapBlocksPlan plan;
  {
    CudaDeviceGuard guard(args->cuda_device());
    plan = validate_swap_blocks(args->src.view, args->dst.view, block_size_in_bytes,
                                args->block_mapping.view, impl);
  }
  auto shared_plan = std::make_shared<SwapBlocksPlan>(std::move(plan));
  return PreparedCall(what, [impl, args, shared_plan](std::uintptr_t s) {
    CudaDeviceGuard guard(args->cuda_device());
    nb::gil_scoped_release no_gil;
    if (impl == Impl::naive)
      naive::launch_swap_blocks(*shared_plan, args->src.view, args->dst.view, as_stream(s));
    else
      optimized::launch_swap_blocks(*shared_plan, args->src.view, args->dst.view, as_stream(s));
  });
}

PreparedCall prepare_reshape_and_cache(Impl impl, nb::handle key, nb::handle value,
                                       nb::handle key_cache, nb::handle value_cache,
                                       nb::handle slot_mapping, std::string kv_cache_dtype,
                                       nb::handle k_scale, nb::handle v_scale) {
  auto a = std::make_shared<CacheWriteArgs>(key, value, key_cache, value_cache, slot_mapping,
                                            std::move(kv_cache_dtype), k_scale, v_scale);
  const std::string what = std::string(impl_name(impl)) + " reshape_and_cache";
  ReshapeAndCachePlan plan;
  {
    CudaDeviceGuard guard(a->cuda_device());
    plan = validate_reshape_and_cache(a->key.view, a->value.view, a->key_cache.view,
                                      a->value_cache.view, a->slot_mapping.view,
                                      a->kv_cache_dtype, a->k_scale.view, a->v_scale.view, impl);
  }
  if (impl == Impl::cpu)
    return PreparedCall(what, [a](std::uintptr_t s) { call_reshape_and_cache(Impl::cpu, *a, s); });
  return PreparedCall(what, [impl, a, plan](std::uintptr_t s) {
    CudaDeviceGuard guard(a->cuda_device());
    nb::gil_scoped_release no_gil;
    auto launch = impl == Impl::naive ? &naive::launch_reshape_and_cache
                                      : &optimized::launch_reshape_and_cache;
    launch(plan, a->key.view, a->value.view, a->key_cache.view, a->value_cache.view,
           a->slot_mapping.view, a->k_scale.view, a->v_scale.view, as_stream(s));
  });
}

PreparedCall prepare_reshape_and_cache_flash(Impl impl, nb::handle key, nb::handle value,
                                             nb::handle key_cache, nb::handle value_cache,
                                             nb::handle slot_mapping, std::string kv_cache_dtype,
                                             nb::handle k_scale, nb::handle v_scale) {
  auto a = std::make_shared<CacheWriteArgs>(key, value, key_cache, value_cache, slot_mapping,
                                            std::move(kv_cache_dtype), k_scale, v_scale);
  const std::string what = std::string(impl_name(impl)) + " reshape_and_cache_flash";
  ReshapeAndCacheFlashPlan plan;
  {
    CudaDeviceGuard guard(a->cuda_device());
    plan = validate_reshape_and_cache_flash(a->key.view, a->value.view, a->key_cache.view,
                                            a->value_cache.view, a->slot_mapping.view,
                                            a->kv_cache_dtype, a->k_scale.view, a->v_scale.view,
                                            impl);
  }
  if (impl == Impl::cpu)
    return PreparedCall(
        what, [a](std::uintptr_t s) { call_reshape_and_cache_flash(Impl::cpu, *a, s); });
  return PreparedCall(what, [impl, a, plan](std::uintptr_t s) {
    CudaDeviceGuard guard(a->cuda_device());
    nb::gil_scoped_release no_gil;
    auto launch = impl == Impl::naive ? &naive::launch_reshape_and_cache_flash
                                      : &optimized::launch_reshape_and_cache_flash;
    launch(plan, a->key.view, a->value.view, a->key_cache.view, a->value_cache.view,
           a->slot_mapping.view, a->k_scale.view, a->v_scale.view, as_stream(s));
  });
}

constexpr const char* kStreamDoc =
    "stream: cudaStream_t as an integer (0 = the legacy default stream); ignored by cpu.";

}  // namespace

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
  const std::string impl_text(impl_name(impl));

  module.def(
      "swap_blocks",
      [impl](nb::handle src, nb::handle dst, std::int64_t block_size_in_bytes,
             nb::handle block_mapping, std::uintptr_t stream) {
        SwapBlocksArgs args(src, dst, block_size_in_bytes, block_mapping);
        call_swap_blocks(impl, args, stream);
      },
      "src"_a, "dst"_a, "block_size_in_bytes"_a, "block_mapping"_a, "stream"_a = 0,
      (impl_text + " swap_blocks: copy whole blocks src -> dst following block_mapping "
                   "[n, 2] (src_block, dst_block). " + kStreamDoc).c_str());

  module.def(
      "reshape_and_cache",
      [impl](nb::handle key, nb::handle value, nb::handle key_cache, nb::handle value_cache,
             nb::handle slot_mapping, std::string kv_cache_dtype, nb::handle k_scale,
             nb::handle v_scale, std::uintptr_t stream) {
        CacheWriteArgs args(key, value, key_cache, value_cache, slot_mapping,
                            std::move(kv_cache_dtype), k_scale, v_scale);
        call_reshape_and_cache(impl, args, stream);
      },
      "key"_a, "value"_a, "key_cache"_a, "value_cache"_a, "slot_mapping"_a, "kv_cache_dtype"_a,
      "k_scale"_a, "v_scale"_a, "stream"_a = 0,
      (impl_text + " reshape_and_cache: write key/value rows into the legacy paged cache. " +
       kStreamDoc).c_str());

  module.def(
      "reshape_and_cache_flash",
      [impl](nb::handle key, nb::handle value, nb::handle key_cache, nb::handle value_cache,
             nb::handle slot_mapping, std::string kv_cache_dtype, nb::handle k_scale,
             nb::handle v_scale, std::uintptr_t stream) {
        CacheWriteArgs args(key, value, key_cache, value_cache, slot_mapping,
                            std::move(kv_cache_dtype), k_scale, v_scale);
        call_reshape_and_cache_flash(impl, args, stream);
      },
      "key"_a, "value"_a, "key_cache"_a, "value_cache"_a, "slot_mapping"_a, "kv_cache_dtype"_a,
      "k_scale"_a, "v_scale"_a, "stream"_a = 0,
      (impl_text + " reshape_and_cache_flash: write key/value rows into an NHD/HND paged cache. " +
       kStreamDoc).c_str());

  module.def(
      "prepare_swap_blocks",
      [impl](nb::handle src, nb::handle dst, std::int64_t block_size_in_bytes,
             nb::handle block_mapping) {
        return prepare_swap_blocks(impl, src, dst, block_size_in_bytes, block_mapping);
      },
      "src"_a, "dst"_a, "block_size_in_bytes"_a, "block_mapping"_a,
      "Validates a swap_blocks call once and returns a PreparedCall that runs it.");

  module.def(
      "prepare_reshape_and_cache",
      [impl](nb::handle key, nb::handle value, nb::handle key_cache, nb::handle value_cache,
             nb::handle slot_mapping, std::string kv_cache_dtype, nb::handle k_scale,
             nb::handle v_scale) {
        return prepare_reshape_and_cache(impl, key, value, key_cache, value_cache, slot_mapping,
                                         std::move(kv_cache_dtype), k_scale, v_scale);
      },
      "key"_a, "value"_a, "key_cache"_a, "value_cache"_a, "slot_mapping"_a, "kv_cache_dtype"_a,
      "k_scale"_a, "v_scale"_a,
      "Validates a reshape_and_cache call once and returns a PreparedCall that runs it.");

  module.def(
      "prepare_reshape_and_cache_flash",
      [impl](nb::handle key, nb::handle value, nb::handle key_cache, nb::handle value_cache,
             nb::handle slot_mapping, std::string kv_cache_dtype, nb::handle k_scale,
             nb::handle v_scale) {
        return prepare_reshape_and_cache_flash(impl, key, value, key_cache, value_cache,
                                               slot_mapping, std::move(kv_cache_dtype), k_scale,
                                               v_scale);
      },
      "key"_a, "value"_a, "key_cache"_a, "value_cache"_a, "slot_mapping"_a, "kv_cache_dtype"_a,
      "k_scale"_a, "v_scale"_a,
      "Validates a reshape_and_cache_flash call once and returns a PreparedCall that runs it.");
}

}  // namespace pagedkv::python
