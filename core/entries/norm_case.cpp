// What the norm entries share. See norm_case.h.
#include "norm_case.h"

#include <cstring>

#include "numerics.h"
#include "pagedkv/agreement.h"
#include "pagedkv/error.h"

namespace pagedkv::entries {

NormShape norm_shape(const WorkloadPoint& point) {
  PAGEDKV_CHECK(point.workload == "W9", "norms run workload W9, got ", point.workload);
  NormShape shape;
  shape.num_tokens = point.size;
  // "hidden <H> <dtype>"
  const std::string& v = point.variant;
  const std::string prefix = "hidden ";
  const std::size_t space = v.find(' ', prefix.size());
  PAGEDKV_CHECK(v.rfind(prefix, 0) == 0 && space != std::string::npos,
                "W9 variant: expected \"hidden <H> <dtype>\", got \"", v, "\"");
  const std::string hidden = v.substr(prefix.size(), space - prefix.size());
  const std::string dtype = v.substr(space + 1);
  if (hidden == "4096" || hidden == "7168" || hidden == "8192") {
    shape.hidden_size = std::stoll(hidden);
  } else {
    reject("W9 variant: expected hidden 4096, 7168 or 8192, got \"", v, "\"");
  }
  if (dtype == "bf16") {
    shape.dtype = DType::bf16;
  } else if (dtype == "f16") {
    shape.dtype = DType::f16;
  } else {
    reject("W9 variant: expected the dtype bf16 or f16, got \"", v, "\"");
  }
  return shape;
}

std::vector<WorkloadPoint> norm_points(const std::string& workload, bool quick) {
  if (workload != "W9") return {};
  const std::vector<std::string> variants =
      quick ? std::vector<std::string>{"hidden 4096 bf16"}
            : std::vector<std::string>{"hidden 4096 bf16", "hidden 4096 f16",
                                       "hidden 7168 bf16", "hidden 7168 f16",
                                       "hidden 8192 bf16", "hidden 8192 f16"};
  const std::vector<std::int64_t> sizes =
      quick ? std::vector<std::int64_t>{1, 64, 1024}
            : std::vector<std::int64_t>{1, 16, 64, 256, 1024, 4096, 16384};
  std::vector<WorkloadPoint> points;
  for (const std::string& variant : variants)
    for (std::int64_t tokens : sizes) points.push_back({"W9", variant, "", tokens, "tokens", 0});
  return points;
}

Buffer make_hidden_states(const NormShape& shape, std::uint64_t seed) {
  Buffer buffer(Memory::host, static_cast<std::size_t>(shape.tensor_bytes()));
  fill_random(buffer.data(), shape.dtype, shape.num_tokens * shape.hidden_size, seed);
  return buffer;
}

Buffer make_norm_weight(const NormShape& shape, std::uint64_t seed) {
  Buffer buffer(Memory::host, static_cast<std::size_t>(shape.weight_bytes()));
  Random random{seed ^ 0x3E1647ull};
  for (std::int64_t i = 0; i < shape.hidden_size; ++i) {
    const float w = 1.0f + random.value() / 16.0f;  // [-4, 4] -> [0.75, 1.25]
    std::uint8_t* at = buffer.data() + i * dtype_size(shape.dtype);
    switch (shape.dtype) {
      case DType::bf16: {
        const std::uint16_t bits = numerics::float_to_bf16_bits(w);
        std::memcpy(at, &bits, 2);
        break;
      }
      case DType::f16: {
        const std::uint16_t bits = numerics::float_to_half_bits(w);
        std::memcpy(at, &bits, 2);
        break;
      }
      default: std::memcpy(at, &w, 4); break;  // f32
    }
  }
  return buffer;
}

Agreement compare_norm_output(const Buffer& output, const void* reference,
                              const NormShape& shape) {
  // The relative error needs the output on the host: one copy when it is on the device.
  const Buffer copy = output.memory() == Memory::device ? copy_to(Memory::host, output) : Buffer();
  const Buffer& host = output.memory() == Memory::device ? copy : output;
  Agreement agreement = compare_with_reference(host, reference, shape.dtype);
  agreement.rel_err =
      relative_error(host.data(), reference, shape.dtype, shape.num_tokens * shape.hidden_size);
  agreement.tolerance = reduction_tolerance(shape.dtype, shape.hidden_size);
  return agreement;
}

}  // namespace pagedkv::entries
