/// \file
/// \brief `cp_gather_and_upconvert_fp8_kv_cache`: read the 656-byte fp8_ds_mla entries of a
/// batch of requests back into a bf16 workspace, request by request, decoding each entry.
///
/// This header is the op's one description: its arguments, the plan that validation produces
/// and the three implementations (CPU reference, naive CUDA, optimized CUDA).
///
/// Worked example (block_size 64): request 1 with seq_lens[1] = 100 and workspace_starts[1] =
/// 40 fills workspace rows 40 to 139; its position 70 is block block_table[1, 1], slot 6, and
/// lands in row 110. Each row is 576 bf16: latent value i = `fp8 byte i × scale of tile i / 128`
/// (the four fp32 tile scales at bytes 512-527), then the 64 bf16 RoPE values copied.
///
/// The latent bytes are decoded as E4M3 (what concat_and_cache_mla writes) for a cache of dtype
/// u8 or f8_e4m3, and as E5M2 for a cache of dtype f8_e5m2: upstream (vLLM
/// csrc/cache_kernels.cu @9803b00) accepts an f8_e5m2 tensor but decodes it as E4M3 (quirk);
/// pagedkv decodes the bytes as the tensor's dtype says.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "pagedkv/impl.h"
#include "pagedkv/kv_cache_dtype.h"
#include "pagedkv/op.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief Everything the implementations need, derived once from the arguments by
/// CpGatherAndUpconvertFp8KvCache::validate(). Cache strides in bytes, workspace strides in
/// bf16 elements.
struct CpGatherAndUpconvertFp8KvCachePlan {
  std::int64_t batch = 0;   ///< batch_size: requests
  std::int64_t tokens = 0;  ///< sum of seq_lens: rows written (when row_end_on_device, a bound)
  /// End of the last request's rows, workspace_starts[batch - 1] + seq_lens[batch - 1] (0 for
  /// no request): the kernels walk rows [0, row_end). When row_end_on_device, a bound
  /// (dst.size(0)).
  std::int64_t row_end = 0;
  std::int64_t block_size = 0;          ///< src_cache.size(1)
  std::int64_t num_blocks = 0;          ///< src_cache.size(0)
  std::int64_t block_stride = 0;        ///< src_cache.stride(0)
  std::int64_t entry_stride = 0;        ///< src_cache.stride(1)
  std::int64_t dst_stride = 0;          ///< dst.stride(0)
  std::int64_t block_table_stride = 0;  ///< block_table.stride(0)
  /// How the latent bytes read: kFp8E4m3, or kFp8E5m2 for an f8_e5m2 cache.
  KvCacheDtype latent_format = KvCacheDtype::kFp8E4m3;
  /// The call deferred its checks, so the host never read seq_lens and workspace_starts: the
  /// kernels read the last request's end on the device (and walk at most row_end rows).
  bool row_end_on_device = false;
};

/// \brief cp_gather_and_upconvert_fp8_kv_cache: the op's arguments, its contract and its three
/// implementations.
struct CpGatherAndUpconvertFp8KvCache {
  /// \brief The upstream name.
  static constexpr const char* name = "cp_gather_and_upconvert_fp8_kv_cache";

  /// \brief The arguments, in vLLM's order and with vLLM's names (documented in arguments()).
  struct Args {
    /// \name Arguments (documented in CpGatherAndUpconvertFp8KvCache::arguments)
    /// @{
    TensorView src_cache;         ///< see CpGatherAndUpconvertFp8KvCache::arguments()
    TensorView dst;               ///< see CpGatherAndUpconvertFp8KvCache::arguments()
    TensorView block_table;       ///< see CpGatherAndUpconvertFp8KvCache::arguments()
    TensorView seq_lens;          ///< see CpGatherAndUpconvertFp8KvCache::arguments()
    TensorView workspace_starts;  ///< see CpGatherAndUpconvertFp8KvCache::arguments()
    std::int64_t batch_size = 0;  ///< see CpGatherAndUpconvertFp8KvCache::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::src_cache, "src_cache", ArgKind::input,
        "[num_blocks, block_size, 656] u8, f8_e4m3 or f8_e5m2 (the latent bytes read as that "
        "format; u8 as E4M3), block and slot strides free, entry packed: the fp8_ds_mla cache");
    arg(&Args::dst, "dst", ArgKind::output,
        "[>= rows, 576] bf16, rows of any pitch, elements packed: the workspace");
    arg(&Args::block_table, "block_table", ArgKind::input,
        "[>= batch_size, max_blocks] i32, rows of any pitch: each request's cache blocks");
    arg(&Args::seq_lens, "seq_lens", ArgKind::input,
        "[>= batch_size] i32, contiguous, values >= 0: tokens gathered per request, from "
        "position 0");
    arg(&Args::workspace_starts, "workspace_starts", ArgKind::input,
        "[>= batch_size] i32, contiguous: each request's first workspace row, in request order "
        "and not overlapping (workspace_starts[r] + seq_lens[r] <= workspace_starts[r + 1]), "
        "as the exclusive running sum of seq_lens is");
    arg(&Args::batch_size, "batch_size", ArgKind::integer, "requests, >= 0");
  }

  /// \brief What validate() derives from the arguments.
  using Plan = CpGatherAndUpconvertFp8KvCachePlan;

  /// \brief The contract, shared by the three implementations.
  ///
  /// Checks every argument for `impl` and returns the plan; throws InvalidArgument (naming the
  /// argument, the expected and the actual value) before anything is written. It reads
  /// seq_lens, workspace_starts and the used part of block_table back to the host (on the GPU
  /// one small copy each, which synchronizes). Zero requests, or requests of zero tokens, is a
  /// valid call that writes nothing.
  ///
  /// A call that defers its errors (inside a CUDA-graph capture, through pagedkv.vllm_ops, or
  /// with PAGEDKV_ERRORS=deferred) reads nothing on the host: one check kernel on the call's
  /// stream checks the same rules, the kernels write nothing when one is broken, and the error
  /// is raised later in the same words (pagedkv/deferred_checks.h).
  ///
  /// Beyond upstream's checks (int32 indices, a u8 / f8 cache, a bf16 576-wide workspace) it
  /// rejects what upstream silently gets wrong: an entry that is not 656 bytes, negative
  /// lengths, requests whose workspace rows overlap, come out of request order or run past dst,
  /// block ids past block_table's columns or outside the cache, and a dst row stride under
  /// which workspace rows overlap in memory.
  /// Requests in order is pagedkv's one restriction beyond correctness: it lets the optimized
  /// kernel find a row's request by binary search (vLLM always passes the running sum).
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan the implementation executes.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: a loop over requests and their positions, each entry decoded.
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA: one thread per (request, element), looping over the request's tokens.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA: split by workspace row (never by request), one warp per row, 16-byte
  /// vectors (the kernel file header lists the tricks).
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry: family, sources, byte model, workloads
  /// (core/entries/cp_gather_and_upconvert_fp8_kv_cache.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
