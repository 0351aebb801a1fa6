/* Business plugins that misbehave in process() on the Nth input (config "on", default 3),
 * one per TRY_<name> define (tests/CMakeLists.txt): they emit {"n": k} for each input
 * before that, then segfault, abort, call exit(4) or hang. `edgert-node try` must report
 * each as one line naming the call and the input. */
#include <edgert/plugin_abi.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct {
  const edgert_host_api* host;
  edgert_host_ctx* ctx;
  long on, seen;
} victim;

static edgert_status create(const edgert_host_api* host, edgert_host_ctx* ctx, void* module_data,
                            const char* config, size_t len, void** instance) {
  char on[32];
  victim* v = calloc(1, sizeof *v);
  (void)module_data, (void)config, (void)len;
  if (v == NULL) return EDGERT_ERR_NO_MEMORY;
  v->host = host, v->ctx = ctx, v->on = 3;
  if (host->config_get(ctx, "on", on, sizeof on, NULL) == EDGERT_OK) v->on = atol(on);
  *instance = v;
  return EDGERT_OK;
}

static edgert_status process(void* instance, const edgert_input* in) {
  victim* v = instance;
  char out[64];
  int n;
  (void)in;
  if (++v->seen == v->on) {
#if defined(TRY_SEGFAULT)
    /* A wild pointer (not NULL, which UBSan would catch first): a plain SIGSEGV. */
    volatile int* volatile nowhere = (volatile int*)(uintptr_t)8;
    *nowhere = 1;
#elif defined(TRY_ABORT)
    abort();
#elif defined(TRY_EXIT)
    exit(4);
#elif defined(TRY_HANG)
    for (;;) pause();
#endif
  }
  n = snprintf(out, sizeof out, "{\"n\":%ld}", v->seen);
  return v->host->emit(v->ctx, "seen", out, (size_t)n);
}

static void destroy(void* instance) { free(instance); }

#if defined(TRY_SEGFAULT)
#define SIGNATURE "try_segfault"
#elif defined(TRY_ABORT)
#define SIGNATURE "try_abort"
#elif defined(TRY_EXIT)
#define SIGNATURE "try_exit"
#else
#define SIGNATURE "try_hang"
#endif

static const edgert_plugin_descriptor descriptor = {
    sizeof(edgert_plugin_descriptor), EDGERT_ABI_VERSION, EDGERT_KIND_BUSINESS, SIGNATURE, "1.0.0",
    "misbehaves in process() on input `on`", "{\"on\": {\"type\": \"integer\", \"default\": 3, \"minimum\": 1}}", create, NULL, process,
    NULL, NULL, destroy, NULL, NULL, NULL, NULL};

EDGERT_DECLARE_PLUGIN(descriptor);
