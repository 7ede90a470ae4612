// Index checks that run on the device, and the fault record they leave. See
// pagedkv/deferred_checks.h for the contract; this file is the how:
//
// - The record lives twice per device: in device memory (a __device__ variable, so it exists as
//   soon as the module is loaded, with no cudaMalloc that a capture could forbid), where the
//   guarded kernels read it with one load per CTA, and in pinned, mapped host memory, which
//   the check kernel writes as well when (and only when) it finds a bad index. The host reads
//   the mirror at the start of every checked call: a plain memory read, no synchronization, so
//   a fault surfaces at the next call without anyone waiting for the GPU.
// - The check kernel claims the record with an atomicCAS on `rule`, so the first fault found
//   is kept whole; it writes the details before the rule (with a system-wide fence between
//   them for the host mirror), so a host that sees a rule sees its details.
// - The gathers' sequence check (enqueue_sequence_check) is one CTA that visits every rule of
//   the synchronous check and records the first broken one in that check's order, so that one
//   bad value gives the message the synchronous check would give.
// - TurboMind's batch check (enqueue_turbomind_check, process_kv and flatten_kv) is built the
//   same way over cu_q_len, cu_k_len, cu_block_num, readonly_block_num, the block offsets and
//   the "dynamic" RoPE bases, in the order of checks::turbomind_batch.
// - Clearing needs the device to be idle (a guarded kernel queued after the faulting check must
//   still see the fault), so only a report outside a capture clears, after
//   cudaDeviceSynchronize, with an asynchronous memset on a private non-blocking stream.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "pagedkv/cuda_runtime.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"
#include "attention_checks.h"

namespace pagedkv {

namespace {

__device__ DeviceFault g_fault;  // zero at module load: no fault

constexpr int kMaxDevices = 64;

struct DeviceState {
  DeviceFault* device = nullptr;       // &g_fault on this device
  DeviceFault* mirror = nullptr;       // pinned host memory, mapped
  DeviceFault* mirror_view = nullptr;  // the mirror's device address
  cudaStream_t clear_stream = nullptr;
};

std::atomic<DeviceState*> g_states[kMaxDevices] = {};
std::atomic<bool> g_any_state{false};  // set once a record exists on any device
std::mutex g_state_mutex;

// Lets this thread make calls a global-mode capture forbids (allocations, symbol lookups)
// while another stream is being captured: what PyTorch's caching allocator does too.
class RelaxedCaptureMode {
 public:
  RelaxedCaptureMode() { cudaThreadExchangeStreamCaptureMode(&mode_); }
  ~RelaxedCaptureMode() { cudaThreadExchangeStreamCaptureMode(&mode_); }

 private:
  cudaStreamCaptureMode mode_ = cudaStreamCaptureModeRelaxed;
};

int current_device() {
  int device = 0;
  PAGEDKV_CUDA_CHECK(cudaGetDevice(&device));
  PAGEDKV_CHECK(device < kMaxDevices, "device ", device, ": pagedkv supports devices 0 to ",
                kMaxDevices - 1);
  return device;
}

void load_check_kernels();  // below, after the kernels

DeviceState& state_of(int device) {
  DeviceState* state = g_states[device].load(std::memory_order_acquire);
  if (state != nullptr) return *state;
  std::lock_guard<std::mutex> lock(g_state_mutex);
  state = g_states[device].load(std::memory_order_acquire);
  if (state != nullptr) return *state;
  RelaxedCaptureMode relaxed;
  auto made = std::make_unique<DeviceState>();
  void* symbol = nullptr;
  PAGEDKV_CUDA_CHECK(cudaGetSymbolAddress(&symbol, g_fault));
  made->device = static_cast<DeviceFault*>(symbol);
  void* host = nullptr;
  PAGEDKV_CUDA_CHECK(
      cudaHostAlloc(&host, sizeof(DeviceFault), cudaHostAllocMapped | cudaHostAllocPortable));
  std::memset(host, 0, sizeof(DeviceFault));
  made->mirror = static_cast<DeviceFault*>(host);
  void* view = nullptr;
  PAGEDKV_CUDA_CHECK(cudaHostGetDevicePointer(&view, host, 0));
  made->mirror_view = static_cast<DeviceFault*>(view);
  PAGEDKV_CUDA_CHECK(cudaStreamCreateWithFlags(&made->clear_stream, cudaStreamNonBlocking));
  // With lazy loading (the default since CUDA 12.2) a kernel is loaded at its first launch,
  // which may wait for the whole device, and that first launch could be inside a capture or
  // behind a busy stream. Load the check kernels now, with the record.
  load_check_kernels();
  state = made.release();  // lives as long as the process
  g_states[device].store(state, std::memory_order_release);
  g_any_state.store(true, std::memory_order_release);
  return *state;
}

ErrorMode mode_from_environment() {
  const char* text = std::getenv("PAGEDKV_ERRORS");
  if (text == nullptr) return ErrorMode::automatic;
  const std::string value(text);
  if (value == "deferred") return ErrorMode::deferred;
  if (value == "sync" || value == "synchronous") return ErrorMode::synchronous;
  return ErrorMode::automatic;
}

std::atomic<ErrorMode>& mode_setting() {
  static std::atomic<ErrorMode> mode{mode_from_environment()};
  return mode;
}

thread_local const CheckScope* t_scope = nullptr;
thread_local bool t_prefer_deferred = false;

// --- the check kernels ----------------------------------------------------------------------

// Writes the details of a fault into one copy of the record (the rule comes last).
__device__ void write_details(volatile DeviceFault* copy, const DeviceFault& details) {
  copy->position = details.position;
  copy->value = details.value;
  copy->limit = details.limit;
  copy->num_blocks = details.num_blocks;
  copy->block_size = details.block_size;
  copy->op = details.op;
  copy->argument = details.argument;
  for (int i = 0; i < 3; ++i) copy->context[i] = details.context[i];
  copy->wording = details.wording;
}

// Claims the record for this fault (the first one wins) and fills both copies.
__device__ void record_fault(DeviceFault* fault, DeviceFault* mirror, FaultRule rule,
                             const DeviceFault& details) {
  // The claim word (`reserved`) decides who writes; `rule` is set last, so that whoever sees
  // it (a guarded kernel, the host) sees the details too.
  if (atomicCAS(&fault->reserved, 0u, 1u) != 0u) return;
  write_details(fault, details);
  write_details(mirror, details);
  __threadfence_system();
  static_cast<volatile DeviceFault*>(mirror)->reserved = 1u;
  static_cast<volatile DeviceFault*>(mirror)->rule = static_cast<std::uint32_t>(rule);
  atomicExch(&fault->rule, static_cast<std::uint32_t>(rule));
}

// The details of a slot or position fault.
__device__ DeviceFault index_details(std::int64_t position, std::int64_t value,
                                     std::int64_t limit, std::int64_t num_blocks,
                                     std::int64_t block_size, std::uint64_t op,
                                     std::uint64_t argument) {
  DeviceFault details{};
  details.position = position;
  details.value = value;
  details.limit = limit;
  details.num_blocks = num_blocks;
  details.block_size = block_size;
  details.op = op;
  details.argument = argument;
  return details;
}

__global__ void check_slots(const std::int64_t* slots, std::int64_t count, std::int64_t num_blocks,
                            std::int64_t block_size, DeviceFault* fault, DeviceFault* mirror,
                            std::uint64_t op, std::uint64_t argument) {
  const std::int64_t limit = num_blocks * block_size;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t slot = slots[i];
    if (slot >= limit) {
      record_fault(fault, mirror, FaultRule::slot_range,
                   index_details(i, slot, limit, num_blocks, block_size, op, argument));
    }
  }
}

__global__ void check_positions(const std::int64_t* positions, std::int64_t count,
                                std::int64_t max_position, DeviceFault* fault, DeviceFault* mirror,
                                std::uint64_t op, std::uint64_t argument) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t position = positions[i];
    if (position < 0 || position >= max_position) {
      record_fault(fault, mirror, FaultRule::position_range,
                   index_details(i, position, max_position, 0, 0, op, argument));
    }
  }
}

