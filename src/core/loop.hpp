// Internal: access to the runtime's shared io_context for edgert's own components
// (comms, registry). Never include from a public header.
#pragma once

#include <edgert/system_runtime.hpp>

#include <boost/asio/io_context.hpp>

namespace edgert::detail {

/// The loop every timer and socket of the runtime runs on. Valid until the runtime
/// is destroyed; after shutdown_loop() handlers posted to it never run.
boost::asio::io_context& io_context(SystemRuntime& runtime);

}  // namespace edgert::detail
