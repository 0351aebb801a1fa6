// Internal: name the calling thread so `top -H` and debuggers show it.
#pragma once

#include <pthread.h>

#include <string>

namespace edgert::detail {

/// Calling thread only; never fails (Linux truncates names to 15 bytes).
inline void set_current_thread_name(const std::string& name) {
  const std::string shortened = name.substr(0, 15);
  pthread_setname_np(pthread_self(), shortened.c_str());
}

}  // namespace edgert::detail