// --- the sequence check of the gathers ----------------------------------------------------
//
// The synchronous checks visit the rules in an order (cu_seq_lens first, then the starts, the
// block table's columns, the block ids, the totals) and report the first broken one. When one
// value is broken, later rules see garbage (a decreasing cu_seq_lens makes the next sequence
// longer than the table): the first fault is the one that names the real mistake. So every
// candidate fault gets a key that sorts like the synchronous visit, (phase, index, sub-index),
// each thread keeps its smallest, and one CTA-wide minimum picks the fault to record. One CTA
// is enough: the index tensors hold a few numbers per sequence and one id per block of each
// sequence (a 64-K-token batch in blocks of 64 is 1 K ids), read once.

constexpr int kSequenceThreads = 512;
constexpr unsigned long long kNoCandidate = ~0ull;

// (phase, major, minor) → a key: phase in the top 4 bits, major (a sequence or token index,
// below 2^31) in the next 31, minor (a column or sub-rule) in the last 29.
__host__ __device__ unsigned long long candidate_key(int phase, std::int64_t major,
                                                     std::int64_t minor) {
  const auto clamp = [](std::int64_t v, std::int64_t top) {
    return v < 0 ? 0 : (v > top ? top : v);
  };
  return (static_cast<unsigned long long>(phase) << 60) |
         (static_cast<unsigned long long>(clamp(major, (1ll << 31) - 1)) << 29) |
         static_cast<unsigned long long>(clamp(minor, (1ll << 29) - 1));
}

// The phase of a rule in the synchronous visit of each wording (see the contracts: cp_gather_cache
// through sequence_checks.cu, the MLA gathers through block_lookup_checks.cpp, the indexer
// gather in its own contract, dequantize_and_gather_k_cache in its own contract, then
// block_lookup_checks.cpp).
__host__ __device__ int phase_of(SequenceWording wording, FaultRule rule) {
  switch (wording) {
    case SequenceWording::gathered_sequences:  // cu[0]; order; starts and columns; ids; dst rows
      switch (rule) {
        case FaultRule::sequence_start: return 0;
        case FaultRule::sequence_order: return 1;
        case FaultRule::negative_start:
        case FaultRule::column_range: return 2;
        case FaultRule::block_range: return 3;
        default: return 4;
      }
    case SequenceWording::block_lookup:     // cu or requests; owners; starts; columns; ids
    case SequenceWording::dsv4_gather:      // requests (length, gather, rows); columns; ids
    case SequenceWording::paged_attention:  // lengths; columns; ids
      switch (rule) {
        case FaultRule::sequence_start: return 0;
        case FaultRule::sequence_order:
        case FaultRule::length_range:
        case FaultRule::negative_length:
        case FaultRule::request_order:
        case FaultRule::gather_length:
        case FaultRule::rows_exceeded: return 1;
        case FaultRule::token_owner: return 2;
        case FaultRule::negative_start: return 3;
        case FaultRule::column_range: return 4;
        default: return 5;
      }
    default:  // indexer_gather: cu[0]; order; dst rows; per sequence its columns, then its ids
      switch (rule) {
        case FaultRule::sequence_start: return 0;
        case FaultRule::sequence_order: return 1;
        case FaultRule::rows_exceeded: return 2;
        default: return 3;
      }
  }
}

// One thread's smallest candidate so far.
struct Candidate {
  unsigned long long key = kNoCandidate;
  FaultRule rule = FaultRule::none;
  DeviceFault details{};

