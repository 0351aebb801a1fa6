// MqttTransport on libmosquitto (include/edgert/mqtt_transport.hpp).
#include <edgert/mqtt_transport.hpp>

namespace edgert {

const char* to_string(LinkState state) noexcept {
  switch (state) {
    case LinkState::stopped: return "stopped";
    case LinkState::connecting: return "connecting";
    case LinkState::connected: return "connected";
    case LinkState::unresponsive: return "unresponsive";
  }
  return "unknown";
}

Result<std::unique_ptr<Transport>> make_mqtt_transport(MqttOptions) {
  return Status{ErrorCode::unsupported, "make_mqtt_transport: not implemented yet"};
}

}  // namespace edgert
