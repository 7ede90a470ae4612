/// \file
/// \brief `combine_topk_swa_indices`: for DeepSeek V4's sparse prefill, build each query
/// token's row of workspace indices: first its top-k compressed tokens, then its
/// sliding-window (SWA) tokens, both as rows of the bf16 workspace that
/// dequantize_and_gather_k_cache filled (request b's rows start at M × b; its compressed
/// tokens at row 0, its SWA tokens from row N on).
///
/// This header is the op's one description. The contract is upstream's bounds-hardened
/// revision (a top-k index that names no compressed token of the request becomes -1), and
/// pagedkv's op writes into the two outputs it is given (pagedkv.deepseek_v4_indices allocates
/// them with upstream's width, round_up(topk + window_size, 128), and signature).
///
/// Worked example (window_size 8, compress_ratio 4, topk 2, M = 20, N = 5; one request of
/// seq_len 9, query_len 6, gather_len 9, so the queries sit at positions 3 .. 8): the token at
/// position 3 may use min((3 + 1) / 4, 2) = 1 compressed token and min(3 + 1, 8) = 4 window
/// tokens; with topk_indices row [0, ...] its row is [0, 5, 6, 7, 8, -1, ...] (compressed
/// token 0, then SWA positions 0 .. 3 at rows N + 0 .. N + 3) and its length 5. The lengths of
/// the six tokens are [5, 6, 7, 8, 10, 10].
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "pagedkv/impl.h"
#include "pagedkv/op.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief Everything the implementations need, derived once by
/// CombineTopkSwaIndices::validate(). Strides count i32 elements.
struct CombineTopkSwaIndicesPlan {
  std::int64_t num_tokens = 0;     ///< Tc = combined_indices.size(0): rows written
  std::int64_t topk_width = 0;     ///< Kw = topk_indices.size(1)
  std::int64_t topk_stride = 0;    ///< topk_indices.stride(0)
  std::int64_t width = 0;          ///< combined_indices.size(1)
  std::int64_t output_stride = 0;  ///< combined_indices.stride(0)
  std::int64_t num_requests = 0;   ///< Rc = seq_lens.size(0)
  std::int64_t window_size = 0;    ///< SWA tokens a query may see
  std::int64_t compress_ratio = 0; ///< tokens per compressed token
  std::int64_t topk = 0;           ///< cap on the compressed tokens per query
  std::int64_t M = 0;              ///< workspace rows per request
  std::int64_t N = 0;              ///< first SWA row inside a request's workspace
  bool vector_rows = false;  ///< output rows 16-byte aligned and width % 4 == 0 (optimized)
};

/// \brief combine_topk_swa_indices: the op's arguments, its contract and its three
/// implementations.
struct CombineTopkSwaIndices {
  /// \brief The upstream name.
  static constexpr const char* name = "combine_topk_swa_indices";

  /// \brief The arguments, in upstream's order, then the two outputs upstream returns.
  struct Args {
    /// \name Arguments (documented in CombineTopkSwaIndices::arguments)
    /// @{
    TensorView topk_indices;        ///< see CombineTopkSwaIndices::arguments()
    TensorView query_start_loc;     ///< see CombineTopkSwaIndices::arguments()
    TensorView seq_lens;            ///< see CombineTopkSwaIndices::arguments()
    TensorView gather_lens;         ///< see CombineTopkSwaIndices::arguments()
    std::int64_t window_size = 0;   ///< see CombineTopkSwaIndices::arguments()
    std::int64_t compress_ratio = 0;///< see CombineTopkSwaIndices::arguments()
    std::int64_t topk = 0;          ///< see CombineTopkSwaIndices::arguments()
    std::int64_t M = 0;             ///< see CombineTopkSwaIndices::arguments()
    std::int64_t N = 0;             ///< see CombineTopkSwaIndices::arguments()
    TensorView combined_indices;    ///< see CombineTopkSwaIndices::arguments()
    TensorView combined_lens;       ///< see CombineTopkSwaIndices::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::topk_indices, "topk_indices", ArgKind::input,
        "[Tc, Kw] i32, last dimension packed: each query token's local compressed-token "
        "indices (rows of its request's compressed region, 0 .. N - 1); a negative entry is "
        "empty. Not read when topk is 0");
    arg(&Args::query_start_loc, "query_start_loc", ArgKind::input,
        "[Rc + 1] i32, contiguous: the requests' first query tokens, cumulative; may start "
        "above 0 (it is rebased to its first element)");
    arg(&Args::seq_lens, "seq_lens", ArgKind::input,
        "[Rc] i32, contiguous: each request's sequence length, queries included");
    arg(&Args::gather_lens, "gather_lens", ArgKind::input,
        "[Rc] i32, contiguous: SWA tokens gathered into the workspace from row N on (the "
        "request's last gather_len positions)");
    arg(&Args::window_size, "window_size", ArgKind::integer,
        "SWA tokens a query sees, itself included: a power of two, 1 .. 4096");
    arg(&Args::compress_ratio, "compress_ratio", ArgKind::integer,
        "tokens per compressed token: 1 (SWA only), 4 (C4A) or 128 (C128A)");
    arg(&Args::topk, "topk", ArgKind::integer,
        "most compressed tokens a query uses, 0 .. 65536 (0: SWA only)");
    arg(&Args::M, "M", ArgKind::integer, "workspace rows per request, >= N + gather_lens[b]");
    arg(&Args::N, "N", ArgKind::integer,
        "the workspace row where each request's SWA region starts, 0 .. M");
    arg(&Args::combined_indices, "combined_indices", ArgKind::output,
        "[Tc, >= topk + window_size] i32, last dimension packed: per query token its top-k "
        "workspace rows, then its window's, then -1");
    arg(&Args::combined_lens, "combined_lens", ArgKind::output,
        "[Tc] i32, contiguous: entries in use per row (top-k count + window count; 0 for a "
        "row no request owns)");
  }

  /// \brief What validate() derives from the arguments.
  using Plan = CombineTopkSwaIndicesPlan;

  /// \brief The contract, shared by the three implementations.
  ///
  /// Checks every argument for `impl` and returns the plan; throws InvalidArgument (naming the
  /// argument, the expected and the actual value) before anything is written. Tc = 0 is a valid
  /// call that writes nothing.
  ///
  /// Upstream checks only what Triton needs to compile (a power-of-two window). This contract
  /// checks every dtype (i32 everywhere), the shapes, window_size, compress_ratio and topk in
  /// their supported ranges, 0 <= N <= M and M × Rc within i32; and, when the call does not
  /// defer its errors, the values: query_start_loc never decreasing and its tokens within
  /// Tc rows, every request's query_len <= gather_len <= seq_len, gather_len large enough for
  /// the first query's window (query_len + min(prefix, window_size - 1)), N + gather_len <= M,
  /// and every non-negative top-k entry a query uses below min(N, seq_len / compress_ratio):
  /// a compressed token of its own request. Deferred calls skip the value checks; the kernels
  /// then write -1 for any entry that breaks them (upstream's hardened rule, 0 <= v < N,
  /// tightened to the request's own compressed length).
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan the implementation executes.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: a loop over requests, their query tokens and the columns.
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA: one thread per row, a linear scan for its request, the CPU loop.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA: one CTA per row, four columns per thread, 16-byte stores (the
  /// kernel file header lists the tricks).
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry (core/entries/combine_topk_swa_indices.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
