#pragma once

#include <edgert/plugin_host.hpp>

#include <cstdint>
#include <memory>

class DirectProcessor {
 public:
  virtual ~DirectProcessor() = default;
  // Same signature as PluginInstance::process: errors come back as a Status.
  virtual edgert::Status process(const edgert::PluginInput& in) = 0;
  virtual std::uint64_t calls() const = 0;
};

std::unique_ptr<DirectProcessor> make_direct_processor();
