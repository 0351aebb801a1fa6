#include <edgert/fence.hpp>

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace edgert::detail {
namespace {

bool register_membarrier() noexcept {
#if defined(__SANITIZE_THREAD__)
  return false;  // TSan does not understand membarrier: use full fences on both sides
#endif
  const long cmds = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) return false;
  return syscall(__NR_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

}  // namespace

bool asymmetric_fences_available() noexcept {
  static const bool available = register_membarrier();
  return available;
}

bool heavy_fence() noexcept {
  if (asymmetric_fences_available() && syscall(__NR_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0) {
    return true;
  }
  full_fence();
  return false;
}

}  // namespace edgert::detail
