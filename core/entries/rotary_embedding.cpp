// Registry entry of rotary_embedding, and its workload points (W11).
//
// One point: Llama-3's attention shapes (32 query heads, 8 key heads, head_size 128, NeoX,
// base 5e5). As in vLLM, query and key are views of one qkv activation
// [T, (32 + 2 × 8) × 128]: query its first 32 heads, key the next 8, both flat
// ([T, H * head_size]) with the qkv row as token stride; the value heads must stay untouched.
// Positions are random rows of a cos_sin_cache built as vLLM builds it (fp32, then cast). The op
// works in place: the checked run starts from the drawn activation, the timed launches from
// what the previous launch left (the same work).
#include "pagedkv/ops/rotary_embedding.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "harness.h"
#include "numerics.h"
#include "pagedkv/buffers.h"
#include "pagedkv/error.h"
#include "pagedkv/registry.h"

namespace pagedkv::entries {

namespace {

// One W11 point.
struct RotaryShape {
  std::int64_t num_tokens = 0;
  std::int64_t num_heads = 32;      // query heads
  std::int64_t num_kv_heads = 8;    // key (and value) heads
  std::int64_t head_size = 128;     // = rot_dim: the whole head turns
  std::int64_t max_position = 0;    // rows of cos_sin_cache
  double base = 5e5;                // Llama-3's rope_theta
  DType dtype = DType::bf16;        // query and key
  DType cache_dtype = DType::bf16;  // cos_sin_cache

  std::int64_t row_elements() const { return (num_heads + 2 * num_kv_heads) * head_size; }
  std::int64_t qkv_bytes() const { return num_tokens * row_elements() * dtype_size(dtype); }
};

RotaryShape rotary_shape(const WorkloadPoint& point) {
  PAGEDKV_CHECK(point.workload == "W11", "rotary_embedding runs workload W11, got ",
                point.workload);
  RotaryShape shape;
  shape.num_tokens = point.size;
  // Positions of a sequence as long as the batch, and at least a short prompt's.
  shape.max_position = std::max<std::int64_t>(point.size, 64);
  if (point.variant == "bf16") {
    shape.cache_dtype = DType::bf16;
  } else if (point.variant == "bf16, f32 cache") {
    shape.cache_dtype = DType::f32;
  } else {
    reject("W11 variant: expected \"bf16\" or \"bf16, f32 cache\", got \"", point.variant, "\"");
  }
  return shape;
}

std::vector<WorkloadPoint> rotary_points(const std::string& workload, bool quick) {
  if (workload != "W11") return {};
  const std::vector<std::string> variants = {"bf16", "bf16, f32 cache"};
  const std::vector<std::int64_t> sizes =
      quick ? std::vector<std::int64_t>{1, 16, 256}
            : std::vector<std::int64_t>{1, 16, 256, 4096, 32768, 131072};
  std::vector<WorkloadPoint> points;
  for (const std::string& variant : variants)
    for (std::int64_t tokens : sizes) points.push_back({"W11", variant, "", tokens, "tokens", 0});
  return points;
}

// cos_sin_cache as vLLM's RotaryEmbedding._compute_cos_sin_cache builds it: in fp32,
// inv_freq[j] = 1 / base^(2j / rot_dim), angle = p · inv_freq[j], row p = cosines then sines;
// then cast (round to nearest even) to the cache dtype.
Buffer build_cos_sin_cache(const RotaryShape& shape) {
  const std::int64_t rot_dim = shape.head_size, half = rot_dim / 2;
  const std::int64_t element = dtype_size(shape.cache_dtype);
  Buffer cache(Memory::host, static_cast<std::size_t>(shape.max_position * rot_dim * element));
  std::vector<float> inv_freq(static_cast<std::size_t>(half));
  for (std::int64_t j = 0; j < half; ++j) {
    const float exponent = static_cast<float>(2 * j) / static_cast<float>(rot_dim);
    inv_freq[j] = 1.0f / std::pow(static_cast<float>(shape.base), exponent);
  }
  const auto store = [&](std::int64_t at, float value) {
    std::uint8_t* to = cache.data() + at * element;
    if (shape.cache_dtype == DType::f32) {
      std::memcpy(to, &value, 4);
    } else {
      const std::uint16_t bits = numerics::float_to_bf16_bits(value);
      std::memcpy(to, &bits, 2);
    }
  };
  for (std::int64_t p = 0; p < shape.max_position; ++p) {
    for (std::int64_t j = 0; j < half; ++j) {
      const float angle = static_cast<float>(p) * inv_freq[j];
      store(p * rot_dim + j, std::cos(angle));
      store(p * rot_dim + half + j, std::sin(angle));
    }
  }
  return cache;
}

class RotaryCase final : public PlannedCase<RotaryEmbedding> {
  struct Set {
    Buffer qkv, positions, cos_sin_cache;
  };

