// fused_add_rms_norm, naive CUDA version: the CPU reference's loops in CUDA clothing (vLLM
// csrc/layernorm_kernels.cu: the original, scalar fused_add_rms_norm_kernel).
//
// One block per row. Pass 1: each thread walks the row with stride blockDim.x, forms
// z = round_T(float(x) + float(r)), stores it into residual and adds float(z)² to its float32
// sum. The block's partial sums meet in shared memory and are halved in a tree written out by
// hand; thread 0 computes inv = rsqrtf(sum / hidden_size + epsilon). Pass 2 re-reads z from
// residual and writes input = round_T(float(z) · inv · float(w)), rounded once.
//
// Caveats, numbered as in the chapter (optimized.cu names the trick that removes each):
//   N1 every access moves one element (2-4 bytes), not 16 bytes;
//   N2 the tree reduction costs 12 barriers per row at 1024 threads, most threads idle at each;
//   N3 z is written to residual and read back (second time mostly from L2);
//   N4 the block size only depends on hidden_size: many rows get no more resident blocks;
//   N5 every row start costs three 64-bit divisions (RowLayout::row_start).
#include "pagedkv/ops/fused_add_rms_norm.h"

#include <algorithm>
#include <cstdint>

#include "norm/norm_math.cuh"
#include "pagedkv/cuda_runtime.h"

namespace pagedkv::kernels::fused_add_rms_norm_naive {

/// Most threads per block, and the size of the shared-memory reduction array.
constexpr int kMaxThreads = 1024;

/// \brief One block per row (grid-stride over rows): add, store the sum, reduce, normalize.
/// \tparam T float, __half or __nv_bfloat16.
/// \param input [..., hidden_size], row r at rows.row_start(r); read, then overwritten with the
///        normalized sum.
/// \param residual [num_rows, hidden_size] packed; read, then overwritten with the sum.
/// \param weight [hidden_size].
/// \param rows where each input row starts.
/// \param hidden_size elements per row.
/// \param epsilon added to the mean square.
template <typename T>
__global__ void fused_add_rms_norm_kernel(T* input, T* residual, const T* weight, RowLayout rows,
                                          int hidden_size, float epsilon) {
  __shared__ float partial_sums[kMaxThreads];  // [blockDim.x]: one sum per thread, then the tree
  __shared__ float inverse_rms;                // the row's 1 / rms, set by thread 0

  for (std::int64_t row = blockIdx.x; row < rows.num_rows; row += gridDim.x) {
    T* x = input + rows.row_start(row);                            // [hidden_size]
    T* r = residual + row * static_cast<std::int64_t>(hidden_size);  // [hidden_size]

    // 1. z = x + r, rounded once; z becomes the residual and feeds the sum of squares.
    float sum = 0.f;
    for (int i = threadIdx.x; i < hidden_size; i += blockDim.x) {
      const T z = norm::add_rounded(x[i], r[i]);
      r[i] = z;
      const float value = to_float(z);
      sum += value * value;
    }
    partial_sums[threadIdx.x] = sum;
    __syncthreads();

    // 2. Tree reduction (blockDim.x is a power of two), a barrier after each step.
    for (int active = blockDim.x / 2; active > 0; active /= 2) {
      if (threadIdx.x < active) partial_sums[threadIdx.x] += partial_sums[threadIdx.x + active];
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      inverse_rms = norm::inverse_rms_of(partial_sums[0], hidden_size, epsilon);
    }
    __syncthreads();  // every thread waits for inverse_rms

    // 3. Read z back (this thread stored exactly these elements in step 1) and normalize it
    //    into input.
    for (int i = threadIdx.x; i < hidden_size; i += blockDim.x) {
      x[i] = norm::normalize(r[i], inverse_rms, weight[i]);
    }
    __syncthreads();  // partial_sums and inverse_rms are reused by this block's next row
  }
}

}  // namespace pagedkv::kernels::fused_add_rms_norm_naive

namespace pagedkv {

void FusedAddRmsNorm::naive(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels;
  if (plan.rows.num_rows == 0) return;  // zero rows: nothing to do, and no empty grid
  // Threads: the smallest power of two covering the row, at most 1024 (a power of two, for
  // the tree).
  int threads = 1;
  while (threads < plan.hidden_size && threads < fused_add_rms_norm_naive::kMaxThreads) {
    threads *= 2;
  }
  // One block per row; the row loop is grid-stride, so a huge row count stays correct.
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>(plan.rows.num_rows, 1 << 30));
  norm::dispatch_norm_dtype(plan.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    fused_add_rms_norm_naive::fused_add_rms_norm_kernel<T><<<blocks, threads, 0, stream>>>(
        static_cast<T*>(args.input.data), static_cast<T*>(args.residual.data),
        static_cast<const T*>(args.weight.data), plan.rows,
        static_cast<int>(plan.hidden_size), plan.epsilon);
    PAGEDKV_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace pagedkv
