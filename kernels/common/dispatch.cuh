/// \file
/// \brief From runtime types to template arguments: one kernel template per (activation type,
/// cache kind), chosen once on the host.
///
/// The cache writers are templates over the activation's element type (float, __half,
/// __nv_bfloat16) and the KvCacheDtype, so that the conversion is resolved at compile time. The
/// plan holds both as runtime values; dispatch_activation_and_cache_kind() turns them into types
/// for a generic lambda:
/// \code
/// dispatch_activation_and_cache_kind(plan.activation_dtype, plan.cache_kind,
///     [&](auto activation_tag, auto kind_tag) {
///       using Activation = typename decltype(activation_tag)::type;
///       constexpr KvCacheDtype kKind = decltype(kind_tag)::value;
///       my_kernel<Activation, kKind><<<grid, block, 0, stream>>>(...);
///     });
/// \endcode
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>
#include <utility>

#include "pagedkv/dtype.h"
#include "pagedkv/error.h"
#include "pagedkv/kv_cache_dtype.h"

namespace pagedkv::kernels {

/// \brief Carries a type through a generic lambda's `auto` parameter.
/// \tparam T the type carried.
template <typename T>
struct TypeTag {
  using type = T;  ///< the type carried
};

/// \brief Calls `body(TypeTag<Activation>{}, std::integral_constant<KvCacheDtype, kind>{})`.
/// \tparam Activation the activation element type already chosen.
/// \tparam Body a generic callable.
/// \param cache_kind the runtime cache kind.
/// \param body the code to run with both as compile-time values.
template <typename Activation, typename Body>
void dispatch_cache_kind(KvCacheDtype cache_kind, Body&& body) {
  switch (cache_kind) {
    case KvCacheDtype::kAuto:
      body(TypeTag<Activation>{}, std::integral_constant<KvCacheDtype, KvCacheDtype::kAuto>{});
      return;
    case KvCacheDtype::kFp8E4m3:
      body(TypeTag<Activation>{}, std::integral_constant<KvCacheDtype, KvCacheDtype::kFp8E4m3>{});
      return;
    case KvCacheDtype::kFp8E5m2:
      body(TypeTag<Activation>{}, std::integral_constant<KvCacheDtype, KvCacheDtype::kFp8E5m2>{});
      return;
  }
  reject("dispatch_cache_kind: unknown KvCacheDtype ", static_cast<int>(cache_kind));
}

/// \brief Calls `body` with the activation type of `activation_dtype` (float, __half or
/// __nv_bfloat16) and `cache_kind`, both as compile-time values (see the file's example).
/// \tparam Body a generic callable taking (TypeTag, std::integral_constant<KvCacheDtype, ...>).
/// \param activation_dtype f32, f16 or bf16 (validated by the op's contract).
/// \param cache_kind how the cache stores elements.
/// \param body the code to run.
template <typename Body>
void dispatch_activation_and_cache_kind(DType activation_dtype, KvCacheDtype cache_kind,
                                        Body&& body) {
  switch (activation_dtype) {
    case DType::f32: dispatch_cache_kind<float>(cache_kind, std::forward<Body>(body)); return;
    case DType::f16: dispatch_cache_kind<__half>(cache_kind, std::forward<Body>(body)); return;
    case DType::bf16:
      dispatch_cache_kind<__nv_bfloat16>(cache_kind, std::forward<Body>(body));
      return;
    default: break;
  }
  reject("dispatch_activation_and_cache_kind: activation dtype must be f32, f16 or bf16, got ",
         dtype_name(activation_dtype));
}

}  // namespace pagedkv::kernels
