// The fuzzer's GPU side (device_check.h).
#include "device_check.h"

#include <cstring>
#include <exception>
#include <set>

#include "pagedkv/agreement.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/error.h"

namespace pagedkv::fuzz {

namespace {

bool is_output(ArgKind kind) { return is_written(kind); }

}  // namespace

std::vector<std::uint8_t> DeviceCall::snapshot() {
  for (std::size_t b = 0; b < host.buffers.size(); ++b) {
    if (device[b].size() != 0) device[b].download(host.buffers[b].data(), host.buffers[b].size());
  }
  return host.snapshot();
}

DeviceCall place(const CallSpec& spec, std::uint64_t seed, const std::set<std::size_t>& kept_on_host,
                 const std::function<void(FuzzCall&)>& edit) {
  DeviceCall d{build(spec, seed), {}, {}};
  if (edit) edit(d.host);
  std::set<int> host_buffers;
  for (std::size_t i : kept_on_host) host_buffers.insert(d.host.buffer_of[i]);
  for (std::size_t b = 0; b < d.host.buffers.size(); ++b) {
    if (host_buffers.count(static_cast<int>(b))) {
      d.device.emplace_back();
      continue;
    }
    Buffer buffer(Memory::device, d.host.buffers[b].size());
    buffer.upload(d.host.buffers[b].data(), buffer.size());
    d.device.push_back(std::move(buffer));
  }
  d.values = d.host.values;
  for (std::size_t i = 0; i < spec.args.size(); ++i) {
    const int b = d.host.buffer_of[i];
    if (!spec.args[i].is_tensor || kept_on_host.count(i) || (b >= 0 && host_buffers.count(b)))
      continue;
    // A tensor without memory is still a device tensor: one with no elements (no buffer, b < 0)
    // and one without data (`absent`: a zero-token slot_mapping is an empty vector, whose data
    // pointer is null). Left tagged "cpu", the device run rejected every zero-token call (found
    // on the first two GPU runs: the first fix tagged only the b < 0 case, and zero-token
    // tensors are `absent`).
    TensorView view = std::get<TensorView>(d.values[i]);
    view.device = Device::cuda;
    if (b < 0 || spec.args[i].tensor.absent) {
      d.values[i] = view;
      continue;
    }
    if (view.data != nullptr) view.data = d.device[b].data() + d.host.origin[i];
    d.values[i] = view;
  }
  return d;
}

std::set<std::size_t> arguments_kept_on_host(const OpEntry& op, const CallSpec& spec,
                                             std::uint64_t seed) {
  std::set<std::size_t> kept;
  for (std::size_t attempt = 0; attempt <= spec.args.size(); ++attempt) {
    DeviceCall d = place(spec, seed, kept);
    try {
      op.run(Impl::optimized, d.values, nullptr);
      PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
      return kept;
    } catch (const InvalidArgument& error) {
      const std::string message = error.what();
      bool moved = false;
      for (std::size_t i = 0; i < op.arguments.size(); ++i) {
        // "X: expected a tensor on cpu" (swap_blocks' block_mapping), not "X: expected a
        // tensor on cuda, got one on cpu".
        const std::size_t expected = message.find("expected");
        const std::size_t got = message.find("got", expected);
        const std::size_t cpu = message.find("cpu", expected);
        const bool wants_host = expected != std::string::npos && cpu != std::string::npos &&
                                (got == std::string::npos || cpu < got);
        if (message.rfind(op.arguments[i].name + ":", 0) == 0 && wants_host && !kept.count(i)) {
          kept.insert(i);
          moved = true;
        }
      }
      if (!moved) throw;
    }
  }
  return kept;
}

namespace {

std::string compare(const OpEntry& op, const CallSpec& spec, const FuzzCall& cpu, DeviceCall& d) {
  const bool reduction = op.agreement_rule.rfind("bit-exact", 0) != 0;
  for (std::size_t b = 0; b < cpu.buffers.size(); ++b) {
    if (d.device[b].size() != 0)
      d.device[b].download(d.host.buffers[b].data(), d.host.buffers[b].size());
  }
  if (d.host.snapshot() == cpu.snapshot()) return "";
  if (!reduction) return "not bit-exact with the CPU reference";
  // Reductions: outputs within tolerance, everything else byte for byte.
  const std::vector<std::vector<std::uint8_t>> writable = writable_bytes(spec, cpu);
  for (std::size_t b = 0; b < cpu.buffers.size(); ++b) {
    for (std::size_t k = 0; k < cpu.buffers[b].size(); ++k) {
      if (!writable[b][k] && cpu.buffers[b].data()[k] != d.host.buffers[b].data()[k])
        return "changed a byte outside its outputs";
    }
  }
  for (std::size_t i = 0; i < spec.args.size(); ++i) {
    if (!spec.args[i].is_tensor || cpu.buffer_of[i] < 0 || !is_output(op.arguments[i].kind))
      continue;
    const TensorSpec& t = spec.args[i].tensor;
    if (!is_activation_dtype(t.dtype) || t.ndim == 0) continue;
    std::vector<std::uint8_t> want, got;
    const std::int64_t element = dtype_size(t.dtype);
    const std::uint8_t* w = cpu.buffers[cpu.buffer_of[i]].data() + cpu.origin[i];
    const std::uint8_t* g = d.host.buffers[cpu.buffer_of[i]].data() + cpu.origin[i];
    for_each_element(t.ndim, t.shape, t.strides, element, [&](std::int64_t at) {
      want.insert(want.end(), w + at, w + at + element);
      got.insert(got.end(), g + at, g + at + element);
    });
    if (want == got) continue;
    const std::int64_t count = static_cast<std::int64_t>(want.size()) / element;
    const double error = relative_error(got.data(), want.data(), t.dtype, count);
    const double tolerance = op.output_tolerance != nullptr
                                 ? op.output_tolerance(cpu.values, op.arguments[i].name)
                                 : reduction_tolerance(t.dtype, t.shape[t.ndim - 1]);
    if (!(error <= tolerance))
      return op.arguments[i].name + ": relative error " + std::to_string(error) + " above " +
             std::to_string(tolerance);
  }
  return "";
}

}  // namespace

std::string device_disagreement(const OpEntry& op, const CallSpec& spec, const Mutation* mutation,
                                const FuzzCall& cpu_result, std::uint64_t seed) {
  // Aliasing calls are judged on the CPU only (their results depend on the order of writes).
  for (const ArgSpec& a : spec.args) {
    if (a.is_tensor && a.tensor.shares_memory_with >= 0) return "";
  }
  for (Impl impl : {Impl::naive, Impl::optimized}) {
    std::set<std::size_t> kept_on_host;
    for (std::size_t attempt = 0; attempt <= spec.args.size(); ++attempt) {
      DeviceCall d = place(spec, seed, kept_on_host, [&](FuzzCall& host) {
        if (mutation) apply_poke(*mutation, host);
      });
      try {
        op.run(impl, d.values, nullptr);
        PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
      } catch (const InvalidArgument& error) {
        // A tensor the op wants on the host ("block_mapping: ... on cpu"): keep it there.
        const std::string message = error.what();
        bool moved = false;
        for (std::size_t i = 0; i < op.arguments.size(); ++i) {
          if (message.rfind(op.arguments[i].name + ":", 0) == 0 &&
              message.find("cpu") != std::string::npos && !kept_on_host.count(i)) {
            kept_on_host.insert(i);
            moved = true;
          }
        }
        if (moved) continue;
        return std::string(impl_name(impl)) + " rejected what the CPU accepted: " + message;
      }
      const std::string difference = compare(op, spec, cpu_result, d);
      if (!difference.empty()) return std::string(impl_name(impl)) + ": " + difference;
      break;
    }
  }
  return "";
}

}  // namespace pagedkv::fuzz
