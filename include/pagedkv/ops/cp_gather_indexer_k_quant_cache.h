/// \file
/// \brief `cp_gather_indexer_k_quant_cache`: gather the fp8 indexer keys and their scales of a
/// batch of sequences from the paged indexer K cache into two packed buffers, as DeepSeek-V3.2's
/// prefill indexer (DeepGEMM's MQA-logits kernel) reads them.
///
/// This header is the op's one description: its arguments, the plan that validation produces
/// and the three implementations (CPU reference, naive CUDA, optimized CUDA). The cache layout
/// is indexer_k_quant_and_cache's (see pagedkv/ops/indexer_k_quant_and_cache.h).
///
/// Worked example (head_dim 128, block_size 64, two sequences of 70 and 2 tokens, so
/// cu_seq_lens = [0, 70, 72]): output row 65 is position 65 of sequence 0, slot
/// 65 % 64 = 1 of block `block_table[0, 1]`; `dst_k[65, :]` gets that block's bytes
/// `[1 × 128, 2 × 128)` and `dst_scale[65, 0:4]` its bytes `[64 × 128 + 1 × 4, + 4)`. Output row
/// 71 is position 1 of sequence 1, slot 1 of block `block_table[1, 0]`. Rows from 72 on, if
/// dst_k has them, are left as they are.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "pagedkv/impl.h"
#include "pagedkv/op.h"
#include "pagedkv/ops/indexer_k_quant_and_cache.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief Everything the implementations need, derived once from the arguments by
/// CpGatherIndexerKQuantCache::validate(). Strides are in elements of their tensor (all bytes,
/// except the block table's i32 elements).
struct CpGatherIndexerKQuantCachePlan {
  std::int64_t num_tokens = 0;          ///< dst_k.size(0): rows of dst_k, gathered or not
  /// cu_seq_lens[batch]: rows written (the rest untouched); when gathered_on_device, only a
  /// bound (the rows of dst_k and dst_scale, or 0 for no sequence).
  std::int64_t gathered_tokens = 0;
  std::int64_t batch_size = 0;          ///< block_table.size(0)
  std::int64_t head_dim = 0;            ///< dst_k.size(1): code bytes per token
  std::int64_t tiles_per_token = 0;     ///< head_dim / 128: scales per token (G)
  std::int64_t block_size = 0;          ///< kv_cache.size(1)
  std::int64_t num_blocks = 0;          ///< kv_cache.size(0)
  std::int64_t block_stride = 0;        ///< kv_cache.stride(0), bytes
  std::int64_t dst_k_stride = 0;        ///< dst_k.stride(0), bytes
  std::int64_t dst_scale_stride = 0;    ///< dst_scale.stride(0), bytes
  std::int64_t block_table_stride = 0;  ///< block_table.stride(0), i32 elements
  /// The call deferred its checks, so the host never read cu_seq_lens: the kernels read
  /// cu_seq_lens[batch] on the device (at most gathered_tokens).
  bool gathered_on_device = false;
};

/// \brief cp_gather_indexer_k_quant_cache: the op's arguments, its contract and its three
/// implementations.
struct CpGatherIndexerKQuantCache {
  /// \brief The upstream name.
  static constexpr const char* name = "cp_gather_indexer_k_quant_cache";

  /// \brief The arguments, in vLLM's order and with vLLM's names (documented in arguments()).
  struct Args {
    /// \name Arguments (documented in CpGatherIndexerKQuantCache::arguments)
    /// @{
    TensorView kv_cache;     ///< see CpGatherIndexerKQuantCache::arguments()
    TensorView dst_k;        ///< see CpGatherIndexerKQuantCache::arguments()
    TensorView dst_scale;    ///< see CpGatherIndexerKQuantCache::arguments()
    TensorView block_table;  ///< see CpGatherIndexerKQuantCache::arguments()
    TensorView cu_seq_lens;  ///< see CpGatherIndexerKQuantCache::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::kv_cache, "kv_cache", ArgKind::input,
        "[num_blocks, block_size, head_dim + 4 × head_dim / 128] u8 or f8_e4m3: the indexer K "
        "cache indexer_k_quant_and_cache writes (per block all codes, then all fp32 scales)");
    arg(&Args::dst_k, "dst_k", ArgKind::output,
        "[N, head_dim] u8 or f8_e4m3, head_dim a multiple of 128: row t gets the codes of "
        "token t of the batch (t < cu_seq_lens[-1]; later rows are left untouched); rows of any "
        "pitch, bytes packed");
    arg(&Args::dst_scale, "dst_scale", ArgKind::output,
        "[>= N, 4 × head_dim / 128] u8: row t gets the fp32 scale bytes of token t; rows of any "
        "pitch (a multiple of 4 bytes), bytes packed");
    arg(&Args::block_table, "block_table", ArgKind::input,
        "[batch, max_blocks] i32, elements packed: the cache blocks of each sequence in order");
    arg(&Args::cu_seq_lens, "cu_seq_lens", ArgKind::input,
        "[batch + 1] i32, contiguous: 0, then the running total of the sequence lengths; "
        "sequence b fills rows cu_seq_lens[b] .. cu_seq_lens[b + 1] - 1");
  }

  /// \brief What validate() derives from the arguments.
  using Plan = CpGatherIndexerKQuantCachePlan;

  /// \brief The contract, shared by the three implementations.
  ///
  /// Checks every argument for `impl` and returns the plan; throws InvalidArgument (naming the
  /// argument, the expected and the actual value) before anything is written. It reads
  /// cu_seq_lens and the block_table entries the sequences use (on the GPU: copied to the host,
  /// a synchronization). A batch whose sequences are all empty, or an empty dst_k, is a valid
  /// call that writes nothing.
  ///
  /// A call that defers its errors (inside a CUDA-graph capture, through pagedkv.vllm_ops, or
  /// with PAGEDKV_ERRORS=deferred) reads nothing on the host: one check kernel on the call's
  /// stream checks the same rules, the kernels write nothing when one is broken, and the error
  /// is raised later in the same words (pagedkv/deferred_checks.h).
  ///
  /// Upstream checks only that the tensors share a device and that head_dim is divisible by the
  /// quant_block_size it infers from dst_scale. This contract also checks every dtype (i32
  /// block_table and cu_seq_lens, byte buffers), dst_scale.size(1) == 4 × head_dim / 128 (the
  /// 128-element tiles the cache has), the cache's block-planar shape, that cu_seq_lens starts
  /// at 0 and never decreases, that dst_k and dst_scale have a row for every gathered token,
  /// and that every block id a sequence uses lies inside the cache and the block table.
  /// \note Rows past cu_seq_lens[-1] are left untouched. Upstream looks the batch of such a row
  /// up in shared memory that no thread wrote and copies from wherever that leads.
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan the implementation executes.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: a loop over sequences and their positions.
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA: one thread per output row, a linear search for its sequence, byte copies.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA: eight lanes per 128-byte tile with 16-byte vectors, a binary search
  /// for the sequence (the kernel file header lists the tricks).
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry: family, sources, byte model, workloads
  /// (core/entries/cp_gather_indexer_k_quant_cache.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
