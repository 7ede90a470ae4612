/// \file
/// \brief Registers the ops in the `cpu`, `naive` and `optimized` submodules of pagedkv._core.
#pragma once

#include <nanobind/nanobind.h>

#include "pagedkv/impl.h"

namespace pagedkv::python {

/// \brief Adds swap_blocks, reshape_and_cache and reshape_and_cache_flash (and their
/// `prepare_*` forms) for `impl` to `module`. The three submodules get identical signatures.
/// \param module the submodule (`_core.cpu`, `_core.naive` or `_core.optimized`).
/// \param impl the implementation its functions call.
void bind_ops(nanobind::module_& module, Impl impl);

/// \brief Registers the PreparedCall class (once, on the top-level module).
/// \param module pagedkv._core.
void bind_prepared_call(nanobind::module_& module);

}  // namespace pagedkv::python
