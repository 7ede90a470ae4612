/// \file
/// \brief `merge_attn_states`: merge two partial attention results over disjoint key sets (a
/// cached prefix and a new suffix, two KV splits) into the attention over their union, by
/// their log-sum-exp (LSE) values.
///
/// For token t and head h, with prefix result `p = prefix_output[t, h, :]` over key set A and
/// `lp = prefix_lse[h, t] = log Σ_{k∈A} exp(score_k)` (suffix: `s`, `ls`, key set B):
/// \code
/// M = max(lp, ls);  a = exp(lp - M);  b = exp(ls - M);
/// output[t, h, :] = p * a / (a + b) + s * b / (a + b);  output_lse[h, t] = log(a + b) + M;
/// \endcode
/// which is exactly the attention over A ∪ B and its LSE (chapter "merge_attn_states" says why).
/// Upstream's CUDA path, reproduced here in float32 and in its order: an infinite LSE of either
/// sign counts as −inf (an empty key set: FlashAttention 2 reports +inf, FlashAttention 3 −inf);
/// when both are −inf the prefix row is copied and the LSE is −inf; tokens from
/// `prefill_tokens_with_context` on copy the suffix row and its raw LSE; with `output_scale` the
/// result is stored as fp8 E4M3, `fp8(clamp(v × (1 / scale), ±448))`.
///
/// Agreement (the ulp-bounded class): the naive and optimized kernels share the device math and
/// are bit-identical; the GPU's `expf` (through the `ex2.approx` special-function unit) has no
/// CPU counterpart, so each is within ulp_bound() ulps of the CPU reference (see ulp_bound()).
///
/// Worked example (one head, head_size 1): the prefix attended to one key of score 0 with value
/// 1 (p = 1, lp = 0); the suffix to three keys of score 0 with value 3 (s = 3, ls = ln 3).
/// M = ln 3, a = 1/3, b = 1, so output = 1 · 1/4 + 3 · 3/4 = 2.5 and output_lse = ln(4/3) + ln 3
/// = ln 4 = 1.3863: the attention over the four keys.
#pragma once

#include <cstdint>
#include <string_view>

#include <cuda_runtime_api.h>

#include "pagedkv/impl.h"
#include "pagedkv/op.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief Everything the implementations need, derived once from the arguments by
/// MergeAttnStates::validate(). Strides are in elements of their tensor.
struct MergeAttnStatesPlan {
  std::int64_t num_tokens = 0;      ///< N: output.size(0)
  std::int64_t num_heads = 0;       ///< H: output.size(1)
  std::int64_t head_size = 0;       ///< D: output.size(2)
  std::int64_t merged_tokens = 0;   ///< tokens [0, merged_tokens) merge; the rest copy the suffix
  DType dtype = DType::bf16;        ///< dtype of prefix_output and suffix_output
  bool fp8_output = false;          ///< output is fp8 E4M3 (output_scale given)
  bool write_lse = false;           ///< output_lse given
  std::int64_t output_token_stride = 0;  ///< output.stride(0)
  std::int64_t output_head_stride = 0;   ///< output.stride(1)
  std::int64_t prefix_token_stride = 0;  ///< prefix_output.stride(0)
  std::int64_t prefix_head_stride = 0;   ///< prefix_output.stride(1)
  std::int64_t suffix_token_stride = 0;  ///< suffix_output.stride(0)
  std::int64_t suffix_head_stride = 0;   ///< suffix_output.stride(1)
  std::int64_t prefix_lse_head_stride = 0;   ///< prefix_lse.stride(0)
  std::int64_t prefix_lse_token_stride = 0;  ///< prefix_lse.stride(1)
  std::int64_t suffix_lse_head_stride = 0;   ///< suffix_lse.stride(0)
  std::int64_t suffix_lse_token_stride = 0;  ///< suffix_lse.stride(1)
  std::int64_t output_lse_head_stride = 0;   ///< output_lse.stride(0) (0 without output_lse)
  std::int64_t output_lse_token_stride = 0;  ///< output_lse.stride(1) (0 without output_lse)

  /// \brief Rows (token, head) to process: N × H.
  /// \return the count.
  std::int64_t rows() const { return num_tokens * num_heads; }
};

/// \brief merge_attn_states: the op's arguments, its contract and its three implementations.
struct MergeAttnStates {
  /// \brief The upstream name.
  static constexpr const char* name = "merge_attn_states";

