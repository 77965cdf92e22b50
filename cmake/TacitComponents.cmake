# tacit's libraries are components: tacit::core (operators, solvers, analyses,
# Matrix Market and native files; TBB and SuiteSparse at link time) and the
# optional tacit::onnx (libonnx, protobuf), tacit::lp (COIN-OR CLP),
# tacit::image (libpng) and tacit::idx (zlib), each built when its
# dependencies are found or required by TACIT_REQUIRE_COMPONENTS.

set(TACIT_OPTIONAL_COMPONENTS onnx lp image idx)
set(TACIT_BUILT_COMPONENTS "")
set(TACIT_BUILT_COMPONENT_TARGETS "")
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
    if(NOT component STREQUAL "all" AND NOT component IN_LIST TACIT_OPTIONAL_COMPONENTS)
      message(FATAL_ERROR "TACIT_REQUIRE_COMPONENTS: unknown component '${component}' "
                          "(known: ${TACIT_OPTIONAL_COMPONENTS} or all)")
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
endmacro()

# tacit_add_component(name SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...])
# An object library tacit_<name>_objects (position independent, hidden
# symbols) and from it the installed library tacit_<name>, exported as
# tacit::<name>. Every component but core links tacit::core.
macro(tacit_add_component name)
  cmake_parse_arguments(_tc "" "" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
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
  list(APPEND TACIT_INTERNAL_DEPS ${_tc_PUBLIC_DEPS} ${_tc_PRIVATE_DEPS})
  list(APPEND TACIT_BUILT_COMPONENTS ${name})
  list(APPEND TACIT_BUILT_COMPONENT_TARGETS tacit_${name})
  message(STATUS "tacit component ${name}: built")
endmacro()
