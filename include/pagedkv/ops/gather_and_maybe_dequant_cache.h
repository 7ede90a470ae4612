/// \file
/// \brief `gather_and_maybe_dequant_cache`: read the MLA cache entries of a batch of sequences
/// back into one contiguous workspace, token by token, decoding fp8 entries on the way.
///
/// This header is the op's one description: its arguments, the plan that validation produces
/// and the three implementations (CPU reference, naive CUDA, optimized CUDA).
///
/// Worked example (block_size 4, two sequences of 3 and 5 tokens): cu_seq_lens = [0, 3, 8],
/// token_to_seq = [0, 0, 0, 1, 1, 1, 1, 1]. Workspace row 5 is token 5 - 3 = 2 of sequence 1;
/// with seq_starts = [0, 6] it is position 2 + 6 = 8 of that sequence, so it comes from
/// block_table[1, 8 / 4 = 2], slot 8 % 4 = 0 of that block. Row 5 of `dst` receives that
/// entry's 576 values: copied for "auto", `fp8 × scale` for the fp8 kinds.
///
/// `kv_cache_dtype` "fp8_ds_mla": upstream (vLLM csrc/cache_kernels.cu @9803b00) decodes this
/// 656-byte entry as if it were 576 plain E4M3 bytes with one scale, which is wrong (it reads
/// the tile scales and the bf16 RoPE bytes as fp8 values). pagedkv implements the true decode
/// instead, since the op's shape contract allows it (one 656-byte entry in, one 576-element row
/// out): each of the four 128-value latent tiles is `fp8 × its fp32 tile scale`, and the 64
/// bf16 RoPE values are copied bit for bit. The workspace must then be bf16 (the RoPE part is
/// bf16 bits), and the `scale` argument is not read.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "pagedkv/impl.h"
#include "pagedkv/kv_cache_dtype.h"
#include "pagedkv/op.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief Elements of one MLA workspace row: kv_lora_rank 512 + rope_dim 64, the only width the
/// gather ops take (upstream's check).
constexpr std::int64_t kMlaGatherRow = 576;

/// \brief Everything the implementations need, derived once from the arguments by
/// GatherAndMaybeDequantCache::validate(). Strides are in elements of their tensor (bytes for
/// fp8 caches).
struct GatherAndMaybeDequantCachePlan {
  /// Workspace rows written: min(num_tokens, cu_seq_lens[batch]). Rows from here up to
  /// num_tokens are padding (not written, token_to_seq not read there). When rows_on_device,
  /// only a bound (num_tokens, or 0 for no sequence).
  std::int64_t rows = 0;
  std::int64_t batch = 0;               ///< sequences: cu_seq_lens.size(0) - 1
  std::int64_t block_size = 0;          ///< src_cache.size(1): slots per block
  std::int64_t num_blocks = 0;          ///< src_cache.size(0)
  std::int64_t block_stride = 0;        ///< src_cache.stride(0)
  std::int64_t entry_stride = 0;        ///< src_cache.stride(1)
  std::int64_t dst_stride = 0;          ///< dst.stride(0): elements between two workspace rows
  std::int64_t block_table_stride = 0;  ///< block_table.stride(0)
  DType dst_dtype = DType::bf16;        ///< f32, f16 or bf16 (bf16 for fp8_ds_mla)
  KvCacheDtype cache_kind = KvCacheDtype::kAuto;  ///< E4M3 for fp8_ds_mla
  bool ds_mla = false;                            ///< the 656-byte entry with four tile scales
  bool has_seq_starts = false;                    ///< seq_starts was given
  /// The call deferred its checks, so the host never read cu_seq_lens: the kernels write
  /// min(rows, cu_seq_lens[batch]) rows, read on the device.
  bool rows_on_device = false;
};

/// \brief gather_and_maybe_dequant_cache: the op's arguments, its contract and its three
/// implementations.
struct GatherAndMaybeDequantCache {
  /// \brief The upstream name.
  static constexpr const char* name = "gather_and_maybe_dequant_cache";