 public:
  RotaryCase(const WorkloadPoint& point, std::uint64_t seed)
      : shape_(rotary_shape(point)),
        seed_(seed),
        host_(draw(0)),
        reference_(Memory::host, qkv_bytes()) {
    reference_.fill(kPoisonByte);
    // The rows the positions touch, for the byte model.
    std::vector<std::int64_t> rows(static_cast<std::size_t>(shape_.num_tokens));
    if (!rows.empty()) std::memcpy(rows.data(), host_.positions.data(), rows.size() * 8);
    std::sort(rows.begin(), rows.end());
    distinct_rows_ = std::unique(rows.begin(), rows.end()) - rows.begin();
  }

  // query and key read and written once, positions read, each touched cos_sin_cache row read.
  std::int64_t bytes_moved() const override {
    const std::int64_t rotated =
        shape_.num_tokens * (shape_.num_heads + shape_.num_kv_heads) * shape_.head_size;
    return 2 * rotated * dtype_size(shape_.dtype) + 8 * shape_.num_tokens +
           distinct_rows_ * shape_.head_size * dtype_size(shape_.cache_dtype);
  }
  CopyKind copy_kind() const override { return CopyKind::device_to_device; }

  void prepare_device(std::int64_t l2_bytes) override {
    const int sets = buffer_sets_for(bytes_moved(), l2_bytes);
    for (int set = 0; set < sets; ++set) {
      Set drawn = set == 0 ? Set{} : draw(set);
      const Set& from = set == 0 ? host_ : drawn;
      Set s;
      s.qkv = copy_to(Memory::device, from.qkv);
      s.positions = copy_to(Memory::device, from.positions);
      s.cos_sin_cache = copy_to(Memory::device, from.cos_sin_cache);
      device_.push_back(std::move(s));
      calls_.add(args_of(device_.back(), device_.back().qkv, Device::cuda));
    }
  }

  // query and key are read and overwritten: back to the drawn activation.
  void reset_outputs() override { device_.at(0).qkv.copy_from(host_.qkv); }
  Agreement compare_outputs() override {
    return compare_with_reference(device_.at(0).qkv, reference_.data(), shape_.dtype);
  }

 private:
  std::size_t qkv_bytes() const {
    return static_cast<std::size_t>(std::max<std::int64_t>(shape_.qkv_bytes(), 1));
  }
  Set draw(int set) const {
    const std::uint64_t seed = set_seed(seed_, set);
    Set s;
    s.qkv = Buffer(Memory::host, qkv_bytes());
    fill_random(s.qkv.data(), shape_.dtype, shape_.num_tokens * shape_.row_elements(), seed);
    s.positions = Buffer(
        Memory::host, static_cast<std::size_t>(std::max<std::int64_t>(shape_.num_tokens, 1) * 8));
    Random random{seed ^ 0x905Eull};
    for (std::int64_t t = 0; t < shape_.num_tokens; ++t) {
      const std::int64_t position = random.below(shape_.max_position);
      std::memcpy(s.positions.data() + 8 * t, &position, 8);
    }
    s.cos_sin_cache = build_cos_sin_cache(shape_);
    return s;
  }
  // The CPU reference's call on the host inputs (what run_cpu() runs and cpu_arguments()
  // lists). In place: every call starts from the drawn activation.
  RotaryEmbedding::Args cpu_call() override {
    reference_.copy_from(host_.qkv);
    return args_of(host_, reference_, Device::cpu);
  }

