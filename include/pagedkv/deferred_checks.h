/// \file
/// \brief Index checks that run on the device: the error modes, the device fault record that
/// the kernels of an op read before they write, and the call that reports a deferred error.
///
/// A few rules of a contract are about the values of device index tensors (every slot of
/// slot_mapping inside the cache, every position a row of cos_sin_cache). Reading them on the
/// host costs a copy and a synchronization on every call, and a capture forbids it. So a call
/// either checks them synchronously (read back on its stream, InvalidArgument before the
/// launch) or defers: a check kernel on its stream fills the fault record on a bad value, the
/// op's kernels read the record first and write nothing, and the host reports the fault later
/// (the next checked call, or check_errors()). The op map's section on the rules every op
/// shares describes both modes; a fault stays set until it is reported outside a capture.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace pagedkv {

/// \brief When the checks of device index values report a bad value.
enum class ErrorMode {
  automatic,    ///< synchronous for pagedkv::run and pagedkv.naive/optimized, deferred for
                ///< pagedkv.vllm_ops and for every call on a capturing stream
  synchronous,  ///< always read back and throw before launching (except while capturing)
  deferred,     ///< always check on the device and report later
};

/// \brief The rule a device check found broken (DeviceFault::rule).
enum class FaultRule : std::uint32_t {
  none = 0,
  slot_range = 1,      ///< a slot >= num_blocks × block_size
  position_range = 2,  ///< a position < 0 or >= the rows of cos_sin_cache
  // The gathers' sequences (checks::enqueue_sequence_check); `position` is the element's index.
  sequence_start = 3,   ///< cu_seq_lens[0] != 0 (value)
  sequence_order = 4,   ///< cu_seq_lens[position] = value below cu_seq_lens[position - 1] =
                        ///< context[0]
  negative_start = 5,   ///< seq_starts[position] = value < 0
  negative_length = 6,  ///< seq_lens[position] = value < 0
  request_order = 7,    ///< workspace_starts[position] = value below limit, the previous
                        ///< request's end
  token_owner = 8,      ///< token_to_seq[position] = value, but cu_seq_lens gives sequence
                        ///< context[0] (cu_seq_lens[context[0]] = context[1] <= position <
                        ///< cu_seq_lens[context[0] + 1] = context[2])
  rows_exceeded = 9,    ///< value rows gathered (or request `position`'s end), the
                        ///< destination has limit
  column_range = 10,    ///< sequence `position` starts at value and gathers context[0] tokens,
                        ///< past block_table's limit columns of block_size slots (or
                        ///< block_size is 0)
  block_range = 11,     ///< block_table[position, context[0]] = value, not in [0, limit)
  gather_length = 12,   ///< gather_lens[position] = value, not in [0, limit], the request's
                        ///< seq_lens[position]
  length_range = 13,    ///< seq_lens[position] = value, not in [1, limit] (paged attention:
                        ///< limit is max_seq_len)
  // TurboMind's batch (checks::enqueue_turbomind_check, process_kv and flatten_kv). context[1]
  // and context[2] hold the names of the rows' activation and of max_len (`const char*`).
  tm_first_row = 14,     ///< cu_q_len[0] = value < 0
  tm_first_block = 15,   ///< cu_block_num[0] = value < 0
  tm_length_order = 16,  ///< argument (cu_k_len or cu_q_len)[position] = value below
                         ///< [position - 1] = context[0]
  tm_long_sequence = 17,  ///< sequence `position` has value (> 2^31 - 1) tokens (cu_k_len)
  tm_new_tokens = 18,     ///< sequence `position` has q_len = value > k_len = context[0]
  tm_max_length = 19,     ///< sequence `position` has value tokens (argument's) > limit, max_len
  tm_block_order = 20,    ///< cu_block_num[position] = value below [position - 1] = context[0]
  tm_few_blocks = 21,     ///< sequence `position` has value blocks, its context[0] tokens need
                          ///< limit blocks of block_size tokens (num_blocks: cp_size)
  tm_readonly = 22,       ///< readonly_block_num[position] = value < 0
  tm_rows = 23,           ///< the sequences use value rows (argument's), the activation has limit
  tm_listed = 24,         ///< cu_block_num[batch] = value > limit, blocks.size(0)
  tm_block_offset = 25,   ///< blocks[position] = value, not a multiple of limit (stride(0)) below
                          ///< num_blocks × limit
  tm_rope_base = 26,      ///< rope_bases[position] = the f32 whose bits are value, not finite > 1
};

