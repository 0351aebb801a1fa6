// A C++ plugin with module state (EDGERT_PLUGIN_CLASS_WITH_MODULE): Model is built
// once per loaded library and every instance reaches the same one. cpp_module_counters
// is a test hook the host never looks up.
#include <edgert/plugin.hpp>

#include <cstdint>
#include <string>

namespace {

int models_made = 0;
int models_gone = 0;

struct Model {
  explicit Model(edgert::sdk::Host host) {
    ++models_made;
    host.info("model loaded");
  }
  ~Model() { ++models_gone; }
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  int loads = 1;
};

class Detector : public edgert::sdk::Plugin {
 public:
  Detector(edgert::sdk::Host host, std::string_view) : Plugin(host) {}
  void process(const edgert::sdk::Input&) override {
    const Model& m = host().module<Model>();
    host().emit("module", "{\"module\":" + std::to_string(reinterpret_cast<std::uintptr_t>(&m)) +
                              ",\"loads\":" + std::to_string(m.loads) + "}");
  }
};

}  // namespace

extern "C" EDGERT_PLUGIN_EXPORT void cpp_module_counters(int* made, int* gone);
extern "C" EDGERT_PLUGIN_EXPORT void cpp_module_counters(int* made, int* gone) {
  *made = models_made;
  *gone = models_gone;
}

EDGERT_PLUGIN_CLASS_WITH_MODULE(Detector, Model, EDGERT_KIND_BUSINESS, "cpp_module", "1.0.0",
                                "shares one Model between instances", nullptr);
