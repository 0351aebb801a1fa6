// MailboxAccess: what the library's own result path may do that a host may not (send a payload already checked).
#pragma once

#include <edgert/mailbox.hpp>

#include <cstddef>

namespace edgert::detail {

/// Room a sender reserves after a payload it hands to send_checked_async() for the envelope's own fields, so
/// the payload's buffer becomes the stored row without a second allocation (ids of up to max_id_bytes each
/// may still need more: then the string grows once).
inline constexpr std::size_t kEnvelopeHeadroom = 512;

struct MailboxAccess {
  /// Mailbox::send_async() for a payload that passed check_json() at `checked_depth` (0: not checked). Within
  /// the mailbox's max_json_depth it is not checked again and its buffer becomes the stored row; anything else
  /// (ids, size, TTL, disk) is checked as for send_async(). Same threads, blocking and errors as send_async().
  static PendingSend send_checked_async(Mailbox& mailbox, Envelope envelope, SendOptions options,
                                        std::size_t checked_depth);
};

}  // namespace edgert::detail
