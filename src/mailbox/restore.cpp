#include <edgert/mailbox.hpp>

namespace edgert {

Result<std::string> Mailbox::restore(const std::string& data_dir, const std::string& backup) {
  return Status{ErrorCode::unsupported, "restore of " + backup + " into " + data_dir + ": not implemented"};
}

}  // namespace edgert
