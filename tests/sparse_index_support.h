// Helpers of the tests of DeepSeek V4's index builders (compute_global_topk_indices_and_lens,
// combine_topk_swa_indices, build_flashinfer_mixed_sparse_indices): host tensors of i32 and
// bool values that own their memory, reading an i32 view back, and running a call on the GPU
// (every tensor copied to the device, the written ones copied back whole, gaps between rows
// included).
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "pagedkv/op.h"
#include "support.h"

namespace pagedkv::test {

/// The host memory behind a test's tensors (the views stay valid while it lives).
struct HostTensors {
  std::vector<std::unique_ptr<Buffer>> buffers;

  /// A [rows, columns] i32 matrix with rows `pitch` elements apart (pitch >= columns; -1:
  /// packed), starting `shift` elements into its buffer; the gaps hold poison.
  TensorView matrix(std::int64_t rows, std::int64_t columns, const std::vector<std::int32_t>& values,
                    std::int64_t pitch = -1, std::int64_t shift = 0) {
    if (pitch < 0) pitch = columns;
    const std::int64_t elements = shift + (rows > 0 ? (rows - 1) * pitch + columns : 0);
    auto* data = reinterpret_cast<std::int32_t*>(allocate(static_cast<std::size_t>(elements) * 4));
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < columns; ++c)
        data[shift + r * pitch + c] = values.at(static_cast<std::size_t>(r * columns + c));
    return TensorView::strided(data + shift, DType::i32, {rows, columns}, {pitch, 1});
  }
  /// A poisoned [rows, columns] i32 output (rows `pitch` apart, -1: packed).
  TensorView output(std::int64_t rows, std::int64_t columns, std::int64_t pitch = -1,
                    std::int64_t shift = 0) {
    if (pitch < 0) pitch = columns;
    const std::int64_t elements = shift + (rows > 0 ? (rows - 1) * pitch + columns : 0);
    auto* data = reinterpret_cast<std::int32_t*>(allocate(static_cast<std::size_t>(elements) * 4));
    return TensorView::strided(data + shift, DType::i32, {rows, columns}, {pitch, 1});
  }
  /// A contiguous i32 vector.
  TensorView vector(const std::vector<std::int32_t>& values) {
    auto* data = allocate(values.size() * 4);
    if (!values.empty()) std::memcpy(data, values.data(), values.size() * 4);
    return TensorView::contiguous(data, DType::i32, {static_cast<std::int64_t>(values.size())});
  }
  /// A poisoned i32 vector of `n` elements.
  TensorView output_vector(std::int64_t n) {
    return TensorView::contiguous(allocate(static_cast<std::size_t>(n) * 4), DType::i32, {n});
  }
  /// A contiguous bool vector.
  TensorView mask(const std::vector<bool>& values) {
    auto* data = allocate(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) data[i] = values[i] ? 1 : 0;
    return TensorView::contiguous(data, DType::b8, {static_cast<std::int64_t>(values.size())});
  }

 private:
  std::uint8_t* allocate(std::size_t bytes) {
    buffers.push_back(std::make_unique<Buffer>(poisoned(bytes + 16)));
    return buffers.back()->data();
  }
};

/// The elements of a host i32 view (1-D or 2-D), packed row after row.
inline std::vector<std::int32_t> elements(const TensorView& view) {
  std::vector<std::int32_t> values;
  const auto* data = static_cast<const std::int32_t*>(view.data);
  if (view.ndim == 1) {
    for (std::int64_t i = 0; i < view.size(0); ++i) values.push_back(data[i * view.stride(0)]);
    return values;
  }
  for (std::int64_t r = 0; r < view.size(0); ++r)
    for (std::int64_t c = 0; c < view.size(1); ++c)
      values.push_back(data[r * view.stride(0) + c * view.stride(1)]);
  return values;
}

/// One row of a host i32 matrix.
inline std::vector<std::int32_t> row_of(const TensorView& view, std::int64_t r) {
  const auto* data = static_cast<const std::int32_t*>(view.data) + r * view.stride(0);
  return std::vector<std::int32_t>(data, data + view.size(1));
}

/// The bytes every written tensor of a call spans (gaps between rows included), in argument
/// order: what a run left there.
template <class Op>
std::vector<std::vector<std::uint8_t>> written_bytes(const typename Op::Args& args) {
  std::vector<std::vector<std::uint8_t>> out;
  Op::arguments([&](auto member, const char*, ArgKind kind, const char*) {
    using T = std::remove_cv_t<std::remove_reference_t<decltype(args.*member)>>;
    if constexpr (std::is_same_v<T, TensorView>) {
      if (!is_written(kind)) return;
      const TensorView& view = args.*member;
      const auto* first = static_cast<const std::uint8_t*>(view.data);
      out.emplace_back(first, first + (view.data ? view.span_bytes() : 0));
    }
  });
  return out;
}

/// Runs a call on the GPU: every tensor with data copied to the device, `impl` run through the
/// checked entry point (`checked`) or launched from `plan` (a plan validated on other values:
/// how the tests reach the kernels' hardening), then the written tensors' bytes copied back.
template <class Op>
std::vector<std::vector<std::uint8_t>> run_on_device(Impl impl, const typename Op::Args& host,
                                                     bool checked = true,
                                                     const typename Op::Plan* plan = nullptr) {
  typename Op::Args args = host;
  std::vector<std::unique_ptr<Buffer>> device;
  Op::arguments([&](auto member, const char*, ArgKind, const char*) {
    using T = std::remove_cv_t<std::remove_reference_t<decltype(args.*member)>>;
    if constexpr (std::is_same_v<T, TensorView>) {
      TensorView& view = args.*member;
      if (view.data == nullptr) {
        view.device = Device::cuda;
        return;
      }
      const std::size_t bytes = static_cast<std::size_t>(std::max<std::int64_t>(view.span_bytes(), 1));
      device.push_back(std::make_unique<Buffer>(Memory::device, bytes + 16));
      // Keep the view's alignment modulo 16 on the device.
      const auto misalign = reinterpret_cast<std::uintptr_t>(view.data) % 16;
      std::uint8_t* base = device.back()->data() + misalign;
      PAGEDKV_CUDA_CHECK(cudaMemcpy(base, view.data, bytes, cudaMemcpyHostToDevice));
      view = rebase(view, view.data, base, Device::cuda);
    }
  });
  if (checked) {
    run<Op>(impl, args);
  } else {
    launch<Op>(impl, *plan, args);
  }
  PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<std::vector<std::uint8_t>> out;
  Op::arguments([&](auto member, const char*, ArgKind kind, const char*) {
    using T = std::remove_cv_t<std::remove_reference_t<decltype(args.*member)>>;
    if constexpr (std::is_same_v<T, TensorView>) {
      if (!is_written(kind)) return;
      const TensorView& view = args.*member;
      std::vector<std::uint8_t> bytes(static_cast<std::size_t>(view.data ? view.span_bytes() : 0));
      if (!bytes.empty()) {
        PAGEDKV_CUDA_CHECK(
            cudaMemcpy(bytes.data(), view.data, bytes.size(), cudaMemcpyDeviceToHost));
      }
      out.push_back(std::move(bytes));
    }
  });
  return out;
}

}  // namespace pagedkv::test
