// convert_fp8, optimized CUDA version: a pure stream (each byte read once, each written once, no
// reuse), so the job is to move wide, warp-contiguous vectors and keep enough of them in flight.
// Bytes (W7, bf16 <-> fp8_e4m3): 2 read + 1 written per element, or 1 + 2: 3 bytes, 1.5 GiB for
// a 1 GiB bf16 cache, what a copy of 768 MiB moves; target >= 90 % of that copy, both ways.
//   C1 a step is one 16-byte vector of the wide side (8 bf16 / f16, 4 f32) and its 8 or 4 fp8
//      bytes, so one warp instruction covers one contiguous span on both sides. The first version
//      took 16 elements per step (one 16-byte fp8 vector, two bf16 vectors 32 bytes apart): each
//      warp-wide bf16 store then half-filled 32 sectors, and fp8 -> bf16 ran at 62 % of a copy on
//      an H100 (chapters/convert_fp8.md, Ledger).
//   C2 two values per conversion instruction: encode_fp8_pair (fp32x2 -> fp8x2) and fp8x2 ->
//      fp16x2, then fp32x2 -> bf16x2 / fp16x2: the same bytes as one at a time.
//   C3 rounds of 4 steps per thread (64 bytes of the wide side), all loads issued first.
//   C4 grid sized to the device (SMs x 4 CTAs of 256 threads), grid-stride over the rounds.
//   C5 a scalar head (until the wide side is 16-byte aligned) and a scalar tail (the last steps'
//      remainder).
//   C6 non-contiguous views, or no common alignment: C4's grid, one element per thread and step.
// This version (C1 as written now) is not yet measured on a GPU.
#include "pagedkv/ops/convert_fp8.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/dispatch.cuh"
#include "common/device.cuh"
#include "common/vec.cuh"
#include "convert_fp8/convert_fp8.cuh"
#include "pagedkv/cuda_runtime.h"

