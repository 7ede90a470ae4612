/// \file
/// \brief `dequantize_and_gather_k_cache`: read the last tokens of each request from DeepSeek
/// V4's paged `fp8_ds_mla` K cache through its block table, dequantize them to bf16 and place
/// them in a packed workspace, as the sparse prefill path reads them.
///
/// This header is the op's one description: its arguments, the plan that validation produces
/// and the three implementations (CPU reference, naive CUDA, optimized CUDA). The page format
/// is quantize_and_insert_k_cache's (see pagedkv/ops/quantize_and_insert_k_cache.h).
///
/// Worked example (B = 64, offset 4, one request with seq_len 100 and gather_len 40): it
/// gathers positions 60 .. 99. Position 70 is token 6 of page `block_table[0, 1]`; it lands in
/// `out[0, 4 + 10]`. Its dims 0..447 are the fp8 codes of that token's data record times
/// 2^(code - 127) of their quant block's exponent, its dims 448..511 the record's raw bf16
/// bytes. Rows 0..3 and 44.. of `out[0]` are left as they are.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string_view>

#include "pagedkv/impl.h"
#include "pagedkv/op.h"
#include "pagedkv/ops/quantize_and_insert_k_cache.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief Everything the implementations need, derived once from the arguments by
/// DequantizeAndGatherKCache::validate(). Strides are in elements of their tensor (bytes for
/// the cache).
struct DequantizeAndGatherKCachePlan {
  std::int64_t num_requests = 0;  ///< seq_lens.size(0): R
  /// The largest gather length of a request; when gathered_on_device, a bound
  /// (out.size(1) - offset, or 0 for no request).
  std::int64_t max_gather = 0;
  /// The sum of the gather lengths: rows written; when gathered_on_device, a bound
  /// (R × max_gather).
  std::int64_t total_gathered = 0;
  std::int64_t block_size = 0;          ///< B: tokens per page
  std::int64_t num_blocks = 0;          ///< k_cache.size(0): pages
  std::int64_t block_stride = 0;        ///< k_cache.stride(0): bytes between two pages
  std::int64_t max_blocks = 0;          ///< block_table.size(1): columns
  std::int64_t block_table_stride = 0;  ///< block_table.stride(0): i32 elements between rows
  std::int64_t out_tokens = 0;          ///< out.size(1): rows per request
  std::int64_t out_request_stride = 0;  ///< out.stride(0): elements between two requests
  std::int64_t out_token_stride = 0;    ///< out.stride(1): elements between two rows
  std::int64_t offset = 0;              ///< the first row written in each request
  bool has_gather_lens = false;         ///< gather_lens given (else every seq_len is gathered)
  /// The call deferred its checks, so the host never read seq_lens and gather_lens: the
  /// kernels take each request's rows from them on the device (as always) and walk at most
  /// max_gather rows per request.
  bool gathered_on_device = false;
};

/// \brief dequantize_and_gather_k_cache: the op's arguments, its contract and its three
/// implementations.
struct DequantizeAndGatherKCache {
  /// \brief The upstream name.
  static constexpr const char* name = "dequantize_and_gather_k_cache";

  /// \brief The arguments, in vLLM's order and with vLLM's names (documented in arguments()).
  struct Args {
    /// \name Arguments (documented in DequantizeAndGatherKCache::arguments)
    /// @{
    TensorView out;               ///< see DequantizeAndGatherKCache::arguments()
    TensorView k_cache;           ///< see DequantizeAndGatherKCache::arguments()
    TensorView seq_lens;          ///< see DequantizeAndGatherKCache::arguments()
    TensorView gather_lens;       ///< see DequantizeAndGatherKCache::arguments()
    TensorView block_table;       ///< see DequantizeAndGatherKCache::arguments()
    std::int64_t block_size = 0;  ///< see DequantizeAndGatherKCache::arguments()
    std::int64_t offset = 0;      ///< see DequantizeAndGatherKCache::arguments()
    bool use_fnuz = false;        ///< see DequantizeAndGatherKCache::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::out, "out", ArgKind::output,
        "[>= R, max_tokens, 512] bf16: request r's gathered token i goes to out[r, offset + i]; "
        "other rows are left untouched; requests and rows of any pitch, elements packed");
    arg(&Args::k_cache, "k_cache", ArgKind::input,
        "u8 pages, [num_blocks, block_stride] or the view [num_blocks, block_size, 584], as "
        "quantize_and_insert_k_cache writes them");
    arg(&Args::seq_lens, "seq_lens", ArgKind::input,
        "[R] i32, contiguous: the length of each request's cached sequence");
    arg(&Args::gather_lens, "gather_lens", ArgKind::optional_input,
        "[R] i32, contiguous, or None: how many of the last tokens of each request to gather, "
        "0 <= gather_len <= seq_len (None: all seq_len)");
    arg(&Args::block_table, "block_table", ArgKind::input,
        "[>= R, max_blocks] i32, columns packed, rows of any pitch: the pages of each request "
        "in order (only the columns of the gathered positions are read)");
    arg(&Args::block_size, "block_size", ArgKind::integer,
        "B, tokens per page (the block_size the pages were written with)");
    arg(&Args::offset, "offset", ArgKind::integer,
        "the first row of out[r] to write; offset + gather_len <= max_tokens");
    arg(&Args::use_fnuz, "use_fnuz", ArgKind::boolean,
        "must be False: the FNUZ fp8 variant (ROCm gfx942) is not implemented");
  }

  /// \brief vLLM's defaults: `use_fnuz=False`.
  /// \param argument an argument name.
  /// \return its default as Python writes it, or nullptr.
  static const char* default_value(std::string_view argument) {
    if (argument == "use_fnuz") return "False";
    return nullptr;
  }

  /// \brief What validate() derives from the arguments.
  using Plan = DequantizeAndGatherKCachePlan;

  /// \brief The contract, shared by the three implementations.
  ///
  /// Checks every argument for `impl` and returns the plan; throws InvalidArgument (naming the
  /// argument, the expected and the actual value) before anything is written. It reads
  /// seq_lens, gather_lens and the block_table entries the gather uses (on the GPU: copied to
  /// the host, a synchronization). A call that gathers no token writes nothing.
  ///
  /// A call that defers its errors (inside a CUDA-graph capture, through pagedkv.vllm_ops or
  /// pagedkv.deepseek_v4, or with PAGEDKV_ERRORS=deferred) reads nothing on the host: one check
  /// kernel on the call's stream checks the same rules, the kernels write nothing when one is
  /// broken, and the error is raised later in the same words (pagedkv/deferred_checks.h).
  ///
  /// This is upstream's bounds-hardened gather (the revision that masks every out-of-range
  /// read) turned into refusals: where that kernel silently skips a token whose block column is
  /// past the table, whose block id is negative or whose row is past out.size(1), this contract
  /// rejects the call, and it also rejects what no upstream revision checks: block ids at or
  /// past the cache's num_blocks, gather_lens above seq_lens or negative, negative seq_lens or
  /// offset, dtypes (i32 indices, bf16 out, u8 cache), pages smaller than block_size × 584
  /// bytes, and use_fnuz = True. The block table's row pitch is its stride(0) (upstream steps
  /// rows by size(1) and misreads a column slice).
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan the implementation executes.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: a loop over requests and their gathered positions.
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA: one thread per (request, gathered position, quant block), element by
  /// element.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA: one warp per gathered token, wide loads of the record, 16-byte
  /// stores of the bf16 row (the kernel file header lists the tricks).
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry: family, sources, byte model, workloads
  /// (core/entries/dequantize_and_gather_k_cache.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
