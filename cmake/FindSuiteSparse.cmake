# FindSuiteSparse
# ---------------
# Finds SuiteSparse components and defines imported targets
#   SuiteSparse::SuiteSparseConfig, SuiteSparse::AMD, SuiteSparse::COLAMD,
#   SuiteSparse::BTF, SuiteSparse::KLU (and any other requested component,
#   e.g. CAMD, CCOLAMD, CHOLMOD, UMFPACK)
# Usage: find_package(SuiteSparse REQUIRED COMPONENTS KLU BTF AMD COLAMD)
#
# SuiteSparse >= 7 installs CMake config packages (SuiteSparse_config,
# KLU, BTF, ...); those are tried first. Debian 12 ships 5.12 without them,
# so the fallback looks for headers (suitesparse/klu.h or klu.h) and one
# library per component.
#
# Result variables: SuiteSparse_FOUND, SuiteSparse_<C>_FOUND,
# SuiteSparse_INCLUDE_DIR, SuiteSparse_VERSION.

include(FindPackageHandleStandardArgs)

set(_ss_components ${SuiteSparse_FIND_COMPONENTS})
if(NOT _ss_components)
  set(_ss_components KLU BTF AMD COLAMD)
endif()
# Every component needs SuiteSparseConfig.
list(APPEND _ss_components SuiteSparseConfig)
list(REMOVE_DUPLICATES _ss_components)

# Header and library name of each component.
function(_ss_names comp header lib)
  string(TOLOWER "${comp}" _lower)
  if(comp STREQUAL "SuiteSparseConfig")
    set(${header} "SuiteSparse_config.h" PARENT_SCOPE)
    set(${lib} "suitesparseconfig" PARENT_SCOPE)
  else()
    set(${header} "${_lower}.h" PARENT_SCOPE)
    set(${lib} "${_lower}" PARENT_SCOPE)
  endif()
endfunction()

# 1. Upstream config packages (SuiteSparse >= 7).
set(_ss_all_from_config TRUE)
foreach(_c IN LISTS _ss_components)
  if(_c STREQUAL "SuiteSparseConfig")
    set(_pkg SuiteSparse_config)
    set(_tgt SuiteSparse::SuiteSparseConfig)
  else()
    set(_pkg ${_c})
    set(_tgt SuiteSparse::${_c})
  endif()
  if(NOT TARGET ${_tgt})
    find_package(${_pkg} CONFIG QUIET)
  endif()
  if(TARGET ${_tgt})
    set(SuiteSparse_${_c}_FOUND TRUE)
  else()
    set(_ss_all_from_config FALSE)
  endif()
endforeach()

# 2. Headers and libraries.
if(NOT _ss_all_from_config)
  find_path(SuiteSparse_INCLUDE_DIR NAMES SuiteSparse_config.h
            PATH_SUFFIXES suitesparse include/suitesparse
            DOC "SuiteSparse include directory")
  if(SuiteSparse_INCLUDE_DIR AND EXISTS "${SuiteSparse_INCLUDE_DIR}/SuiteSparse_config.h")
    file(STRINGS "${SuiteSparse_INCLUDE_DIR}/SuiteSparse_config.h" _ss_ver
         REGEX "#define SUITESPARSE_(MAIN|SUB)_VERSION[ \t]+[0-9]+")
    string(REGEX REPLACE ".*MAIN_VERSION[ \t]+([0-9]+).*" "\\1" _ss_major "${_ss_ver}")
    string(REGEX REPLACE ".*SUB_VERSION[ \t]+([0-9]+).*" "\\1" _ss_minor "${_ss_ver}")
    if(_ss_major MATCHES "^[0-9]+$" AND _ss_minor MATCHES "^[0-9]+$")
      set(SuiteSparse_VERSION "${_ss_major}.${_ss_minor}")
    endif()
  endif()
  foreach(_c IN LISTS _ss_components)
    if(TARGET SuiteSparse::${_c})
      continue()
    endif()
    _ss_names(${_c} _hdr _lib)
    find_path(SuiteSparse_${_c}_INCLUDE_DIR NAMES ${_hdr}
              HINTS ${SuiteSparse_INCLUDE_DIR} PATH_SUFFIXES suitesparse)
    find_library(SuiteSparse_${_c}_LIBRARY NAMES ${_lib})
    mark_as_advanced(SuiteSparse_${_c}_INCLUDE_DIR SuiteSparse_${_c}_LIBRARY)
    if(SuiteSparse_${_c}_INCLUDE_DIR AND SuiteSparse_${_c}_LIBRARY)
      set(SuiteSparse_${_c}_FOUND TRUE)
      add_library(SuiteSparse::${_c} UNKNOWN IMPORTED)
      set_target_properties(SuiteSparse::${_c} PROPERTIES
        IMPORTED_LOCATION "${SuiteSparse_${_c}_LIBRARY}"
        INTERFACE_INCLUDE_DIRECTORIES "${SuiteSparse_${_c}_INCLUDE_DIR}")
    else()
      set(SuiteSparse_${_c}_FOUND FALSE)
    endif()
  endforeach()
  # Link dependencies between components.
  foreach(_c IN ITEMS AMD COLAMD BTF CAMD CCOLAMD)
    if(TARGET SuiteSparse::${_c} AND TARGET SuiteSparse::SuiteSparseConfig)
      set_property(TARGET SuiteSparse::${_c} APPEND PROPERTY
                   INTERFACE_LINK_LIBRARIES SuiteSparse::SuiteSparseConfig)
    endif()
  endforeach()
  if(TARGET SuiteSparse::KLU)
    foreach(_d IN ITEMS BTF AMD COLAMD SuiteSparseConfig)
      if(TARGET SuiteSparse::${_d})
        set_property(TARGET SuiteSparse::KLU APPEND PROPERTY
                     INTERFACE_LINK_LIBRARIES SuiteSparse::${_d})
      endif()
    endforeach()
  endif()
endif()

find_package_handle_standard_args(SuiteSparse
  REQUIRED_VARS SuiteSparse_SuiteSparseConfig_FOUND
  VERSION_VAR SuiteSparse_VERSION
  HANDLE_COMPONENTS)