  // Keeps the fault of `broken` at (major, minor) of the visit if it comes before the one kept.
  __host__ __device__ void consider(const checks::SequenceCheck& check, FaultRule broken,
                                    std::int64_t major, std::int64_t minor, std::int64_t position,
                                    std::int64_t value, std::int64_t limit,
                                    std::int64_t context0 = 0, std::int64_t context1 = 0,
                                    std::int64_t context2 = 0, std::uint64_t argument = 0) {
    const unsigned long long candidate =
        candidate_key(phase_of(check.wording, broken), major, minor);
    if (candidate >= key) return;
    key = candidate;
    rule = broken;
    details = DeviceFault{};
    details.position = position;
    details.value = value;
    details.limit = limit;
    details.num_blocks = check.num_blocks;
    details.block_size = check.block_size;
    details.argument =
        argument != 0 ? argument : check.argument[static_cast<std::uint32_t>(broken)];
    details.context[0] = context0;
    details.context[1] = context1;
    details.context[2] = context2;
    details.wording = static_cast<std::uint32_t>(check.wording);
  }
};

// Thread `thread` of `threads` visits its share of every rule and keeps its first candidate
// in `mine`. The check kernel runs it on 512 threads; the host (find_sequence_fault) on one.
__host__ __device__ void visit_sequences(const checks::SequenceCheck& check, int thread,
                                         int threads, Candidate& mine) {
  const std::int64_t batch = check.batch;
  const std::int32_t* cu = check.cu_seq_lens;

  // 1. The values: cu_seq_lens from 0 and never decreasing (or the requests in order), starts
  //    and lengths >= 0, the totals inside the destinations.
  if (cu != nullptr) {
    if (thread == 0 && cu[0] != 0) {
      mine.consider(check, FaultRule::sequence_start, 0, 0, 0, cu[0], 0);
    }
    for (std::int64_t b = thread; b < batch; b += threads) {
      if (cu[b + 1] < cu[b]) {
        mine.consider(check, FaultRule::sequence_order, b + 1, 0, b + 1, cu[b + 1], 0, cu[b]);
      }
      if (check.seq_starts != nullptr && check.seq_starts[b] < 0) {
        mine.consider(check, FaultRule::negative_start, b, 0, b, check.seq_starts[b], 0);
      }
    }
    for (int d = 0; d < 2; ++d) {
      if (thread == 0 && check.row_limit[d] >= 0 && cu[batch] > check.row_limit[d]) {
        mine.consider(check, FaultRule::rows_exceeded, 0, d, batch, cu[batch], check.row_limit[d],
                      0, 0, 0, check.row_argument[d]);
      }
    }
  } else if (check.wording == SequenceWording::paged_attention) {
    // Each sequence has 1 to max_length tokens (what the attention kernels may read).
    for (std::int64_t r = thread; r < batch; r += threads) {
      const std::int64_t length = check.seq_lens[r];
      if (length < 1 || length > check.max_length) {
        mine.consider(check, FaultRule::length_range, r, 0, r, length, check.max_length);
      }
    }
  } else if (check.wording == SequenceWording::dsv4_gather) {
    // Per request, as the contract's loop: its length, its gather length, its rows.
    for (std::int64_t r = thread; r < batch; r += threads) {
      const std::int64_t length = check.seq_lens[r];
      const std::int64_t gather = check.gather_lens != nullptr ? check.gather_lens[r] : length;
      if (length < 0) mine.consider(check, FaultRule::negative_length, r, 0, r, length, 0);
      if (gather < 0 || gather > length) {
        mine.consider(check, FaultRule::gather_length, r, 1, r, gather, length);
      }
      if (gather != 0 && check.row_limit[0] >= 0 &&
          check.row_offset + gather > check.row_limit[0]) {
        mine.consider(check, FaultRule::rows_exceeded, r, 2, r, gather, check.row_limit[0],
                      check.row_offset, 0, 0, check.row_argument[0]);
      }
    }
  } else {
    const std::int32_t* lengths = check.seq_lens;
    const std::int32_t* starts = check.workspace_starts;
    for (std::int64_t r = thread; r < batch; r += threads) {
      const std::int64_t length = lengths[r], start = starts[r];
      const std::int64_t previous_end =
          r == 0 ? 0 : static_cast<std::int64_t>(starts[r - 1]) + lengths[r - 1];
      if (length < 0) mine.consider(check, FaultRule::negative_length, r, 0, r, length, 0);
      if (start < previous_end) {
        mine.consider(check, FaultRule::request_order, r, 1, r, start, previous_end);
      }
      if (check.row_limit[0] >= 0 && start + length > check.row_limit[0]) {
        mine.consider(check, FaultRule::rows_exceeded, r, 2, r, start + length,
                      check.row_limit[0], 0, 0, 0, check.row_argument[0]);
      }
    }
  }

  // 2. Each gathered token owned by the sequence token_to_seq names (below the cut).
  std::int64_t cut = -1;  // tokens gathered when the op cuts the sequences
  if (cu != nullptr && check.token_limit >= 0) {
    cut = cu[batch] < check.token_limit ? cu[batch] : check.token_limit;
  }
  if (check.token_to_seq != nullptr && batch > 0) {
    for (std::int64_t k = thread; k < cut; k += threads) {
      std::int64_t low = 0, high = batch - 1;  // the first b with cu[b + 1] > k
      while (low < high) {
        const std::int64_t middle = (low + high) / 2;
        if (cu[middle + 1] > k) {
          high = middle;
        } else {
          low = middle + 1;
        }
      }
      if (check.token_to_seq[k] != low) {
        mine.consider(check, FaultRule::token_owner, k, 0, k, check.token_to_seq[k], 0, low,
                      cu[low], cu[low + 1]);
      }
    }
  }

  // 3. The lookups, a warp per sequence: its positions inside block_table's columns, and the
  //    block id of every column it uses inside the cache. Only columns below the table's width
  //    are read, whatever the values are.
  const bool indexer = check.wording == SequenceWording::indexer_gather;
  const int lanes = threads < 32 ? threads : 32;  // threads per sequence
  const int lane = thread % lanes;
  const bool last_tokens = check.wording == SequenceWording::dsv4_gather;
  for (std::int64_t b = thread / lanes; b < batch; b += threads / lanes) {
    std::int64_t tokens = 0;
    std::int64_t start = check.seq_starts != nullptr ? check.seq_starts[b] : 0;
    if (last_tokens) {  // the last gather_lens[b] of seq_lens[b] positions
      tokens = check.gather_lens != nullptr ? check.gather_lens[b] : check.seq_lens[b];
      start = check.seq_lens[b] - tokens;
    } else if (cu == nullptr) {
      tokens = check.seq_lens[b];
    } else if (cut >= 0) {  // only the part below the cut
      const std::int64_t end = cu[b + 1] < cut ? cu[b + 1] : cut;
      tokens = end - cu[b];
    } else {
      tokens = cu[b + 1] - cu[b];
    }
    if (tokens <= 0 || start < 0) continue;
    if (check.block_size <= 0) {  // a cache without slots: no token has a place
      if (lane == 0) {
        mine.consider(check, FaultRule::column_range, b, 0, b, start, check.table_width, tokens);
      }
      continue;
    }
    const std::int64_t last_column = (start + tokens - 1) / check.block_size;
    if (last_column >= check.table_width && lane == 0) {
      mine.consider(check, FaultRule::column_range, b, 1, b, start, check.table_width, tokens);
    }
    const std::int64_t end = last_column < check.table_width ? last_column : check.table_width - 1;
    for (std::int64_t column = start / check.block_size + lane; column <= end; column += lanes) {
      const std::int32_t id = check.block_table[b * check.table_stride + column];
      if (id < 0 || id >= check.num_blocks) {
        mine.consider(check, FaultRule::block_range, b, indexer ? 2 + column : column, b, id,
                      check.num_blocks, column);
      }
    }
  }
}