/// \brief Whose synchronous messages a sequence fault is worded like: the gathers' contracts
/// word the same rule differently (DeviceFault::wording).
enum class SequenceWording : std::uint32_t {
  gathered_sequences = 0,  ///< core/sequence_checks.cu (cp_gather_cache)
  block_lookup = 1,        ///< core/block_lookup_checks.cpp and the two MLA gathers' contracts
  indexer_gather = 2,      ///< cp_gather_indexer_k_quant_cache's contract
  dsv4_gather = 3,         ///< dequantize_and_gather_k_cache's contract (its block lookups
                           ///< worded as block_lookup)
  paged_attention = 4,     ///< the paged attention contract (core/paged_attention.cpp)
};

/// \brief The device's fault record: written by a check kernel that found a bad index, read
/// by every guarded kernel before it writes. Plain data, the same layout on host and device.
struct DeviceFault {
  std::uint32_t rule;       ///< FaultRule; 0 = no fault
  std::uint32_t reserved;   ///< padding (0)
  std::int64_t position;    ///< flat index of the bad element
  std::int64_t value;       ///< its value
  std::int64_t limit;       ///< the bound it broke (num_blocks × block_size, max_position)
  std::int64_t num_blocks;  ///< slot_range: the cache's blocks
  std::int64_t block_size;  ///< slot_range: slots per block
  std::uint64_t op;         ///< the op's name (a `const char*` with static storage)
  std::uint64_t argument;   ///< the argument's name (a `const char*` with static storage)
  std::int64_t context[3];  ///< neighbouring values the message names (see FaultRule)
  std::uint32_t wording;    ///< sequence rules: whose messages (SequenceWording)
  std::uint32_t padding;    ///< (0)
};

/// \brief The message of a fault, in the words of the synchronous check of the same rule,
/// marked as deferred and naming the op that found it: what check_errors() throws.
/// \param fault a record whose rule is not FaultRule::none.
/// \return the message.
std::string describe_fault(const DeviceFault& fault);

/// \brief "automatic", "synchronous" or "deferred".
/// \param mode the mode.
/// \return its name.
std::string_view error_mode_name(ErrorMode mode);

/// \brief Sets the error mode of the whole process (the first value comes from the
/// environment variable PAGEDKV_ERRORS: "sync", "deferred" or unset for automatic).
/// \param mode the new mode.
void set_error_mode(ErrorMode mode);

/// \brief The error mode of the process.
/// \return the mode set_error_mode() or PAGEDKV_ERRORS chose.
ErrorMode error_mode();

/// \brief The fault record of the current device, in device memory, for the kernels of the
/// guarded ops. Made once per device (never inside a capture: the first call switches this
/// thread to relaxed capture mode for the allocation).
/// \return the record's device address.
const DeviceFault* device_fault();

/// \brief Reports a deferred error: waits for the current device (cudaDeviceSynchronize), and
/// if a check kernel found a bad index since the last report, clears the fault and throws
/// InvalidArgument naming the op, the argument, the element and its value. Does nothing on a
/// device that never ran a deferred check. Must not be called while a stream of the device is
/// being captured.
void check_errors();

/// \brief The fault of a check kernel that has already run, if any, without synchronizing:
/// throws it when the host mirror holds one. When `may_synchronize`, the fault is cleared
/// first (after waiting for the device); inside a capture it stays set until a later report.
/// Every checked call of the registry begins with this.
/// \param may_synchronize false while the caller's stream is capturing.
void raise_pending_fault(bool may_synchronize);

/// \brief The checking context of one checked call on a device: the stream its checks use and
/// whether they defer. Made by the checked entry point (pagedkv::run) around validation; the
/// checks of device index values (checks::slots_fit, the position check, the gathers' reads)
/// look it up. Without one (a plan prepared for a timing loop) they are synchronous on the
/// legacy default stream.
class CheckScope {
 public:
  /// \brief Opens the scope for one call: reports a pending fault of the device first (see
  /// raise_pending_fault()), then decides whether this call defers.
  /// \param op the op's name (static storage).
  /// \param stream the call's stream.
  CheckScope(const char* op, cudaStream_t stream);
  /// \brief Closes the scope: the enclosing one (or none) is current again.
  ~CheckScope();
  CheckScope(const CheckScope&) = delete;             ///< one scope per call
  CheckScope& operator=(const CheckScope&) = delete;  ///< one scope per call

  /// \brief The innermost open scope of this thread, or nullptr.
  /// \return the scope.
  static const CheckScope* current();

