// silu_and_mul, gelu_and_mul and gelu_tanh_and_mul, naive CUDA version: the CPU reference's
// loops in CUDA clothing (vLLM csrc/activation_kernels.cu: act_and_mul_kernel).
//
// One thread per output element over a 1-D grid (grid-stride): element e of the flattened
// [rows, d] output is row e / d, column e % d; the thread reads gate x = input[row][i] and
// up y = input[row][d + i], and writes act_and_mul_element(x, y) (activation_math.cuh, the
// same function as the optimized kernel: the two are bit-identical).
//
// Caveats, numbered as in the chapter (optimized.cu names the trick that removes each):
//   N1 every access moves one element (2-4 bytes), not 16 bytes;
//   N2 every element pays a 64-bit division and modulo for (row, i), and RowLayout's three
//      more for the row's start;
//   N3 the grid has one thread per element: at 16384 tokens × 14336 that is 235 M threads,
//      each doing three memory accesses and little else.
#include <algorithm>
#include <cstdint>

#include "activation/activation_math.cuh"
#include "norm/norm_math.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/act_and_mul.h"

namespace pagedkv::kernels::act_and_mul_naive {

/// Threads per block.
constexpr int kThreads = 256;

/// \brief One thread per output element (grid-stride).
/// \tparam kActivation silu, gelu or gelu_tanh.
/// \tparam T float, __half or __nv_bfloat16.
/// \param out [num_rows, d] packed.
/// \param input [..., 2 d], row r at rows.row_start(r).
/// \param rows where each input row starts.
/// \param d elements of out per row.
template <Activation kActivation, typename T>
__global__ void act_and_mul_kernel(T* out, const T* input, RowLayout rows, std::int64_t d) {
  const std::int64_t total = rows.num_rows * d;
  const std::int64_t step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += step) {
    const std::int64_t row = e / d;  // N2
    const std::int64_t i = e % d;
    const T* gate = input + rows.row_start(row);  // [2 d]: gate, then up
    const T x = gate[i];                          // N1
    const T y = gate[d + i];
    out[e] = activation::act_and_mul_element<kActivation>(x, y);
  }
}

}  // namespace pagedkv::kernels::act_and_mul_naive

namespace pagedkv {

template <Activation kActivation>
void ActAndMul<kActivation>::naive(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels;
  const std::int64_t total = plan.rows.num_rows * plan.d;
  if (total == 0) return;  // zero rows (or d = 0): nothing to do, and no empty grid
  const std::int64_t wanted =
      (total + act_and_mul_naive::kThreads - 1) / act_and_mul_naive::kThreads;
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>(wanted, 1 << 30));
  norm::dispatch_norm_dtype(plan.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    act_and_mul_naive::act_and_mul_kernel<kActivation, T>
        <<<blocks, act_and_mul_naive::kThreads, 0, stream>>>(static_cast<T*>(args.out.data),
                                                             static_cast<const T*>(args.input.data),
                                                             plan.rows, plan.d);
    PAGEDKV_CUDA_CHECK_LAUNCH();
  });
}

template void ActAndMul<Activation::silu>::naive(const Plan&, const Args&, cudaStream_t);
template void ActAndMul<Activation::gelu>::naive(const Plan&, const Args&, cudaStream_t);
template void ActAndMul<Activation::gelu_tanh>::naive(const Plan&, const Args&, cudaStream_t);

}  // namespace pagedkv