__global__ void __launch_bounds__(kSequenceThreads)
    check_sequences(checks::SequenceCheck check, DeviceFault* fault, DeviceFault* mirror,
                    std::uint64_t op) {
  __shared__ unsigned long long first;
  if (threadIdx.x == 0) first = kNoCandidate;
  __syncthreads();
  Candidate mine;
  visit_sequences(check, static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x), mine);
  // The first candidate of the whole CTA is recorded (keys are unique: one thread has it).
  atomicMin(&first, mine.key);
  __syncthreads();
  if (mine.key != kNoCandidate && mine.key == first) {
    mine.details.op = op;
    record_fault(fault, mirror, mine.rule, mine.details);
  }
}

// --- TurboMind's batch (process_kv, flatten_kv) ---------------------------------------------
//
// The scheme of the sequence check: every candidate fault gets a key that sorts like the visit
// of checks::turbomind_batch (core/turbomind_checks.cpp), and the CTA records the smallest.
// Phase 0: cu_q_len[0], then cu_block_num[0]. Phase 1: per sequence, its rules in the
// synchronous order (cu_k_len's order, k_len's range, cu_q_len's order, q_len <= k_len, the
// length against max_len, cu_block_num's order, enough blocks, readonly_block_num). Phase 2:
// the rows used, then the blocks listed. Phase 3: every listed block offset. Phase 4: the RoPE
// bases ("dynamic"; checks::turbomind_rope runs after the batch). Every rule reads only the raw
// values it names, so a rule broken by garbage left by an earlier one sorts after it, and the
// reads stay inside the tensors whatever the values are (the offsets read are clamped to
// [0, blocks.size(0))).

// One thread's first TurboMind candidate so far.
struct TurbomindCandidate {
  unsigned long long key = kNoCandidate;
  FaultRule rule = FaultRule::none;
  DeviceFault details{};

  // `of_q_len`: the rule is about cu_q_len (the new tokens) rather than cu_k_len.
  __host__ __device__ void consider(const checks::TurbomindCheck& check, FaultRule broken,
                                    int phase, std::int64_t major, std::int64_t minor,
                                    std::int64_t position, std::int64_t value, std::int64_t limit,
                                    bool of_q_len = false, std::int64_t context0 = 0) {
    const unsigned long long candidate = candidate_key(phase, major, minor);
    if (candidate >= key) return;
    key = candidate;
    rule = broken;
    details = DeviceFault{};
    details.position = position;
    details.value = value;
    details.limit = limit;
    details.num_blocks = broken == FaultRule::tm_few_blocks ? check.cp_size : check.pool_blocks;
    details.block_size = check.block_seq_len;
    details.context[0] = context0;
    details.context[1] = static_cast<std::int64_t>(check.rows_name);
    details.context[2] = static_cast<std::int64_t>(check.max_len_name);
    details.wording = of_q_len ? 1u : 0u;
  }
};

