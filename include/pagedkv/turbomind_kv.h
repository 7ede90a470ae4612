/// \file
/// \brief LMDeploy TurboMind's paged KV block: its byte layout, the size of one block
/// (get_cache_block_size()), the quant policies and the RoPE parameters its writer applies.
/// Shared by process_kv and flatten_kv, their contracts, CPU references and kernels.
///
/// One block holds `block_seq_len` tokens of every layer. Inside it, layer `l` owns the
/// `layer_size` bytes from `l × layer_size`. A layer region holds all data first, then all quant
/// parameters (upstream calls this layout `L(H2SDQ + H2S2T)`, in
/// `src/turbomind/kernels/attention/block.h`):
/// - for each KV head h: its K rows (block_seq_len × token_data bytes), then its V rows;
/// - then, for each head h (quantized caches only): block_seq_len K `[scale, zero]` pairs, then
///   block_seq_len V pairs (each pair two values of the activation type, 4 bytes).
///
/// Worked example (Llama-3-8B, 8 KV heads × 128, block_seq_len 64, bf16): policy 0 stores
/// 256 bytes per token and head, so a layer region is 8 × 2 × 64 × 256 = 262,144 bytes; int8
/// stores 128 bytes per token and head plus 4 bytes of parameters: 8 × 2 × 8,192 + 8 × 2 × 256 =
/// 135,168 bytes; int4: 8 × 2 × 4,096 + 8 × 2 × 256 = 69,632 bytes. Head 3's V row of token 5 in
/// an int8 region starts at 3 × 2 × 8,192 + 8,192 + 5 × 128 = 58,008, its `[scale, zero]` at
/// 131,072 + 3 × 2 × 256 + 256 + 5 × 4 = 132,884.
#pragma once

#include <cstdint>
#include <string_view>

#if defined(__CUDACC__)
/// \brief `__host__ __device__` and inlined under nvcc, `inline` for the host compiler: the
/// layout's and the shared arithmetic's functions run on both sides.
#define PAGEDKV_TM_FN __host__ __device__ __forceinline__
#else
#define PAGEDKV_TM_FN inline
#endif

namespace pagedkv {

/// \brief TurboMind's quant policies (`lmdeploy.messages.QuantPolicy`): 0 keeps K and V in the
/// activation type, 8 stores int8 codes, 4 int4 codes, each token's and head's K and V with a
/// `[scale, zero]` pair. FP8 (16, 17) and the other values never reach these kernels.
enum class QuantPolicy : int {
  none = 0,  ///< K and V as f16 / bf16
  int4 = 4,  ///< 4-bit codes, two per byte
  int8 = 8,  ///< 8-bit codes
};

/// \brief Bits of one stored element: 16 (policy 0), 8 or 4.
/// \param policy the quant policy.
/// \return the bits.
constexpr int quant_bits(QuantPolicy policy) {
  return policy == QuantPolicy::int8 ? 8 : policy == QuantPolicy::int4 ? 4 : 16;
}

/// \brief Where everything of one layer lies in a TurboMind block (upstream's block::Layout
/// with its Config): byte offsets from the start of the layer region.
struct TurbomindLayout {
  int head_num = 0;       ///< local KV heads
  int head_dim = 0;       ///< elements per head
  int block_seq_len = 0;  ///< tokens per block
  int q_bits = 16;        ///< bits per stored element: 16, 8 or 4
  int t_bits = 0;         ///< bits per parameter: 0 (policy 0) or 16 (the activation type)

