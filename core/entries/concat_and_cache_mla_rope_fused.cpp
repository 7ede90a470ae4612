// Registry entry of concat_and_cache_mla_rope_fused, and its workload points (W2, mla_case.h).
//
// One point: W2's kv_c and k_pe (a view with row pitch 576 into the kv_a projection), plus the
// queries' RoPE parts q_pe [T, 16, 64], a view (token pitch 16 · 192, head pitch 192) into the
// query projection [T, 16, 128 + 64] as in the model (DeepSeek-V3's 128 heads over tensor
// parallelism 8), GPT-J pairs (DeepSeek's style), positions random below 4096.
#include "pagedkv/ops/concat_and_cache_mla_rope_fused.h"

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "mla_case.h"
#include "pagedkv/error.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

constexpr std::int64_t kQHeads = 16;  // DeepSeek-V3's 128 query heads over 8 GPUs
constexpr std::int64_t kQNope = 128;  // the query head's part without RoPE
constexpr std::int64_t kMaxPosition = 4096;

// One buffer set: W2's MLA inputs plus the queries, the positions and the cos/sin table.
struct FusedInputs {
  MlaInputs mla;
  Buffer queries;    // [T, kQHeads, kQNope + 64]; q_pe is the last 64 of each head
  Buffer positions;  // [T] i64
  Buffer cos_sin;    // [kMaxPosition, 64]
  TensorView q_pe, position_view, cos_sin_view;
};

void set_views(const MlaShape& shape, FusedInputs& in, Device device) {
  const std::int64_t element = dtype_size(shape.activation_dtype);
  const std::int64_t head = kQNope + shape.rope_dim;
  in.q_pe = TensorView::strided(in.queries.data() + kQNope * element, shape.activation_dtype,
                                {shape.num_tokens, kQHeads, shape.rope_dim},
                                {kQHeads * head, head, 1}, device);
  in.position_view =
      TensorView::contiguous(in.positions.data(), DType::i64, {shape.num_tokens}, device);
  in.cos_sin_view = TensorView::contiguous(in.cos_sin.data(), shape.activation_dtype,
                                           {kMaxPosition, shape.rope_dim}, device);
}

FusedInputs make_inputs(const MlaShape& shape, std::uint64_t seed, int set) {
  FusedInputs in;
  in.mla = make_mla_inputs(shape, seed, set);
  const std::int64_t element = dtype_size(shape.activation_dtype);
  const std::uint64_t s = set_seed(seed, set) ^ 0x0F05EDull;
  in.queries = Buffer(Memory::host, static_cast<std::size_t>(shape.num_tokens * kQHeads *
                                                             (kQNope + shape.rope_dim) * element));
  Random random{s};
  fill_random(random, in.queries.data(), shape.activation_dtype,
              shape.num_tokens * kQHeads * (kQNope + shape.rope_dim));
  // cos and sin values in [-1, 1] (random, not a real table: the op only multiplies them).
  in.cos_sin =
      Buffer(Memory::host, static_cast<std::size_t>(kMaxPosition * shape.rope_dim * element));
  fill_random(random, in.cos_sin.data(), shape.activation_dtype, kMaxPosition * shape.rope_dim);
  in.positions = Buffer(Memory::host, static_cast<std::size_t>(shape.num_tokens * 8));
  auto* positions = reinterpret_cast<std::int64_t*>(in.positions.data());
  for (std::int64_t t = 0; t < shape.num_tokens; ++t) positions[t] = random.below(kMaxPosition);
  set_views(shape, in, Device::cpu);
  return in;
}

FusedInputs copy_inputs(const MlaShape& shape, const FusedInputs& from, Memory memory) {
  FusedInputs in;
  in.mla = copy_mla_inputs(shape, from.mla, memory);
  in.queries = copy_to(memory, from.queries);
  in.positions = copy_to(memory, from.positions);
  in.cos_sin = copy_to(memory, from.cos_sin);
  set_views(shape, in, memory == Memory::device ? Device::cuda : Device::cpu);
  return in;
}

// Adds the agreement of one more output buffer.
void add(Agreement& total, const Agreement& part) {
  total.bit_exact = total.bit_exact && part.bit_exact;
  total.max_abs_err = std::max(total.max_abs_err, part.max_abs_err);
  total.bytes_differing += part.bytes_differing;
  total.bytes_compared += part.bytes_compared;
}

class RopeFusedCase final : public PlannedCase<ConcatAndCacheMlaRopeFused> {
  using Op = ConcatAndCacheMlaRopeFused;

 public:
  RopeFusedCase(const WorkloadPoint& point, std::uint64_t seed)
      : shape_(mla_shape(point)),
        seed_(seed),
        pristine_(make_inputs(shape_, seed, 0)),
        host_(copy_inputs(shape_, pristine_, Memory::host)),
        host_cache_(Memory::host, static_cast<std::size_t>(shape_.cache_bytes())),
        host_scale_(make_scale(shape_.scale, Memory::host)) {
    PAGEDKV_CHECK(!shape_.ds_mla(),
                  "concat_and_cache_mla_rope_fused W2 variant: bf16 or "
                  "fp8_e4m3, got fp8_ds_mla");
  }

