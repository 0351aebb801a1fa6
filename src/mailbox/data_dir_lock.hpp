// Internal: one owner per data_dir (docs/mailbox.md, "Second process on one data_dir").
#pragma once

#include <edgert/status.hpp>

#include <string>

namespace edgert::detail {

/// An exclusive flock(2) on <data_dir>/.lock, held for the object's lifetime. The fd is
/// opened O_CLOEXEC, so children (the plugin scanner's) never inherit the lock. flock
/// binds open file descriptions, so a second holder in the same process is refused too,
/// and the kernel drops the lock when the holder dies, SIGKILL included.
class DataDirLock {
 public:
  DataDirLock() = default;
  DataDirLock(DataDirLock&& other) noexcept;
  DataDirLock& operator=(DataDirLock&& other) noexcept;
  DataDirLock(const DataDirLock&) = delete;
  DataDirLock& operator=(const DataDirLock&) = delete;
  ~DataDirLock();  // releases the lock

  /// Any thread; never waits for the lock. Creates <data_dir>/.lock if needed, takes the
  /// lock and writes this process's pid into the file (for the message others get).
  /// Errors: io_error "<data_dir>: in use by another process (pid N holds
  /// <data_dir>/.lock); one node per data_dir" when someone holds it; io_error naming
  /// the lock file and the cause when it cannot be created or opened.
  [[nodiscard]] static Result<DataDirLock> acquire(const std::string& data_dir);

  bool held() const noexcept { return fd_ >= 0; }

 private:
  explicit DataDirLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace edgert::detail
