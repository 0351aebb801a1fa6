// A C++ business plugin for the tests: keeps every frame it is given (retain) and,
// on each call, checks that all kept frames still hold the pixels they had. A record
// {"release": true} releases them all. It throws from process() on {"throw": true}.
#include <edgert/plugin.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

class FrameKeeper : public edgert::sdk::Plugin {
 public:
  FrameKeeper(edgert::sdk::Host host, std::string_view) : Plugin(host) {}
  ~FrameKeeper() override { release_all(); }

  void process(const edgert::sdk::Input& in) override {
    if (const edgert_frame* f = in.frame()) {
      host().retain(f);
      kept_.push_back({f, sum(*f)});
    } else if (in.record().find("\"throw\"") != std::string_view::npos) {
      throw std::runtime_error("asked to throw");
    } else if (in.record().find("\"release\"") != std::string_view::npos) {
      release_all();
    }
    bool intact = true;
    for (const auto& k : kept_) intact = intact && sum(*k.frame) == k.checksum;
    host().emit("kept", "{\"kept\":" + std::to_string(kept_.size()) + ",\"intact\":" + (intact ? "true" : "false") +
                            ",\"stream\":\"" + std::string(in.stream()) + "\"}");
  }

 private:
  struct Kept {
    const edgert_frame* frame;
    std::uint64_t checksum;
  };
  static std::uint64_t sum(const edgert_frame& f) {
    std::uint64_t s = 0;
    for (int y = 0; y < f.height; ++y)
      for (int x = 0; x < f.stride; ++x) s = s * 31 + f.data[static_cast<std::ptrdiff_t>(y) * f.stride + x];
    return s;
  }
  void release_all() {
    for (const auto& k : kept_) host().release(k.frame);
    kept_.clear();
  }
  std::vector<Kept> kept_;
};

}  // namespace

EDGERT_PLUGIN_CLASS(FrameKeeper, EDGERT_KIND_BUSINESS, "frame_keeper", "1.0.0", "keeps frames; for tests", "{}");
