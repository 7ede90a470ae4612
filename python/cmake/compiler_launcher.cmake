# Included right after the top-level project() in pip builds (pyproject.toml points
# CMAKE_PROJECT_INCLUDE here): compile through ccache when the machine has it, so that a second
# `pip install .` recompiles nothing that did not change. An explicit launcher wins.
find_program(PAGEDKV_CCACHE_PROGRAM ccache)
if(PAGEDKV_CCACHE_PROGRAM)
  foreach(_pagedkv_lang CXX CUDA)
    if(NOT CMAKE_${_pagedkv_lang}_COMPILER_LAUNCHER)
      set(CMAKE_${_pagedkv_lang}_COMPILER_LAUNCHER "${PAGEDKV_CCACHE_PROGRAM}")
    endif()
  endforeach()
endif()