  // query = qkv[:, :H * D], key = qkv[:, H * D : (H + KVH) * D]: flat views, qkv rows apart.
  RotaryEmbedding::Args args_of(const Set& s, const Buffer& qkv, Device device) const {
    const std::int64_t t = shape_.num_tokens, d = shape_.head_size;
    const std::int64_t row = shape_.row_elements();
    std::uint8_t* key_start = qkv.data() + shape_.num_heads * d * dtype_size(shape_.dtype);
    RotaryEmbedding::Args args;
    args.positions = TensorView::contiguous(s.positions.data(), DType::i64, {t}, device);
    args.query =
        TensorView::strided(qkv.data(), shape_.dtype, {t, shape_.num_heads * d}, {row, 1}, device);
    args.key = TensorView::strided(key_start, shape_.dtype, {t, shape_.num_kv_heads * d}, {row, 1},
                                   device);
    args.head_size = d;
    args.cos_sin_cache = TensorView::contiguous(s.cos_sin_cache.data(), shape_.cache_dtype,
                                                {shape_.max_position, d}, device);
    args.is_neox = true;
    args.rope_dim_offset = 0;
    args.inverse = false;
    return args;
  }

  RotaryShape shape_;
  std::uint64_t seed_;
  Set host_;          // set 0's drawn inputs
  Buffer reference_;  // the CPU reference's qkv
  std::int64_t distinct_rows_ = 0;
  std::vector<Set> device_;  // one per buffer set
};

std::unique_ptr<OpCase> make_case(const WorkloadPoint& point, std::uint64_t seed) {
  return std::make_unique<RotaryCase>(point, seed);
}

}  // namespace

}  // namespace pagedkv::entries

namespace pagedkv {

OpEntry RotaryEmbedding::card() {
  using namespace entries;
  OpEntry entry;
  entry.family = "model ops";
  entry.role =
      "Before attention and before the key is written to the cache, turns every query and key "
      "head, pair by pair, by angles that grow with the token's position (rotary position "
      "embedding), in place.";
  entry.upstream =
      "vLLM csrc/pos_encoding_kernels.cu: rotary_embedding (rotary_embedding_kernel, "
      "apply_rotary_embedding)";
  entry.cpu_source = "reference_cpu/rotary_embedding.cpp";
  entry.naive_source = "kernels/rotary/rotary_embedding/naive.cu";
  entry.optimized_source = "kernels/rotary/rotary_embedding/optimized.cu";
  entry.byte_model =
      "query and key read and written once (2 x tokens x (num_heads + num_kv_heads) x head_size "
      "x element bytes), positions read once (8 bytes per token), each cos_sin_cache row the "
      "positions touch read once (rot_dim x cache element bytes)";
  entry.agreement_rule =
      "bit-exact across the three: per rotated value one fp32 product and one explicit FMA "
      "(std::fma on the CPU, __fmaf_rn on the GPU), rounded once to the activation dtype";
  entry.workloads = {"W11"};
  entry.workload_notes =
      "W11: Llama-3 attention, 32 query and 8 key heads of head_size 128, the whole head "
      "rotated (rot_dim 128), NeoX pairs, base 5e5; query and key are flat views of one bf16 "
      "qkv activation [tokens, 48 x 128] (the value heads must stay untouched), random with "
      "|x| < 4; positions uniform over the rows of a cos_sin_cache of max(tokens, 64) rows "
      "built as vLLM builds it (fp32, then cast to bf16, or kept f32 for the 'f32 cache' "
      "variant); tokens 1 to 131072, a quick run keeps 1, 16 and 256 tokens.";
  entry.points = &rotary_points;
  entry.make_case = &make_case;
  return entry;
}

}  // namespace pagedkv
