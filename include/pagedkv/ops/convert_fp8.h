/// \file
/// \brief `convert_fp8`: convert a whole tensor between fp8 bytes (E4M3 or E5M2) and
/// f32 / f16 / bf16, with a scale, in either direction.
///
/// This header is the op's one description: its arguments, the plan that validation produces
/// and the three implementations (CPU reference, naive CUDA, optimized CUDA).
///
/// The dtypes choose the direction. Quantizing (input f32, f16 or bf16, output one byte per
/// element) stores `fp8(float(x) / scale)`: a true fp32 division, then round to nearest even,
/// saturating to ±max finite (448 for E4M3, 57344 for E5M2), NaN to 0x7F. Dequantizing (input
/// bytes, output f32, f16 or bf16) stores `float(fp8) × scale` rounded to the output dtype.
///
/// Worked example (E4M3, scale 0.5): the bf16 value 3.0 becomes 3.0 / 0.5 = 6.0 = 1.5 · 2^2,
/// byte 0x4C (sign 0, exponent 2 + 7 = 1001, mantissa 100); 300.0 / 0.5 = 600 saturates to 448,
/// byte 0x7E. Back: 0x4C is 6.0, × 0.5 = 3.0 exactly; 0x7E is 448, × 0.5 = 224.
#pragma once

#include <cstdint>
#include <string>

#include <cuda_runtime_api.h>

#include "pagedkv/impl.h"
#include "pagedkv/kv_cache_dtype.h"
#include "pagedkv/op.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief Everything the kernels need, derived once from the arguments by
/// ConvertFp8::validate(). The layout is the tensors' common shape with size-1 dimensions
/// dropped and neighbouring dimensions merged where both tensors allow it: two contiguous
/// tensors become one dimension of numel elements with stride 1. Strides are in elements.
struct ConvertFp8Plan {
  std::int64_t numel = 0;        ///< elements to convert (0: nothing to do)
  bool quantize = true;          ///< wide → fp8 bytes; false: fp8 bytes → wide
  DType wide_dtype = DType::bf16;  ///< f32, f16 or bf16: input when quantizing, else output
  KvCacheDtype format = KvCacheDtype::kFp8E4m3;  ///< kFp8E4m3 or kFp8E5m2: how the bytes read
  float scale = 1.f;             ///< the scale as the kernels use it (fp32, finite, > 0)
  bool contiguous = false;       ///< both tensors are one packed run (then ndim = 1, strides 1)
  int ndim = 0;                  ///< merged dimensions (0 when numel is 0 or 1)
  std::int64_t shape[kMaxDims] = {};           ///< merged sizes, outermost first
  std::int64_t input_strides[kMaxDims] = {};   ///< input's stride of each merged dimension
  std::int64_t output_strides[kMaxDims] = {};  ///< output's stride of each merged dimension
};

/// \brief convert_fp8: the op's arguments, its contract and its three implementations.
struct ConvertFp8 {
  /// \brief The upstream name.
  static constexpr const char* name = "convert_fp8";

  /// \brief The arguments, in vLLM's order and with the names of vLLM's Python wrapper
  /// (its torch schema calls them dst_cache, src_cache, scale and kv_cache_dtype).
  struct Args {
    /// \name Arguments (documented in ConvertFp8::arguments)
    /// @{
    TensorView output;        ///< see ConvertFp8::arguments()
    TensorView input;         ///< see ConvertFp8::arguments()
    double scale = 1.0;       ///< see ConvertFp8::arguments()
    std::string kv_dtype = "fp8";  ///< see ConvertFp8::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::output, "output", ArgKind::output,
        "the shape of input, any strides that give every element its own memory, memory apart "
        "from input; one byte per element (u8, or the f8 dtype kv_dtype names) when input is "
        "f32, f16 or bf16, else f32, f16 or bf16");
    arg(&Args::input, "input", ArgKind::input,
        "f32, f16 or bf16 (quantize) or one byte per element: u8, f8_e4m3, f8_e5m2 "
        "(dequantize); any shape up to 6 dimensions, any non-negative strides");
    arg(&Args::scale, "scale", ArgKind::real,
        "quantize stores fp8(x / scale), dequantize stores fp8 × scale; finite and > 0 as an "
        "fp32 (vLLM's default is 1.0)");
    arg(&Args::kv_dtype, "kv_dtype", ArgKind::string,
        "the fp8 format of the bytes: \"fp8\" or \"fp8_e4m3\" (E4M3, max 448), \"fp8_e5m2\" "
        "(E5M2, max 57344); vLLM's default is \"fp8\"");
  }

  /// \brief What validate() derives from the arguments.
  using Plan = ConvertFp8Plan;

  /// \brief The contract, shared by the three implementations.
  ///
  /// Checks every argument for `impl` and returns the plan; throws InvalidArgument (naming the
  /// argument, the expected and the actual value) before anything is written. Zero elements is
  /// a valid call that writes nothing. Where upstream is undefined or silent this contract
  /// decides (core/convert_fp8.cpp says why): "auto" and byte → byte are rejected, strided views
  /// are converted element by element, E5M2 is accepted.
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan the implementation executes.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: one loop over the elements in row-major order of the shape, each
  /// converted with the hand-written numerics (reference_cpu/numerics.h).
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA: one thread per element, the same conversion as the CPU reference.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA: the same bytes as the naive one, 16-byte vectors in and out (the
  /// kernel file header lists the tricks).
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry: family, sources, byte model, workloads
  /// (core/entries/convert_fp8.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