  const char* op;       ///< the op's name
  cudaStream_t stream;  ///< the call's stream
  bool capturing;       ///< the stream is being captured into a CUDA graph
  bool deferred;        ///< value checks run on the device and report later

 private:
  const CheckScope* outer_;
};

/// \brief While one lives, checked calls of this thread defer their errors in
/// ErrorMode::automatic (what pagedkv.vllm_ops asks for: vLLM's own ops never synchronize).
class PreferDeferredErrors {
 public:
  /// \brief From now on, this thread's checked calls prefer deferred errors.
  PreferDeferredErrors();
  /// \brief Back to what this thread preferred before.
  ~PreferDeferredErrors();
  PreferDeferredErrors(const PreferDeferredErrors&) = delete;             ///< not copyable
  PreferDeferredErrors& operator=(const PreferDeferredErrors&) = delete;  ///< not copyable

 private:
  bool outer_;
};

/// \brief The stream a synchronous check reads device values on: the current scope's stream,
/// else the legacy default stream. Throws InvalidArgument naming `argument` when the scope's
/// stream is capturing (a host read would break the capture).
/// \param argument the argument whose values are read.
/// \return the stream.
cudaStream_t synchronous_check_stream(const char* argument);

namespace checks {

/// \brief Deferred slot check: queues a kernel on the scope's stream that records a fault for
/// the first slot of `slot_mapping` (i64, contiguous) at or above num_blocks × block_size.
/// \param scope the open scope (deferred).
/// \param slot_mapping the slots.
/// \param count slots to check.
/// \param num_blocks blocks in the cache.
/// \param block_size slots per block.
void enqueue_slot_check(const CheckScope& scope, const void* slot_mapping, std::int64_t count,
                        std::int64_t num_blocks, std::int64_t block_size);

/// \brief Deferred position check: queues a kernel that records a fault for a position (i64,
/// contiguous) outside [0, max_position).
/// \param scope the open scope (deferred).
/// \param positions the positions.
/// \param count positions to check.
/// \param max_position rows of cos_sin_cache.
void enqueue_position_check(const CheckScope& scope, const void* positions, std::int64_t count,
                            std::int64_t max_position);

/// \brief What a deferred check of a gather's sequences reads, and the bounds it checks them
/// against: the rules of the synchronous checks of the op, in their order (FaultRule 3 to 12).
/// Sequence b holds the tokens cu_seq_lens[b] .. cu_seq_lens[b + 1] - 1 (or, with seq_lens,
/// seq_lens[b] tokens at workspace row workspace_starts[b]) and gathers the positions
/// seq_starts[b] .. of its row of block_table. With the wording SequenceWording::dsv4_gather,
/// request b instead gathers the last gather_lens[b] of its seq_lens[b] positions (all of them
/// without gather_lens) into rows row_offset .. of its own slab of the destination, whose
/// row_limit[0] rows they must fit. With the wording SequenceWording::paged_attention, sequence b
/// reads the first seq_lens[b] positions of its row of block_table, and 1 <= seq_lens[b] <=
/// max_length. Null pointers mark what the op does not have.
struct SequenceCheck {
  SequenceWording wording = SequenceWording::gathered_sequences;  ///< whose messages
  const std::int32_t* cu_seq_lens = nullptr;       ///< [batch + 1], or nullptr (seq_lens)
  const std::int32_t* seq_lens = nullptr;          ///< [batch] tokens per request, or nullptr
  const std::int32_t* workspace_starts = nullptr;  ///< [batch] with seq_lens
  const std::int32_t* gather_lens = nullptr;       ///< [batch] with seq_lens (dsv4_gather)
  const std::int32_t* seq_starts = nullptr;        ///< [batch] first positions, or nullptr (0)
  const std::int32_t* token_to_seq = nullptr;      ///< [>= token_limit], or nullptr
  const std::int32_t* block_table = nullptr;       ///< [>= batch, table_width] i32
  std::int64_t table_stride = 0;                   ///< block_table.stride(0)
  std::int64_t table_width = 0;                    ///< block_table.size(1)
  std::int64_t batch = 0;                          ///< sequences
  std::int64_t block_size = 0;                     ///< slots per cache block (0: a cache of none)
  std::int64_t num_blocks = 0;                     ///< blocks in the cache
  /// Only tokens below this are gathered (gather_and_maybe_dequant_cache's num_tokens): the
  /// sequences are cut there; -1 for no cut.
  std::int64_t token_limit = -1;
  /// Rows of the destinations the total (cu_seq_lens[batch], or each request's end) must fit;
  /// -1 where the op has no such rule or no second destination.
  std::int64_t row_limit[2] = {-1, -1};
  /// dsv4_gather: the first row of its slab each request writes (the offset argument).
  std::int64_t row_offset = 0;
  /// paged_attention: the longest sequence allowed (max_seq_len).
  std::int64_t max_length = 0;
  /// The argument rows_exceeded names for each destination (`const char*` with static
  /// storage, cast).
  std::uint64_t row_argument[2] = {};
  /// The argument each other rule names in its message, by FaultRule value (`const char*`
  /// with static storage, cast; 0 where the op lacks the rule).
  std::uint64_t argument[14] = {};
};

/// \brief The deferred sequence check run on the host, over host memory (the pointers of
/// `check` address the host): the same code as the check kernel, one thread visiting every
/// rule, for tests of its rules and wording without a GPU.
/// \param check what to read and the bounds.
/// \param op the op's name (static storage), for the message.
/// \return the fault the check kernel would record; rule FaultRule::none when every rule holds.
DeviceFault find_sequence_fault(const SequenceCheck& check, const char* op);

/// \brief What a deferred check of TurboMind's batch reads (process_kv, flatten_kv), and the
/// bounds it checks the values against: the rules of checks::turbomind_batch (and the
/// "dynamic" RoPE bases of checks::turbomind_rope), in their order (FaultRule 14 to 26).
/// Sequence b has k_len = cu_k_len[b + 1] - cu_k_len[b] tokens; with cu_q_len (process_kv) the
/// last q_len = cu_q_len[b + 1] - cu_q_len[b] of them are new and sit at rows cu_q_len[b] ..
/// of k; its blocks are blocks[cu_block_num[b] .. cu_block_num[b + 1]), byte offsets of rows of
/// the pool. Null pointers mark what the op does not have.
struct TurbomindCheck {
  const std::int32_t* cu_q_len = nullptr;            ///< [batch + 1], or nullptr (flatten_kv)
  const std::int32_t* cu_k_len = nullptr;            ///< [batch + 1]
  const std::int32_t* cu_block_num = nullptr;        ///< [batch + 1]
  const std::int32_t* readonly_block_num = nullptr;  ///< [batch], or nullptr
  const std::int64_t* blocks = nullptr;              ///< [block_count] byte offsets
  const float* rope_bases = nullptr;                 ///< [batch] ("dynamic" RoPE), or nullptr
  std::int64_t batch = 0;          ///< sequences
  std::int64_t rows = 0;           ///< rows of the activation the sequences use
  std::int64_t max_len = 0;        ///< max_q_len (with cu_q_len) or max_seq_len
  std::int64_t block_count = 0;    ///< blocks.size(0)
  std::int64_t block_seq_len = 1;  ///< tokens per block
  std::int64_t cp_rank = 0;        ///< this rank
  std::int64_t cp_size = 1;        ///< ranks
  std::int64_t pool_blocks = 0;    ///< kv_cache.size(0)
  std::int64_t pool_stride = 0;    ///< bytes from one block of the pool to the next
  std::uint64_t rows_name = 0;     ///< the activation's name (`const char*`, static storage)
  std::uint64_t max_len_name = 0;  ///< max_len's name (`const char*`, static storage)
};

/// \brief The deferred TurboMind batch check run on the host, over host memory: the same code
/// as its check kernel on one thread, for tests of its rules and wording without a GPU.
/// \param check what to read and the bounds.
/// \param op the op's name (static storage), for the message.
/// \return the fault the check kernel would record; rule FaultRule::none when every rule holds.
DeviceFault find_turbomind_fault(const TurbomindCheck& check, const char* op);

/// \brief Deferred TurboMind batch check: queues one kernel (a single CTA) on the scope's stream
/// that finds the first broken rule in the order checks::turbomind_batch visits them (then the
/// RoPE bases) and records it in the fault record.
/// \param scope the open scope (deferred).
/// \param check what to read and the bounds.
void enqueue_turbomind_check(const CheckScope& scope, const TurbomindCheck& check);

/// \brief Deferred sequence check of a gather: queues one kernel (a single CTA: the index
/// tensors are small) that finds the first broken rule in the order the synchronous check
/// visits them, and records it in the fault record.
/// \param scope the open scope (deferred).
/// \param check what to read and the bounds.
void enqueue_sequence_check(const CheckScope& scope, const SequenceCheck& check);

}  // namespace checks

}  // namespace pagedkv