namespace pagedkv::kernels::convert_fp8 {

/// Threads per CTA.
constexpr int kThreads = 256;
/// CTAs per SM the register budget must allow (__launch_bounds__): at most 64 registers each.
constexpr int kBlocksPerSm = 4;
/// Wide-side bytes per step and per access (trick C1).
constexpr int kWideVectorBytes = 16;
/// Steps per thread and round (trick C3): 64 bytes of the wide side in flight.
constexpr int kStepsPerRound = 4;

/// \brief Elements per step (trick C1): one 16-byte vector of the wide side.
/// \tparam Wide the f32/f16/bf16 type.
/// \return 8 for bf16 / f16, 4 for f32.
template <typename Wide>
constexpr int step_elements() {
  return kWideVectorBytes / static_cast<int>(sizeof(Wide));
}

/// \brief One element, converted (the scalar head, tail and non-contiguous paths).
/// \tparam Wide the f32/f16/bf16 type.
/// \tparam kFormat the fp8 format.
/// \tparam kQuantize the direction.
/// \param input the input tensor.
/// \param output the output tensor.
/// \param input_offset the element's offset in input, in elements.
/// \param output_offset the element's offset in output, in elements.
/// \param scale the scale.
template <typename Wide, KvCacheDtype kFormat, bool kQuantize>
__device__ __forceinline__ void convert_element(const void* input, void* output,
                                                std::int64_t input_offset,
                                                std::int64_t output_offset, float scale) {
  if constexpr (kQuantize) {
    static_cast<std::uint8_t*>(output)[output_offset] =
        quantize_one<kFormat>(static_cast<const Wide*>(input)[input_offset], scale);
  } else {
    static_cast<Wide*>(output)[output_offset] =
        dequantize_one<kFormat, Wide>(static_cast<const std::uint8_t*>(input)[input_offset], scale);
  }
}

/// \brief Both tensors contiguous: a scalar head, vector steps, a scalar tail.
/// \tparam Wide the f32/f16/bf16 type.
/// \tparam kFormat the fp8 format.
/// \tparam kQuantize true: Wide → bytes; false: bytes → Wide.
/// \param input the input's first element.
/// \param output the output's first element.
/// \param scale the scale.
/// \param numel elements.
/// \param head elements before the first step (from there the wide side is 16-byte aligned and
/// the fp8 side step_elements()-byte aligned).
/// \param steps vector steps after the head (0 when the two sides never align together).
template <typename Wide, KvCacheDtype kFormat, bool kQuantize>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm)
    contiguous_kernel(const void* __restrict__ input, void* __restrict__ output, float scale,
                      std::int64_t numel, std::int64_t head, std::int64_t steps) {
  using In = std::conditional_t<kQuantize, Wide, std::uint8_t>;
  using Out = std::conditional_t<kQuantize, std::uint8_t, Wide>;
  constexpr int kStep = step_elements<Wide>();  // one vector per side and step (trick C1)

  const std::int64_t thread = static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const std::int64_t threads = static_cast<std::int64_t>(gridDim.x) * kThreads;

  // Trick C5: the scalar head and tail (C6 when steps is 0: then the tail is everything).
  const std::int64_t body_end = head + steps * kStep;
  for (std::int64_t e = thread; e < head; e += threads) {
    convert_element<Wide, kFormat, kQuantize>(input, output, e, e, scale);
  }
  for (std::int64_t e = body_end + thread; e < numel; e += threads) {
    convert_element<Wide, kFormat, kQuantize>(input, output, e, e, scale);
  }

  const In* in = static_cast<const In*>(input) + head;
  Out* out = static_cast<Out*>(output) + head;
  // Trick C4: grid-stride over rounds of kStepsPerRound steps; in a round, thread t of the CTA
  // takes steps first + t, first + kThreads + t, ...: neighbouring threads, neighbouring steps,
  // so a warp's k-th load (and store) is one contiguous span (trick C1).
  for (std::int64_t first =
           static_cast<std::int64_t>(blockIdx.x) * kThreads * kStepsPerRound + threadIdx.x;
       first < steps; first += threads * kStepsPerRound) {
    // Trick C3: every load of the round is issued before the first conversion.
    AlignedVector<In, kStep> loaded[kStepsPerRound];
#pragma unroll
    for (int k = 0; k < kStepsPerRound; ++k) {
      const std::int64_t s = first + k * kThreads;
      if (s < steps) loaded[k] = load_vector<kStep>(in + s * kStep);
    }
#pragma unroll
    for (int k = 0; k < kStepsPerRound; ++k) {
      const std::int64_t s = first + k * kThreads;
      if (s >= steps) continue;
      AlignedVector<Out, kStep> converted;
#pragma unroll
      for (int e = 0; e < kStep; e += 2) {  // trick C2: pairs
        if constexpr (kQuantize) {
          const float2 pair = load_pair(&loaded[k].elements[e]);
          const std::uint16_t bytes = encode_fp8_pair<kFormat>(pair.x, pair.y, scale);
          converted.elements[e] = static_cast<std::uint8_t>(bytes);
          converted.elements[e + 1] = static_cast<std::uint8_t>(bytes >> 8);
        } else {
          const auto bytes =
              static_cast<std::uint16_t>(loaded[k].elements[e] | (loaded[k].elements[e + 1] << 8));
          dequantize_pair<kFormat>(bytes, scale, &converted.elements[e]);
        }
      }
      store_vector<kStep>(out + s * kStep, converted);  // trick C1
    }
  }
}

/// \brief Any layout: one element per thread and grid step, coordinates unfolded from the
/// merged shape (trick C6).
/// \tparam Wide the f32/f16/bf16 type.
/// \tparam kFormat the fp8 format.
/// \tparam kQuantize the direction.
/// \param input the input's first element.
/// \param output the output's first element.
/// \param plan numel, scale and the merged layout.
template <typename Wide, KvCacheDtype kFormat, bool kQuantize>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm)
    strided_kernel(const void* __restrict__ input, void* __restrict__ output, ConvertFp8Plan plan) {
  const std::int64_t threads = static_cast<std::int64_t>(gridDim.x) * kThreads;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x;
       i < plan.numel; i += threads) {
    std::int64_t rest = i, input_offset = 0, output_offset = 0;
    for (int d = plan.ndim - 1; d >= 0; --d) {
      const std::int64_t coordinate = rest % plan.shape[d];
      rest /= plan.shape[d];
      input_offset += coordinate * plan.input_strides[d];
      output_offset += coordinate * plan.output_strides[d];
    }
    convert_element<Wide, kFormat, kQuantize>(input, output, input_offset, output_offset,
                                              plan.scale);
  }
}

