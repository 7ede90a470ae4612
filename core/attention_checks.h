/// \file
/// \brief The messages of paged attention's rules on seq_lens and block_tables, written once:
/// the synchronous checks of the contract (core/paged_attention.cpp) and the description of a
/// deferred fault (core/deferred_checks.cu) word a broken rule alike.
#pragma once

#include <cstdint>
#include <string>

namespace pagedkv::checks {

/// \brief "seq_lens[b] = v: expected 1 <= seq_len <= max_seq_len = m".
/// \param sequence the sequence b.
/// \param length its seq_lens value.
/// \param max_seq_len the call's max_seq_len.
/// \return the message.
std::string attention_length_message(std::int64_t sequence, std::int64_t length,
                                     std::int64_t max_seq_len);

/// \brief The message of a sequence longer than block_tables' columns reach.
/// \param sequence the sequence b.
/// \param length its seq_lens value.
/// \param block_size tokens per block.
/// \param width block_tables.size(1).
/// \return the message.
std::string attention_columns_message(std::int64_t sequence, std::int64_t length,
                                      std::int64_t block_size, std::int64_t width);

/// \brief The message of a block id outside the pool.
/// \param sequence the sequence b (the row of block_tables).
/// \param column the column.
/// \param block the id found there.
/// \param num_blocks key_cache.size(0).
/// \return the message.
std::string attention_block_message(std::int64_t sequence, std::int64_t column,
                                    std::int64_t block, std::int64_t num_blocks);

}  // namespace pagedkv::checks
