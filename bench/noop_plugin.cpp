// The plugin abi_bench calls: counts calls, nothing else, written with the C++ helpers
// (so the exception guard at the boundary is part of what is measured).
#include <edgert/plugin.hpp>

#include <cstdint>

namespace {
class Noop : public edgert::sdk::Plugin {
 public:
  Noop(edgert::sdk::Host host, std::string_view) : Plugin(host) {}
  void process(const edgert::sdk::Input& in) override { calls_ += in.record().size() != 0 ? 1 : 2; }
  ~Noop() override {
    if (calls_ == 0) host().debug("noop: never called");
  }

 private:
  std::uint64_t calls_ = 0;
};
}  // namespace

EDGERT_PLUGIN_CLASS(Noop, EDGERT_KIND_BUSINESS, "bench_noop", "1.0.0", "does nothing, for abi_bench", nullptr);
