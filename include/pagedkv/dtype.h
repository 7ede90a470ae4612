/// \file
/// \brief Element types and devices that pagedkv tensors can have.
#pragma once

#include <cstdint>
#include <string_view>

namespace pagedkv {

/// \brief Element type of a tensor. fp8 caches are stored as bytes (`u8`), as vLLM allocates them;
/// `f8_e4m3` / `f8_e5m2` are accepted as byte storage too (torch's float8 tensors). `b8` is
/// torch's `bool`: one byte, 0 or 1 (apply_repetition_penalties' token masks).
enum class DType : std::uint8_t { f32, f16, bf16, u8, f8_e4m3, f8_e5m2, i32, i64, b8 };

/// \brief Where a tensor's memory lives.
enum class Device : std::uint8_t { cpu, cuda };

/// \brief Size of one element in bytes.
/// \param dtype the element type.
/// \return bytes per element.
constexpr std::int64_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32: return 4;
    case DType::f16: return 2;
    case DType::bf16: return 2;
    case DType::u8: return 1;
    case DType::f8_e4m3: return 1;
    case DType::f8_e5m2: return 1;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::b8: return 1;
  }
  return 0;
}

/// \brief Name used in error messages and the CLI ("bf16", "u8", ...).
/// \param dtype the element type.
/// \return its name.
constexpr std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::u8: return "u8";
    case DType::f8_e4m3: return "f8_e4m3";
    case DType::f8_e5m2: return "f8_e5m2";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::b8: return "bool";
  }
  return "?";
}

/// \brief True for the three high-precision activation types (f32, f16, bf16).
/// \param dtype the element type.
/// \return whether it is f32, f16 or bf16.
constexpr bool is_activation_dtype(DType dtype) {
  return dtype == DType::f32 || dtype == DType::f16 || dtype == DType::bf16;
}

/// \brief True for one-byte storage that can hold an fp8 cache (u8, f8_e4m3, f8_e5m2).
/// \param dtype the element type.
/// \return whether it is u8, f8_e4m3 or f8_e5m2.
constexpr bool is_byte_dtype(DType dtype) {
  return dtype == DType::u8 || dtype == DType::f8_e4m3 || dtype == DType::f8_e5m2;
}

/// \brief "cpu" or "cuda".
/// \param device the device.
/// \return its name.
constexpr std::string_view device_name(Device device) {
  return device == Device::cpu ? "cpu" : "cuda";
}

}  // namespace pagedkv
