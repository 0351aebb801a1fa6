/* A plugin pack: two descriptors in one library sharing module data, one variant per
 * PACK_<name> define (see tests/CMakeLists.txt). pack_counters() is a test hook the
 * host never looks up: the test dlopens this file itself to read it, so the counts
 * survive the loader unloading the library. */
#include <edgert/plugin_abi.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int inits, deinits, creates, destroys;
static void* last_module;

EDGERT_PLUGIN_EXPORT void pack_counters(int* init, int* deinit, int* create, int* destroy);
EDGERT_PLUGIN_EXPORT void pack_counters(int* init, int* deinit, int* create, int* destroy) {
  *init = inits, *deinit = deinits, *create = creates, *destroy = destroys;
}

typedef struct {
  const edgert_host_api* host;
  edgert_host_ctx* ctx;
  void* module;
} instance;

static edgert_status module_init(const edgert_host_api* host, edgert_host_ctx* module_ctx, void** module_data) {
  ++inits;
#if defined(PACK_INIT_FAILS)
  (void)module_data;
  host->log(module_ctx, EDGERT_LOG_ERROR, "cannot load model /nonexistent/model.onnx");
  return EDGERT_ERR_NOT_FOUND;
#else
  *module_data = malloc(64);
  if (*module_data == NULL) return EDGERT_ERR_NO_MEMORY;
  last_module = *module_data;
  host->log(module_ctx, EDGERT_LOG_INFO, "model loaded once");
  return EDGERT_OK;
#endif
}
static void module_deinit(void* module_data) {
  ++deinits;
  if (module_data != last_module) ++deinits; /* a wrong pointer shows as a count of 2 */
  free(module_data);
}

static edgert_status create(const edgert_host_api* host, edgert_host_ctx* ctx, void* module_data, const char* cfg,
                            size_t len, void** out) {
  instance* i = calloc(1, sizeof *i);
  (void)cfg, (void)len;
  if (i == NULL) return EDGERT_ERR_NO_MEMORY;
  i->host = host, i->ctx = ctx, i->module = module_data;
  ++creates;
  *out = i;
  return EDGERT_OK;
}
static edgert_status process(void* self, const edgert_input* in) {
  instance* i = self;
  char out[64];
  int n = snprintf(out, sizeof out, "{\"module\":%llu}", (unsigned long long)(uintptr_t)i->module);
  (void)in;
  return i->host->emit(i->ctx, "module", out, (size_t)n);
}
static void destroy(void* self) {
  ++destroys;
  free(self);
}

#if defined(PACK_OK)
#define SIG_A "pack_a"
#define SIG_B "pack_b"
#elif defined(PACK_INIT_FAILS)
#define SIG_A "pack_fail_a"
#define SIG_B "pack_fail_b"
#elif defined(PACK_DUPLICATE)
#define SIG_A "pack_dup"
#define SIG_B "pack_dup"
#elif defined(PACK_LATE_INIT) || defined(PACK_LOOP)
#define SIG_A "pack_bad_a"
#define SIG_B "pack_bad_b"
#else
#error "define one PACK_* variant"
#endif

#if defined(PACK_LATE_INIT)
#define B_INIT module_init
#else
#define B_INIT NULL
#endif
#if defined(PACK_LOOP)
#define B_NEXT &a
#else
#define B_NEXT NULL
#endif

static const edgert_plugin_descriptor a;
static const edgert_plugin_descriptor b = {sizeof b, EDGERT_ABI_VERSION, EDGERT_KIND_BUSINESS, SIG_B, "1.0.0",
                                           "second plugin of the pack", NULL, create, NULL, process, NULL, NULL,
                                           destroy, NULL, B_INIT, NULL, B_NEXT};
static const edgert_plugin_descriptor a = {sizeof a, EDGERT_ABI_VERSION, EDGERT_KIND_BUSINESS, SIG_A, "1.0.0",
                                           "first plugin of the pack", NULL, create, NULL, process, NULL, NULL,
                                           destroy, NULL, module_init, module_deinit, &b};
EDGERT_DECLARE_PLUGIN(a);
