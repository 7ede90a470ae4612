/// \file
/// \brief The harness shared by the op registry's entries (core/entries/, not public API):
/// random inputs that are never zeros, drawing distinct ids, per-set seeds, the byte-for-byte
/// comparison of a whole output with the CPU reference, copies between kinds of memory and
/// one-element scale tensors. What one family of ops shares lives next to it (e.g.
/// cache_write_case.h, norm_case.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "pagedkv/buffers.h"
#include "pagedkv/dtype.h"
#include "pagedkv/op.h"
#include "pagedkv/registry.h"
#include "pagedkv/tensor_view.h"

/// \brief The op registry's entries and the helpers they share.
namespace pagedkv::entries {

/// \brief A stream of pseudo-random numbers (splitmix64): tiny, fast and good enough for test
/// data (mt19937 would make filling the 805 MB qkv activation of a 65,536-token point take
/// seconds). Deterministic in its starting state.
struct Random {
  std::uint64_t state;  ///< the seed, then the generator's state

  /// \brief The next 64 random bits.
  /// \return the bits.
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// \brief Uniform in [0, n).
  /// \param n the bound, > 0.
  /// \return the number.
  std::int64_t below(std::int64_t n) {
    return static_cast<std::int64_t>(next() % static_cast<std::uint64_t>(n));
  }
  /// \brief Uniform in [-4, 4], never exactly 0: (u + 0.5) / 2^24 lies strictly inside (0, 1)
  /// and is never 1/2, and the double arithmetic is exact.
  /// \return the value.
  float value() {
    const double u = static_cast<double>(next() >> 40) + 0.5;
    return static_cast<float>(u / 16777216.0 * 8.0 - 4.0);
  }
};

/// \brief Fills memory with random values, deterministic in `seed`.
///
/// f32 and f16: uniform in [-4, 4], never 0. bf16: a random sign, exponent and mantissa with
/// |x| in [2^-14, 4): never 0, and fast (the W1 points need up to 134 M values). Other types:
/// random bytes.
/// \param dst first element.
/// \param dtype element type.
/// \param count number of elements.
/// \param seed seed of the generator.
void fill_random(void* dst, DType dtype, std::int64_t count, std::uint64_t seed);

/// \brief fill_random(), continuing `random`'s sequence (to fill several ranges from one stream).
/// \param random the generator.
/// \param dst first element.
/// \param dtype element type.
/// \param count number of elements.
void fill_random(Random& random, void* dst, DType dtype, std::int64_t count);

/// \brief Distinct ids in random order (a partial Fisher-Yates shuffle).
/// \param count how many ids.
/// \param range ids lie in [0, range); count <= range.
/// \param seed seed of the generator.
/// \return the ids.
std::vector<std::int64_t> draw_unique(std::int64_t count, std::int64_t range, std::uint64_t seed);

/// \brief The seed of one buffer set of a case.
/// \param seed the case's seed.
/// \param set buffer set index; set 0 keeps `seed`.
/// \return the set's seed.
std::uint64_t set_seed(std::uint64_t seed, int set);

/// \brief Compares a whole output with the CPU reference, byte for byte.
/// \param output the output, in device, pinned or host memory.
/// \param reference the CPU reference's output, host memory of the same size.
/// \param element how to decode differing elements for max_abs_err (NaN or inf against a
///        number counts as an infinite error).
/// \return the agreement (the bit-exact rule: rel_err and tolerance 0).
Agreement compare_with_reference(const Buffer& output, const void* reference, DType element);

/// \brief A one-element f32 scale tensor.
struct ScaleTensor {
  Buffer storage;   ///< 4 bytes
  TensorView view;  ///< f32 [1]
};

/// \brief A scale tensor holding one value.
/// \param value the scale.
/// \param memory where it lives.
/// \return the tensor.
ScaleTensor make_scale(float value, Memory memory);

/// \brief The device calls of a workload point, one per buffer set, each validated for both GPU
/// versions when the point is prepared (validation may synchronize: it must never be timed),
/// then launched from those plans: what every OpCase's launch() and run_checked() do.
/// \tparam Op the op struct.
template <class Op>
class PlannedCalls {
 public:
  /// \brief Adds the call of the next buffer set and validates it for naive and optimized.
  /// \param args the call's arguments (device tensors).
  void add(const typename Op::Args& args) {
    args_.push_back(args);
    naive_plans_.push_back(check_call<Op>(args_.back(), Impl::naive));
    optimized_plans_.push_back(check_call<Op>(args_.back(), Impl::optimized));
  }
  /// \brief Launches one version on buffer set `set` from its plan (no checks, no sync).
  /// \param impl Impl::naive or Impl::optimized.
  /// \param set the buffer set.
  /// \param stream the stream.
  void launch(Impl impl, int set, cudaStream_t stream) const {
    const auto i = static_cast<std::size_t>(set);
    pagedkv::launch<Op>(impl, impl == Impl::naive ? naive_plans_.at(i) : optimized_plans_.at(i),
                        args_.at(i), stream);
  }
  /// \brief Runs one version through the checked entry point on buffer set 0.
  /// \param impl the version.
  void run_checked(Impl impl) const { run<Op>(impl, args_.at(0)); }
  /// \brief The arguments of buffer set `set` as the registry's entry points take them.
  /// \param set the buffer set.
  /// \return the values, in the op's argument order.
  std::vector<ArgValue> values(int set) const { return values_of<Op>(args(set)); }
  /// \brief The arguments of buffer set `set`.
  /// \param set the buffer set.
  /// \return its arguments.
  const typename Op::Args& args(int set) const { return args_.at(static_cast<std::size_t>(set)); }
  /// \brief The optimized version's validated plan of buffer set `set`.
  /// \param set the buffer set.
  /// \return the plan.
  const typename Op::Plan& optimized_plan(int set) const {
    return optimized_plans_.at(static_cast<std::size_t>(set));
  }
  /// \brief Number of calls added (buffer sets prepared).
  /// \return the count.
  int count() const { return static_cast<int>(args_.size()); }

 private:
  std::vector<typename Op::Args> args_;  // one per buffer set
  std::vector<typename Op::Plan> naive_plans_, optimized_plans_;
};

/// \brief What every registry case does the same way once it has its calls: the CPU reference
/// runs on cpu_call(), and the device calls in `calls_` (one per buffer set, added by the
/// case's prepare_device()) are counted, launched, run checked and handed out. A case writes
/// only what is its own: its inputs, its byte model, cpu_call(), prepare_device() and the
/// comparison.
/// \tparam Op the op struct.
template <class Op>
class PlannedCase : public OpCase {
 public:
  /// \cond INTERNAL
  // OpCase's members, done the one way every case does them (documented there).
  int buffer_sets() const override { return calls_.count() > 0 ? calls_.count() : 1; }
  void run_cpu() override { run<Op>(Impl::cpu, cpu_call()); }
  std::vector<ArgValue> cpu_arguments() override { return values_of<Op>(cpu_call()); }
  void launch(Impl impl, int set, cudaStream_t stream) override {
    calls_.launch(impl, set, stream);
  }

 protected:
  /// \brief The CPU reference's call on the host inputs (what run_cpu() runs and
  /// cpu_arguments() hands to the fuzzer).
  /// \return the call's arguments.
  virtual typename Op::Args cpu_call() = 0;
  void run_checked(Impl impl) override { calls_.run_checked(impl); }
  std::vector<ArgValue> device_call(int set) override { return calls_.values(set); }
  /// \endcond

  PlannedCalls<Op> calls_;  ///< one validated call per buffer set
};

}  // namespace pagedkv::entries
