// silu_and_mul, gelu_and_mul and gelu_tanh_and_mul, optimized CUDA version: per element the
// same device function as naive.cu (activation_math.cuh), so the two are bit-identical; after
// vLLM csrc/activation_kernels.cu (the vectorized act_and_mul_kernel). Each trick names the
// naive note it removes:
//   G1 16-byte vectors of gate, up and out (8 bf16/f16, 4 f32) where d and every address
//      allow, else one element (N1).
//   G2 one block per row (grid-stride over rows): the row's start is computed once per block,
//      no division per element (N2).
//   G3 both vectors are loaded before the math, through the read-only path (`__ldg` via
//      const __restrict__), so two 16-byte loads are in flight per thread.
//   G4 256 threads per block walk the row's vectors; a 14336-wide bf16 row is 1792 vectors,
//      7 per thread, and 235 M threads become 16384 blocks (N3).
// Not yet measured on a GPU.
// The full story: chapter "The model ops beside the cache", pages silu_and_mul, gelu_and_mul.
#include <algorithm>
#include <cstdint>

#include "activation/activation_math.cuh"
#include "common/vec.cuh"
#include "norm/norm_math.cuh"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/act_and_mul.h"

namespace pagedkv::kernels::act_and_mul_optimized {

/// Threads per block (G4).
constexpr int kThreads = 256;

/// \brief One block per row (G2), kVec elements per access (G1).
/// \tparam kActivation silu, gelu or gelu_tanh.
/// \tparam T float, __half or __nv_bfloat16.
/// \tparam kVec elements per vector; d, the row strides and both base addresses allow it.
/// \param out [num_rows, d] packed.
/// \param input [..., 2 d], row r at rows.row_start(r).
/// \param rows where each input row starts.
/// \param d elements of out per row.
template <Activation kActivation, typename T, int kVec>
__global__ void __launch_bounds__(kThreads)
    act_and_mul_kernel(T* __restrict__ out, const T* __restrict__ input, RowLayout rows, int d) {
  using Vector = AlignedVector<T, kVec>;
  const int vectors = d / kVec;
  for (std::int64_t row = blockIdx.x; row < rows.num_rows; row += gridDim.x) {
    const T* gate = input + rows.row_start(row);  // G2: once per row
    const T* up = gate + d;
    T* result = out + row * static_cast<std::int64_t>(d);
    for (int v = threadIdx.x; v < vectors; v += blockDim.x) {
      const Vector x = load_vector<kVec>(gate + v * kVec);  // G1, G3: both loads first
      const Vector y = load_vector<kVec>(up + v * kVec);
      Vector z;
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        z.elements[k] = activation::act_and_mul_element<kActivation>(x.elements[k], y.elements[k]);
      }
      store_vector<kVec>(result + v * kVec, z);
    }
  }
}

/// \brief Elements per 16-byte vector for T, if d, the leading strides and both base addresses
/// allow it, else 1 (G1).
/// \tparam T float, __half or __nv_bfloat16.
/// \param plan the validated plan.
/// \param args the arguments.
/// \return 16 / sizeof(T) or 1.
template <typename T, Activation kActivation>
int vector_width(const typename ActAndMul<kActivation>::Plan& plan,
                 const typename ActAndMul<kActivation>::Args& args) {
  constexpr int kWide = static_cast<int>(16 / sizeof(T));
  const RowLayout& r = plan.rows;
  const std::int64_t d0 = r.num_rows / std::max<std::int64_t>(r.size1 * r.size2, 1);
  const bool fits = plan.d % kWide == 0 && is_aligned(args.input.data, 16) &&
                    is_aligned(args.out.data, 16) && stride_allows(r.stride0, d0, kWide) &&
                    stride_allows(r.stride1, r.size1, kWide) &&
                    stride_allows(r.stride2, r.size2, kWide);
  return fits ? kWide : 1;
}

}  // namespace pagedkv::kernels::act_and_mul_optimized

namespace pagedkv {

template <Activation kActivation>
void ActAndMul<kActivation>::optimized(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels;
  using namespace pagedkv::kernels::act_and_mul_optimized;
  if (plan.rows.num_rows == 0 || plan.d == 0) return;  // nothing to do, and no empty grid
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>(plan.rows.num_rows, 1 << 30));
  norm::dispatch_norm_dtype(plan.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int kWide = static_cast<int>(16 / sizeof(T));
    auto* out = static_cast<T*>(args.out.data);
    const auto* input = static_cast<const T*>(args.input.data);
    const int d = static_cast<int>(plan.d);
    if (vector_width<T, kActivation>(plan, args) == kWide) {
      act_and_mul_kernel<kActivation, T, kWide>
          <<<blocks, kThreads, 0, stream>>>(out, input, plan.rows, d);
    } else {
      act_and_mul_kernel<kActivation, T, 1>
          <<<blocks, kThreads, 0, stream>>>(out, input, plan.rows, d);
    }
    PAGEDKV_CUDA_CHECK_LAUNCH();
  });
}

template void ActAndMul<Activation::silu>::optimized(const Plan&, const Args&, cudaStream_t);
template void ActAndMul<Activation::gelu>::optimized(const Plan&, const Args&, cudaStream_t);
template void ActAndMul<Activation::gelu_tanh>::optimized(const Plan&, const Args&, cudaStream_t);

}  // namespace pagedkv
