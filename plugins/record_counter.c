/* record_counter: a business plugin in plain C. Counts its inputs and emits
 * {"stream": ..., "count": N, "frames": F} every `every` inputs (default 1). */
#include <edgert/plugin_abi.h>

#include <stdio.h>
#include <stdlib.h>

typedef struct {
  const edgert_host_api* host;
  edgert_host_ctx* ctx;
  long every, count, frames;
} counter;

static edgert_status create(const edgert_host_api* host, edgert_host_ctx* ctx, const char* config,
                            size_t len, void** instance) {
  char every[32];
  counter* c = calloc(1, sizeof *c);
  (void)config, (void)len;
  if (c == NULL) return EDGERT_ERR_NO_MEMORY;
  c->host = host, c->ctx = ctx, c->every = 1;
  if (host->config_get(ctx, "every", every, sizeof every, NULL) == EDGERT_OK) c->every = atol(every);
  if (c->every < 1) {
    host->log(ctx, EDGERT_LOG_ERROR, "config 'every' must be a positive integer");
    free(c);
    return EDGERT_ERR_INVALID_ARGUMENT;
  }
  *instance = c;
  return EDGERT_OK;
}

static edgert_status process(void* instance, const edgert_input* in) {
  counter* c = instance;
  char out[256];
  int n;
  c->count++;
  if (in->frame != NULL) c->frames++;
  if (c->count % c->every != 0) return EDGERT_OK;
  n = snprintf(out, sizeof out, "{\"stream\":\"%s\",\"count\":%ld,\"frames\":%ld}", in->stream ? in->stream : "",
               c->count, c->frames);
  return c->host->emit(c->ctx, "count", out, (size_t)n);
}

static void destroy(void* instance) { free(instance); }

static const edgert_plugin_descriptor descriptor = {
    sizeof(edgert_plugin_descriptor), EDGERT_ABI_VERSION, EDGERT_KIND_BUSINESS, "record_counter", "1.0.0",
    "counts inputs per instance and emits the running count", "{\"every\": 1}",
    create, NULL, process, NULL, NULL, destroy, NULL};

EDGERT_DECLARE_PLUGIN(descriptor);