/// \brief CTAs for `work` items of kThreads each, at most one full wave of the device (trick C4).
/// \param work items (steps, rounds or elements) to spread over threads.
/// \return the grid size, at least 1.
unsigned grid_for(std::int64_t work) {
  const std::int64_t wave = static_cast<std::int64_t>(sm_count()) * kBlocksPerSm;
  const std::int64_t wanted = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::clamp<std::int64_t>(wanted, 1, wave));
}

/// \brief Launches the contiguous or the strided kernel for one (Wide, format, direction).
/// \tparam Wide the f32/f16/bf16 type.
/// \tparam kFormat the fp8 format.
/// \tparam kQuantize the direction.
/// \param plan the validated plan.
/// \param args the arguments.
/// \param stream where to launch.
template <typename Wide, KvCacheDtype kFormat, bool kQuantize>
void launch_optimized(const ConvertFp8Plan& plan, const ConvertFp8::Args& args,
                      cudaStream_t stream) {
  if (!plan.contiguous) {
    strided_kernel<Wide, kFormat, kQuantize>
        <<<grid_for(plan.numel), kThreads, 0, stream>>>(args.input.data, args.output.data, plan);
    PAGEDKV_CUDA_CHECK_LAUNCH();
    return;
  }
  // Trick C5: the head brings the wide side to a 16-byte boundary; the fp8 side must then be on
  // a step boundary too (it is whenever both tensors start 16-byte aligned, as allocations do),
  // else C6.
  constexpr int kStep = step_elements<Wide>();
  const void* bytes = kQuantize ? args.output.data : args.input.data;
  const void* wide = kQuantize ? args.input.data : args.output.data;
  const auto misalignment =
      static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(wide) % kWideVectorBytes);
  std::int64_t head = 0;
  bool aligned_together = misalignment % static_cast<std::int64_t>(sizeof(Wide)) == 0;
  if (aligned_together) {
    head = std::min<std::int64_t>(
        (kWideVectorBytes - misalignment) % kWideVectorBytes / sizeof(Wide), plan.numel);
    aligned_together = is_aligned(static_cast<const std::uint8_t*>(bytes) + head, kStep);
  }
  std::int64_t steps = aligned_together ? (plan.numel - head) / kStep : 0;
  if (steps == 0) head = 0;  // all scalar: the tail loop covers every element
  const std::int64_t work = steps > 0 ? (steps + kStepsPerRound - 1) / kStepsPerRound : plan.numel;
  contiguous_kernel<Wide, kFormat, kQuantize><<<grid_for(work), kThreads, 0, stream>>>(
      args.input.data, args.output.data, plan.scale, plan.numel, head, steps);
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv::kernels::convert_fp8

namespace pagedkv {

void ConvertFp8::optimized(const Plan& plan, const Args& args, cudaStream_t stream) {
  using namespace pagedkv::kernels;
  using namespace pagedkv::kernels::convert_fp8;
  if (plan.numel == 0) return;  // nothing to do, and no empty grid

  dispatch_activation_and_cache_kind(
      plan.wide_dtype, plan.format, [&](auto wide_tag, auto format_tag) {
        using Wide = typename decltype(wide_tag)::type;
        constexpr KvCacheDtype kFormat = decltype(format_tag)::value;
        if constexpr (is_fp8(kFormat)) {  // the contract never passes kAuto
          if (plan.quantize) {
            launch_optimized<Wide, kFormat, true>(plan, args, stream);
          } else {
            launch_optimized<Wide, kFormat, false>(plan, args, stream);
          }
        }
      });
}

}  // namespace pagedkv
