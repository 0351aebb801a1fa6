#include "mailbox/data_dir_lock.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>

namespace edgert::detail {
namespace {

namespace fs = std::filesystem;

// The pid a holder wrote into the lock file, or "unknown": a holder that could open the
// file only read-only cannot write it, and a pid left by an earlier holder that has
// since died is not reported as the holder.
std::string holder_pid(int fd) {
  // The holder truncates and rewrites the file right after taking the lock: an empty
  // read may be that moment, so look again briefly.
  for (int attempt = 0; attempt < 20; ++attempt) {
    char buf[32] = {};
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    if (n > 0) {
      char* end = nullptr;
      const long pid = std::strtol(buf, &end, 10);
      if (pid > 0 && end != buf && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM)) {
        return std::to_string(pid);
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return "unknown";
}

}  // namespace

DataDirLock::DataDirLock(DataDirLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

DataDirLock& DataDirLock::operator=(DataDirLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

DataDirLock::~DataDirLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the last fd of the description drops the flock
}

Result<DataDirLock> DataDirLock::acquire(const std::string& data_dir) {
  const std::string path = (fs::path(data_dir) / ".lock").string();
  bool writable = true;
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0 && (errno == EACCES || errno == EPERM || errno == EROFS)) {
    // An existing lock file created by another user (e.g. root once ran the node):
    // flock works on a read-only descriptor as well.
    const int create_err = errno;
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
      const int err = errno == ENOENT ? create_err : errno;
      return Status{ErrorCode::io_error, data_dir + ": the data directory is not writable: cannot create the lock file " +
                                             path + " (" + std::strerror(err) + ")"};
    }
    writable = false;
  }
  if (fd < 0) {
    const int err = errno;
    return Status{ErrorCode::io_error, path + ": cannot open the data_dir lock file (" + std::strerror(err) + ")"};
  }
  DataDirLock lock(fd);
  while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err == EINTR) continue;
    if (err == EWOULDBLOCK) {
      const std::string pid = holder_pid(fd);
      const bool self = pid == std::to_string(::getpid());
      return Status{ErrorCode::io_error, data_dir + ": in use by " +
                                             (self ? std::string("another Mailbox in this process") : "another process") +
                                             " (pid " + pid + " holds " + path + "); one node per data_dir"};
    }
    return Status{ErrorCode::io_error, path + ": cannot lock the data_dir lock file (" + std::strerror(err) + ")"};
  }
  if (writable) {
    // Best effort: the pid only feeds the message another opener prints.
    const std::string text = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd, 0) == 0) (void)!::pwrite(fd, text.data(), text.size(), 0);
  }
  return lock;
}

}  // namespace edgert::detail
