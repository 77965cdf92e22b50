# tacit's libraries are components: tacit::core (operators, solvers, analyses,
# Matrix Market and native files; TBB and SuiteSparse at link time) and the
# optional tacit::onnx (libonnx, protobuf), tacit::lp (COIN-OR CLP),
# tacit::image (libpng) and tacit::idx (zlib), each built when its
# dependencies are found or required by TACIT_REQUIRE_COMPONENTS. The Python
# module (component python: pybind11, Python 3 with NumPy and SciPy) is not a
# library; it is built on the umbrella (python/). tacit::mpi (PETSc and
# SLEPc with their MPI; TACIT_WITH_MPI) is linked only by name: a program that
# links it is an MPI program, so neither the umbrella nor the core pulls it in.

set(TACIT_OPTIONAL_COMPONENTS onnx lp image idx)
set(TACIT_BUILT_COMPONENTS "")
set(TACIT_BUILT_COMPONENT_TARGETS "")
set(TACIT_STANDALONE_COMPONENTS "")
set(TACIT_INTERNAL_DEPS "")

# Whether component `name` must be built.
function(tacit_component_required name out)
  if(TACIT_REQUIRE_COMPONENTS STREQUAL "all" OR name IN_LIST TACIT_REQUIRE_COMPONENTS)
    set(${out} TRUE PARENT_SCOPE)
  else()
    set(${out} FALSE PARENT_SCOPE)
  endif()
endfunction()

# Reports a component that cannot be built: a configure error when required.
function(tacit_component_missing name what)
  tacit_component_required(${name} required)
  if(required)
    message(FATAL_ERROR "tacit component '${name}' is required (TACIT_REQUIRE_COMPONENTS) "
                        "but ${what} was not found")
  endif()
  message(STATUS "tacit component ${name}: not built (${what} not found)")
endfunction()

# Finds the dependencies of the optional components; sets TACIT_HAVE_<NAME>.
macro(tacit_component_dependencies)
  foreach(component IN LISTS TACIT_REQUIRE_COMPONENTS)
    if(NOT component STREQUAL "all" AND NOT component STREQUAL "python"
       AND NOT component STREQUAL "mpi" AND NOT component IN_LIST TACIT_OPTIONAL_COMPONENTS)
      message(FATAL_ERROR "TACIT_REQUIRE_COMPONENTS: unknown component '${component}' "
                          "(known: ${TACIT_OPTIONAL_COMPONENTS} python mpi or all)")
    endif()
  endforeach()

  # onnx: the protobuf classes of libonnx (libonnx-dev, libprotobuf-dev).
  set(TACIT_HAVE_ONNX OFF)
  find_package(Protobuf QUIET)
  if(Protobuf_FOUND)
    find_package(ONNX CONFIG QUIET)
  endif()
  if(TARGET onnx_proto)
    set(TACIT_HAVE_ONNX ON)
  else()
    tacit_component_missing(onnx "libonnx-dev with libprotobuf-dev")
  endif()

  # lp: COIN-OR CLP (coinor-libclp-dev), found through its pkg-config file.
  set(TACIT_HAVE_LP OFF)
  find_package(PkgConfig QUIET)
  if(PkgConfig_FOUND)
    pkg_check_modules(CLP QUIET IMPORTED_TARGET clp)
  endif()
  if(TARGET PkgConfig::CLP)
    set(TACIT_HAVE_LP ON)
  else()
    tacit_component_missing(lp "COIN-OR CLP (coinor-libclp-dev, pkg-config)")
  endif()

  # image: libpng (libpng-dev).
  set(TACIT_HAVE_IMAGE OFF)
  find_package(PNG QUIET)
  if(PNG_FOUND)
    set(TACIT_HAVE_IMAGE ON)
  else()
    tacit_component_missing(image "libpng (libpng-dev)")
  endif()

  # idx: zlib (zlib1g-dev) for gzip-compressed IDX data sets.
  set(TACIT_HAVE_IDX OFF)
  find_package(ZLIB QUIET)
  if(ZLIB_FOUND)
    set(TACIT_HAVE_IDX ON)
  else()
    tacit_component_missing(idx "zlib (zlib1g-dev)")
  endif()

  # mpi: PETSc and SLEPc (petsc-dev, slepc-dev: Debian's PETSc_real and
  # SLEPc_real, found through their pkg-config files) and the MPI they are
  # built on (OpenMPI). TACIT_WITH_MPI=AUTO builds it when found (and requires
  # it when TACIT_REQUIRE_COMPONENTS names mpi or all), ON requires it, OFF
  # leaves it out whatever TACIT_REQUIRE_COMPONENTS says.
  set(TACIT_HAVE_MPI OFF)
  string(TOUPPER "${TACIT_WITH_MPI}" _tacit_with_mpi)
  if(NOT _tacit_with_mpi MATCHES "^(AUTO|ON|OFF)$")
    message(FATAL_ERROR "TACIT_WITH_MPI must be AUTO, ON or OFF, got '${TACIT_WITH_MPI}'")
  endif()
  if(_tacit_with_mpi STREQUAL "OFF")
    message(STATUS "tacit component mpi: not built (TACIT_WITH_MPI=OFF)")
  else()
    find_package(MPI QUIET COMPONENTS CXX)
    if(PkgConfig_FOUND)
      pkg_check_modules(PETSC QUIET IMPORTED_TARGET PETSc)
      pkg_check_modules(SLEPC QUIET IMPORTED_TARGET SLEPc)
    endif()
    if(MPI_CXX_FOUND AND TARGET PkgConfig::PETSC AND TARGET PkgConfig::SLEPC)
      set(TACIT_HAVE_MPI ON)
      message(STATUS "tacit component mpi: PETSc ${PETSC_VERSION}, SLEPc ${SLEPC_VERSION}, "
                     "MPI ${MPI_CXX_VERSION}")
    elseif(_tacit_with_mpi STREQUAL "ON")
      message(FATAL_ERROR "TACIT_WITH_MPI=ON but PETSc and SLEPc with MPI (petsc-dev, "
                          "slepc-dev, pkg-config) were not found")
    else()
      tacit_component_missing(mpi "PETSc and SLEPc with MPI (petsc-dev, slepc-dev, pkg-config)")
    endif()
  endif()

  # python: pybind11 (pybind11-dev) and Python 3 with its headers, NumPy and
  # SciPy (python3-dev, python3-numpy, python3-scipy). Debian's interpreter
  # unless Python3_EXECUTABLE says otherwise: the first python3 on PATH may
  # be another one without NumPy. Not built with sanitizers (the interpreter
  # is not instrumented).
  set(TACIT_HAVE_PYTHON OFF)
  if(TACIT_SANITIZE)
    message(STATUS "tacit component python: not built (sanitizer build)")
  else()
    if(NOT DEFINED Python3_EXECUTABLE AND EXISTS /usr/bin/python3)
      set(Python3_EXECUTABLE /usr/bin/python3)
    endif()
    find_package(Python3 COMPONENTS Interpreter Development.Module QUIET)
    set(_tacit_python_modules FALSE)
    if(Python3_FOUND)
      execute_process(COMMAND ${Python3_EXECUTABLE} -c "import numpy, scipy.sparse"
                      RESULT_VARIABLE _tacit_numpy_result OUTPUT_QUIET ERROR_QUIET)
      if(_tacit_numpy_result EQUAL 0)
        set(_tacit_python_modules TRUE)
      endif()
      find_package(pybind11 CONFIG QUIET)
    endif()
    if(Python3_FOUND AND _tacit_python_modules AND pybind11_FOUND)
      set(TACIT_HAVE_PYTHON ON)
      message(STATUS "tacit component python: built (${Python3_EXECUTABLE})")
    else()
      tacit_component_missing(python
        "pybind11-dev, python3-dev, python3-numpy or python3-scipy (for ${Python3_EXECUTABLE})")
    endif()
  endif()
