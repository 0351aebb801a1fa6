// Status and Result<T>: how fallible calls of the public API report errors.
// Exceptions stop at the API: functions that can fail for reasons outside the
// caller's control return one of these instead of throwing.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace edgert {

enum class ErrorCode {
  ok = 0,
  invalid_argument,  // the caller passed something malformed
  not_found,         // a file, key or item does not exist
  io_error,          // the operating system refused (open, read, write)
  config_error,      // a configuration file or override is invalid
  timeout,           // a bounded wait expired
  closed,            // the object was stopped or closed
  internal,          // a bug in edgert, or a plugin failed (the message says which)
  unsupported,       // the operation is not available here
  again,             // nothing available now; try again later
  end_of_stream,     // a source is exhausted
  quota_exceeded,    // a configured limit (disk, messages) refused the request
};

/// An error code and a message meant for a human ("node.yaml:12: node.heartbeat_interval_ms: ...").
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok_status() { return {}; }

  bool ok() const noexcept { return code_ == ErrorCode::ok; }
  explicit operator bool() const noexcept { return ok(); }
  ErrorCode code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }

 private:
  ErrorCode code_ = ErrorCode::ok;
  std::string message_;
};

/// Either a value or a non-ok Status. value() on an error is a caller bug and
/// throws std::bad_variant_access.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}                     // NOLINT: implicit by design
  Result(Status error) : v_(std::move(error)) {}                // NOLINT: implicit by design

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  /// By value, not T&&: `for (auto& x : f().value())` must not dangle.
  T value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  /// The error; an ok Status when the Result holds a value.
  Status status() const { return ok() ? Status{} : std::get<1>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace edgert