// Thread `thread` of `threads` visits its share of every rule (the kernel: 512 threads; the
// host, find_turbomind_fault: one).
__host__ __device__ void visit_turbomind(const checks::TurbomindCheck& check, int thread,
                                         int threads, TurbomindCandidate& mine) {
  const std::int64_t batch = check.batch;
  const std::int32_t* q = check.cu_q_len;
  const std::int32_t* k = check.cu_k_len;
  const std::int32_t* listed_cu = check.cu_block_num;
  const bool writes = q != nullptr;

  // 0. Where the rows and the blocks of the first sequence start.
  if (thread == 0) {
    if (writes && q[0] < 0) mine.consider(check, FaultRule::tm_first_row, 0, 0, 0, 0, q[0], 0, true);
    if (listed_cu[0] < 0) {
      mine.consider(check, FaultRule::tm_first_block, 0, 0, 1, 0, listed_cu[0], 0);
    }
  }
  // 1. Per sequence: running sums, lengths, blocks enough.
  for (std::int64_t b = thread; b < batch; b += threads) {
    const std::int64_t k0 = k[b], k1 = k[b + 1];
    if (k1 < k0) mine.consider(check, FaultRule::tm_length_order, 1, b, 0, b + 1, k1, 0, false, k0);
    const std::int64_t k_len = k1 - k0;
    if (k_len > 2147483647) {
      mine.consider(check, FaultRule::tm_long_sequence, 1, b, 1, b, k_len, 2147483647);
    }
    std::int64_t length = k_len;
    if (writes) {
      const std::int64_t q0 = q[b], q1 = q[b + 1];
      if (q1 < q0) mine.consider(check, FaultRule::tm_length_order, 1, b, 2, b + 1, q1, 0, true, q0);
      const std::int64_t q_len = q1 - q0;
      if (q_len > k_len) {
        mine.consider(check, FaultRule::tm_new_tokens, 1, b, 3, b, q_len, k_len, true, k_len);
      }
      length = q_len;
    }
    if (length > check.max_len) {
      mine.consider(check, FaultRule::tm_max_length, 1, b, 4, b, length, check.max_len, writes);
    }
    const std::int64_t c0 = listed_cu[b], c1 = listed_cu[b + 1];
    if (c1 < c0) mine.consider(check, FaultRule::tm_block_order, 1, b, 5, b + 1, c1, 0, false, c0);
    const std::int64_t local =
        k_len > check.cp_rank ? (k_len - check.cp_rank + check.cp_size - 1) / check.cp_size : 0;
    const std::int64_t needed = (local + check.block_seq_len - 1) / check.block_seq_len;
    if (c1 - c0 < needed) {
      mine.consider(check, FaultRule::tm_few_blocks, 1, b, 6, b, c1 - c0, needed, false, k_len);
    }
    if (check.readonly_block_num != nullptr && check.readonly_block_num[b] < 0) {
      mine.consider(check, FaultRule::tm_readonly, 1, b, 7, b, check.readonly_block_num[b], 0);
    }
  }
  // 2. The totals inside the activation and inside blocks.
  if (thread == 0) {
    const std::int64_t rows_used =
        writes ? static_cast<std::int64_t>(q[batch]) : static_cast<std::int64_t>(k[batch]) - k[0];
    if (rows_used > check.rows) {
      mine.consider(check, FaultRule::tm_rows, 2, 0, 0, batch, rows_used, check.rows, writes);
    }
    if (listed_cu[batch] > check.block_count) {
      mine.consider(check, FaultRule::tm_listed, 2, 0, 1, batch, listed_cu[batch],
                    check.block_count);
    }
  }
  // 3. Every listed block a block of the pool (only offsets inside blocks are read).
  const std::int64_t first = listed_cu[0] > 0 ? listed_cu[0] : 0;
  const std::int64_t end =
      listed_cu[batch] < check.block_count ? listed_cu[batch] : check.block_count;
  const std::int64_t stride = check.pool_stride;
  for (std::int64_t i = first + thread; i < end; i += threads) {
    const std::int64_t offset = check.blocks[i];
    if (!(offset >= 0 && stride > 0 && offset % stride == 0 &&
          offset / stride < check.pool_blocks)) {
      mine.consider(check, FaultRule::tm_block_offset, 3, i, 0, i, offset, stride);
    }
  }
  // 4. The "dynamic" RoPE bases: finite and > 1. As bits: a positive finite float above 1 is
  //    exactly a word in (0x3F800000, 0x7F800000) (the sign bit makes a negative one larger).
  if (check.rope_bases != nullptr) {
    const auto* bits = reinterpret_cast<const std::uint32_t*>(check.rope_bases);
    for (std::int64_t b = thread; b < batch; b += threads) {
      const std::uint32_t word = bits[b];
      if (!(word > 0x3F800000u && word < 0x7F800000u)) {
        mine.consider(check, FaultRule::tm_rope_base, 4, b, 0, b, word, 0);
      }
    }
  }
}

__global__ void __launch_bounds__(kSequenceThreads)
    check_turbomind(checks::TurbomindCheck check, DeviceFault* fault, DeviceFault* mirror,
                    std::uint64_t op) {
  __shared__ unsigned long long first;
  if (threadIdx.x == 0) first = kNoCandidate;
  __syncthreads();
  TurbomindCandidate mine;
  visit_turbomind(check, static_cast<int>(threadIdx.x), static_cast<int>(blockDim.x), mine);
  atomicMin(&first, mine.key);  // keys are unique: one thread has the first
  __syncthreads();
  if (mine.key != kNoCandidate && mine.key == first) {
    mine.details.op = op;
    record_fault(fault, mirror, mine.rule, mine.details);
  }
}

void load_check_kernels() {
  cudaFuncAttributes attributes{};
  PAGEDKV_CUDA_CHECK(cudaFuncGetAttributes(&attributes, check_slots));
  PAGEDKV_CUDA_CHECK(cudaFuncGetAttributes(&attributes, check_positions));
  PAGEDKV_CUDA_CHECK(cudaFuncGetAttributes(&attributes, check_sequences));
  PAGEDKV_CUDA_CHECK(cudaFuncGetAttributes(&attributes, check_turbomind));
}

// One thread per index up to a few waves; a grid-stride loop beyond (these kernels read 8
// bytes per token: even 65,536 tokens are 512 KiB, a couple of microseconds).
dim3 check_grid(std::int64_t count, int threads) {
  constexpr std::int64_t kMaxCtas = 1024;
  const std::int64_t ctas = (count + threads - 1) / threads;
  return dim3(static_cast<unsigned>(ctas < kMaxCtas ? ctas : kMaxCtas));
}

}  // namespace

