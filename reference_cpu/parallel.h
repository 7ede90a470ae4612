// Running a CPU reference's independent iterations on several threads. Only for loops whose
// iterations write disjoint memory and read nothing another iteration writes: each iteration
// computes exactly what it would in a plain loop, so the result does not depend on the thread
// count. It only shortens the wait for the large references (paged attention evaluates every
// sequence in float64).
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace pagedkv::cpu {

/// \brief Calls fn(i) for every i in [0, n), spread over up to
/// std::thread::hardware_concurrency() threads (i, i + threads, i + 2 × threads, ... on one
/// thread). The first exception an iteration throws is rethrown after all threads end.
/// \param n the number of iterations.
/// \param fn the iteration; called once per index, concurrently for different indices.
template <class Fn>
void for_each_index(std::int64_t n, Fn&& fn) {
  const std::int64_t threads = std::min<std::int64_t>(
      n, std::max<std::int64_t>(1, static_cast<std::int64_t>(std::thread::hardware_concurrency())));
  if (threads <= 1) {
    for (std::int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::exception_ptr first_error;
  std::mutex error_lock;
  std::vector<std::thread> pool;
  for (std::int64_t t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      try {
        for (std::int64_t i = t; i < n; i += threads) fn(i);
      } catch (...) {
        std::lock_guard<std::mutex> guard(error_lock);
        if (!first_error) first_error = std::current_exception();
      }
    });
  }
  for (std::thread& thread : pool) thread.join();
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace pagedkv::cpu