  /// \brief The arguments, in vLLM's order and with vLLM's names (documented in arguments()).
  struct Args {
    /// \name Arguments (documented in GatherAndMaybeDequantCache::arguments)
    /// @{
    TensorView src_cache;         ///< see GatherAndMaybeDequantCache::arguments()
    TensorView dst;               ///< see GatherAndMaybeDequantCache::arguments()
    TensorView block_table;       ///< see GatherAndMaybeDequantCache::arguments()
    TensorView cu_seq_lens;       ///< see GatherAndMaybeDequantCache::arguments()
    TensorView token_to_seq;      ///< see GatherAndMaybeDequantCache::arguments()
    std::int64_t num_tokens = 0;  ///< see GatherAndMaybeDequantCache::arguments()
    std::string kv_cache_dtype;   ///< see GatherAndMaybeDequantCache::arguments()
    TensorView scale;             ///< see GatherAndMaybeDequantCache::arguments()
    TensorView seq_starts;        ///< see GatherAndMaybeDequantCache::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::src_cache, "src_cache", ArgKind::input,
        "[num_blocks, block_size, entry], block and slot strides free, entry packed: 576 "
        "elements of dst's dtype (\"auto\"), 576 bytes (fp8) or the 656-byte fp8_ds_mla entry "
        "(u8 or f8_e4m3)");
    arg(&Args::dst, "dst", ArgKind::output,
        "[>= num_tokens, 576] f32, f16 or bf16 (bf16 for \"fp8_ds_mla\"), rows of any pitch, "
        "elements packed: the workspace; row k receives global token k");
    arg(&Args::block_table, "block_table", ArgKind::input,
        "[>= batch, max_blocks] i32, rows of any pitch: each sequence's cache blocks in order");
    arg(&Args::cu_seq_lens, "cu_seq_lens", ArgKind::input,
        "[batch + 1] i32, contiguous: 0, then the running sum of the sequence lengths "
        "(non-decreasing)");
    arg(&Args::token_to_seq, "token_to_seq", ArgKind::input,
        "[>= num_tokens] i32, contiguous: the sequence of each global token k < "
        "cu_seq_lens[batch] (the b with cu_seq_lens[b] <= k < cu_seq_lens[b + 1]); entries past "
        "cu_seq_lens[batch] are padding and not read");
    arg(&Args::num_tokens, "num_tokens", ArgKind::integer,
        "workspace rows to consider, 0 <= num_tokens <= dst.size(0); rows at or past "
        "cu_seq_lens[batch] are padding and left untouched");
    arg(&Args::kv_cache_dtype, "kv_cache_dtype", ArgKind::string,
        "\"auto\" / \"bfloat16\" / \"float16\" (bits copied), \"fp8\" / \"fp8_e4m3\" / "
        "\"fp8_e5m2\" (fp8 × scale), or \"fp8_ds_mla\" (the 656-byte entry, decoded with its "
        "four tile scales)");
    arg(&Args::scale, "scale", ArgKind::input,
        "f32 [1] (one element): the cache scale; read only for \"fp8\", \"fp8_e4m3\" and "
        "\"fp8_e5m2\"");
    arg(&Args::seq_starts, "seq_starts", ArgKind::optional_input,
        "[>= batch] i32, contiguous, values >= 0, or none: the position inside its sequence's "
        "blocks at which each sequence's first gathered token sits (any value, not only block "
        "multiples)");
  }

  /// \brief What validate() derives from the arguments.
  using Plan = GatherAndMaybeDequantCachePlan;

  /// \brief The contract, shared by the three implementations.
  ///
  /// Checks every argument for `impl` and returns the plan; throws InvalidArgument (naming the
  /// argument, the expected and the actual value) before anything is written. It reads the
  /// index tensors (cu_seq_lens, token_to_seq, seq_starts and the used part of block_table;
  /// on the GPU one small device-to-host copy each, which synchronizes) to check that
  /// cu_seq_lens starts at 0 and never decreases, that every token's sequence is the one
  /// cu_seq_lens gives it, and that every block a gathered token needs is a column of
  /// block_table and a block of the cache. Zero sequences or zero tokens is a valid call that
  /// writes nothing.
  ///
  /// A call that defers its errors (inside a CUDA-graph capture, through pagedkv.vllm_ops, or
  /// with PAGEDKV_ERRORS=deferred) reads nothing on the host: one check kernel on the call's
  /// stream checks the same rules, the kernels write nothing when one is broken, and the error
  /// is raised later in the same words (pagedkv/deferred_checks.h).
  ///
  /// Beyond upstream's checks (int32 indices, a 576-wide workspace, one device) it rejects what
  /// upstream silently gets wrong: an i64 token_to_seq (upstream reads int32 whatever it is),
  /// the checks on the index values above (upstream reads out of bounds), an "auto" cache of
  /// another dtype than dst (upstream reinterprets the bits), num_tokens beyond dst or
  /// token_to_seq, a scale that is not one f32 (fp8), workspace rows that overlap, and a
  /// "fp8_ds_mla" workspace that is not bf16.
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan the implementation executes.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: a loop over workspace rows, each entry looked up and decoded element
  /// by element.
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA: one thread per (row, element), the lookup repeated by every thread.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA: token-major, one warp per row, lookups of 8 rows at once, 16-byte
  /// vectors (the kernel file header lists the tricks).
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry: family, sources, byte model, workloads
  /// (core/entries/gather_and_maybe_dequant_cache.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