namespace {

// A paged attention fault, in the words of its contract's synchronous checks
// (core/paged_attention.cpp: length_message(), columns_message(), block_message()).
std::string describe_attention_fault(const DeviceFault& fault, FaultRule rule) {
  switch (rule) {
    case FaultRule::length_range:
      return checks::attention_length_message(fault.position, fault.value, fault.limit);
    case FaultRule::column_range:
      return checks::attention_columns_message(fault.position, fault.context[0], fault.block_size,
                                               fault.limit);
    default:
      return checks::attention_block_message(fault.position, fault.context[0], fault.value,
                                             fault.limit);
  }
}

// A sequence fault in the words of the synchronous check of its op (the wording).
std::string describe_sequence_fault(const DeviceFault& fault, FaultRule rule) {
  const auto wording = static_cast<SequenceWording>(fault.wording);
  const char* argument = reinterpret_cast<const char*>(fault.argument);
  const std::int64_t i = fault.position, v = fault.value, limit = fault.limit;
  const std::int64_t* context = fault.context;
  const bool sequences = wording == SequenceWording::gathered_sequences;
  const bool indexer = wording == SequenceWording::indexer_gather;
  const bool dsv4 = wording == SequenceWording::dsv4_gather;
  if (wording == SequenceWording::paged_attention) return describe_attention_fault(fault, rule);
  switch (rule) {
    case FaultRule::sequence_start:
      if (sequences) {
        return detail::concat("cu_seq_lens: cu_seq_lens[0] must be 0 (dst rows are counted from "
                              "row 0), got ", v);
      }
      if (indexer) return detail::concat("cu_seq_lens[0]: expected 0, got ", v);
      return detail::concat("cu_seq_lens[0]: expected 0 (the first sequence starts at workspace "
                            "row 0), got ", v);
    case FaultRule::sequence_order:
      if (sequences) {
        return detail::concat("cu_seq_lens: must never decrease, got cu_seq_lens[", i, "] = ", v,
                              " after cu_seq_lens[", i - 1, "] = ", context[0]);
      }
      if (indexer) {
        return detail::concat("cu_seq_lens: expected non-decreasing values, got cu_seq_lens[",
                              i - 1, "] = ", context[0], " > cu_seq_lens[", i, "] = ", v);
      }
      return detail::concat("cu_seq_lens[", i, "] = ", v,
                            ": expected a running sum of lengths, at least cu_seq_lens[", i - 1,
                            "] = ", context[0]);
    case FaultRule::negative_start:
      if (sequences) {
        return detail::concat("seq_starts: seq_starts[", i, "] must be >= 0, got ", v);
      }
      return detail::concat("seq_starts[", i, "] = ", v, ": expected a position >= 0");
    case FaultRule::negative_length:
      if (dsv4) {
        return detail::concat("seq_lens[", i, "] = ", v, ": expected a sequence length >= 0");
      }
      return detail::concat("seq_lens[", i, "] = ", v, ": expected a length >= 0");
    case FaultRule::gather_length:
      return detail::concat("gather_lens[", i, "] = ", v, ": expected 0 <= gather_len <= seq_lens[",
                            i, "] = ", limit, " (the last tokens of the request)");
    case FaultRule::request_order:
      return detail::concat("workspace_starts[", i, "] = ", v, ": expected at least ", limit,
                            " (requests in order, their rows not overlapping: the previous "
                            "request ends there)");
    case FaultRule::token_owner:
      return detail::concat("token_to_seq[", i, "] = ", v, ": expected ", context[0],
                            ", the sequence cu_seq_lens gives token ", i, " (cu_seq_lens[",
                            context[0], "] = ", context[1], " <= ", i, " < cu_seq_lens[",
                            context[0] + 1, "] = ", context[2], ")");
    case FaultRule::rows_exceeded:
      if (sequences) {
        return detail::concat(argument, ": cu_seq_lens[batch_size] = ", v,
                              " rows are gathered, but ", argument, " has ", limit);
      }
      if (indexer) {
        return detail::concat(argument, ": cu_seq_lens[-1] = ", v, " tokens to gather, but ",
                              argument, " has ", limit, " rows");
      }
      if (dsv4) {
        return detail::concat(argument, ": request ", i, " writes rows offset = ", context[0],
                              " to ", context[0] + v - 1, ", but ", argument, ".size(1) = ",
                              limit);
      }
      return detail::concat("workspace_starts[", i, "] + seq_lens[", i, "] = ", v,
                            ": expected at most dst.size(0) = ", limit);
    case FaultRule::column_range: {
      const std::int64_t start = v, tokens = context[0], width = limit;
      const std::int64_t block_size = fault.block_size;
      if (block_size <= 0) {
        if (indexer) {
          return detail::concat("kv_cache: block_size = size(1) is 0, but sequence ", i,
                                " has ", tokens, " tokens to gather");
        }
        return detail::concat("src_cache: expected block_size = size(1) >= 1, got 0 (sequence ",
                              i, " gathers ", tokens, " tokens)");
      }
      const std::int64_t last_position = start + tokens - 1;
      const std::int64_t last_column = last_position / block_size;
      if (sequences) {
        return detail::concat(argument, ": sequence ", i, " gathers positions ", start, "..",
                              last_position, " (seq_starts[", i, "] = ", start, ", ", tokens,
                              " tokens), up to column ", last_column, " of block_table, which has ",
                              width, " columns of ", block_size, " slots");
      }
      if (indexer) {
        return detail::concat("block_table: sequence ", i, " has ", tokens, " tokens, ",
                              last_column + 1, " blocks of ", block_size,
                              ", but block_table has ", width, " columns");
      }
      return detail::concat("block_table: sequence ", i, " needs column ", last_column,
                            " (positions ", start, " to ", last_position, ", block_size ",
                            block_size, "), but block_table has ", width, " columns");
    }
    default: {  // block_range
      const std::int64_t column = context[0];
      if (sequences) {
        return detail::concat("block_table: block_table[", i, ", ", column, "] = ", v,
                              " is used by sequence ", i,
                              " but is not a block of src_cache (expected 0 <= id < ", limit, ")");
      }
      if (indexer) {
        return detail::concat("block_table[", i, ", ", column, "] = ", v,
                              ": expected a block id in [0, ", limit, ") (kv_cache.size(0))");
      }
      return detail::concat("block_table[", i, ", ", column, "] = ", v,
                            ": expected a block of the cache, 0 <= block < num_blocks = ", limit);
    }
  }
}

// A TurboMind batch fault, in the words of checks::turbomind_batch (and checks::turbomind_rope
// for the RoPE bases), core/turbomind_checks.cpp.
std::string describe_turbomind_fault(const DeviceFault& fault, FaultRule rule) {
  const std::int64_t i = fault.position, v = fault.value, limit = fault.limit;
  const bool of_q_len = fault.wording != 0;
  const char* lengths = of_q_len ? "cu_q_len" : "cu_k_len";
  const char* rows_name = reinterpret_cast<const char*>(static_cast<std::uint64_t>(fault.context[1]));
  const char* max_len_name =
      reinterpret_cast<const char*>(static_cast<std::uint64_t>(fault.context[2]));
  switch (rule) {
    case FaultRule::tm_first_row:
      return detail::concat("cu_q_len[0] = ", v, ": expected a row of ", rows_name, " (>= 0)");
    case FaultRule::tm_first_block:
      return detail::concat("cu_block_num[0] = ", v, ": expected an index into blocks (>= 0)");
    case FaultRule::tm_length_order:
      return detail::concat(lengths, "[", i, "] = ", v,
                            ": expected a running sum of lengths, at least ", lengths, "[", i - 1,
                            "] = ", fault.context[0]);
    case FaultRule::tm_long_sequence:
      return detail::concat("cu_k_len: sequence ", i, " has ", v,
                            " tokens; positions are i32, at most 2,147,483,647");
    case FaultRule::tm_new_tokens:
      return detail::concat("cu_q_len: sequence ", i, " has q_len = ", v,
                            " new tokens but k_len = ", fault.context[0],
                            " tokens in all (cu_k_len): the new tokens are the last of the "
                            "sequence");
    case FaultRule::tm_max_length:
      return detail::concat(lengths, ": sequence ", i, " has ", v,
                            of_q_len ? " new tokens" : " tokens", ", more than ", max_len_name,
                            " = ", limit);
    case FaultRule::tm_block_order:
      return detail::concat("cu_block_num[", i, "] = ", v,
                            ": expected a running sum of block counts, at least cu_block_num[",
                            i - 1, "] = ", fault.context[0]);
    case FaultRule::tm_few_blocks:
      return detail::concat("cu_block_num: sequence ", i, " has ", v, " blocks, but its ",
                            fault.context[0], " tokens need ", limit, " blocks of ",
                            fault.block_size, " tokens", fault.num_blocks > 1 ? " on this rank" : "");
    case FaultRule::tm_readonly:
      return detail::concat("readonly_block_num[", i, "] = ", v, ": expected a block count >= 0");
    case FaultRule::tm_rows:
      return detail::concat(of_q_len ? "cu_q_len[batch] = " : "cu_k_len[batch] - cu_k_len[0] = ",
                            v, ": the sequences use that many rows of ", rows_name,
                            ", which has ", limit);
    case FaultRule::tm_listed:
      return detail::concat("cu_block_num[batch] = ", v,
                            ": the sequences list that many blocks, but blocks has ", limit);
    case FaultRule::tm_block_offset:
      return detail::concat("blocks[", i, "] = ", v, ": expected the byte offset of a block of ",
                            "kv_cache, a multiple of stride(0) = ", limit, " below ",
                            fault.num_blocks, " × ", limit,
                            " (a null or foreign pointer has no such offset)");
    default: {  // tm_rope_base
      const auto word = static_cast<std::uint32_t>(v);
      float base = 0.f;
      std::memcpy(&base, &word, sizeof base);
      return detail::concat("rope_bases[", i, "] = ", base, ": expected a finite base > 1");
    }
  }
}

}  // namespace

