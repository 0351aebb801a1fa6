# Installs the build tree into a scratch prefix, then configures, builds and runs
# the consumer project against it with find_package(edgert).
file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}")
  endif()
endfunction()
step("${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}")
file(GLOB_RECURSE libs "${prefix}/*/libedgert.so.0")
if(NOT libs)
  message(FATAL_ERROR "libedgert.so.0 (SONAME) was not installed under ${prefix}")
endif()
list(GET libs 0 lib)
get_filename_component(libdir "${lib}" DIRECTORY)
file(GLOB_RECURSE scanner "${prefix}/*/edgert/edgert-plugin-scan")
if(NOT scanner)
  message(FATAL_ERROR "the plugin scanner helper (libexec/edgert/edgert-plugin-scan) was not installed under ${prefix}")
endif()
step("${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${WORK_DIR}/build"
     "-DCMAKE_PREFIX_PATH=${prefix}" "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
     "-DCMAKE_EXE_LINKER_FLAGS=${CXX_FLAGS}" "-DCMAKE_BUILD_RPATH=${libdir}")
step("${CMAKE_COMMAND}" --build "${WORK_DIR}/build")
# An out-of-tree plugin: a 5-line CMakeLists against the installed package.
step("${CMAKE_COMMAND}" -S "${SOURCE_DIR}/plugin" -B "${WORK_DIR}/plugin"
     "-DCMAKE_PREFIX_PATH=${prefix}" "-DCMAKE_C_FLAGS=${CXX_FLAGS}")
step("${CMAKE_COMMAND}" --build "${WORK_DIR}/plugin")
file(GLOB_RECURSE bundled "${prefix}/*/edgert/plugins/threshold.so")
if(NOT bundled)
  message(FATAL_ERROR "the bundled plugins were not installed under ${prefix}")
endif()
step("${WORK_DIR}/build/consumer" "${WORK_DIR}/plugin/hello.so")
