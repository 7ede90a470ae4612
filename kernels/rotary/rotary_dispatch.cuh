/// \file
/// \brief From rotary_embedding's runtime dtypes to template arguments: the activation type
/// (float, __half, __nv_bfloat16) and the type of cos_sin_cache (float, or the activation type).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <utility>

#include "common/dispatch.cuh"
#include "pagedkv/dtype.h"
#include "pagedkv/error.h"

namespace pagedkv::kernels {

/// \brief Calls `body(TypeTag<Activation>{}, TypeTag<Cache>{})` with Cache float when
/// `cache_dtype` is f32, else the activation type itself (the contract allows nothing else).
/// \tparam Body a generic callable taking two TypeTag values.
/// \param activation_dtype f32, f16 or bf16.
/// \param cache_dtype f32 or activation_dtype.
/// \param body the code to run.
template <typename Body>
void dispatch_activation_and_cache(DType activation_dtype, DType cache_dtype, Body&& body) {
  const auto with_activation = [&](auto activation_tag) {
    using T = typename decltype(activation_tag)::type;
    if (cache_dtype == DType::f32) {
      body(activation_tag, TypeTag<float>{});
    } else {
      body(activation_tag, TypeTag<T>{});
    }
  };
  switch (activation_dtype) {
    case DType::f32: with_activation(TypeTag<float>{}); return;
    case DType::f16: with_activation(TypeTag<__half>{}); return;
    case DType::bf16: with_activation(TypeTag<__nv_bfloat16>{}); return;
    default: break;
  }
  reject("dispatch_activation_and_cache: activation dtype must be f32, f16 or bf16, got ",
         dtype_name(activation_dtype));
}

}  // namespace pagedkv::kernels
