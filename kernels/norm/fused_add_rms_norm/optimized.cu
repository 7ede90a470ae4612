// fused_add_rms_norm, optimized CUDA version: per element the same numbers as naive.cu (z =
// round_T(float(x) + float(r)) bit-exact, float32 sum of float(z)² in another order, rsqrtf,
// round_T((float(z) · inv) · float(w))), after vLLM's vectorized fused_add_rms_norm_kernel:
//   A1 16-byte vectors of input, residual and weight in any dtype, else halved down to 1 (N1).
//   A2 z stays in registers, x and r read once (N3): 1, 2 or 4 vectors/thread, up to 64 registers.
//   A3 all loads of x and r are issued before the first addition.
//   A4 block by row count, as rms_norm's R4: up to 1024 threads below 256 rows, ~256 above (N4).
//   A5 cub::BlockReduce: 2 barriers per row where naive's tree takes 12 at 1024 threads (N2).
//   A6 evenly spaced rows start at row · pitch: no 64-bit divisions (N5).
//   A7 residual stored before the reduction (the stores drain during it); weight read-only cached.
// Rows over 1024 × 4 vectors: fused_add_rms_norm_reread_kernel (z stored, then read back).
// ptxas sm_90: no spills (8 vectors/thread spilled: dropped). H100, a throwaway timing loop (not
// the comparison tool): >= 98 % of a copy from 1024 tokens; naive 23-35 %.
// The full story: chapter "Normalizing hidden states", page "fused_add_rms_norm".
#include "pagedkv/ops/fused_add_rms_norm.h"

#include <cub/block/block_reduce.cuh>

#include <cstdint>

#include "common/vec.cuh"
#include "norm/norm_math.cuh"
#include "norm/norm_optimized.cuh"
#include "pagedkv/cuda_runtime.h"

