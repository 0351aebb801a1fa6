/* FROZEN at ABI 1.0 final (settled 2026-11-27): the v1 test plugin, built against
 * the frozen v1 header in tests/abi/v1/. Never edit this file or that header again:
 * the test proves that a plugin built against ABI 1.0 keeps loading and working as
 * include/edgert/plugin_abi.h grows. (Both were updated once, before 1.0 shipped,
 * when create() gained module_data and the descriptor its module fields.) */
#include <edgert/plugin_abi.h>

#include <stdlib.h>

static edgert_status create(const edgert_host_api* host, edgert_host_ctx* ctx, void* module_data, const char* cfg,
                            size_t len, void** instance) {
  const edgert_host_api** self = malloc(2 * sizeof(void*));
  (void)module_data, (void)cfg, (void)len;
  if (!self) return EDGERT_ERR_NO_MEMORY;
  self[0] = host;
  self[1] = (const edgert_host_api*)(void*)ctx;
  *instance = (void*)self;
  return EDGERT_OK;
}

static edgert_status process(void* instance, const edgert_input* in) {
  const edgert_host_api** self = instance;
  const char* reply = "{\"v1\":true}";
  (void)in;
  return self[0]->emit((edgert_host_ctx*)(void*)self[1], "v1", reply, 11);
}

static void destroy(void* instance) { free(instance); }

static const edgert_plugin_descriptor descriptor = {sizeof(edgert_plugin_descriptor), EDGERT_MAKE_VERSION(1, 0),
                                                    EDGERT_KIND_BUSINESS, "abi_v1", "1.0.0", "frozen ABI 1.0 plugin",
                                                    NULL, create, NULL, process, NULL, NULL, destroy, NULL,
                                                    NULL, NULL, NULL};

EDGERT_DECLARE_PLUGIN(descriptor);
