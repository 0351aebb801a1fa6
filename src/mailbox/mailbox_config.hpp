// Key table of the `mailbox` section (src/mailbox/mailbox_config.cpp).
#pragma once

#include "config/schema.hpp"

#include <edgert/mailbox_config.hpp>

namespace edgert::config {

const Table<MailboxSection>& mailbox_table();

}  // namespace edgert::config
