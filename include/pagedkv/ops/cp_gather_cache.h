/// \file
/// \brief `cp_gather_cache`: copy the cached entries of a batch of sequences, in order, into one
/// packed destination (the context-parallel prefill of MLA, and the indexer's bf16 K cache).
///
/// This header is the op's one description: its arguments, the plan that validation produces
/// and the three implementations (CPU reference, naive CUDA, optimized CUDA).
///
/// Worked example (block_size 64, two sequences, cu_seq_lens = [0, 3, 5], seq_starts = [62, 0]):
/// sequence 0 gathers its positions 62, 63, 64, which are slots 62 and 63 of block
/// `block_table[0, 0]` and slot 0 of block `block_table[0, 1]`, into dst rows 0, 1, 2; sequence
/// 1 gathers its positions 0 and 1 (slots 0 and 1 of `block_table[1, 0]`) into dst rows 3
/// and 4. Every byte of an entry is copied as it is: the op never looks at the values, so any
/// element type (bf16 latent, fp8 bytes, the 656-byte fp8_ds_mla entry) comes back bit for bit.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "pagedkv/impl.h"
#include "pagedkv/op.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief Everything the implementations need, derived once from the arguments by
/// CpGatherCache::validate(). The op copies bytes, so sizes and strides of the cache and of
/// dst are in bytes; the block table's stride is in its i32 elements.
struct CpGatherCachePlan {
  std::int64_t batch_size = 0;          ///< sequences gathered (the batch_size argument)
  /// cu_seq_lens[batch_size]: dst rows written; when num_tokens_on_device, only a bound
  /// (dst.size(0), or 0 for no sequence).
  std::int64_t num_tokens = 0;
  std::int64_t block_size = 0;          ///< src_cache.size(1): slots per block
  std::int64_t num_blocks = 0;          ///< src_cache.size(0)
  std::int64_t entry_bytes = 0;         ///< bytes of one entry (product of the entry dims)
  std::int64_t cache_block_stride = 0;  ///< bytes between two blocks of src_cache
  std::int64_t cache_entry_stride = 0;  ///< bytes between two slots of a block
  std::int64_t dst_row_stride = 0;      ///< bytes between two rows of dst
  std::int64_t block_table_stride = 0;  ///< block_table.stride(0), in i32 elements
  bool has_seq_starts = false;          ///< seq_starts was given
  /// The call deferred its checks, so the host never read cu_seq_lens: the kernels read
  /// the true count, cu_seq_lens[batch_size], on the device (at most num_tokens).
  bool num_tokens_on_device = false;
};

/// \brief cp_gather_cache: the op's arguments, its contract and its three implementations.
struct CpGatherCache {
  /// \brief The upstream name.
  static constexpr const char* name = "cp_gather_cache";

  /// \brief The arguments, in vLLM's order and with vLLM's names (documented in arguments()).
  struct Args {
    /// \name Arguments (documented in CpGatherCache::arguments)
    /// @{
    TensorView src_cache;         ///< see CpGatherCache::arguments()
    TensorView dst;               ///< see CpGatherCache::arguments()
    TensorView block_table;       ///< see CpGatherCache::arguments()
    TensorView cu_seq_lens;       ///< see CpGatherCache::arguments()
    std::int64_t batch_size = 0;  ///< see CpGatherCache::arguments()
    TensorView seq_starts;        ///< see CpGatherCache::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::src_cache, "src_cache", ArgKind::input,
        "[num_blocks, block_size, *entry_dims], any dtype: the paged cache; block and slot "
        "strides free, the entry dims packed (e.g. [N, 64, 576] bf16 MLA latent, [N, 64, 656] "
        "u8 fp8_ds_mla, [N, 64, 1, 128] bf16 indexer K)");
    arg(&Args::dst, "dst", ArgKind::output,
        "[>= cu_seq_lens[batch_size], *entry_dims], the dtype of src_cache, as many elements per "
        "row as one entry, rows of any pitch: row cu_seq_lens[b] + p receives position "
        "seq_starts[b] + p of sequence b; other rows are left untouched");
    arg(&Args::block_table, "block_table", ArgKind::input,
        "[>= batch_size, max_blocks] i32, rows of any pitch: the cache blocks of each sequence, "
        "in order");
    arg(&Args::cu_seq_lens, "cu_seq_lens", ArgKind::input,
        "[>= batch_size + 1] i32, contiguous: cumulative token counts, starting at 0 and never "
        "decreasing; sequence b gathers cu_seq_lens[b + 1] - cu_seq_lens[b] tokens");
    arg(&Args::batch_size, "batch_size", ArgKind::integer,
        "number of sequences gathered, >= 0 (0: nothing is written)");
    arg(&Args::seq_starts, "seq_starts", ArgKind::optional_input,
        "None, or [>= batch_size] i32, contiguous, >= 0: the position inside sequence b of its "
        "first gathered token (need not be a multiple of block_size); None means 0");
  }

  /// \brief What validate() derives from the arguments.
  using Plan = CpGatherCachePlan;

  /// \brief The contract, shared by the three implementations.
  ///
  /// Checks every argument for `impl` and returns the plan; throws InvalidArgument (naming the
  /// argument, the expected and the actual value) before anything is written. It reads
  /// cu_seq_lens and seq_starts (on the GPU two small copies to the host) and every block id the
  /// gather will use (on the GPU one small kernel and a synchronization). Zero sequences, or
  /// sequences of zero tokens, are a valid call that writes nothing.
  ///
  /// A call that defers its errors (inside a CUDA-graph capture, through pagedkv.vllm_ops, or
  /// with PAGEDKV_ERRORS=deferred) reads nothing on the host: one check kernel on the call's
  /// stream checks the same rules, the kernels write nothing when one is broken, and the error
  /// is raised later in the same words (pagedkv/deferred_checks.h).
  ///
  /// Upstream (vLLM) checks the i32 dtypes of block_table, cu_seq_lens and seq_starts, the
  /// devices and src_cache.dtype == dst.dtype, and rejects element widths other than 1, 2 and
  /// 4 bytes. Beyond that this contract rejects what upstream silently gets wrong: a dst whose
  /// rows hold another number of elements than an entry, or too few rows for
  /// cu_seq_lens[batch_size] (upstream writes out of bounds); cu_seq_lens not starting at 0 or
  /// decreasing; negative seq_starts; a sequence reaching past the block table's width; block
  /// ids outside the cache (upstream reads out of bounds); tensors shorter than batch_size needs;
  /// a block table whose columns are not adjacent and dst rows that overlap. It copies 8-byte
  /// elements too (i64): the op moves bytes, so the element width does not matter; upstream's
  /// refusal is a limit of its dispatch, not of the operation. batch_size 0 returns at once
  /// (upstream launches an empty grid: a launch error).
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan the implementation executes.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: for each sequence, for each token, one memcpy of the entry.
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA: one thread per (dst row, entry byte), its sequence found by a binary
  /// search of cu_seq_lens.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA: work split into runs of consecutive dst rows, whatever the
  /// sequences' lengths; one warp per run, widest aligned vectors (the kernel file header lists
  /// the tricks).
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry: family, sources, byte model, workloads
  /// (core/entries/cp_gather_cache.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
