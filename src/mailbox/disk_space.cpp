#include "mailbox/disk_space.hpp"

#include "core/log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace edgert::detail {
namespace {

constexpr std::uint64_t kMaxReserveBytes = 1 << 20;

}  // namespace

Result<std::uint64_t> free_bytes(const std::string& dir) {
  struct statvfs v {};
  if (::statvfs(dir.c_str(), &v) != 0) {
    const int err = errno;
    return Status{ErrorCode::io_error, dir + ": statvfs: " + std::strerror(err)};
  }
  return static_cast<std::uint64_t>(v.f_bavail) * static_cast<std::uint64_t>(v.f_frsize);
}

WalBudget wal_budget(std::uint64_t checkpoint_bytes, std::uint64_t limit_bytes, std::uint64_t room) {
  WalBudget b;
  b.checkpoint_bytes = std::min(checkpoint_bytes, std::max(room / 8, kMinCheckpointBytes));
  b.limit_bytes = std::max(b.checkpoint_bytes, std::min(limit_bytes, std::max(room / 4, kMinCheckpointBytes)));
  b.lowered = b.checkpoint_bytes < checkpoint_bytes || b.limit_bytes < limit_bytes;
  return b;
}

DiskGuard::DiskGuard(std::string db_path, std::string dir, std::uint64_t checkpoint_bytes, std::uint64_t limit_bytes)
    : db_path_(std::move(db_path)),
      dir_(std::move(dir)),
      reserve_path_(dir_ + "/mailbox.reserve"),
      checkpoint_bytes_(checkpoint_bytes),
      limit_bytes_(limit_bytes) {}

std::uint64_t DiskGuard::wal_size() const {
  struct stat st {};
  return ::stat((db_path_ + "-wal").c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
}

Status DiskGuard::create_reserve_locked() {
  const int fd = ::open(reserve_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int err = errno;
    return {ErrorCode::io_error, reserve_path_ + ": " + std::strerror(err)};
  }
  // Allocates real blocks (glibc writes zeros where the file system cannot allocate),
  // so deleting the file gives them back.
  int err = ::posix_fallocate(fd, 0, static_cast<off_t>(reserve_size_));
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  ::close(fd);
  if (err != 0) {
    ::unlink(reserve_path_.c_str());
    return {ErrorCode::io_error, reserve_path_ + ": cannot allocate " + std::to_string(reserve_size_) + " bytes: " +
                                     std::strerror(err)};
  }
  held_ = true;
  return {};
}

Result<WalBudget> DiskGuard::open() {
  std::lock_guard lk(mu_);
  ::unlink(reserve_path_.c_str());  // an earlier run's: measured afresh below
  auto free = free_bytes(dir_);
  if (!free.ok()) return free.status();
  // Enough for the bookkeeping writes that drain a full disk, never most of a small one.
  reserve_size_ = std::min(kMaxReserveBytes, free.value() / 4) / 4096 * 4096;
  if (reserve_size_ > 0) {
    if (Status st = create_reserve_locked(); !st.ok()) {
      log().warn("mailbox {}: no reserve file ({}); on a full disk delivered messages may not be removable until "
                 "space is freed",
                 db_path_, st.message());
    }
  }
  if (held_) {
    free = free_bytes(dir_);
    if (!free.ok()) return free.status();
  }
  const WalBudget b = wal_budget(checkpoint_bytes_, limit_bytes_, free.value() + wal_size());
  if (b.lowered) {
    log().info("mailbox {}: {} bytes free on {}: WAL checkpoint every {} bytes, WAL limit {} bytes (configured {} "
               "and {})",
               db_path_, free.value(), dir_, b.checkpoint_bytes, b.limit_bytes, checkpoint_bytes_, limit_bytes_);
  }
  return b;
}

Status DiskGuard::refusal(const std::string& printable_id) {
  ++refused_;
  const auto free = free_bytes(dir_);
  return {ErrorCode::quota_exceeded, "mailbox " + db_path_ + ": disk full (" +
                                         (free.ok() ? std::to_string(free.value()) : std::string("?")) +
                                         " bytes free on " + dir_ + "); message " + printable_id +
                                         " refused; delivered messages can still be removed"};
}

void DiskGuard::on_send_full() {
  std::lock_guard lk(mu_);
  const auto free = free_bytes(dir_);
  const std::uint64_t f = free.ok() ? free.value() : 0;
  WalBudget b = wal_budget(checkpoint_bytes_, limit_bytes_, f + wal_size());
  b.full = true;
  if (apply_) apply_(b);
  if (refusing_.exchange(true)) return;
  log().warn("mailbox {}: disk full ({} bytes free on {}); sends are refused until space is freed; delivered "
             "messages can still be removed (WAL checkpoint every {} bytes)",
             db_path_, f, dir_, b.checkpoint_bytes);
}

bool DiskGuard::release_reserve(const std::string& op) {
  std::lock_guard lk(mu_);
  refusing_.store(true);
  if (!held_) return false;
  ::unlink(reserve_path_.c_str());
  held_ = false;
  const auto free = free_bytes(dir_);
  WalBudget b = wal_budget(checkpoint_bytes_, limit_bytes_, wal_size());  // the WAL's own space, not the reserve's
  b.full = true;
  if (apply_) apply_(b);
  log().warn("mailbox {}: disk full during {}; released the {}-byte reserve {} ({} bytes free on {} now); sends "
             "are refused until space is back",
             db_path_, op, reserve_size_, reserve_path_, free.ok() ? free.value() : 0, dir_);
  return true;
}

void DiskGuard::maybe_restore() {
  if (!refusing()) return;
  std::lock_guard lk(mu_);
  if (!refusing()) return;
  const auto free = free_bytes(dir_);
  if (!free.ok()) return;
  const std::uint64_t need = held_ ? 0 : reserve_size_;
  if (free.value() < need) return;
  const std::uint64_t left = free.value() - need;
  // Room for the WAL to reach its limit beside the re-created reserve: with less, the
  // next bookkeeping write fills the disk again and the reserve flaps (released,
  // re-created, released) on every delivery.
  const WalBudget room = wal_budget(checkpoint_bytes_, limit_bytes_, left + wal_size());
  if (left < std::max<std::uint64_t>(kMinRoomBytes, room.limit_bytes)) return;
  if (!held_ && reserve_size_ > 0) {
    if (Status st = create_reserve_locked(); !st.ok()) {
      log().debug("mailbox {}: reserve not re-created yet ({})", db_path_, st.message());
      return;
    }
  }
  const WalBudget b = wal_budget(checkpoint_bytes_, limit_bytes_, left + wal_size());
  if (apply_) apply_(b);
  refusing_.store(false);
  log().info("mailbox {}: disk space is back ({} bytes free on {}, reserve {} in place); sends are accepted again",
             db_path_, left, dir_, reserve_path_);
}

}  // namespace edgert::detail
