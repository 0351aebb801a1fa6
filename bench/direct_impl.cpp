// The baseline for abi_bench: the same work behind a plain C++ virtual call, compiled
// in its own translation unit so the call cannot be devirtualized or inlined.
#include "direct_impl.hpp"

namespace {
class Noop final : public DirectProcessor {
 public:
  edgert::Status process(const edgert::PluginInput& in) override {
    calls_ += in.record_json.size() != 0 ? 1 : 2;
    return {};
  }
  std::uint64_t calls() const override { return calls_; }

 private:
  std::uint64_t calls_ = 0;
};
}  // namespace

std::unique_ptr<DirectProcessor> make_direct_processor() { return std::make_unique<Noop>(); }
