#include "plugins/elf_check.hpp"

#include <elf.h>

#include <cstring>
#include <fstream>

namespace edgert::detail {
namespace {

struct Ident {
  bool ok = false;
  unsigned char elf_class = 0;
  unsigned char data = 0;
  std::uint16_t type = 0;
  std::uint16_t machine = 0;
};

Ident read_ident(const std::string& path) {
  Ident id;
  std::ifstream in(path, std::ios::binary);
  unsigned char h[20] = {};
  if (!in.read(reinterpret_cast<char*>(h), sizeof h)) return id;
  if (std::memcmp(h, ELFMAG, SELFMAG) != 0) return id;
  id.ok = true;
  id.elf_class = h[EI_CLASS];
  id.data = h[EI_DATA];
  const bool little = id.data == ELFDATA2LSB;
  auto u16 = [&](int off) {
    return static_cast<std::uint16_t>(little ? h[off] | (h[off + 1] << 8) : (h[off] << 8) | h[off + 1]);
  };
  id.type = u16(16);
  id.machine = u16(18);
  return id;
}

}  // namespace

std::string check_elf_shared_object(const std::string& path) {
  static const Ident self = read_ident("/proc/self/exe");
  const Ident f = read_ident(path);
  if (!f.ok) return "not an ELF file (no ELF magic number)";
  if (f.type != ET_DYN) return "an ELF file but not a shared object";
  if (self.ok) {
    if (f.elf_class != self.elf_class || f.data != self.data) {
      return "an ELF shared object for another word size or byte order";
    }
    if (f.machine != self.machine) {
      return "an ELF shared object for another machine (e_machine " + std::to_string(f.machine) +
             ", this host is " + std::to_string(self.machine) + ")";
    }
  }
  return "";
}

}  // namespace edgert::detail
