// apply_repetition_penalties, optimized CUDA version: per logit the same device function as
// naive.cu (penalty_math.cuh), so the three implementations stay bit-identical; after vLLM
// csrc/sampler.cu (apply_repetition_penalties_kernel, whose vocabulary tiles keep the GPU busy
// when there are few sequences). Each trick names the naive note it removes:
//   P1 16 mask bytes per load: each thread takes a chunk of 16 tokens and reads both masks as
//      one 16-byte vector each, where vocab_size and both mask addresses allow (Q1).
//   P2 the chunk's sequence is found once per 16 tokens, its penalty read once per chunk
//      through the read-only cache (Q2).
//   P3 logits are read and written only where a mask is set: at realistic mask densities most
//      of the logits' bytes are never touched (the byte model still counts them, as upstream's
//      kernel reads them all).
//   P4 the grid is sized to the device (8 blocks of 256 threads per SM, grid-stride over the
//      chunks), so one sequence fills the GPU as well as 1024 do (Q3).
// Not yet measured on a GPU.
// The full story: chapter "The model ops beside the cache", page apply_repetition_penalties.
#include <algorithm>
#include <cstdint>

#include "common/device.cuh"
#include "common/vec.cuh"
#include "norm/norm_math.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/ops/apply_repetition_penalties.h"
#include "sampling/penalty_math.cuh"

namespace pagedkv::kernels::apply_repetition_penalties_optimized {

/// Threads per block, and resident blocks asked for per SM (P4).
constexpr int kThreads = 256;
constexpr int kBlocksPerSm = 8;

/// \brief One thread per chunk of kChunk tokens of one sequence (grid-stride, P4).
/// \tparam T float, __half or __nv_bfloat16.
/// \tparam kChunk tokens per chunk: 16 (one 16-byte vector of each mask, P1) or 1.
/// \param logits [num_seqs, vocab_size], in place.
/// \param prompt_mask [num_seqs, vocab_size] bool bytes.
/// \param output_mask [num_seqs, vocab_size] bool bytes.
/// \param penalties [num_seqs].
/// \param num_seqs rows.
/// \param vocab_size columns, a multiple of kChunk.
template <typename T, int kChunk>
__global__ void __launch_bounds__(kThreads)
    apply_repetition_penalties_kernel(T* __restrict__ logits,
                                      const std::uint8_t* __restrict__ prompt_mask,
                                      const std::uint8_t* __restrict__ output_mask,
                                      const T* __restrict__ penalties, std::int64_t num_seqs,
                                      std::int64_t vocab_size) {
  using Mask = AlignedVector<std::uint8_t, kChunk>;
  const std::int64_t chunks_per_seq = vocab_size / kChunk;
  const std::int64_t chunks = num_seqs * chunks_per_seq;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t c = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
       c < chunks; c += step) {
    const std::int64_t first = c * kChunk;  // flat index of the chunk's first token
    const Mask prompt = load_vector<kChunk>(prompt_mask + first);  // P1
    const Mask output = load_vector<kChunk>(output_mask + first);
    bool any = false;
#pragma unroll
    for (int k = 0; k < kChunk; ++k) any = any || (prompt.elements[k] | output.elements[k]);
    if (!any) continue;  // P3: nothing seen in these tokens, no logit touched
    const float penalty = to_float(__ldg(penalties + c / chunks_per_seq));  // P2
#pragma unroll
    for (int k = 0; k < kChunk; ++k) {
      if (prompt.elements[k] | output.elements[k]) {  // P3
        logits[first + k] = sampling::penalize(logits[first + k], penalty);
      }
    }
  }
}

}  // namespace pagedkv::kernels::apply_repetition_penalties_optimized

namespace pagedkv {

void ApplyRepetitionPenalties::optimized(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels;
  using namespace pagedkv::kernels::apply_repetition_penalties_optimized;
  if (plan.num_seqs == 0 || plan.vocab_size == 0) return;  // nothing to do, no empty grid
  const bool wide = plan.vocab_size % 16 == 0 && is_aligned(args.prompt_mask.data, 16) &&
                    is_aligned(args.output_mask.data, 16);  // P1
  const int chunk = wide ? 16 : 1;
  const std::int64_t chunks = plan.num_seqs * plan.vocab_size / chunk;
  const std::int64_t wanted = (chunks + kThreads - 1) / kThreads;
  const auto blocks = static_cast<unsigned>(
      std::max<std::int64_t>(1, std::min<std::int64_t>(wanted, sm_count() * kBlocksPerSm)));  // P4
  norm::dispatch_norm_dtype(plan.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto* logits = static_cast<T*>(args.logits.data);
    const auto* prompt = static_cast<const std::uint8_t*>(args.prompt_mask.data);
    const auto* output = static_cast<const std::uint8_t*>(args.output_mask.data);
    const auto* penalties = static_cast<const T*>(args.repetition_penalties.data);
    if (wide) {
      apply_repetition_penalties_kernel<T, 16><<<blocks, kThreads, 0, stream>>>(
          logits, prompt, output, penalties, plan.num_seqs, plan.vocab_size);
    } else {
      apply_repetition_penalties_kernel<T, 1><<<blocks, kThreads, 0, stream>>>(
          logits, prompt, output, penalties, plan.num_seqs, plan.vocab_size);
    }
    PAGEDKV_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace pagedkv
