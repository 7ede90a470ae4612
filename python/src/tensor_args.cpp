#include "tensor_args.h"

#include <cuda_runtime_api.h>

#include <string_view>

#include <nanobind/stl/string.h>

#include "pagedkv/cuda_runtime.h"
#include "pagedkv/error.h"

namespace pagedkv::python {

namespace {

using nb::dlpack::dtype_code;

// The DLPack element type → pagedkv::DType. Returns false for types pagedkv has no use for.
bool dtype_from_dlpack(nb::dlpack::dtype dt, DType& out) {
  if (dt.lanes != 1) return false;
  const auto code = static_cast<dtype_code>(dt.code);
  if (code == dtype_code::Float && dt.bits == 32) { out = DType::f32; return true; }
  if (code == dtype_code::Float && dt.bits == 16) { out = DType::f16; return true; }
  if (code == dtype_code::Bfloat && dt.bits == 16) { out = DType::bf16; return true; }
  if (code == dtype_code::UInt && dt.bits == 8) { out = DType::u8; return true; }
  if (code == dtype_code::Float8_E4M3FN && dt.bits == 8) { out = DType::f8_e4m3; return true; }
  if (code == dtype_code::Float8_E5M2 && dt.bits == 8) { out = DType::f8_e5m2; return true; }
  if (code == dtype_code::Int && dt.bits == 32) { out = DType::i32; return true; }
  if (code == dtype_code::Int && dt.bits == 64) { out = DType::i64; return true; }
  if (code == dtype_code::Bool && dt.bits == 8) { out = DType::b8; return true; }
  return false;
}

// A readable name for a DLPack dtype, for error messages ("int16", "float64", "uint32", ...).
std::string dlpack_dtype_name(nb::dlpack::dtype dt) {
  std::string base;
  switch (static_cast<dtype_code>(dt.code)) {
    case dtype_code::Int: base = "int"; break;
    case dtype_code::UInt: base = "uint"; break;
    case dtype_code::Float: base = "float"; break;
    case dtype_code::Bfloat: base = "bfloat"; break;
    case dtype_code::Complex: base = "complex"; break;
    case dtype_code::Bool: base = "bool"; break;
    default: base = "dlpack_code" + std::to_string(dt.code) + "_"; break;
  }
  std::string name = base + std::to_string(dt.bits);
  if (dt.lanes != 1) name += "x" + std::to_string(dt.lanes);
  return name;
}

// The names accepted in an `(array, dtype_name)` pair.
bool dtype_from_name(std::string_view name, DType& out) {
  if (name == "bf16" || name == "bfloat16") { out = DType::bf16; return true; }
  if (name == "f8_e4m3" || name == "float8_e4m3fn") { out = DType::f8_e4m3; return true; }
  if (name == "f8_e5m2" || name == "float8_e5m2") { out = DType::f8_e5m2; return true; }
  if (name == "f16" || name == "float16") { out = DType::f16; return true; }
  if (name == "u8" || name == "uint8") { out = DType::u8; return true; }
  return false;
}

std::string type_name_of(nb::handle object) {
  return nb::cast<std::string>(nb::str(nb::handle(object.type()).attr("__name__")));
}

// Fills view from any nb::ndarray flavour; `name` is the argument's name.
template <typename Array>
TensorView view_of(const Array& array, const char* name, const DType* reinterpret_as,
                   int& cuda_device) {
  TensorView view;
  const std::size_t ndim = array.ndim();
  PAGEDKV_CHECK(ndim <= static_cast<std::size_t>(kMaxDims), name, ": at most ", kMaxDims,
                " dimensions are supported, got ", ndim);

  DType native{};
  const bool known = dtype_from_dlpack(array.dtype(), native);
  if (reinterpret_as != nullptr) {
    // The bits stay as they are; only the element type changes, so the sizes must agree.
    PAGEDKV_CHECK(array.dtype().lanes == 1 &&
                      static_cast<std::int64_t>(array.dtype().bits) == 8 * dtype_size(*reinterpret_as),
                  name, ": reinterpreting as ", dtype_name(*reinterpret_as), " needs ",
                  8 * dtype_size(*reinterpret_as), "-bit elements, got ",
                  dlpack_dtype_name(array.dtype()));
    view.dtype = *reinterpret_as;
  } else {
    PAGEDKV_CHECK(known, name, ": dtype ", dlpack_dtype_name(array.dtype()),
                  " is not supported (expected float32, float16, bfloat16, uint8, float8_e4m3fn, "
                  "float8_e5m2, int32 or int64; for bfloat16 bits in a uint16 NumPy array use "
                  "pagedkv.bfloat16_bits(array))");
    view.dtype = native;
  }

  // kDLCUDAHost is page-locked host memory (pinned torch tensors): the CPU can read it.
  const int device_type = array.device_type();
  if (device_type == nb::device::cpu::value || device_type == nb::device::cuda_host::value) {
    view.device = Device::cpu;
    cuda_device = -1;
  } else if (device_type == nb::device::cuda::value ||
             device_type == nb::device::cuda_managed::value) {
    view.device = Device::cuda;
    cuda_device = array.device_id();
  } else {
    reject(name, ": arrays on DLPack device type ", device_type,
           " are not supported (expected CPU or CUDA memory)");
  }

  view.data = const_cast<void*>(static_cast<const void*>(array.data()));
  view.ndim = static_cast<int>(ndim);
  std::int64_t numel = 1;
  for (std::size_t d = 0; d < ndim; ++d) {
    view.shape[d] = static_cast<std::int64_t>(array.shape(d));
    view.strides[d] = static_cast<std::int64_t>(array.stride(d));  // DLPack strides: elements
    numel *= view.shape[d];
  }
  // An empty array addresses no memory, and exporters give it arbitrary strides (NumPy: zeros).
  // Give it row-major strides so that "contiguous" checks do not reject an empty input.
  if (numel == 0) {
    std::int64_t step = 1;
    for (int d = view.ndim - 1; d >= 0; --d) {
      view.strides[d] = step;
      step *= view.shape[d] > 0 ? view.shape[d] : 1;
    }
  }
  return view;
}

}  // namespace

TensorArg tensor_arg(nb::handle object, const char* name, Access access) {
  nb::handle array_object = object;
  DType reinterpret_as{};
  const DType* reinterpret = nullptr;

  // (array, "bf16"): raw bits tagged with the type they hold.
  if (nb::isinstance<nb::tuple>(object)) {
    nb::tuple pair = nb::borrow<nb::tuple>(object);
    PAGEDKV_CHECK(pair.size() == 2 && nb::isinstance<nb::str>(pair[1]), name,
                  ": expected an array or an (array, dtype_name) pair, got a tuple of ",
                  pair.size(), " items");
    const std::string dtype_name_given = nb::cast<std::string>(pair[1]);
    PAGEDKV_CHECK(dtype_from_name(dtype_name_given, reinterpret_as), name,
                  ": cannot reinterpret an array as '", dtype_name_given,
                  "' (expected bf16, f8_e4m3, f8_e5m2, f16 or u8)");
    reinterpret = &reinterpret_as;
    array_object = pair[0];
  }

  TensorArg arg;
  if (access == Access::write) {
    nb::ndarray<> array;
    if (!nb::try_cast(array_object, array, /*convert=*/false)) {
      nb::ndarray<nb::ro> read_only;
      if (nb::try_cast(array_object, read_only, false))
        reject(name, ": the op writes into this array, but it is read-only");
      throw nb::type_error((std::string(name) + ": expected an array (NumPy, or a tensor with "
                            "__dlpack__ such as PyTorch or CuPy), got " +
                            type_name_of(array_object)).c_str());
    }
    arg.view = view_of(array, name, reinterpret, arg.cuda_device);
    arg.output = std::move(array);
  } else {
    nb::ndarray<nb::ro> array;
    if (!nb::try_cast(array_object, array, /*convert=*/false)) {
      throw nb::type_error((std::string(name) + ": expected an array (NumPy, or a tensor with "
                            "__dlpack__ such as PyTorch or CuPy), got " +
                            type_name_of(array_object)).c_str());
    }
    arg.view = view_of(array, name, reinterpret, arg.cuda_device);
    arg.input = std::move(array);
  }
  return arg;
}

int first_cuda_device(const std::vector<TensorArg>& args) {
  for (const TensorArg& arg : args)
    if (arg.cuda_device >= 0) return arg.cuda_device;
  return -1;
}

CudaDeviceGuard::CudaDeviceGuard(int device) {
  if (device < 0) return;
  int current = 0;
  PAGEDKV_CUDA_CHECK(cudaGetDevice(&current));
  if (current != device) {
    PAGEDKV_CUDA_CHECK(cudaSetDevice(device));
    previous_ = current;
  }
}

CudaDeviceGuard::~CudaDeviceGuard() {
  if (previous_ >= 0) cudaSetDevice(previous_);  // best effort: a destructor must not throw
}

}  // namespace pagedkv::python
