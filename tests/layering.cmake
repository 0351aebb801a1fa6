# The `layering` test: the dependency arrows of src/CMakeLists.txt hold for every
# include. The compiler already refuses an internal header of a forbidden area (each
# area's include root holds only what it may see); this also covers the public
# headers, which every area can reach, and `../` includes, which bypass the roots.
# Run as: cmake -DSOURCE_DIR=... -DAREAS=a,b -D<area>_DEPENDS=a,b -P layering.cmake
cmake_minimum_required(VERSION 3.20)

# Which area owns each public header. A new header must be added here.
set(owner_core base_worker drophead_queue export fence frame log status system_runtime version worker_pulse
               metrics metrics_snapshot queue_metrics component_metrics plugin_abi plugin_config plugin)
set(owner_config config_object)
set(owner_plugins plugin_host plugins_config plugin_testing)
set(owner_mailbox mailbox mailbox_config)
set(owner_pipeline stream_config pipeline restart_config)
set(owner_comms transport mqtt_transport comms_config commands)
set(owner_registry component_registry registry_metrics)
set(owner_node node edgert config node_config node_status health_config)

string(REPLACE "," ";" AREAS "${AREAS}")
foreach(a ${AREAS})
  string(REPLACE "," ";" ${a}_DEPENDS "${${a}_DEPENDS}")
endforeach()

# owner_area(<stem> <out>): the area owning <edgert/stem.hpp>, or "".
function(owner_area stem out)
  set(found "")
  foreach(a ${AREAS})
    if(stem IN_LIST owner_${a})
      set(found ${a})
    endif()
  endforeach()
  set(${out} "${found}" PARENT_SCOPE)
endfunction()

# check_public(<where> <area> <stem>): <where> in <area> may include <edgert/stem>.
function(check_public where area stem)
  owner_area(${stem} owner)
  if(NOT owner IN_LIST ${area}_DEPENDS AND NOT owner STREQUAL area)
    set(errors "${errors}${where}: area '${area}' may not include <edgert/${stem}> (allowed: ${area} ${${area}_DEPENDS})\n"
        PARENT_SCOPE)
  endif()
endfunction()

set(errors "")
file(GLOB public RELATIVE ${SOURCE_DIR}/include/edgert ${SOURCE_DIR}/include/edgert/*)

# Public headers: each has an owner and follows the arrows among themselves.
foreach(h ${public})
  string(REGEX REPLACE "\\.(hpp|h)$" "" stem "${h}")
  owner_area(${stem} area)
  if(NOT area)
    string(APPEND errors "include/edgert/${h}: no area owns it; add it to tests/layering.cmake\n")
    continue()
  endif()
  file(STRINGS ${SOURCE_DIR}/include/edgert/${h} lines REGEX "^[ \t]*#[ \t]*include[ \t]*<edgert/")
  foreach(line ${lines})
    if(line MATCHES "<edgert/([a-z_]+)\\.(hpp|h)>")
      check_public("include/edgert/${h}" ${area} ${CMAKE_MATCH_1})
    endif()
  endforeach()
endforeach()

# Sources: internal headers of allowed areas only, no climbing out, public headers
# of allowed areas only.
foreach(area ${AREAS})
  set(allowed ${area} ${${area}_DEPENDS})
  file(GLOB_RECURSE files ${SOURCE_DIR}/src/${area}/*.cpp ${SOURCE_DIR}/src/${area}/*.hpp
                          ${SOURCE_DIR}/src/${area}/*.h ${SOURCE_DIR}/src/${area}/*.c)
  foreach(f ${files})
    file(STRINGS ${f} lines REGEX "^[ \t]*#[ \t]*include")
    file(RELATIVE_PATH rel ${SOURCE_DIR} ${f})
    foreach(line ${lines})
      if(line MATCHES "#[ \t]*include[ \t]*\"([^\"]*)\"")
        set(inc ${CMAKE_MATCH_1})
        if(inc MATCHES "\\.\\./")
          string(APPEND errors "${rel}: '${inc}' climbs out of its area\n")
        elseif(inc MATCHES "^([a-z_]+)/" AND NOT CMAKE_MATCH_1 IN_LIST allowed)
          string(APPEND errors "${rel}: area '${area}' may not include '${inc}' (allowed: ${allowed})\n")
        endif()
      elseif(line MATCHES "#[ \t]*include[ \t]*<edgert/([a-z_]+)\\.(hpp|h)>")
        check_public(${rel} ${area} ${CMAKE_MATCH_1})
      endif()
    endforeach()
  endforeach()
endforeach()

if(errors)
  message(FATAL_ERROR "layering violations:\n${errors}")
endif()
message(STATUS "layering: ok")
