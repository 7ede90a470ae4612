/// \file
/// \brief The two exception types of pagedkv and the checks that raise them.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace pagedkv {

/// \brief A call was rejected before anything was written: the message names the argument,
/// what was expected and what was given.
class InvalidArgument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// \brief A CUDA runtime call failed (the message holds the call, its source file and line, and
/// CUDA's text).
class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
/// \brief Writes `parts` one after the other into one string, as `std::ostream` prints them.
/// \tparam Parts types that `std::ostream` can print.
/// \param parts the pieces of the text.
/// \return the joined text.
template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}
}  // namespace detail

/// \brief Throws InvalidArgument with the concatenation of `parts`.
/// \tparam Parts types that `std::ostream` can print.
/// \param parts the pieces of the message, joined without separators.
template <typename... Parts>
[[noreturn]] void reject(const Parts&... parts) {
  throw InvalidArgument(detail::concat(parts...));
}

}  // namespace pagedkv

/// Rejects the call with a message built from the remaining arguments unless `cond` holds.
#define PAGEDKV_CHECK(cond, ...)              \
  do {                                        \
    if (!(cond)) ::pagedkv::reject(__VA_ARGS__); \
  } while (0)
