/// \file
/// \brief The `kv_cache_dtype` string of vLLM's cache ops, parsed once.
#pragma once

#include <string_view>

#include "pagedkv/dtype.h"

namespace pagedkv {

/// \brief How cache elements are stored.
enum class KvCacheDtype {
  kAuto,      ///< same type as the activations, copied bit for bit ("auto", "bfloat16", "float16")
  kFp8E4m3,   ///< one byte, OCP E4M3 (max 448): `fp8(x / scale)` ("fp8", "fp8_e4m3")
  kFp8E5m2,   ///< one byte, E5M2 (max 57344) ("fp8_e5m2")
};

/// \brief True for the two fp8 kinds.
/// \param kind the storage kind.
/// \return whether it is kFp8E4m3 or kFp8E5m2.
constexpr bool is_fp8(KvCacheDtype kind) { return kind != KvCacheDtype::kAuto; }

/// \brief Parses vLLM's `kv_cache_dtype` string.
///
/// Accepts "auto", "bfloat16", "float16", "fp8", "fp8_e4m3" and "fp8_e5m2". "bfloat16" and
/// "float16" behave as "auto" (upstream does the same) but also require the activations to have
/// that type. Anything else, "fp8_ds_mla" included (its 656-byte record belongs to the MLA
/// writer only), is rejected.
/// \param kv_cache_dtype the string as vLLM passes it.
/// \param activation_dtype dtype of key/value, checked against "bfloat16" / "float16".
/// \return the storage kind.
/// \throws InvalidArgument naming `kv_cache_dtype` for an unknown string or a mismatch.
KvCacheDtype parse_kv_cache_dtype(std::string_view kv_cache_dtype, DType activation_dtype);

}  // namespace pagedkv
