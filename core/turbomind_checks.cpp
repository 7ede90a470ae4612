// The rules TurboMind's KV ops share, get_cache_block_size() and the RoPE parameters. See
// turbomind_checks.h and pagedkv/turbomind_kv.h.
#include "turbomind_checks.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "block_lookup_checks.h"
#include "pagedkv/checks.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"

namespace pagedkv {

namespace {

constexpr double kPi = 3.14159265358979323846;

// head_dim values pagedkv instantiates (upstream also has 192, 256 and 576).
bool supported_head_dim(std::int64_t head_dim) { return head_dim == 64 || head_dim == 128; }

}  // namespace

std::int64_t get_cache_block_size(std::int64_t quant_policy, std::int64_t layer_num,
                                  std::int64_t head_num, std::int64_t head_dim,
                                  std::int64_t block_seq_len) {
  const QuantPolicy policy = checks::turbomind_policy(quant_policy);
  PAGEDKV_CHECK(supported_head_dim(head_dim), "head_dim: expected 64 or 128, got ", head_dim);
  PAGEDKV_CHECK(layer_num >= 1 && layer_num <= (1 << 16), "layer_num: expected 1 to 65536, got ",
                layer_num);
  PAGEDKV_CHECK(head_num >= 1 && head_num <= 1024, "head_num: expected 1 to 1024, got ", head_num);
  PAGEDKV_CHECK(block_seq_len >= 1 && block_seq_len <= checks::kTurbomindMaxBlockSeqLen,
                "block_seq_len: expected 1 to ", checks::kTurbomindMaxBlockSeqLen, ", got ",
                block_seq_len);
  const TurbomindLayout layout =
      turbomind_layout(static_cast<int>(head_num), static_cast<int>(head_dim),
                       static_cast<int>(block_seq_len), policy);
  return layer_num * layout.layer_size();
}

int turbomind_rope_type(std::string_view name) {
  if (name == "none") return static_cast<int>(TurbomindRopeType::none);
  if (name == "default") return static_cast<int>(TurbomindRopeType::standard);
  if (name == "linear") return static_cast<int>(TurbomindRopeType::linear);
  if (name == "dynamic") return static_cast<int>(TurbomindRopeType::dynamic);
  if (name == "yarn") return static_cast<int>(TurbomindRopeType::yarn);
  if (name == "llama3") return static_cast<int>(TurbomindRopeType::llama3);
  return -1;
}

namespace checks {

QuantPolicy turbomind_policy(std::int64_t quant_policy) {
  PAGEDKV_CHECK(quant_policy == 0 || quant_policy == 4 || quant_policy == 8,
                "quant_policy: expected 0 (none), 4 (int4) or 8 (int8), got ", quant_policy,
                quant_policy == 16 || quant_policy == 17
                    ? " (fp8 caches are rejected by TurboMind too)"
                    : "");
  return static_cast<QuantPolicy>(quant_policy);
}

void turbomind_activations(const TensorView& k, const char* k_name, const TensorView& v,
                           const char* v_name, bool written, TurbomindKvPlan& plan) {
  for (const auto& [view, name] : {std::pair{&k, k_name}, std::pair{&v, v_name}}) {
    ndim_is(*view, name, 3);
    non_negative_layout(*view, name);
    dtype_in(*view, name, {DType::f16, DType::bf16});
    packed_from(*view, name, 2);
  }
  PAGEDKV_CHECK(supported_head_dim(k.size(2)), k_name, ".size(2): head_dim must be 64 or 128 ",
                "(the sizes pagedkv instantiates; upstream also has 192, 256 and 576), got ",
                k.describe());
  PAGEDKV_CHECK(v.dtype == k.dtype, v_name, ": expected ", k_name, "'s dtype ",
                dtype_name(k.dtype), ", got ", dtype_name(v.dtype));
  for (int d = 0; d < 3; ++d) {
    PAGEDKV_CHECK(v.size(d) == k.size(d), v_name, ": expected ", k_name, "'s shape ",
                  k.shape_string(), ", got ", v.shape_string());
  }
  PAGEDKV_CHECK(k.size(1) >= 1 && k.size(1) <= 1024, k_name,
                ".size(1): expected 1 to 1024 KV heads, got ", k.size(1));
  PAGEDKV_CHECK(k.size(0) <= (std::int64_t{1} << 31) - 1, k_name,
                ".size(0): at most 2^31 - 1 rows (cu_q_len / cu_k_len are i32), got ", k.size(0));
  for (const auto& [view, name] : {std::pair{&k, k_name}, std::pair{&v, v_name}}) {
    PAGEDKV_CHECK(!written || elements_are_distinct(*view), name,
                  ": elements overlap (a stride of 0 or one smaller than what it steps over): ",
                  "the rows would be written over each other, got ", view->describe());
  }
  plan.dtype = k.dtype;
  plan.rows = k.size(0);
  plan.token_stride = k.stride(0);
  plan.head_stride = k.stride(1);
  plan.v_token_stride = v.stride(0);
  plan.v_head_stride = v.stride(1);
  plan.layout.head_num = static_cast<int>(k.size(1));
  plan.layout.head_dim = static_cast<int>(k.size(2));
}

void turbomind_pool(const TensorView& kv_cache, std::int64_t block_seq_len, std::int64_t layer_id,
                    std::int64_t cp_rank, std::int64_t cp_size, QuantPolicy policy,
                    TurbomindKvPlan& plan) {
  PAGEDKV_CHECK(block_seq_len >= 1 && block_seq_len <= kTurbomindMaxBlockSeqLen,
                "block_seq_len: expected tokens per block in [1, ", kTurbomindMaxBlockSeqLen,
                "], got ", block_seq_len);
  PAGEDKV_CHECK(cp_size >= 1 && cp_size <= 1024, "cp_size: expected 1 to 1024 ranks, got ",
                cp_size);
  PAGEDKV_CHECK(cp_rank >= 0 && cp_rank < cp_size, "cp_rank: expected 0 <= cp_rank < cp_size = ",
                cp_size, ", got ", cp_rank);
  plan.layout = turbomind_layout(plan.layout.head_num, plan.layout.head_dim,
                                 static_cast<int>(block_seq_len), policy);
  plan.quant_bits = quant_bits(policy);
  plan.block_seq_len = block_seq_len;
  plan.cp_rank = cp_rank;
  plan.cp_size = cp_size;

  ndim_is(kv_cache, "kv_cache", 2);
  non_negative_layout(kv_cache, "kv_cache");
  PAGEDKV_CHECK(kv_cache.dtype == DType::u8, "kv_cache: TurboMind blocks are bytes, expected ",
                "dtype u8, got ", dtype_name(kv_cache.dtype));
  packed_from(kv_cache, "kv_cache", 1);
  const auto address = reinterpret_cast<std::uintptr_t>(kv_cache.data);
  PAGEDKV_CHECK(address % 16 == 0 && (kv_cache.size(0) <= 1 || kv_cache.stride(0) % 16 == 0),
                "kv_cache: blocks are read and written in 16-byte vectors, so every block must "
                "start at a multiple of 16 bytes (data address and stride(0)), got ",
                kv_cache.describe(), " at ", kv_cache.data);
  PAGEDKV_CHECK(kv_cache.size(0) <= 1 || kv_cache.stride(0) >= kv_cache.size(1),
                "kv_cache: blocks overlap: stride(0) = ", kv_cache.stride(0), " < ",
                kv_cache.size(1), " bytes per block (", kv_cache.describe(), ")");
  const std::int64_t layer_size = plan.layout.layer_size();
  const std::int64_t layers = layer_size > 0 ? kv_cache.size(1) / layer_size : 0;
  PAGEDKV_CHECK(layer_id >= 0 && layer_id < layers, "layer_id: expected a layer of the block, ",
                "0 <= layer_id < ", layers, " (kv_cache.size(1) = ", kv_cache.size(1),
                " bytes hold ", layers, " layer regions of ", layer_size,
                " bytes: see get_cache_block_size), got ", layer_id);
  plan.layer_offset = layer_id * layer_size;
}

TurbomindRope turbomind_rope(const TurbomindRopeArgs& rope, int head_dim, std::int64_t batch,
                             Device device, TurbomindCheck* device_check) {
  TurbomindRope out;
  const int type = turbomind_rope_type(rope.rope_type);
  PAGEDKV_CHECK(type >= 0, "rope_type: expected \"none\", \"default\", \"linear\", \"dynamic\", ",
                "\"yarn\" or \"llama3\", got \"", rope.rope_type, "\"",
                rope.rope_type == "mrope" ? " (MRoPE is not implemented)" : "");
  const TensorView& bases = *rope.rope_bases;
  const bool has_bases = bases.data != nullptr;  // an absent optional tensor has no data
  out.type = type;
  if (type == static_cast<int>(TurbomindRopeType::none)) {
    PAGEDKV_CHECK(!has_bases, "rope_bases: given, but rope_type is \"none\"");
    return out;
  }
  PAGEDKV_CHECK(rope.rope_dim >= 8 && rope.rope_dim <= head_dim && rope.rope_dim % 8 == 0,
                "rope_dim: expected a multiple of 8 in [8, head_dim = ", head_dim, "], got ",
                rope.rope_dim);
  const bool finite_base = std::isfinite(rope.rope_base);
  PAGEDKV_CHECK(finite_base && rope.rope_base > 1.0, "rope_base: expected a finite base > 1, got ",
                rope.rope_base);
  out.dim = static_cast<int>(rope.rope_dim);
  const float base = static_cast<float>(rope.rope_base);
  // Upstream's init_rope_kernel_param: float log2 of the float base, divided by the int dim.
  out.scale_factor = -std::log2(base) / static_cast<float>(out.dim);
  const auto kind = static_cast<TurbomindRopeType>(type);
  if (kind == TurbomindRopeType::dynamic) {
    out.inv_factor = 1.f;
  } else if (kind == TurbomindRopeType::standard) {
    out.inv_factor = 1.f;  // "default" has no factor
  } else {
    PAGEDKV_CHECK(std::isfinite(rope.rope_factor) && rope.rope_factor >= 0.0,
                  "rope_factor: expected a finite factor >= 0 (0 means 1), got ", rope.rope_factor);
    out.inv_factor = rope.rope_factor != 0.0 ? static_cast<float>(1.0 / rope.rope_factor) : 1.f;
  }
  if (kind == TurbomindRopeType::dynamic) {
    PAGEDKV_CHECK(has_bases, "rope_bases: rope_type \"dynamic\" needs each sequence's base ",
                  "([batch] f32), got None");
    checks::device_is(bases, "rope_bases", device);
    checks::ndim_is(bases, "rope_bases", 1);
    checks::dtype_is(bases, "rope_bases", DType::f32);
    checks::size_is(bases, "rope_bases", 0, batch, "batch, cu_k_len.size(0) - 1");
    PAGEDKV_CHECK(bases.is_contiguous(), "rope_bases: expected a contiguous tensor, got ",
                  bases.describe());
    checks::not_null(bases, "rope_bases");
    out.bases = static_cast<const float*>(bases.data);
    if (device_check != nullptr) {
      // Deferred: the batch's check kernel reads the bases ("dynamic" has no yarn or llama3
      // parameters left to derive).
      device_check->rope_bases = out.bases;
      return out;
    }
    std::vector<float> values(static_cast<std::size_t>(batch));
    if (batch > 0) {
      if (device == Device::cpu) {
        std::memcpy(values.data(), bases.data, values.size() * sizeof(float));
      } else {
        cudaStream_t stream = synchronous_check_stream("rope_bases");
        PAGEDKV_CUDA_CHECK(cudaMemcpyAsync(values.data(), bases.data, values.size() * sizeof(float),
                                           cudaMemcpyDeviceToHost, stream));
        PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream));
      }
    }
    for (std::int64_t b = 0; b < batch; ++b) {
      const float value = values[static_cast<std::size_t>(b)];
      PAGEDKV_CHECK(std::isfinite(value) && value > 1.f, "rope_bases[", b, "] = ", value,
                    ": expected a finite base > 1");
    }
  } else {
    PAGEDKV_CHECK(!has_bases, "rope_bases: only rope_type \"dynamic\" takes per-sequence bases, ",
                  "got them with \"", rope.rope_type, "\"");
  }
  if (kind == TurbomindRopeType::yarn) {
    PAGEDKV_CHECK(rope.max_position_embeddings >= 1 && rope.max_position_embeddings <= (1 << 30),
                  "max_position_embeddings: yarn needs the model's positions, 1 to 2^30, got ",
                  rope.max_position_embeddings);
    PAGEDKV_CHECK(std::isfinite(rope.yarn_beta_fast) && std::isfinite(rope.yarn_beta_slow) &&
                      rope.yarn_beta_fast > 0.0 && rope.yarn_beta_slow > 0.0,
                  "yarn_beta_fast, yarn_beta_slow: expected finite values > 0, got ",
                  rope.yarn_beta_fast, ", ", rope.yarn_beta_slow);
    PAGEDKV_CHECK(std::isfinite(rope.yarn_attention_factor) && rope.yarn_attention_factor > 0.0,
                  "yarn_attention_factor: expected a finite value > 0, got ",
                  rope.yarn_attention_factor);
    // Upstream's find_correction_range, in its types (float dims from a double formula).
    const float dim = static_cast<float>(out.dim);
    const auto correction_dim = [&](float rotations) {
      return static_cast<float>(
          (out.dim * std::log(rope.max_position_embeddings / (rotations * 2 * kPi))) /
          (2 * std::log(base)));
    };
    float low = std::floor(correction_dim(static_cast<float>(rope.yarn_beta_fast)));
    float high = std::ceil(correction_dim(static_cast<float>(rope.yarn_beta_slow)));
    low = std::max(low, 0.f);
    high = std::min(high, dim - 1.f);
    if (low == high) high += 0.001f;
    PAGEDKV_CHECK(high > low, "yarn_beta_fast, yarn_beta_slow: the correction range [", low, ", ",
                  high, "] is empty (beta_fast must rotate faster than beta_slow)");
    out.yarn_ramp_div_2 = static_cast<float>(1.0 / (high - low) / 2.0);
    out.yarn_ramp_mul_min = static_cast<float>(1.0 / (high - low) * low);
    out.attention_scaling = static_cast<float>(rope.yarn_attention_factor);
  } else if (kind == TurbomindRopeType::llama3) {
    const double low = rope.llama3_low_freq_factor, high = rope.llama3_high_freq_factor;
    PAGEDKV_CHECK(std::isfinite(low) && std::isfinite(high) && high > low,
                  "llama3_high_freq_factor: expected a finite value above llama3_low_freq_factor = ",
                  low, ", got ", high);
    PAGEDKV_CHECK(rope.llama3_original_max_position_embeddings >= 1 &&
                      rope.llama3_original_max_position_embeddings <= (1 << 30),
                  "llama3_original_max_position_embeddings: expected 1 to 2^30, got ",
                  rope.llama3_original_max_position_embeddings);
    const float inv_diff = static_cast<float>(1.0 / (high - low));
    out.llama3_alpha = static_cast<float>(
        static_cast<double>(rope.llama3_original_max_position_embeddings) / (2 * kPi) * inv_diff);
    out.llama3_beta = static_cast<float>(low * inv_diff);
  }
  return out;
}

