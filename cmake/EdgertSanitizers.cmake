# EDGERT_SANITIZE=address,undefined or thread instruments everything this project builds.
if(EDGERT_SANITIZE)
  set(_san "-fsanitize=${EDGERT_SANITIZE}" -fno-omit-frame-pointer)
  if(EDGERT_SANITIZE MATCHES "undefined")
    list(APPEND _san -fno-sanitize-recover=undefined)
  endif()
  if(EDGERT_SANITIZE MATCHES "thread")
    # Boost.Asio's headers use atomic_thread_fence, which gcc reports under TSan
    # (-Wtsan) even from system headers. edgert's own code avoids it (fence.hpp).
    add_compile_options(-Wno-tsan)
  endif()
  add_compile_options(${_san})
  add_link_options(${_san})
  string(REPLACE ";" " " EDGERT_SANITIZER_FLAGS "${_san}")
  set(EDGERT_SANITIZER_FLAGS "${EDGERT_SANITIZER_FLAGS}" CACHE INTERNAL "")
else()
  set(EDGERT_SANITIZER_FLAGS "" CACHE INTERNAL "")
endif()
