/// \file
/// \brief `apply_repetition_penalties`: at sampling time, make tokens that already occurred
/// less likely. In place on `logits [num_seqs, vocab_size]`: where the token occurs in the
/// sequence's prompt or output (either bool mask true), a positive logit is divided by the
/// sequence's penalty and any other (zero included) is multiplied by it.
///
/// The arithmetic is one IEEE division or multiplication in float32 and one rounding to the
/// logits' dtype, the same on the CPU and the GPU: the three implementations are bit-identical.
///
/// Worked example (penalty 2): logits (4, -4, 0, 1) with the first three tokens masked become
/// (2, -8, 0, 1).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "pagedkv/impl.h"
#include "pagedkv/op.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief apply_repetition_penalties: the op's arguments, its contract and its three
/// implementations.
struct ApplyRepetitionPenalties {
  /// \brief The upstream name.
  static constexpr const char* name = "apply_repetition_penalties";

  /// \brief The arguments, in vLLM's order and with vLLM's names (documented in arguments()).
  struct Args {
    /// \name Arguments (documented in ApplyRepetitionPenalties::arguments)
    /// @{
    TensorView logits;                ///< see ApplyRepetitionPenalties::arguments()
    TensorView prompt_mask;           ///< see ApplyRepetitionPenalties::arguments()
    TensorView output_mask;           ///< see ApplyRepetitionPenalties::arguments()
    TensorView repetition_penalties;  ///< see ApplyRepetitionPenalties::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::logits, "logits", ArgKind::inout,
        "[num_seqs, vocab_size] f32, f16 or bf16, contiguous; penalized in place");
    arg(&Args::prompt_mask, "prompt_mask", ArgKind::input,
        "[num_seqs, vocab_size] bool, contiguous; true where the token occurs in the prompt");
    arg(&Args::output_mask, "output_mask", ArgKind::input,
        "[num_seqs, vocab_size] bool, contiguous; true where the token occurs in the output");
    arg(&Args::repetition_penalties, "repetition_penalties", ArgKind::input,
        "[num_seqs], the dtype of logits, contiguous; one penalty per sequence, applied as "
        "given (1 leaves the row unchanged)");
  }

  /// \brief What validate() derives from the arguments.
  struct Plan {
    std::int64_t num_seqs = 0;    ///< rows of logits
    std::int64_t vocab_size = 0;  ///< columns of logits
    DType dtype = DType::f32;     ///< dtype of logits and repetition_penalties
  };

  /// \brief The contract: checks every argument for `impl` and returns the plan; throws
  /// InvalidArgument (naming the argument, the expected and the actual value) before anything
  /// is written. Zero sequences is a valid call that writes nothing.
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: two loops, one IEEE float32 division or product per masked logit.
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA: one thread per logit over a 1-D grid.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream.
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA: 16 mask bytes per load, the row's penalty read once, logits
  /// touched only where a mask is set.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream.
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry (core/entries/apply_repetition_penalties.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