endmacro()

# tacit_add_component(name [STANDALONE] SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
# An object library tacit_<name>_objects (position independent, hidden
# symbols) and from it the installed library tacit_<name>, exported as
# tacit::<name>. Every component but core links tacit::core.
macro(tacit_add_component name)
  cmake_parse_arguments(_tc "STANDALONE" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  set(_objects tacit_${name}_objects)
  add_library(${_objects} OBJECT ${_tc_SOURCES})
  set_target_properties(${_objects} PROPERTIES POSITION_INDEPENDENT_CODE ON
                        CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  target_include_directories(${_objects}
    PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include ${CMAKE_CURRENT_BINARY_DIR}/include
    PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/lib)
  target_compile_features(${_objects} PUBLIC cxx_std_20)
  target_compile_options(${_objects} PRIVATE -Wall -Wextra -Wpedantic)
  # Object libraries pass their dependencies on to whatever links them
  # (tacit_internal, which is static, needs the private ones too).
  target_link_libraries(${_objects} PUBLIC ${_tc_PUBLIC_DEPS} ${_tc_PRIVATE_DEPS})
  if(NOT "${name}" STREQUAL "core")
    target_link_libraries(${_objects} PUBLIC tacit_core_objects)
  endif()

  add_library(tacit_${name} $<TARGET_OBJECTS:${_objects}>)
  add_library(tacit::${name} ALIAS tacit_${name})
  set_target_properties(tacit_${name} PROPERTIES
    EXPORT_NAME ${name} OUTPUT_NAME tacit_${name}
    VERSION ${PROJECT_VERSION}
    # 0.x: every minor release may change the ABI.
    SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
  target_include_directories(tacit_${name} PUBLIC
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<BUILD_INTERFACE:${CMAKE_CURRENT_BINARY_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_compile_features(tacit_${name} PUBLIC cxx_std_20)
  target_link_libraries(tacit_${name} PUBLIC ${_tc_PUBLIC_DEPS} PRIVATE ${_tc_PRIVATE_DEPS})
  if(NOT "${name}" STREQUAL "core")
    target_link_libraries(tacit_${name} PUBLIC tacit_core)
  endif()
  install(TARGETS tacit_${name} EXPORT tacitTargets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  if(_tc_STANDALONE)
    # Linked by name only: not in the umbrella nor in tacit_internal.
    list(APPEND TACIT_STANDALONE_COMPONENTS ${name})
  else()
    list(APPEND TACIT_INTERNAL_DEPS ${_tc_PUBLIC_DEPS} ${_tc_PRIVATE_DEPS})
    list(APPEND TACIT_BUILT_COMPONENTS ${name})
    list(APPEND TACIT_BUILT_COMPONENT_TARGETS tacit_${name})
  endif()
  message(STATUS "tacit component ${name}: built")
endmacro()
