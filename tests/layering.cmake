# The `layering` test: the dependency arrows of src/CMakeLists.txt hold for every
# include. The compiler already refuses an internal header of a forbidden area (each
# area's include root holds only what it may see); this also covers the public
# headers, which every area can reach, and `../` includes, which bypass the roots.
# Run as: cmake -DSOURCE_DIR=... -DAREAS=... -D<area>_DEPENDS=... -P layering.cmake

cmake_minimum_required(VERSION 3.20)

# Which area owns each public header. A new header must be added here.
set(owner_core base_worker drophead_queue export fence frame log status system_runtime version
               metrics metrics_snapshot queue_metrics component_metrics plugin_abi plugin)
set(owner_config config_object)
set(owner_plugins plugin_host plugins_config)
set(owner_mailbox mailbox mailbox_config)
set(owner_pipeline stream_config)
set(owner_node node edgert config node_config)

string(REPLACE "," ";" AREAS "${AREAS}")
foreach(a ${AREAS})
  string(REPLACE "," ";" ${a}_DEPENDS "${${a}_DEPENDS}")
endforeach()

set(errors "")
file(GLOB public RELATIVE ${SOURCE_DIR}/include/edgert ${SOURCE_DIR}/include/edgert/*)
foreach(h ${public})
  string(REGEX REPLACE "\\.(hpp|h)$" "" stem "${h}")
  set(found "")
  foreach(a ${AREAS})
    if(stem IN_LIST owner_${a})
      set(found ${a})
    endif()
  endforeach()
  if(NOT found)
    string(APPEND errors "include/edgert/${h}: no area owns it; add it to tests/layering.cmake\n")
  endif()
endforeach()

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
        elseif(inc MATCHES "^([a-z_]+)/")
          if(NOT CMAKE_MATCH_1 IN_LIST allowed)
            string(APPEND errors "${rel}: area '${area}' may not include '${inc}' (allowed: ${allowed})\n")
          endif()
        endif()
      elseif(line MATCHES "#[ \t]*include[ \t]*<edgert/([a-z_]+)\\.(hpp|h)>")
        set(stem ${CMAKE_MATCH_1})
        set(ok FALSE)
        foreach(a ${allowed})
          if(stem IN_LIST owner_${a})
            set(ok TRUE)
          endif()
        endforeach()
        if(NOT ok)
          string(APPEND errors "${rel}: area '${area}' may not include <edgert/${stem}> (allowed areas: ${allowed})\n")
        endif()
      endif()
    endforeach()
  endforeach()
endforeach()

if(errors)
  message(FATAL_ERROR "layering violations:\n${errors}")
endif()
message(STATUS "layering: ok")
