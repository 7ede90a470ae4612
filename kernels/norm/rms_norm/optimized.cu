// rms_norm, optimized CUDA version: per element the same numbers as naive.cu (float32 sum of
// float(x)² in another order, rsqrtf, round_T((float(x) · inv) · float(w))), after vLLM
// csrc/layernorm_kernels.cu (rms_norm_kernel). Each trick names the naive note it removes:
//   R1 16-byte vectors (8 bf16/f16, 4 f32) where every address allows, else halved to 1 (N1).
//   R2 the row stays in registers, read once (N3): 1, 2 or 4 vectors/thread, 30-39 registers.
//   R3 all of a thread's loads are issued before the first multiply.
//   R4 block by row count: up to 1024 threads below 256 rows, ~256 above; 7168 bf16: 224 × 4 (N4).
//   R5 cub::BlockReduce: 2 barriers per row where naive's tree takes 12 at 1024 threads (N2).
//   R6 evenly spaced rows start at row · pitch: no 64-bit divisions (N5).
//   R7 the weight is read after the barrier, through the read-only cache (const __restrict__).
// Rows over 1024 × 4 vectors: rms_norm_reread_kernel (R1, R5-R7; x read again, mostly from L2).
// ptxas sm_90: no spills. H100, a throwaway timing loop (not the comparison tool), % of a copy:
// >= 96 % from 4096 tokens, 75-76 % at 1024 tokens × 7168; naive 23-35 %.
// The full story: chapter "Normalizing hidden states", page "rms_norm".
#include "pagedkv/ops/rms_norm.h"

#include <cub/block/block_reduce.cuh>

#include <cstdint>

#include "common/vec.cuh"
#include "norm/norm_math.cuh"
#include "norm/norm_optimized.cuh"
#include "pagedkv/cuda_runtime.h"

