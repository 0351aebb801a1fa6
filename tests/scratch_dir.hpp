// A fresh directory under the system temp folder for one test, removed afterwards.
#pragma once

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <string>

namespace edgert::testing {

struct ScratchDir {
  std::filesystem::path dir;
  /// `prefix` names the test family in the folder name (visible if a run leaks one).
  explicit ScratchDir(const std::string& prefix) {
    static std::atomic<int> n{0};
    dir = std::filesystem::temp_directory_path() /
          (prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    std::filesystem::remove_all(dir);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
};

}  // namespace edgert::testing
