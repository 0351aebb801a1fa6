/* Reads its configuration through edgert/plugin_config.h on request: process() takes
 * a record that is a JSON string "<type> <key>" (type: int, double, bool, string,
 * string4 = string into a 4-byte buffer) and emits
 * {"status":"<edgert_status_name>","value":...}; strings come back as hex bytes so
 * the test sees exactly what was written. Built with -std=c99 -pedantic. */
#include <edgert/plugin_config.h>

#include <stdio.h>
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

static edgert_status process(void* self, const edgert_input* in) {
  const instance* i = self;
  char type[16], key[64], out[700];
  edgert_status st;
  int n = 0;
  if (in->record_json == NULL || sscanf(in->record_json, "\"%15s %63[^\"]\"", type, key) != 2) {
    i->host->log(i->ctx, EDGERT_LOG_ERROR, "record must be a JSON string \"<type> <key>\"");
    return EDGERT_ERR_INVALID_ARGUMENT;
  }
  if (strcmp(type, "int") == 0) {
    int64_t v = 0;
    st = edgert_config_int(i->host, i->ctx, key, &v);
    n = snprintf(out, sizeof out, "{\"status\":\"%s\",\"value\":%lld}", edgert_status_name(st), (long long)v);
  } else if (strcmp(type, "double") == 0) {
    double v = 0;
    st = edgert_config_double(i->host, i->ctx, key, &v);
    n = snprintf(out, sizeof out, "{\"status\":\"%s\",\"value\":%.17g}", edgert_status_name(st), v);
  } else if (strcmp(type, "bool") == 0) {
    int v = -1;
    st = edgert_config_bool(i->host, i->ctx, key, &v);
    n = snprintf(out, sizeof out, "{\"status\":\"%s\",\"value\":%d}", edgert_status_name(st), v);
  } else {
    char buf[256];
    size_t k, len;
    memset(buf, 'X', sizeof buf);
    st = edgert_config_string(i->host, i->ctx, key, buf, strcmp(type, "string4") == 0 ? 4 : sizeof buf);
    len = memchr(buf, '\0', sizeof buf) ? strlen(buf) : 0;
    n = snprintf(out, sizeof out, "{\"status\":\"%s\",\"value\":\"", edgert_status_name(st));
    for (k = 0; k < len && n + 4 < (int)sizeof out; ++k) n += snprintf(out + n, sizeof out - (size_t)n, "%02x", (unsigned char)buf[k]);
    n += snprintf(out + n, sizeof out - (size_t)n, "\"}");
  }
  if (n < 0 || (size_t)n >= sizeof out) return EDGERT_ERR_INTERNAL;
  return i->host->emit(i->ctx, "config", out, (size_t)n);
}

static void destroy(void* self) { free(self); }

static const edgert_plugin_descriptor d = {sizeof d, EDGERT_ABI_VERSION, EDGERT_KIND_BUSINESS, "config_helpers",
                                           "1.0.0", "reads config through plugin_config.h", NULL, create, NULL,
                                           process, NULL, NULL, destroy, NULL, NULL, NULL, NULL};
EDGERT_DECLARE_PLUGIN(d);