std::string describe_fault(const DeviceFault& fault) {
  const char* op = reinterpret_cast<const char*>(fault.op);
  const char* argument = reinterpret_cast<const char*>(fault.argument);
  const auto rule = static_cast<FaultRule>(fault.rule);
  std::string message;
  if (rule == FaultRule::slot_range) {
    message = detail::concat(argument, "[", fault.position, "] = ", fault.value,
                             ": expected a slot below num_blocks × block_size = ",
                             fault.num_blocks, " × ", fault.block_size, " = ", fault.limit,
                             " (negative slots mark padding)");
  } else if (rule == FaultRule::position_range) {
    message = detail::concat(argument, "[", fault.position, "] = ", fault.value,
                             ": expected a position in [0, ", fault.limit,
                             ") (cos_sin_cache.size(0))");
  } else if (fault.rule >= static_cast<std::uint32_t>(FaultRule::tm_first_row)) {
    message = describe_turbomind_fault(fault, rule);
  } else {
    message = describe_sequence_fault(fault, rule);
  }
  return detail::concat(message, " [deferred: found on the device by a check of ", op,
                        "; that call and every later guarded pagedkv call on the device wrote "
                        "nothing until this report]");
}

std::string_view error_mode_name(ErrorMode mode) {
  switch (mode) {
    case ErrorMode::automatic:
      return "automatic";
    case ErrorMode::synchronous:
      return "synchronous";
    case ErrorMode::deferred:
      return "deferred";
  }
  return "?";
}

