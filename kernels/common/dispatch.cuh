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

/// \brief Calls `launch` with the vector width `width` as a compile-time constant
/// (std::integral_constant<int, 16, 8, 4, 2 or 1>): one kernel instantiation per width, chosen
/// once on the host. Widths above `kMaxWidth` are never instantiated (`if constexpr`); the
/// host's width picker never returns one.
/// \tparam kMaxWidth the widest vector of the kernel, in elements (16 bytes of its element).
/// \tparam Launch a generic callable.
/// \param width the picked width: 16, 8, 4, 2 or 1.
/// \param launch called once.
template <int kMaxWidth, typename Launch>
void with_vector_width(int width, Launch&& launch) {
  switch (width) {
    case 16:
      if constexpr (kMaxWidth >= 16) launch(std::integral_constant<int, 16>{});
      return;
    case 8:
      if constexpr (kMaxWidth >= 8) launch(std::integral_constant<int, 8>{});
      return;
    case 4:
      if constexpr (kMaxWidth >= 4) launch(std::integral_constant<int, 4>{});
      return;
    case 2:
      if constexpr (kMaxWidth >= 2) launch(std::integral_constant<int, 2>{});
      return;
    default: launch(std::integral_constant<int, 1>{}); return;
  }
}

}  // namespace pagedkv::kernels
