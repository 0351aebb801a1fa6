/* Calls host services wrongly on request, so a test can see how the host answers:
 * process() reads its record, a JSON string naming the call ("emit_null_ctx", ...),
 * makes that call and returns the host's status as its own. */
#include <edgert/plugin_abi.h>

#include <stdlib.h>
#include <string.h>

typedef struct {
  const edgert_host_api* host;
  edgert_host_ctx* ctx;
} instance;

static edgert_status create(const edgert_host_api* host, edgert_host_ctx* ctx, void* m, const char* cfg, size_t len,
                            void** out) {
  instance* i = calloc(1, sizeof *i);
  (void)m, (void)cfg, (void)len;
  if (i == NULL) return EDGERT_ERR_NO_MEMORY;
  i->host = host, i->ctx = ctx;
  *out = i;
  return EDGERT_OK;
}

/* A JSON string payload of exactly `size` bytes: a quote, size - 2 'a's, a quote. */
static edgert_status emit_sized(const instance* i, size_t size) {
  edgert_status st;
  char* p = malloc(size);
  if (p == NULL) return EDGERT_ERR_NO_MEMORY;
  memset(p, 'a', size);
  p[0] = '"';
  p[size - 1] = '"';
  st = i->host->emit(i->ctx, "big", p, size);
  free(p);
  return st;
}

/* Emits `depth` nested arrays: [[[...]]]. */
static edgert_status emit_nested(const instance* i, size_t depth) {
  char text[2 * 128];
  size_t k;
  for (k = 0; k < depth; ++k) text[k] = '[', text[depth + k] = ']';
  return i->host->emit(i->ctx, "event", text, 2 * depth);
}

static edgert_status process(void* self, const edgert_input* in) {
  const instance* i = self;
  const edgert_host_api* h = i->host;
  const char* r = in->record_json ? in->record_json : "";
  char buf[8];
  if (strstr(r, "\"emit_ok\"")) return h->emit(i->ctx, "detection.person-2", "{\"ok\":1}", 8);
  if (strstr(r, "\"emit_null_ctx\"")) return h->emit(NULL, "event", "{}", 2);
  if (strstr(r, "\"emit_null_type\"")) return h->emit(i->ctx, NULL, "{}", 2);
  if (strstr(r, "\"emit_empty_type\"")) return h->emit(i->ctx, "", "{}", 2);
  if (strstr(r, "\"emit_bad_type\"")) return h->emit(i->ctx, "Bad Type\n", "{}", 2);
  if (strstr(r, "\"emit_digit_type\"")) return h->emit(i->ctx, "1event", "{}", 2);
  if (strstr(r, "\"emit_long_type\""))
    return h->emit(i->ctx, "a2345678901234567890123456789012345678901234567890123456789012345", "{}", 2);
  if (strstr(r, "\"emit_null_json\"")) return h->emit(i->ctx, "event", NULL, 2);
  if (strstr(r, "\"emit_bad_json\"")) return h->emit(i->ctx, "event", "{\"a\":", 5);
  if (strstr(r, "\"emit_trailing\"")) return h->emit(i->ctx, "event", "{}\0x", 4);
  if (strstr(r, "\"emit_bom\"")) return h->emit(i->ctx, "event", "\xef\xbb\xbf{}", 5);
  if (strstr(r, "\"emit_deep_ok\"")) return emit_nested(i, 64);
  if (strstr(r, "\"emit_too_deep\"")) return emit_nested(i, 65);
  if (strstr(r, "\"emit_at_limit\"")) return emit_sized(i, (size_t)1 << 20);
  if (strstr(r, "\"emit_over_limit\"")) return emit_sized(i, ((size_t)1 << 20) + 1);
  if (strstr(r, "\"emit_50mb\"")) return emit_sized(i, (size_t)50 << 20);
  if (strstr(r, "\"notify_null\"")) return h->notify(i->ctx, EDGERT_LOG_WARN, NULL);
  if (strstr(r, "\"notify_null_ctx\"")) return h->notify(NULL, EDGERT_LOG_WARN, "x");
  if (strstr(r, "\"notify_bad_level\"")) return h->notify(i->ctx, 99, "x");
  if (strstr(r, "\"config_null_key\"")) return h->config_get(i->ctx, NULL, buf, sizeof buf, NULL);
  if (strstr(r, "\"config_null_ctx\"")) return h->config_get(NULL, "x", buf, sizeof buf, NULL);
  if (strstr(r, "\"return_too_small\"")) return EDGERT_ERR_BUFFER_TOO_SMALL;
  if (strstr(r, "\"return_42\"")) return 42;
  return EDGERT_OK;
}

static void destroy(void* self) { free(self); }

static const edgert_plugin_descriptor d = {sizeof d, EDGERT_ABI_VERSION, EDGERT_KIND_BUSINESS, "host_errors", "1.0.0",
                                           "misuses host services on request", NULL, create, NULL, process, NULL,
                                           NULL, destroy, NULL, NULL, NULL, NULL};
EDGERT_DECLARE_PLUGIN(d);