void set_error_mode(ErrorMode mode) { mode_setting().store(mode); }

ErrorMode error_mode() { return mode_setting().load(); }

const DeviceFault* device_fault() { return state_of(current_device()).device; }

void raise_pending_fault(bool may_synchronize) {
  if (!g_any_state.load(std::memory_order_acquire)) return;  // no CUDA call on the hot path
  const int device = current_device();
  DeviceState* state = g_states[device].load(std::memory_order_acquire);
  if (state == nullptr) return;  // nothing ever checked on this device
  const volatile DeviceFault* mirror = state->mirror;
  if (mirror->rule == 0) return;
  if (may_synchronize) PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  DeviceFault fault;
  std::memcpy(&fault, const_cast<const DeviceFault*>(state->mirror), sizeof fault);
  if (may_synchronize) {
    // The device is idle: no guarded kernel is left that should still see the fault.
    PAGEDKV_CUDA_CHECK(cudaMemsetAsync(state->device, 0, sizeof(DeviceFault), state->clear_stream));
    PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(state->clear_stream));
    std::memset(state->mirror, 0, sizeof(DeviceFault));
  }
  throw InvalidArgument(describe_fault(fault));
}

void check_errors() {
  if (!g_any_state.load(std::memory_order_acquire)) return;
  const int device = current_device();
  if (g_states[device].load(std::memory_order_acquire) == nullptr) return;
  PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  raise_pending_fault(true);
}

CheckScope::CheckScope(const char* op_name, cudaStream_t call_stream)
    : op(op_name), stream(call_stream), capturing(false), deferred(false), outer_(t_scope) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &status) != cudaSuccess) {
    // No usable device (a call that validation will reject), or the legacy stream queried
    // during another stream's capture: not a capture of this call's stream.
    cudaGetLastError();
    status = cudaStreamCaptureStatusNone;
  }
  capturing = status != cudaStreamCaptureStatusNone;
  const ErrorMode mode = error_mode();
  deferred = capturing || mode == ErrorMode::deferred ||
             (mode == ErrorMode::automatic && t_prefer_deferred);
  // A fault left by an earlier deferred check is this call's error now (cleared unless
  // capturing, where nothing may wait for the device).
  raise_pending_fault(!capturing);
  t_scope = this;
}

CheckScope::~CheckScope() { t_scope = outer_; }

const CheckScope* CheckScope::current() { return t_scope; }

PreferDeferredErrors::PreferDeferredErrors() : outer_(t_prefer_deferred) {
  t_prefer_deferred = true;
}

PreferDeferredErrors::~PreferDeferredErrors() { t_prefer_deferred = outer_; }

cudaStream_t synchronous_check_stream(const char* argument) {
  const CheckScope* scope = CheckScope::current();
  if (scope == nullptr) return nullptr;
  // Every check of a capturing call defers, so no op comes here inside a capture; should one
  // ever do, it says so instead of breaking the capture.
  PAGEDKV_CHECK(!scope->capturing, scope->op, ": checks the values of ", argument,
                " on the host, which a CUDA graph capture forbids (a check that should have "
                "deferred: a pagedkv bug)");
  return scope->stream;
}

namespace checks {

void enqueue_slot_check(const CheckScope& scope, const void* slot_mapping, std::int64_t count,
                        std::int64_t num_blocks, std::int64_t block_size) {
  if (count == 0) return;
  DeviceState& state = state_of(current_device());
  constexpr int kThreads = 256;
  check_slots<<<check_grid(count, kThreads), kThreads, 0, scope.stream>>>(
      static_cast<const std::int64_t*>(slot_mapping), count, num_blocks, block_size, state.device,
      state.mirror_view, reinterpret_cast<std::uint64_t>(scope.op),
      reinterpret_cast<std::uint64_t>("slot_mapping"));
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

void enqueue_position_check(const CheckScope& scope, const void* positions, std::int64_t count,
                            std::int64_t max_position) {
  if (count == 0) return;
  DeviceState& state = state_of(current_device());
  constexpr int kThreads = 256;
  check_positions<<<check_grid(count, kThreads), kThreads, 0, scope.stream>>>(
      static_cast<const std::int64_t*>(positions), count, max_position, state.device,
      state.mirror_view, reinterpret_cast<std::uint64_t>(scope.op),
      reinterpret_cast<std::uint64_t>("positions"));
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

DeviceFault find_sequence_fault(const SequenceCheck& check, const char* op) {
  Candidate mine;
  visit_sequences(check, 0, 1, mine);  // one thread visits everything: its first is the first
  DeviceFault fault = mine.details;
  fault.rule = static_cast<std::uint32_t>(mine.rule);
  fault.op = reinterpret_cast<std::uint64_t>(op);
  return fault;
}

DeviceFault find_turbomind_fault(const TurbomindCheck& check, const char* op) {
  TurbomindCandidate mine;
  visit_turbomind(check, 0, 1, mine);
  DeviceFault fault = mine.details;
  fault.rule = static_cast<std::uint32_t>(mine.rule);
  fault.op = reinterpret_cast<std::uint64_t>(op);
  return fault;
}

void enqueue_turbomind_check(const CheckScope& scope, const TurbomindCheck& check) {
  DeviceState& state = state_of(current_device());
  check_turbomind<<<1, kSequenceThreads, 0, scope.stream>>>(
      check, state.device, state.mirror_view, reinterpret_cast<std::uint64_t>(scope.op));
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

void enqueue_sequence_check(const CheckScope& scope, const SequenceCheck& check) {
  DeviceState& state = state_of(current_device());
  check_sequences<<<1, kSequenceThreads, 0, scope.stream>>>(
      check, state.device, state.mirror_view, reinterpret_cast<std::uint64_t>(scope.op));
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace checks

}  // namespace pagedkv
