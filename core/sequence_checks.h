/// \file
/// \brief The checks of a batch of sequences read through a block table (the gathers): the
/// cumulative token counts, the per-sequence start positions and every block id the gather will
/// use, on the CPU or the GPU. These values live in device memory on the GPU, so the checks read
/// them back; each rule throws InvalidArgument naming the tensor, the element and its value.
#pragma once

#include <cstdint>

#include "pagedkv/deferred_checks.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv::checks {

/// \brief What the sequence checks learned about the batch.
struct GatheredSequences {
  std::int64_t num_tokens = 0;  ///< cu_seq_lens[batch_size]: rows the gather writes
};

/// \brief The sequences of a gather are well formed:
/// - cu_seq_lens[0] == 0 and cu_seq_lens never decreases over its first batch_size + 1 values;
/// - seq_starts[b] >= 0 (when seq_starts is given, i.e. has data);
/// - every gathered position, seq_starts[b] + p for p < cu_seq_lens[b + 1] - cu_seq_lens[b],
///   lies in a column of block_table (column = position / block_size < block_table.size(1));
/// - the block id of every such column is in [0, num_blocks).
///
/// Only the columns a sequence uses are checked: the rest of a block table row may hold
/// anything (padding). The shapes, dtypes (i32) and contiguity of the three tensors must have
/// been checked before. On the GPU, cu_seq_lens and seq_starts are copied to the host, and
/// the block ids are checked by one small kernel whose answer (the first bad element) is
/// copied back: this synchronizes the current device.
/// \param block_table [>= batch_size, width] i32, columns adjacent, rows stride(0) apart.
/// \param cu_seq_lens [>= batch_size + 1] i32, contiguous.
/// \param seq_starts [>= batch_size] i32, contiguous, or a view without data (all starts 0).
/// \param batch_size sequences, >= 0.
/// \param block_size slots per cache block, >= 1.
/// \param num_blocks blocks in the cache.
/// \return what was learned (the number of tokens gathered).
GatheredSequences gathered_sequences(const TensorView& block_table, const TensorView& cu_seq_lens,
                                     const TensorView& seq_starts, std::int64_t batch_size,
                                     std::int64_t block_size, std::int64_t num_blocks);

/// \brief An argument's name as the fault record stores it (the address of a string with
/// static storage).
/// \param name the name.
/// \return the address, as an integer.
inline std::uint64_t argument_name(const char* name) {
  return reinterpret_cast<std::uint64_t>(name);
}

/// \brief Names the arguments of a deferred sequence check's rules as the gathers call them:
/// cu_seq_lens, seq_starts, seq_lens, gather_lens, workspace_starts, token_to_seq and
/// block_table, and `column_argument` for the column rule (the row destinations are the op's
/// to name).
/// \param check the check to fill.
/// \param column_argument what a sequence past the block table's columns names.
inline void name_sequence_arguments(SequenceCheck& check, const char* column_argument) {
  const auto name = [&](FaultRule rule, const char* argument) {
    check.argument[static_cast<std::uint32_t>(rule)] = argument_name(argument);
  };
  name(FaultRule::sequence_start, "cu_seq_lens");
  name(FaultRule::sequence_order, "cu_seq_lens");
  name(FaultRule::negative_start, "seq_starts");
  name(FaultRule::negative_length, "seq_lens");
  name(FaultRule::gather_length, "gather_lens");
  name(FaultRule::request_order, "workspace_starts");
  name(FaultRule::token_owner, "token_to_seq");
  name(FaultRule::column_range, column_argument);
  name(FaultRule::block_range, "block_table");
}

}  // namespace pagedkv::checks