namespace pagedkv::kernels::fused_add_rms_norm_optimized {

using norm::kMaxThreads;
using norm::RowWork;
using BlockReduce = cub::BlockReduce<float, kMaxThreads>;  // A5 (blockDim.x valid threads)

/// \brief One block per row (grid-stride), the sum z in registers (A2).
/// \tparam T float, __half or __nv_bfloat16.
/// \tparam kVec elements per vector (A1); every address is aligned to it (host check).
/// \tparam kVectorsPerThread vectors each thread holds; blockDim.x × it >= vectors_per_row.
/// \param input [..., hidden_size], row r at input_row_start(work, r); read, then overwritten
///        with the normalized sum.
/// \param residual [num_rows, hidden_size] packed; read, then overwritten with the sum.
/// \param weight [hidden_size].
/// \param work sizes, strides and epsilon.
template <typename T, int kVec, int kVectorsPerThread>
__global__ void __launch_bounds__(kMaxThreads)
    fused_add_rms_norm_in_registers_kernel(T* __restrict__ input, T* __restrict__ residual,
                                           const T* __restrict__ weight, RowWork work) {
  using Vector = AlignedVector<T, kVec>;
  __shared__ typename BlockReduce::TempStorage reduce_storage;
  __shared__ float shared_inverse_rms;

  for (std::int64_t row = blockIdx.x; row < work.rows.num_rows; row += gridDim.x) {
    T* x_row = input + norm::input_row_start(work, row);                        // A6
    T* r_row = residual + row * static_cast<std::int64_t>(work.hidden_size);   // [hidden_size]

    // A3: this thread's vectors of x and r, all loads first (v = threadIdx.x + k · blockDim.x).
    Vector z[kVectorsPerThread];  // [kVectorsPerThread][kVec]: x, then the sum (registers)
    Vector r[kVectorsPerThread];  // [kVectorsPerThread][kVec]: the residual as read
#pragma unroll
    for (int k = 0; k < kVectorsPerThread; ++k) {
      const int v = static_cast<int>(threadIdx.x) + k * static_cast<int>(blockDim.x);
      if (v < work.vectors_per_row) {
        z[k] = load_vector<kVec>(x_row + v * kVec);
        r[k] = load_vector<kVec>(r_row + v * kVec);
      }
    }
    // z = x + r rounded once, stored as the new residual right away (A7), squared into the sum.
    float sum = 0.f;
#pragma unroll
    for (int k = 0; k < kVectorsPerThread; ++k) {
      const int v = static_cast<int>(threadIdx.x) + k * static_cast<int>(blockDim.x);
      if (v < work.vectors_per_row) {
        z[k] = norm::add_rounded(z[k], r[k]);
        store_vector<kVec>(r_row + v * kVec, z[k]);
        norm::add_squares(z[k], sum);
      }
    }

    // A5: the block's sum (valid in thread 0), shared as 1 / rms.
    const float total = BlockReduce(reduce_storage).Sum(sum, static_cast<int>(blockDim.x));
    if (threadIdx.x == 0) {
      shared_inverse_rms = norm::inverse_rms_of(total, work.hidden_size, work.epsilon);
    }
    __syncthreads();
    const float inverse_rms = shared_inverse_rms;

    // A2: normalize z from registers into input.
#pragma unroll
    for (int k = 0; k < kVectorsPerThread; ++k) {
      const int v = static_cast<int>(threadIdx.x) + k * static_cast<int>(blockDim.x);
      if (v < work.vectors_per_row) {
        const Vector w = load_vector<kVec>(weight + v * kVec);
        store_vector<kVec>(x_row + v * kVec, norm::normalize(z[k], inverse_rms, w));
      }
    }
    __syncthreads();  // reduce_storage and shared_inverse_rms are reused by the next row
  }
}

/// \brief The fallback for rows too long for registers: pass 1 stores z into residual, pass 2
/// reads it back (this thread's own stores, mostly from L2), as upstream does.
/// \tparam T float, __half or __nv_bfloat16.
/// \tparam kVec elements per vector (A1).
/// \param input [..., hidden_size]; read, then overwritten with the normalized sum.
/// \param residual [num_rows, hidden_size] packed; read, then overwritten with the sum.
/// \param weight [hidden_size].
/// \param work sizes, strides and epsilon.
template <typename T, int kVec>
__global__ void __launch_bounds__(kMaxThreads)
    fused_add_rms_norm_reread_kernel(T* __restrict__ input, T* __restrict__ residual,
                                     const T* __restrict__ weight, RowWork work) {
  using Vector = AlignedVector<T, kVec>;
  __shared__ typename BlockReduce::TempStorage reduce_storage;
  __shared__ float shared_inverse_rms;

  for (std::int64_t row = blockIdx.x; row < work.rows.num_rows; row += gridDim.x) {
    T* x_row = input + norm::input_row_start(work, row);
    T* r_row = residual + row * static_cast<std::int64_t>(work.hidden_size);

    float sum = 0.f;
    for (int v = threadIdx.x; v < work.vectors_per_row; v += blockDim.x) {
      const Vector z = norm::add_rounded(load_vector<kVec>(x_row + v * kVec),
                                         load_vector<kVec>(r_row + v * kVec));
      store_vector<kVec>(r_row + v * kVec, z);
      norm::add_squares(z, sum);
    }
    const float total = BlockReduce(reduce_storage).Sum(sum, static_cast<int>(blockDim.x));
    if (threadIdx.x == 0) {
      shared_inverse_rms = norm::inverse_rms_of(total, work.hidden_size, work.epsilon);
    }
    __syncthreads();
    const float inverse_rms = shared_inverse_rms;

    for (int v = threadIdx.x; v < work.vectors_per_row; v += blockDim.x) {
      const Vector z = load_vector<kVec>(r_row + v * kVec);  // this thread's own store
      const Vector w = load_vector<kVec>(weight + v * kVec);
      store_vector<kVec>(x_row + v * kVec, norm::normalize(z, inverse_rms, w));
    }
    __syncthreads();  // reduce_storage and shared_inverse_rms are reused by the next row
  }
}

/// \brief Chooses the block shape (A4) for vectors of kVec elements and launches.
/// \tparam T float, __half or __nv_bfloat16.
/// \tparam kVec elements per vector, from pick_vector_width().
/// \param plan the validated plan.
/// \param args the arguments.
/// \param stream where to launch.
template <typename T, int kVec>
void launch_with_vector(const FusedAddRmsNorm::Plan& plan, const FusedAddRmsNorm::Args& args,
                        cudaStream_t stream) {
  const RowWork work = norm::make_row_work(plan.rows, plan.hidden_size, kVec, plan.epsilon);

  const norm::BlockShape shape = norm::choose_block_shape(plan.rows.num_rows, work.vectors_per_row);
  const unsigned blocks = norm::blocks_for(plan.rows.num_rows);
  auto* input = static_cast<T*>(args.input.data);
  auto* residual = static_cast<T*>(args.residual.data);
  const auto* weight = static_cast<const T*>(args.weight.data);
  // A2: the sum in registers with 1, 2 or 4 vectors per thread, else the re-read kernel.
  norm::with_vectors_per_thread(shape, [&](auto per_thread) {
    constexpr int kPerThread = decltype(per_thread)::value;
    if constexpr (kPerThread == 0)
      fused_add_rms_norm_reread_kernel<T, kVec>
          <<<blocks, shape.threads, 0, stream>>>(input, residual, weight, work);
    else
      fused_add_rms_norm_in_registers_kernel<T, kVec, kPerThread>
          <<<blocks, shape.threads, 0, stream>>>(input, residual, weight, work);
  });
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv::kernels::fused_add_rms_norm_optimized

namespace pagedkv {

void FusedAddRmsNorm::optimized(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels;
  using namespace pagedkv::kernels::fused_add_rms_norm_optimized;
  if (plan.rows.num_rows == 0) return;  // zero rows: nothing to do, and no empty grid
  norm::dispatch_norm_dtype(plan.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    with_vector_width<16 / static_cast<int>(sizeof(T))>(
        norm::pick_vector_width<T>(plan.rows, plan.hidden_size,
                                   {args.input.data, args.residual.data, args.weight.data}),
        [&](auto width) { launch_with_vector<T, decltype(width)::value>(plan, args, stream); });
  });
}

}  // namespace pagedkv
