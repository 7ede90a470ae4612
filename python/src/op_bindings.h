/// \file
/// \brief Registers the ops in the `cpu`, `naive` and `optimized` submodules of pagedkv._core.
#pragma once

#include <nanobind/nanobind.h>

#include "pagedkv/impl.h"

namespace pagedkv::python {

/// \brief Adds `call(op, args, stream)` and `prepare(op, args)` for `impl` to `module`: every op
/// of the registry, its arguments converted by the kinds its description gives them.
/// \param module the submodule (`_core.cpu`, `_core.naive` or `_core.optimized`).
/// \param impl the implementation its functions call.
void bind_ops(nanobind::module_& module, Impl impl);

/// \brief Registers the PreparedCall class (once, on the top-level module).
/// \param module pagedkv._core.
void bind_prepared_call(nanobind::module_& module);

}  // namespace pagedkv::python
