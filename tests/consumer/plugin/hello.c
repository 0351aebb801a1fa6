/* An out-of-tree plugin, built against the installed edgert package only. */
#include <edgert/plugin_abi.h>

#include <stdlib.h>

static const edgert_host_api* g_host;

static edgert_status create(const edgert_host_api* host, edgert_host_ctx* ctx, void* module_data, const char* cfg,
                            size_t len, void** instance) {
  (void)module_data, (void)cfg, (void)len;
  g_host = host;
  *instance = ctx;
  return EDGERT_OK;
}

static edgert_status process(void* instance, const edgert_input* in) {
  (void)in;
  return g_host->emit((edgert_host_ctx*)instance, "hello", "{\"hello\":\"world\"}", 17);
}

static void destroy(void* instance) { (void)instance; }

static const edgert_plugin_descriptor descriptor = {
    sizeof(edgert_plugin_descriptor), EDGERT_ABI_VERSION, EDGERT_KIND_BUSINESS, "hello", "1.0.0",
    "says hello", NULL, create, NULL, process, NULL, NULL, destroy, NULL, NULL, NULL, NULL};

EDGERT_DECLARE_PLUGIN(descriptor);
