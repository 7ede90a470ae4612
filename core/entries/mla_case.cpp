// What the MLA cache-write entries share. See mla_case.h.
#include "mla_case.h"

#include <cstring>

#include "cache_write_case.h"
#include "pagedkv/error.h"

namespace pagedkv::entries {

namespace {

void set_mla_views(const MlaShape& shape, MlaInputs& inputs, Device device) {
  const std::int64_t entry = shape.kv_lora_rank + shape.rope_dim;  // the projection's row
  const std::int64_t element = dtype_size(shape.activation_dtype);
  inputs.kv_c = TensorView::contiguous(inputs.latent.data(), shape.activation_dtype,
                                       {shape.num_tokens, shape.kv_lora_rank}, device);
  inputs.k_pe = TensorView::strided(inputs.projection.data() + shape.kv_lora_rank * element,
                                    shape.activation_dtype, {shape.num_tokens, shape.rope_dim},
                                    {entry, 1}, device);
  inputs.slot_mapping =
      TensorView::contiguous(inputs.slot_buffer.data(), DType::i64, {shape.num_tokens}, device);
}

}  // namespace

MlaShape mla_shape(const WorkloadPoint& point) {
  PAGEDKV_CHECK(point.workload == "W2", "MLA cache writes run workload W2, got ", point.workload);
  PAGEDKV_CHECK(point.slots == "random" || point.slots == "contiguous",
                "W2 slots: expected \"random\" or \"contiguous\", got \"", point.slots, "\"");
  MlaShape shape;
  shape.num_tokens = point.size;
  if (point.num_blocks > 0) shape.num_blocks = point.num_blocks;
  shape.contiguous_slots = point.slots == "contiguous";
  if (point.variant == "bf16") {
    shape.kv_cache_dtype = "auto";
  } else if (point.variant == "fp8_e4m3" || point.variant == "fp8_ds_mla") {
    shape.kv_cache_dtype = point.variant;
  } else {
    reject("W2 variant: expected bf16, fp8_e4m3 or fp8_ds_mla, got \"", point.variant, "\"");
  }
  return shape;
}

std::vector<WorkloadPoint> mla_points(const std::vector<std::string>& variants, bool quick) {
  const std::vector<std::int64_t> sizes =
      quick ? std::vector<std::int64_t>{1, 16, 256}
            : std::vector<std::int64_t>{1, 16, 256, 4096, 16384, 65536};
  std::vector<WorkloadPoint> points;
  for (const std::string& variant : variants)
    for (const char* slots : {"random", "contiguous"})
      for (std::int64_t tokens : sizes)
        points.push_back({"W2", variant, slots, tokens, "tokens", quick ? 256 : 4096});
  return points;
}

MlaInputs make_mla_inputs(const MlaShape& shape, std::uint64_t seed, int set) {
  const std::uint64_t s = set_seed(seed, set);
  const std::int64_t element = dtype_size(shape.activation_dtype);
  const std::int64_t entry = shape.kv_lora_rank + shape.rope_dim;
  MlaInputs inputs;
  inputs.latent = Buffer(Memory::host,
                         static_cast<std::size_t>(shape.num_tokens * shape.kv_lora_rank * element));
  inputs.projection =
      Buffer(Memory::host, static_cast<std::size_t>(shape.num_tokens * entry * element));
  Random random{s};
  fill_random(random, inputs.latent.data(), shape.activation_dtype,
              shape.num_tokens * shape.kv_lora_rank);
  // The projection's latent half is never read by the op (kv_c is the layernorm's output).
  fill_random(random, inputs.projection.data(), shape.activation_dtype, shape.num_tokens * entry);
  const std::vector<std::int64_t> slots =
      draw_slots(shape.num_tokens, shape.num_blocks, shape.block_size, shape.contiguous_slots,
                 s ^ 0x51075EEDull);
  inputs.slot_buffer = Buffer(Memory::host, slots.size() * sizeof(std::int64_t));
  // Zero tokens: an empty buffer has no memory, and memcpy must not see its null pointer.
  if (!slots.empty())
    std::memcpy(inputs.slot_buffer.data(), slots.data(), inputs.slot_buffer.size());
  set_mla_views(shape, inputs, Device::cpu);
  return inputs;
}

MlaInputs copy_mla_inputs(const MlaShape& shape, const MlaInputs& inputs, Memory memory) {
  MlaInputs copy;
  copy.latent = copy_to(memory, inputs.latent);
  copy.projection = copy_to(memory, inputs.projection);
  copy.slot_buffer = copy_to(memory, inputs.slot_buffer);
  set_mla_views(shape, copy, memory == Memory::device ? Device::cuda : Device::cpu);
  return copy;
}

TensorView mla_cache_view(const MlaShape& shape, const Buffer& cache, Device device) {
  return TensorView::contiguous(cache.data(), shape.cache_dtype(),
                                {shape.num_blocks, shape.block_size, shape.entry_elements()},
                                device);
}

}  // namespace pagedkv::entries
