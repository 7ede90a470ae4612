/// \file
/// \brief CUDA error checking and device queries used by host code (no CUDA syntax here).
#pragma once

#include <cuda_runtime_api.h>

namespace pagedkv {

/// \brief Throws CudaError when `status` is not cudaSuccess; `call`, `file`, `line` go in the text.
/// \param status the result of the CUDA call.
/// \param call the call's source text.
/// \param file the source file of the call.
/// \param line the line of the call.
void cuda_check(cudaError_t status, const char* call, const char* file, int line);

/// \brief True when a CUDA device can be used. Without a GPU or driver, cudaGetDeviceCount
/// returns an error (35 with no driver); that error is cleared and false returned.
/// \return whether at least one CUDA device can be used.
bool cuda_device_available();

}  // namespace pagedkv

/// Checks a CUDA runtime call and throws pagedkv::CudaError with the call's text on failure.
#define PAGEDKV_CUDA_CHECK(call) ::pagedkv::cuda_check((call), #call, __FILE__, __LINE__)
/// Checks the last kernel launch (launch-configuration errors surface here).
#define PAGEDKV_CUDA_CHECK_LAUNCH() PAGEDKV_CUDA_CHECK(cudaGetLastError())
