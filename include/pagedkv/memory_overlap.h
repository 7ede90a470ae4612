// The rule every op shares: an output never shares memory with another argument.
//
// An op that writes into memory it also reads (an index tensor, an input) or writes twice (two
// outputs over the same bytes) computes garbage at best; at worst it overwrites indices that
// validation already checked and then follows them out of bounds. Each op's own contract
// states the layouts it accepts; this rule is derived once from the op's argument list
// (check_outputs_apart() in op.h, called by check_call()) so that no op can forget it.
//
// It is kept out of the API pages (a conditional section): it is plumbing under run(), and its
// wording in the docs is a decision for the chapters, in both languages.
#pragma once

#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "pagedkv/tensor_view.h"

/// \cond INTERNAL
namespace pagedkv {

// Whether two views have a byte in common. Exact: views whose spans are disjoint are apart in
// O(ndim); views that interleave (the halves of a joint K/V allocation, slices of one row) are
// compared as runs of contiguous bytes, in O(1) when they step alike, else by listing the runs.
// Views on different devices, without data or without elements share nothing.
bool share_memory(const TensorView& a, const TensorView& b);

namespace detail {
// Op::may_share_memory(output, other), when the op declares it: the pairs it allows to share
// memory because its own contract judges them (swap_blocks moves blocks within one pool).
template <class Op, class = void>
struct declares_sharing : std::false_type {};
template <class Op>
struct declares_sharing<
    Op, std::void_t<decltype(Op::may_share_memory(std::string_view{}, std::string_view{}))>>
    : std::true_type {};
}  // namespace detail

}  // namespace pagedkv
/// \endcond
