# Warnings in edgert's own code (never applied to third-party headers, which are
# included as SYSTEM through their imported targets). They are errors only with
# EDGERT_WERROR=ON (off by default, as in fmt and spdlog, so a user's build does not
# fail on a warning a newer compiler adds); scripts/test.sh, and so CI, turns it on.
option(EDGERT_WERROR "Treat warnings in edgert's own code as errors" OFF)

# The -Werror flag when EDGERT_WERROR is on, else nothing: for targets that set their
# own warning flags (the C99 test plugins).
set(EDGERT_WERROR_FLAG "")
if(EDGERT_WERROR)
  set(EDGERT_WERROR_FLAG -Werror)
endif()

function(edgert_set_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor ${EDGERT_WERROR_FLAG}>
    $<$<COMPILE_LANGUAGE:C>:-Wall -Wextra -Wpedantic ${EDGERT_WERROR_FLAG}>)
endfunction()