  /// \brief Bytes of one token's codes for one head: `q_bits × head_dim / 8`.
  /// \return the bytes.
  PAGEDKV_TM_FN std::int64_t token_data_size() const {
    return static_cast<std::int64_t>(q_bits) * head_dim / 8;
  }
  /// \brief Bytes of one token's `[scale, zero]`: 0 unquantized, else 4.
  /// \return the bytes.
  PAGEDKV_TM_FN std::int64_t token_param_size() const {
    return static_cast<std::int64_t>(t_bits) * 2 / 8;
  }
  /// \brief Bytes of one head's K (or V) rows: `block_seq_len × token_data_size()`.
  /// \return the bytes.
  PAGEDKV_TM_FN std::int64_t head_data_size() const {
    return block_seq_len * token_data_size();
  }
  /// \brief Bytes of one head's K (or V) parameters: `block_seq_len × token_param_size()`.
  /// \return the bytes.
  PAGEDKV_TM_FN std::int64_t head_param_size() const {
    return block_seq_len * token_param_size();
  }
  /// \brief Bytes of one layer region: every head's K and V data, then their parameters.
  /// \return the bytes.
  PAGEDKV_TM_FN std::int64_t layer_size() const {
    return static_cast<std::int64_t>(head_num) * 2 * (head_data_size() + head_param_size());
  }
  /// \brief Offset of head h's K codes of row ti (V follows at + head_data_size()).
  /// \param h the head.
  /// \param ti the row in the block.
  /// \return the offset in the layer region.
  PAGEDKV_TM_FN std::int64_t k_data(int h, int ti) const {
    return static_cast<std::int64_t>(h) * 2 * head_data_size() + ti * token_data_size();
  }
  /// \brief Offset of head h's V codes of row ti.
  /// \param h the head.
  /// \param ti the row in the block.
  /// \return the offset in the layer region.
  PAGEDKV_TM_FN std::int64_t v_data(int h, int ti) const {
    return k_data(h, ti) + head_data_size();
  }
  /// \brief Offset of head h's K `[scale, zero]` of row ti: after all heads' data.
  /// \param h the head.
  /// \param ti the row in the block.
  /// \return the offset in the layer region.
  PAGEDKV_TM_FN std::int64_t k_param(int h, int ti) const {
    return static_cast<std::int64_t>(head_num) * 2 * head_data_size() +
           static_cast<std::int64_t>(h) * 2 * head_param_size() + ti * token_param_size();
  }
  /// \brief Offset of head h's V `[scale, zero]` of row ti.
  /// \param h the head.
  /// \param ti the row in the block.
  /// \return the offset in the layer region.
  PAGEDKV_TM_FN std::int64_t v_param(int h, int ti) const {
    return k_param(h, ti) + head_param_size();
  }
};

/// \brief The layout of one layer region.
/// \param head_num local KV heads.
/// \param head_dim elements per head.
/// \param block_seq_len tokens per block.
/// \param policy the quant policy.
/// \return the layout (t_bits 16 for a quantized cache: parameters are f16 or bf16).
constexpr TurbomindLayout turbomind_layout(int head_num, int head_dim, int block_seq_len,
                                           QuantPolicy policy) {
  return TurbomindLayout{head_num, head_dim, block_seq_len, quant_bits(policy),
                         policy == QuantPolicy::none ? 0 : 16};
}

/// \brief The bytes of one TurboMind cache block: `layer_num × layer_size`, every layer
/// alike (the formula of upstream's `SequenceManager` before #4717; upstream declares
/// `get_cache_block_size` in `kv_cache_utils_v2.h` but never defines it).
///
/// Worked example: Llama-3-8B (32 layers, 8 KV heads × 128, 64 tokens, bf16) needs
/// 32 × 262,144 = 8 MiB per block with policy 0, 32 × 135,168 = 4,325,376 bytes with int8.
/// Throws InvalidArgument for a policy other than 0, 4, 8, a head_dim pagedkv does not
/// implement (64, 128) or a non-positive count.
/// \param quant_policy 0, 4 or 8.
/// \param layer_num attention layers in a block.
/// \param head_num local KV heads.
/// \param head_dim elements per head: 64 or 128.
/// \param block_seq_len tokens per block.
/// \return the bytes of one block.
std::int64_t get_cache_block_size(std::int64_t quant_policy, std::int64_t layer_num,
                                  std::int64_t head_num, std::int64_t head_dim,
                                  std::int64_t block_seq_len);

/// \brief The RoPE variants TurboMind applies on write (upstream's `RopeType`, without MRoPE).
enum class TurbomindRopeType : int {
  none = 0,     ///< no rotation (upstream's kNull)
  standard = 1, ///< "default": inv_freq = base^(−d / dim)
  linear = 2,   ///< positions interpolated: inv_freq / factor
  dynamic = 3,  ///< NTK: a base per sequence (rope_bases)
  yarn = 4,     ///< YaRN: a ramp between interpolated and original frequencies, scaled cos / sin
  llama3 = 5,   ///< Llama 3.1: a smooth blend between the scaled and the original frequencies
};

/// \brief The rope type of a name ("none", "default", "linear", "dynamic", "yarn", "llama3"),
/// or -1 for an unknown name.
/// \param name the name.
/// \return the type's value, or -1.
int turbomind_rope_type(std::string_view name);

/// \brief What a kernel needs to rotate K: upstream's `RopeKernelParam`, derived on the host
/// from the model's RoPE configuration as upstream's `init_rope_kernel_param` derives it.
struct TurbomindRope {
  int type = 0;                ///< TurbomindRopeType
  int dim = 0;                 ///< rotated dims (the first `dim` of each head)
  float scale_factor = 0.f;    ///< −log2(base) / dim
  float inv_factor = 1.f;      ///< 1 / factor (1 for dynamic, or when factor is 0)
  float yarn_ramp_div_2 = 0.f; ///< yarn: 1 / (high − low) / 2
  float yarn_ramp_mul_min = 0.f;  ///< yarn: low / (high − low)
  float attention_scaling = 1.f;  ///< yarn: cos and sin are multiplied by it; 1 otherwise
  float llama3_alpha = 0.f;    ///< llama3: original_max_position / (2π) / (high_ff − low_ff)
  float llama3_beta = 0.f;     ///< llama3: low_ff / (high_ff − low_ff)
  const float* bases = nullptr;  ///< dynamic: the base of each sequence ([batch] f32)
};

}  // namespace pagedkv
