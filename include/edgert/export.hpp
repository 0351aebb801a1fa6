// Symbol visibility for libedgert. libedgert is built with hidden visibility;
// only declarations marked EDGERT_API are exported from the shared object.
#pragma once

#if defined(_WIN32)
#  if defined(EDGERT_BUILDING_LIBRARY)
#    define EDGERT_API __declspec(dllexport)
#  else
#    define EDGERT_API __declspec(dllimport)
#  endif
#else
#  define EDGERT_API __attribute__((visibility("default")))
#endif