  /// \brief The arguments, in the order and with the names of vLLM's Python wrapper
  /// (`vllm._custom_ops.merge_attn_states`; its torch schema puts output_lse second).
  struct Args {
    /// \name Arguments (documented in MergeAttnStates::arguments)
    /// @{
    TensorView output;         ///< see MergeAttnStates::arguments()
    TensorView prefix_output;  ///< see MergeAttnStates::arguments()
    TensorView prefix_lse;     ///< see MergeAttnStates::arguments()
    TensorView suffix_output;  ///< see MergeAttnStates::arguments()
    TensorView suffix_lse;     ///< see MergeAttnStates::arguments()
    TensorView output_lse;     ///< see MergeAttnStates::arguments()
    std::int64_t prefill_tokens_with_context = -1;  ///< see MergeAttnStates::arguments()
    TensorView output_scale;   ///< see MergeAttnStates::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::output, "output", ArgKind::output,
        "[N, H, D], the dtype of prefix_output, or f8_e4m3 when output_scale is given; tokens "
        "and heads of any pitch, elements packed; the merged attention");
    arg(&Args::prefix_output, "prefix_output", ArgKind::input,
        "[N, H, D] f32, f16 or bf16, D a multiple of the elements of one 16-byte pack (4 for "
        "f32, 8 for f16 and bf16); tokens and heads of any pitch, elements packed; the attention "
        "over the first key set");
    arg(&Args::prefix_lse, "prefix_lse", ArgKind::input,
        "[H, N] f32, head-major, any strides (a transposed [N, H] tensor works); the log-sum-exp "
        "of the first key set's scores, +inf or -inf for an empty set");
    arg(&Args::suffix_output, "suffix_output", ArgKind::input,
        "[N, H, D], the dtype of prefix_output; tokens and heads of any pitch, elements packed; "
        "the attention over the second key set");
    arg(&Args::suffix_lse, "suffix_lse", ArgKind::input,
        "[H, N] f32, head-major, any strides; the log-sum-exp of the second key set's scores");
    arg(&Args::output_lse, "output_lse", ArgKind::optional_inout,
        "[H, N] f32, any strides that give every element its own memory, or None; receives the "
        "merged log-sum-exp");
    arg(&Args::prefill_tokens_with_context, "prefill_tokens_with_context", ArgKind::integer,
        "P, 0 <= P <= N, or None (C++: -1) for N: tokens [0, P) are merged, tokens [P, N) copy "
        "suffix_output and suffix_lse (they have no prefix)");
    arg(&Args::output_scale, "output_scale", ArgKind::optional_input,
        "[1] or a 0-d f32 tensor on the output's device, or None: given, output is fp8 E4M3 and "
        "stores fp8(clamp(value / output_scale, -448, 448))");
  }

  /// \brief vLLM's defaults: `output_lse=None, prefill_tokens_with_context=None,
  /// output_scale=None`.
  /// \param argument an argument name.
  /// \return its default as Python writes it, or nullptr.
  static const char* default_value(std::string_view argument) {
    if (argument == "output_lse" || argument == "prefill_tokens_with_context" ||
        argument == "output_scale") {
      return "None";
    }
    return nullptr;
  }

  /// \brief What validate() derives from the arguments.
  using Plan = MergeAttnStatesPlan;

  /// \brief The contract, shared by the three implementations.
  ///
  /// Checks every argument for `impl` and returns the plan; throws InvalidArgument (naming the
  /// argument, the expected and the actual value) before anything is written. Zero tokens or
  /// zero heads is a valid call that writes nothing.
  ///
  /// Upstream's checks, kept: D a multiple of the 16-byte pack of the input dtype (vLLM's
  /// dispatcher sends other head sizes to its Triton kernel, which pagedkv does not
  /// reproduce), P <= N, fp8 output exactly when output_scale
  /// is given, output's dtype that of prefix_output otherwise. Added: every shape (the LSE
  /// tensors [H, N], not the token-major [N, H] FlashAttention returns), the LSE dtype f32,
  /// suffix_output's dtype, packed heads, output elements with memory of their own, and
  /// output_scale one f32 element on the output's device (its value is not read on the host:
  /// a scale of 0 or NaN gives what upstream gives). Each tensor is read with its own strides,
  /// where upstream takes the suffix's and the token strides from prefix_output's head stride.
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan the implementation executes.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: for each (token, head), upstream's float32 operations in upstream's
  /// order with `exp` and `log` evaluated in float64 and rounded once to float, then one
  /// `fma(p, p_scale, s · s_scale)` per element (the contraction nvcc makes of upstream's
  /// expression), rounded to the output dtype.
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA: one thread per output element, each reading both LSEs and computing the
  /// scales again.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA: one thread per 16-byte pack, the LSEs read and the scales computed
  /// once per (token, head) and passed to the head's threads by warp shuffles (the kernel file
  /// header lists the tricks).
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief Elements of one 16-byte pack of `dtype`: 4 for f32, 8 for f16 and bf16. The head
  /// size must be a multiple of it.
  /// \param dtype f32, f16 or bf16.
  /// \return the pack size in elements.
  static constexpr std::int64_t pack_elements(DType dtype) { return 16 / dtype_size(dtype); }

  /// \brief The largest distance of a GPU output element from the CPU reference's, in ulps of
  /// the output dtype taken at `|p| · p_scale + |s| · s_scale` (the magnitude before any
  /// cancellation): 16 for f32, 1 for f16, bf16 and fp8 E4M3 (at that magnitude times
  /// 1 / output_scale). Derived from expf's documented 2-ulp error (chapter
  /// "merge_attn_states", section "Agreement").
  /// \param output dtype of output.
  /// \return the bound.
  static double ulp_bound(DType output) { return output == DType::f32 ? 16.0 : 1.0; }
  /// \brief The largest distance of a GPU output_lse element from the CPU reference's, in f32
  /// ulps taken at max(|lse|, 1).
  static constexpr double kLseUlpBound = 8.0;

  /// \brief The op's card in the registry: family, sources, byte model, workloads
  /// (core/entries/merge_attn_states.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
