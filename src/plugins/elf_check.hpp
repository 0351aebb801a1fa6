// Internal: is a file an ELF shared object this process could load?
#pragma once

#include <string>

namespace edgert::detail {

/// Reads the file's ELF header and compares it with this process's own executable.
/// Returns "" when it is a shared object for this machine, else the reason.
std::string check_elf_shared_object(const std::string& path);

}  // namespace edgert::detail