namespace pagedkv::kernels::rms_norm_optimized {

using norm::kMaxThreads;
using norm::RowWork;
using BlockReduce = cub::BlockReduce<float, kMaxThreads>;  // R5 (blockDim.x valid threads)

/// \brief One block per row (grid-stride), the row in registers (R2).
/// \tparam T float, __half or __nv_bfloat16.
/// \tparam kVec elements per vector (R1); every address is aligned to it (host check).
/// \tparam kVectorsPerThread vectors each thread holds; blockDim.x × it >= vectors_per_row.
/// \param out [num_rows, hidden_size] packed; may be `input` itself (every thread reads all its
///        elements before the block's barrier, and writes only those).
/// \param input [..., hidden_size], row r at input_row_start(work, r).
/// \param weight [hidden_size].
/// \param work sizes, strides and epsilon.
template <typename T, int kVec, int kVectorsPerThread>
__global__ void __launch_bounds__(kMaxThreads)
    rms_norm_in_registers_kernel(T* out, const T* input, const T* __restrict__ weight,
                                 RowWork work) {
  using Vector = AlignedVector<T, kVec>;
  __shared__ typename BlockReduce::TempStorage reduce_storage;
  __shared__ float shared_inverse_rms;

  for (std::int64_t row = blockIdx.x; row < work.rows.num_rows; row += gridDim.x) {
    const T* x_row = input + norm::input_row_start(work, row);                  // R6
    T* out_row = out + row * static_cast<std::int64_t>(work.hidden_size);      // [hidden_size]

    // R2 + R3: this thread's vectors (v = threadIdx.x + k · blockDim.x: a warp reads 512
    // consecutive bytes per k), all loads first.
    Vector x[kVectorsPerThread];  // [kVectorsPerThread][kVec], registers
#pragma unroll
    for (int k = 0; k < kVectorsPerThread; ++k) {
      const int v = static_cast<int>(threadIdx.x) + k * static_cast<int>(blockDim.x);
      if (v < work.vectors_per_row) x[k] = load_vector<kVec>(x_row + v * kVec);
    }
    float sum = 0.f;
#pragma unroll
    for (int k = 0; k < kVectorsPerThread; ++k) {
      const int v = static_cast<int>(threadIdx.x) + k * static_cast<int>(blockDim.x);
      if (v < work.vectors_per_row) norm::add_squares(x[k], sum);
    }

    // R5: the block's sum (valid in thread 0), shared as 1 / rms.
    const float total = BlockReduce(reduce_storage).Sum(sum, static_cast<int>(blockDim.x));
    if (threadIdx.x == 0) {
      shared_inverse_rms = norm::inverse_rms_of(total, work.hidden_size, work.epsilon);
    }
    __syncthreads();
    const float inverse_rms = shared_inverse_rms;

    // Normalize from registers; the weight is read now (R7), output written once.
#pragma unroll
    for (int k = 0; k < kVectorsPerThread; ++k) {
      const int v = static_cast<int>(threadIdx.x) + k * static_cast<int>(blockDim.x);
      if (v < work.vectors_per_row) {
        const Vector w = load_vector<kVec>(weight + v * kVec);
        store_vector<kVec>(out_row + v * kVec, norm::normalize(x[k], inverse_rms, w));
      }
    }
    __syncthreads();  // reduce_storage and shared_inverse_rms are reused by the next row
  }
}

/// \brief The fallback for rows too long for registers: R1, R5, R6, R7 as above, but x is read
/// in a strided loop for the sum and read again (mostly from L2) for the output.
/// \tparam T float, __half or __nv_bfloat16.
/// \tparam kVec elements per vector (R1).
/// \param out [num_rows, hidden_size] packed; may be `input` itself (each vector is read and
///        written by the same thread, read first).
/// \param input [..., hidden_size], row r at input_row_start(work, r).
/// \param weight [hidden_size].
/// \param work sizes, strides and epsilon.
template <typename T, int kVec>
__global__ void __launch_bounds__(kMaxThreads)
    rms_norm_reread_kernel(T* out, const T* input, const T* __restrict__ weight, RowWork work) {
  using Vector = AlignedVector<T, kVec>;
  __shared__ typename BlockReduce::TempStorage reduce_storage;
  __shared__ float shared_inverse_rms;

  for (std::int64_t row = blockIdx.x; row < work.rows.num_rows; row += gridDim.x) {
    const T* x_row = input + norm::input_row_start(work, row);
    T* out_row = out + row * static_cast<std::int64_t>(work.hidden_size);

    float sum = 0.f;
    for (int v = threadIdx.x; v < work.vectors_per_row; v += blockDim.x) {
      norm::add_squares(load_vector<kVec>(x_row + v * kVec), sum);
    }
    const float total = BlockReduce(reduce_storage).Sum(sum, static_cast<int>(blockDim.x));
    if (threadIdx.x == 0) {
      shared_inverse_rms = norm::inverse_rms_of(total, work.hidden_size, work.epsilon);
    }
    __syncthreads();
    const float inverse_rms = shared_inverse_rms;

    for (int v = threadIdx.x; v < work.vectors_per_row; v += blockDim.x) {
      const Vector x = load_vector<kVec>(x_row + v * kVec);
      const Vector w = load_vector<kVec>(weight + v * kVec);
      store_vector<kVec>(out_row + v * kVec, norm::normalize(x, inverse_rms, w));
    }
    __syncthreads();  // reduce_storage and shared_inverse_rms are reused by the next row
  }
}

/// \brief Chooses the block shape (R4) for vectors of kVec elements and launches.
/// \tparam T float, __half or __nv_bfloat16.
/// \tparam kVec elements per vector, from pick_vector_width().
/// \param plan the validated plan.
/// \param args the arguments.
/// \param stream where to launch.
template <typename T, int kVec>
void launch_with_vector(const RmsNorm::Plan& plan, const RmsNorm::Args& args,
                        cudaStream_t stream) {
  const RowWork work = norm::make_row_work(plan.rows, plan.hidden_size, kVec, plan.epsilon);

  const norm::BlockShape shape = norm::choose_block_shape(plan.rows.num_rows, work.vectors_per_row);
  const unsigned blocks = norm::blocks_for(plan.rows.num_rows);
  auto* out = static_cast<T*>(args.out.data);
  const auto* input = static_cast<const T*>(args.input.data);
  const auto* weight = static_cast<const T*>(args.weight.data);
  // R2: the row in registers with 1, 2 or 4 vectors per thread, else the re-read kernel.
  norm::with_vectors_per_thread(shape, [&](auto per_thread) {
    constexpr int kPerThread = decltype(per_thread)::value;
    if constexpr (kPerThread == 0)
      rms_norm_reread_kernel<T, kVec>
          <<<blocks, shape.threads, 0, stream>>>(out, input, weight, work);
    else
      rms_norm_in_registers_kernel<T, kVec, kPerThread>
          <<<blocks, shape.threads, 0, stream>>>(out, input, weight, work);
  });
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv::kernels::rms_norm_optimized

namespace pagedkv {

void RmsNorm::optimized(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels;
  using namespace pagedkv::kernels::rms_norm_optimized;
  if (plan.rows.num_rows == 0) return;  // zero rows: nothing to do, and no empty grid
  norm::dispatch_norm_dtype(plan.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    with_vector_width<16 / static_cast<int>(sizeof(T))>(
        norm::pick_vector_width<T>(plan.rows, plan.hidden_size,
                                   {args.input.data, args.out.data, args.weight.data}),
        [&](auto width) { launch_with_vector<T, decltype(width)::value>(plan, args, stream); });
  });
}

}  // namespace pagedkv
