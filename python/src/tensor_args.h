/// \file
/// \brief Turning Python arrays (NumPy, or anything with `__dlpack__`: PyTorch, CuPy, JAX) into
/// pagedkv::TensorView arguments.
///
/// nanobind's `nb::ndarray` reads the array through DLPack (or the buffer protocol) without
/// copying: we get the data pointer, dtype, shape, strides in elements and the device. The
/// TensorView points into the caller's memory, so the `TensorArg` that owns the ndarray handle
/// must outlive the op call.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include "pagedkv/tensor_view.h"

namespace pagedkv::python {

namespace nb = nanobind;

/// \brief One op argument: the Python array it came from (kept alive) and its TensorView.
struct TensorArg {
  std::optional<nb::ndarray<nb::ro>> input;  ///< set for arguments the op only reads
  std::optional<nb::ndarray<>> output;       ///< set for arguments the op writes into
  TensorView view;                           ///< what the C++ op receives
  int cuda_device = -1;                      ///< CUDA device ordinal, -1 for host memory
};

/// \brief Whether the op writes into an argument (writable arrays are required then).
enum class Access { read, write };

/// \brief Converts one Python argument into a TensorView.
///
/// Accepts an array object, or a `(array, dtype_name)` pair that reinterprets the array's bits
/// as `dtype_name` ("bf16", "f8_e4m3", "f8_e5m2"): NumPy has no bfloat16, so raw bf16 bits arrive
/// as uint16 arrays tagged this way (pagedkv.bfloat16_bits() builds the pair).
/// \param object the Python object passed for the argument.
/// \param name the argument's name, used in every error message.
/// \param access whether the op writes into it (read-only arrays are rejected then).
/// \return the argument, owning a reference to the array.
/// \throws InvalidArgument (ValueError in Python) for an unsupported dtype, device or rank;
///         nb::type_error for an object that is not an array.
TensorArg tensor_arg(nb::handle object, const char* name, Access access);

/// \brief The CUDA device of the first argument on a CUDA device, or -1 when all are on the host.
/// \param args the converted arguments.
/// \return the device ordinal or -1.
int first_cuda_device(const std::vector<TensorArg>& args);

/// \brief Makes `device` current for its lifetime and restores the previous device afterwards
/// (like PyTorch's device guard). Does nothing for device -1, so host-only calls never touch the
/// CUDA runtime.
class CudaDeviceGuard {
 public:
  /// \brief Switches to `device` unless it is -1 or already current.
  /// \param device CUDA device ordinal, or -1.
  explicit CudaDeviceGuard(int device);
  /// \brief Restores the previous device.
  ~CudaDeviceGuard();
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

}  // namespace pagedkv::python
