// Scratch directories: a fresh folder under the system temp folder for one test, removed afterwards.
#pragma once

#include <errno.h>  // program_invocation_short_name (glibc)
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

/// The scratch directory of one test case, named after the test binary
/// (`<binary>-<pid>-<n>`). Not created: the code under test creates it (a mailbox's
/// data_dir) unless the case does.
struct Scratch : ScratchDir {
  Scratch() : ScratchDir(program_invocation_short_name) {}
};

/// A Scratch whose directory exists from the start (a node's or a pipeline's files go below it).
struct MadeScratch : Scratch {
  MadeScratch() { std::filesystem::create_directories(dir); }
};

}  // namespace edgert::testing
