# edgert_add_plugin(<name> SOURCES <src>... [OUTPUT_DIRECTORY <dir>] [LIBS <lib>...])
#
# Builds an edgert plugin: a MODULE library named <name>.so (no "lib" prefix) with
# hidden visibility (only edgert_plugin_entry is exported), compiled against the
# plugin SDK headers and never linked with libedgert. In edgert's own build the
# file lands in build/plugins/ unless OUTPUT_DIRECTORY says otherwise.
function(edgert_add_plugin name)
  cmake_parse_arguments(P "" "OUTPUT_DIRECTORY" "SOURCES;LIBS" ${ARGN})
  if(NOT P_SOURCES)
    message(FATAL_ERROR "edgert_add_plugin(${name}): no SOURCES given")
  endif()
  add_library(${name} MODULE ${P_SOURCES})
  target_link_libraries(${name} PRIVATE edgert::plugin_sdk ${P_LIBS})
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(P_OUTPUT_DIRECTORY)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${P_OUTPUT_DIRECTORY}")
  elseif(DEFINED EDGERT_PLUGIN_OUTPUT_DIRECTORY)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${EDGERT_PLUGIN_OUTPUT_DIRECTORY}")
  endif()
endfunction()
