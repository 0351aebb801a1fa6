// Library version. The SONAME tracks the major version: a major bump is an
// ABI break of the C++ API (the plugin C ABI is versioned separately).
#pragma once

#include <edgert/export.hpp>

#define EDGERT_VERSION_MAJOR 0
#define EDGERT_VERSION_MINOR 1
#define EDGERT_VERSION_PATCH 0

namespace edgert {

/// Version of the libedgert the process actually loaded ("0.1.0"), which may
/// differ from the EDGERT_VERSION_* macros the caller was compiled with.
/// Any thread; never blocks; never fails.
EDGERT_API const char* version_string() noexcept;

}  // namespace edgert
