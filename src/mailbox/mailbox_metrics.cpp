#include <edgert/component_metrics.hpp>
#include <edgert/mailbox.hpp>
namespace edgert {
MetricsRegistration register_mailbox_metrics(MetricsRegistry&, std::string_view, Mailbox&) { return {}; }
}
