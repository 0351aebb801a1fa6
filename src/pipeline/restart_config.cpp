// The `health.restart` section (docs/configuration.md, "health.restart"): one policy
// for every kind, and optional `instance:` / `stream:` sections replacing it per kind.
#include "pipeline/pipeline_config.hpp"

namespace edgert::config {

namespace {

// The policy keys, for a table of RestartPolicyConfig or of a struct derived from it.
template <class S>
void policy_keys(Table<S>& s) {
  using P = RestartPolicyConfig;
  auto m = [](auto P::*member) {
    using T = std::remove_reference_t<decltype(std::declval<P&>().*member)>;
    return static_cast<T S::*>(member);
  };
  s.word("policy", m(&P::policy),
         {{"never", RestartMode::never}, {"on_failure", RestartMode::on_failure}, {"always", RestartMode::always}})
      .key("intensity", m(&P::intensity), between(1, 1000))
      .key("window_s", m(&P::window_s), number_between(1, 604800))
      .key("backoff_initial_s", m(&P::backoff_initial_s), number_between(0.001, 3600))
      .key("backoff_max_s", m(&P::backoff_max_s), number_between(0.001, 86400))
      .key("backoff_factor", m(&P::backoff_factor), number_between(1, 16))
      .key("jitter", m(&P::jitter), number_between(0, 0.5))
      .key("reset_after_s", m(&P::reset_after_s), number_between(1, 604800))
      .key("replace_stuck", m(&P::replace_stuck))
      .check([](const S& p, const YAML::Node& map, const std::string& path, Context& ctx) {
        if (p.backoff_max_s < p.backoff_initial_s) {
          ctx.add(map["backoff_max_s"] ? map["backoff_max_s"] : map, join_path(path, "backoff_max_s"),
                  "must not be below backoff_initial_s (" + std::to_string(p.backoff_initial_s) + ")");
        }
      });
}

const Table<RestartPolicyConfig>& kind_table() {
  static const Table<RestartPolicyConfig> t = [] {
    Table<RestartPolicyConfig> s;
    policy_keys(s);
    return s;
  }();
  return t;
}

}  // namespace

const Table<RestartSection>& restart_table() {
  static const Table<RestartSection> t = [] {
    Table<RestartSection> s;
    policy_keys(s);
    s.optional_section("instance", &RestartSection::instance, kind_table())
        .optional_section("stream", &RestartSection::stream, kind_table())
        .key("escalate_to_node", &RestartSection::escalate_to_node);
    return s;
  }();
  return t;
}

}  // namespace edgert::config