namespace {

std::vector<std::int64_t> read_i64(const TensorView& tensor, std::int64_t count) {
  std::vector<std::int64_t> values(static_cast<std::size_t>(count));
  if (count == 0) return values;
  const std::size_t bytes = values.size() * sizeof(std::int64_t);
  if (tensor.device == Device::cpu) {
    std::memcpy(values.data(), tensor.data, bytes);
  } else {
    cudaStream_t stream = synchronous_check_stream("blocks");
    PAGEDKV_CUDA_CHECK(
        cudaMemcpyAsync(values.data(), tensor.data, bytes, cudaMemcpyDeviceToHost, stream));
    PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  return values;
}

// A contiguous 1-D tensor of `dtype` with `size` elements, on `device`, memory behind it.
void index_vector(const TensorView& tensor, const char* name, DType dtype, std::int64_t size,
                  const char* what, Device device) {
  device_is(tensor, name, device);
  ndim_is(tensor, name, 1);
  dtype_is(tensor, name, dtype);
  if (size >= 0) size_is(tensor, name, 0, size, what);
  PAGEDKV_CHECK(tensor.is_contiguous(), name, ": expected a contiguous tensor, got ",
                tensor.describe());
  not_null(tensor, name);
}

// Tokens of positions [0, length) that rank `rank` of `ranks` stores.
std::int64_t local_tokens(std::int64_t length, std::int64_t rank, std::int64_t ranks) {
  return length > rank ? (length - rank + ranks - 1) / ranks : 0;
}

}  // namespace

void turbomind_batch(const TurbomindBatch& batch, const TensorView& kv_cache,
                     TurbomindKvPlan& plan, TurbomindCheck* device_check) {
  const Device device = kv_cache.device;
  const TensorView& cu_k_len = *batch.cu_k_len;
  PAGEDKV_CHECK(cu_k_len.ndim == 1 && cu_k_len.size(0) >= 1, "cu_k_len: expected [batch + 1] ",
                "i32, got ", cu_k_len.describe());
  const std::int64_t count = cu_k_len.size(0);
  const std::int64_t sequences = count - 1;
  PAGEDKV_CHECK(sequences <= 65535, "cu_k_len: at most 65,535 sequences (one grid row each), got ",
                sequences);
  index_vector(cu_k_len, "cu_k_len", DType::i32, -1, "", device);
  if (batch.cu_q_len != nullptr) {
    index_vector(*batch.cu_q_len, "cu_q_len", DType::i32, count, "batch + 1, cu_k_len.size(0)",
                 device);
  }
  index_vector(*batch.cu_block_num, "cu_block_num", DType::i32, count,
               "batch + 1, cu_k_len.size(0)", device);
  const bool has_readonly =
      batch.readonly_block_num != nullptr && batch.readonly_block_num->data != nullptr;
  if (has_readonly) {
    index_vector(*batch.readonly_block_num, "readonly_block_num", DType::i32, sequences,
                 "batch, cu_k_len.size(0) - 1", device);
  }
  const TensorView& blocks = *batch.blocks;
  index_vector(blocks, "blocks", DType::i64, -1, "", device);
  PAGEDKV_CHECK(batch.max_len >= 0 && batch.max_len <= plan.rows, batch.max_len_name,
                ": expected 0 <= ", batch.max_len_name, " <= ", batch.rows_name, ".size(0) = ",
                plan.rows, ", got ", batch.max_len);
  plan.batch = sequences;
  plan.max_len = batch.max_len;
  const std::int64_t stride = kv_cache.size(0) <= 1 ? kv_cache.size(1) : kv_cache.stride(0);

  if (device_check != nullptr) {
    // Deferred: the values are read by a check kernel on the call's stream (the caller queues
    // it, with the RoPE bases), whose fault makes the kernels write nothing. The launch needs
    // only plan.batch and plan.max_len, which come from shapes and host arguments.
    TurbomindCheck& check = *device_check;
    check.cu_q_len =
        batch.cu_q_len != nullptr ? static_cast<const std::int32_t*>(batch.cu_q_len->data) : nullptr;
    check.cu_k_len = static_cast<const std::int32_t*>(cu_k_len.data);
    check.cu_block_num = static_cast<const std::int32_t*>(batch.cu_block_num->data);
    check.readonly_block_num =
        has_readonly ? static_cast<const std::int32_t*>(batch.readonly_block_num->data) : nullptr;
    check.blocks = static_cast<const std::int64_t*>(batch.blocks->data);
    check.batch = sequences;
    check.rows = plan.rows;
    check.max_len = batch.max_len;
    check.block_count = batch.blocks->size(0);
    check.block_seq_len = plan.block_seq_len;
    check.cp_rank = plan.cp_rank;
    check.cp_size = plan.cp_size;
    check.pool_blocks = kv_cache.size(0);
    check.pool_stride = stride;
    check.rows_name = reinterpret_cast<std::uint64_t>(batch.rows_name);
    check.max_len_name = reinterpret_cast<std::uint64_t>(batch.max_len_name);
    return;
  }

  const std::vector<std::int64_t> k_len_cu = read_i32(cu_k_len, count);
  const std::vector<std::int64_t> q_len_cu =
      batch.cu_q_len != nullptr ? read_i32(*batch.cu_q_len, count) : std::vector<std::int64_t>{};
  const std::vector<std::int64_t> block_cu = read_i32(*batch.cu_block_num, count);
  const std::vector<std::int64_t> readonly =
      has_readonly ? read_i32(*batch.readonly_block_num, sequences) : std::vector<std::int64_t>{};
  const bool writes = batch.cu_q_len != nullptr;

  // 1. Where the rows and the blocks of the first sequence start.
  if (writes) {
    PAGEDKV_CHECK(q_len_cu[0] >= 0, "cu_q_len[0] = ", q_len_cu[0],
                  ": expected a row of ", batch.rows_name, " (>= 0)");
  }
  PAGEDKV_CHECK(block_cu[0] >= 0, "cu_block_num[0] = ", block_cu[0],
                ": expected an index into blocks (>= 0)");
  // 2. Per sequence: running sums, lengths, blocks enough.
  for (std::int64_t b = 0; b < sequences; ++b) {
    const auto i = static_cast<std::size_t>(b);
    PAGEDKV_CHECK(k_len_cu[i + 1] >= k_len_cu[i], "cu_k_len[", b + 1, "] = ", k_len_cu[i + 1],
                  ": expected a running sum of lengths, at least cu_k_len[", b,
                  "] = ", k_len_cu[i]);
    const std::int64_t k_len = k_len_cu[i + 1] - k_len_cu[i];
    PAGEDKV_CHECK(k_len <= std::int64_t{2147483647}, "cu_k_len: sequence ", b, " has ", k_len,
                  " tokens; positions are i32, at most 2,147,483,647");
    std::int64_t length = k_len;
    if (writes) {
      PAGEDKV_CHECK(q_len_cu[i + 1] >= q_len_cu[i], "cu_q_len[", b + 1, "] = ", q_len_cu[i + 1],
                    ": expected a running sum of lengths, at least cu_q_len[", b,
                    "] = ", q_len_cu[i]);
      const std::int64_t q_len = q_len_cu[i + 1] - q_len_cu[i];
      PAGEDKV_CHECK(q_len <= k_len, "cu_q_len: sequence ", b, " has q_len = ", q_len,
                    " new tokens but k_len = ", k_len,
                    " tokens in all (cu_k_len): the new tokens are the last of the sequence");
      length = q_len;
    }
    PAGEDKV_CHECK(length <= batch.max_len, writes ? "cu_q_len" : "cu_k_len", ": sequence ", b,
                  " has ", length, writes ? " new tokens" : " tokens", ", more than ",
                  batch.max_len_name, " = ", batch.max_len);
    PAGEDKV_CHECK(block_cu[i + 1] >= block_cu[i], "cu_block_num[", b + 1, "] = ", block_cu[i + 1],
                  ": expected a running sum of block counts, at least cu_block_num[", b,
                  "] = ", block_cu[i]);
    const std::int64_t local = local_tokens(k_len, plan.cp_rank, plan.cp_size);
    const std::int64_t needed = (local + plan.block_seq_len - 1) / plan.block_seq_len;
    PAGEDKV_CHECK(block_cu[i + 1] - block_cu[i] >= needed, "cu_block_num: sequence ", b, " has ",
                  block_cu[i + 1] - block_cu[i], " blocks, but its ", k_len,
                  " tokens need ", needed, " blocks of ", plan.block_seq_len, " tokens",
                  plan.cp_size > 1 ? " on this rank" : "");
    if (has_readonly) {
      PAGEDKV_CHECK(readonly[i] >= 0, "readonly_block_num[", b, "] = ", readonly[i],
                    ": expected a block count >= 0");
    }
  }
  // 3. The totals inside k / v (or k_out / v_out) and inside blocks.
  const std::int64_t rows_used =
      writes ? q_len_cu[static_cast<std::size_t>(sequences)]
             : k_len_cu[static_cast<std::size_t>(sequences)] - k_len_cu[0];
  PAGEDKV_CHECK(rows_used <= plan.rows, writes ? "cu_q_len[batch] = " : "cu_k_len[batch] - "
                "cu_k_len[0] = ", rows_used, ": the sequences use that many rows of ",
                batch.rows_name, ", which has ", plan.rows);
  const std::int64_t listed = block_cu[static_cast<std::size_t>(sequences)];
  PAGEDKV_CHECK(listed <= blocks.size(0), "cu_block_num[batch] = ", listed,
                ": the sequences list that many blocks, but blocks has ", blocks.size(0));
  // 4. Every listed block is a block of the pool: a byte offset to the start of one of its rows
  //    (a raw pointer could point anywhere; an offset can be checked against the pool).
  const std::vector<std::int64_t> offsets = read_i64(blocks, listed);
  for (std::int64_t i = block_cu[0]; i < listed; ++i) {
    const std::int64_t offset = offsets[static_cast<std::size_t>(i)];
    PAGEDKV_CHECK(offset >= 0 && stride > 0 && offset % stride == 0 &&
                      offset / stride < kv_cache.size(0),
                  "blocks[", i, "] = ", offset, ": expected the byte offset of a block of ",
                  "kv_cache, a multiple of stride(0) = ", stride, " below ", kv_cache.size(0),
                  " × ", stride, " (a null or foreign pointer has no such offset)");
  }
}

}  // namespace checks

}  // namespace pagedkv
