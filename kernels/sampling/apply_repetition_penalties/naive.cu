// apply_repetition_penalties, naive CUDA version: the CPU reference's loops in CUDA clothing
// (vLLM csrc/sampler.cu: apply_repetition_penalties_kernel).
//
// One thread per logit over a 1-D grid (grid-stride): element e is sequence e / vocab_size;
// the thread reads both mask bytes and, where either is set, the sequence's penalty and the
// logit, and writes penalize(logit, penalty) (penalty_math.cuh, shared with optimized.cu).
//
// Caveats, numbered as in the chapter (optimized.cu names the trick that removes each):
//   Q1 every mask access moves one byte: two 1-byte loads per logit;
//   Q2 a 64-bit division per logit to find its sequence, and the penalty read again by every
//      masked logit;
//   Q3 one thread per logit: 1024 × 151936 = 156 M threads, most of which only read two zero
//      bytes.
#include <algorithm>
#include <cstdint>

#include "norm/norm_math.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/apply_repetition_penalties.h"
#include "sampling/penalty_math.cuh"

namespace pagedkv::kernels::apply_repetition_penalties_naive {

/// Threads per block.
constexpr int kThreads = 256;

/// \brief One thread per logit (grid-stride).
/// \tparam T float, __half or __nv_bfloat16.
/// \param logits [num_seqs, vocab_size], in place.
/// \param prompt_mask [num_seqs, vocab_size] bool bytes.
/// \param output_mask [num_seqs, vocab_size] bool bytes.
/// \param penalties [num_seqs].
/// \param num_seqs rows.
/// \param vocab_size columns.
template <typename T>
__global__ void apply_repetition_penalties_kernel(T* logits, const std::uint8_t* prompt_mask,
                                                  const std::uint8_t* output_mask,
                                                  const T* penalties, std::int64_t num_seqs,
                                                  std::int64_t vocab_size) {
  const std::int64_t total = num_seqs * vocab_size;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += step) {
    if (prompt_mask[e] == 0 && output_mask[e] == 0) continue;  // Q1: not seen, unchanged
    const std::int64_t seq = e / vocab_size;                   // Q2
    logits[e] = sampling::penalize(logits[e], to_float(penalties[seq]));
  }
}

}  // namespace pagedkv::kernels::apply_repetition_penalties_naive

namespace pagedkv {

void ApplyRepetitionPenalties::naive(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels;
  using apply_repetition_penalties_naive::kThreads;
  const std::int64_t total = plan.num_seqs * plan.vocab_size;
  if (total == 0) return;  // zero sequences: nothing to do, and no empty grid
  const auto blocks =
      static_cast<unsigned>(std::min<std::int64_t>((total + kThreads - 1) / kThreads, 1 << 30));
  norm::dispatch_norm_dtype(plan.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    apply_repetition_penalties_naive::apply_repetition_penalties_kernel<T>
        <<<blocks, kThreads, 0, stream>>>(static_cast<T*>(args.logits.data),
                                          static_cast<const std::uint8_t*>(args.prompt_mask.data),
                                          static_cast<const std::uint8_t*>(args.output_mask.data),
                                          static_cast<const T*>(args.repetition_penalties.data),
                                          plan.num_seqs, plan.vocab_size);
    PAGEDKV_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace pagedkv