  // W2's write, plus q_pe read and written, k_pe written back, positions read, and one
  // cos/sin row (rot_dim values) read per token.
  std::int64_t bytes_moved() const override {
    const std::int64_t element = dtype_size(shape_.activation_dtype);
    const std::int64_t per_token = 2 * kQHeads * shape_.rope_dim * element  // q_pe in place
                                   + shape_.rope_dim * element              // k_pe written back
                                   + shape_.rope_dim * element              // cos/sin row
                                   + 8;                                     // position
    return shape_.write_bytes() + shape_.num_tokens * per_token;
  }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    device_cache_ = Buffer(Memory::device, host_cache_.size());
    device_cache_.fill(kPoisonByte);
    scale_ = make_scale(shape_.scale, Memory::device);
    const TensorView cache = mla_cache_view(shape_, device_cache_, Device::cuda);
    for (int set = 0; set < sets; ++set) {
      device_.push_back(set == 0
                            ? copy_inputs(shape_, pristine_, Memory::device)
                            : copy_inputs(shape_, make_inputs(shape_, seed_, set), Memory::device));
      calls_.add(args_of(device_.back(), cache, scale_.view));
    }
  }

  void reset_outputs() override {
    device_cache_.fill(kPoisonByte);
    device_.at(0).queries.upload(pristine_.queries.data(), pristine_.queries.size());
    device_.at(0).mla.projection.upload(pristine_.mla.projection.data(),
                                        pristine_.mla.projection.size());
  }

  Agreement compare_outputs() override {
    const DType element = shape_.fp8() ? DType::u8 : shape_.activation_dtype;
    Agreement total = compare_with_reference(device_cache_, host_cache_.data(), element);
    add(total, compare_with_reference(device_.at(0).queries, host_.queries.data(),
                                      shape_.activation_dtype));
    add(total, compare_with_reference(device_.at(0).mla.projection, host_.mla.projection.data(),
                                      shape_.activation_dtype));
    return total;
  }

 private:
  // The CPU reference's call on the host inputs (what run_cpu() runs and cpu_arguments()
  // lists).
  Op::Args cpu_call() override {
    // The op rotates in place: start again from the pristine inputs every time.
    // (copy_from: zero tokens leave empty buffers, whose null pointers memcpy must not see.)
    host_.queries.copy_from(pristine_.queries);
    host_.mla.projection.copy_from(pristine_.mla.projection);
    host_cache_.fill(kPoisonByte);
    return args_of(host_, mla_cache_view(shape_, host_cache_, Device::cpu), host_scale_.view);
  }
  Op::Args args_of(const FusedInputs& in, const TensorView& cache, const TensorView& scale) const {
    return {in.position_view,
            in.q_pe,
            in.mla.k_pe,
            in.mla.kv_c,
            in.cos_sin_view,
            /*is_neox=*/false,
            in.mla.slot_mapping,
            cache,
            shape_.kv_cache_dtype,
            scale};
  }

  MlaShape shape_;
  std::uint64_t seed_;
  FusedInputs pristine_;  // set 0 as drawn: what every checked run starts from
  FusedInputs host_;      // the CPU reference's working copy (rotated in place)
  Buffer host_cache_;
  ScaleTensor host_scale_;
  std::vector<FusedInputs> device_;
  Buffer device_cache_;
  ScaleTensor scale_;
};

std::vector<WorkloadPoint> points(const std::string& workload, bool quick) {
  if (workload != "W2") return {};
  return mla_points({"bf16", "fp8_e4m3"}, quick);
}

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<RopeFusedCase>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry ConcatAndCacheMlaRopeFused::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "cache writes";
  entry.role =
      "Applies rotary position embedding in place to the new tokens' query and key RoPE parts and "
      "stores [latent, rotated key] in the MLA cache in the same pass.";
  entry.upstream =
      "vLLM csrc/cache_kernels_fused.cu: concat_and_cache_mla_rope_fused "
      "(concat_and_cache_mla_rope_fused_kernel)";
  entry.cpu_source = "reference_cpu/concat_and_cache_mla_rope_fused.cpp";
  entry.naive_source = "kernels/mla/concat_and_cache_mla_rope_fused/naive.cu";
  entry.optimized_source = "kernels/mla/concat_and_cache_mla_rope_fused/optimized.cu";
  entry.byte_model =
      "q_pe read and written once (tokens x 16 heads x 64 x 2 x activation bytes), k_pe read and "
      "written once, kv_c read once, each entry written once (1152 bytes bf16, 576 fp8_e4m3), "
      "one cos/sin row (64 values), the position and the slot read once per token";
  entry.agreement_rule =
      "bit-exact: the whole cache, untouched slots included, and the rotated q_pe and k_pe equal "
      "the CPU reference byte for byte";
  entry.workloads = {"W2"};
  entry.workload_notes =
      std::string(mla_workload_notes()) +
      " The RoPE-fused writer also rotates q_pe [tokens, 16, 64], a view into the query "
      "projection [tokens, 16, 192] (DeepSeek-V3's 128 heads over tensor parallelism 8), with "
      "GPT-J pairs (DeepSeek's style) and positions drawn below 4096; fp8_ds_mla is not "
      "supported by this op.";
  entry.points = &points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
