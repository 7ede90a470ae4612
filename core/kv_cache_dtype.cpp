#include "pagedkv/kv_cache_dtype.h"

#include <string>

#include "pagedkv/error.h"

namespace pagedkv {

KvCacheDtype parse_kv_cache_dtype(std::string_view kv_cache_dtype, DType activation_dtype) {
  if (kv_cache_dtype == "auto") return KvCacheDtype::kAuto;
  if (kv_cache_dtype == "bfloat16" || kv_cache_dtype == "float16") {
    const DType named = kv_cache_dtype == "bfloat16" ? DType::bf16 : DType::f16;
    PAGEDKV_CHECK(activation_dtype == named, "kv_cache_dtype: \"", kv_cache_dtype,
                  "\" needs key/value of dtype ", dtype_name(named), ", got ",
                  dtype_name(activation_dtype));
    return KvCacheDtype::kAuto;
  }
  if (kv_cache_dtype == "fp8" || kv_cache_dtype == "fp8_e4m3") return KvCacheDtype::kFp8E4m3;
  if (kv_cache_dtype == "fp8_e5m2") return KvCacheDtype::kFp8E5m2;
  reject("kv_cache_dtype: expected one of \"auto\", \"bfloat16\", \"float16\", \"fp8\", "
         "\"fp8_e4m3\", \"fp8_e5m2\", got \"",
         std::string(kv_cache_dtype), "\"");
}

}  // namespace pagedkv
