"""Let ```{doxygenfile}``` name a file by its repository path.

Breathe (5.1) matches a path against the file compound's name, which Doxygen sets to the bare
file name, so `kernels/<op>/naive.cu` never matches and `naive.cu` matches every op's
naive kernel. pagedkv has many files of the same name (naive.cu, optimized.cu), so a target
with a directory is matched here against the compound's location (a repository path, since
the Doxyfile strips the repository root). Targets without a directory behave as before.
"""

from __future__ import annotations

import os

import breathe.directives.file as breathe_file
from breathe import parser, renderer

_bare_name_finder = breathe_file.file_finder_filter


def _file_finder_by_path(filename, d_parser, project_info, index, matches) -> None:
    if "/" not in filename:
        _bare_name_finder(filename, d_parser, project_info, index, matches)
        return
    base = os.path.basename(filename)
    for compound in index.file_compounds:
        if compound.name != base:
            continue
        for cdef in d_parser.parse_compound(compound.refid, project_info).root.compounddef:
            if cdef.kind == parser.DoxCompoundKind.file and cdef.location is not None \
                    and cdef.location.file == filename:
                matches.append([renderer.TaggedNode(None, cdef)])


def setup(app):
    breathe_file.file_finder_filter = _file_finder_by_path
    return {"parallel_read_safe": True, "parallel_write_safe": True}
