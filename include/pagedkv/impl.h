/// \file
/// \brief The three implementations every op has.
#pragma once

#include <array>
#include <string_view>

#include "pagedkv/dtype.h"

namespace pagedkv {

/// \brief Which implementation of an op: the CPU reference, the naive CUDA kernel or the
/// optimized CUDA kernel.
enum class Impl { cpu, naive, optimized };

/// \brief All three, in the order the docs and the comparison table show them.
inline constexpr std::array<Impl, 3> kAllImpls = {Impl::cpu, Impl::naive, Impl::optimized};

/// \brief "cpu", "naive" or "optimized".
/// \param impl the implementation.
/// \return its name.
constexpr std::string_view impl_name(Impl impl) {
  switch (impl) {
    case Impl::cpu: return "cpu";
    case Impl::naive: return "naive";
    case Impl::optimized: return "optimized";
  }
  return "?";
}

/// \brief The device whose memory an implementation computes on.
/// \param impl the implementation.
/// \return Device::cpu for Impl::cpu, else Device::cuda.
constexpr Device impl_device(Impl impl) { return impl == Impl::cpu ? Device::cpu : Device::cuda; }

}  // namespace pagedkv
