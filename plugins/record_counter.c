/* record_counter: a business plugin in plain C. Counts its inputs and emits
 * {"stream": ..., "count": N, "frames": F} every `every` inputs (default 1). */
#include <edgert/plugin_abi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const edgert_host_api* host;
  edgert_host_ctx* ctx;
  long every, count, frames;
} counter;

static edgert_status create(const edgert_host_api* host, edgert_host_ctx* ctx, void* module_data,
                            const char* config, size_t len, void** instance) {
  char every[32];
  counter* c = calloc(1, sizeof *c);
  (void)module_data, (void)config, (void)len;
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

/* Writes `s` as the body of a JSON string (quotes not included) into out, which has room
 * for 6 bytes per input byte: '"' and '\\' are escaped, control characters become \u00XX.
 * Returns the number of bytes written. Other bytes (UTF-8 included) pass through. */
static size_t json_escape(const char* s, char* out) {
  static const char hex[] = "0123456789abcdef";
  size_t n = 0;
  for (; *s; ++s) {
    const unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') {
      out[n++] = '\\';
      out[n++] = (char)ch;
    } else if (ch < 0x20) {
      out[n++] = '\\', out[n++] = 'u', out[n++] = '0', out[n++] = '0';
      out[n++] = hex[ch >> 4], out[n++] = hex[ch & 0xF];
    } else {
      out[n++] = (char)ch;
    }
  }
  return n;
}

static edgert_status process(void* instance, const edgert_input* in) {
  counter* c = instance;
  const char* stream = in->stream ? in->stream : "";
  size_t cap, used;
  char* out;
  int tail;
  edgert_status st;
  c->count++;
  if (in->frame != NULL) c->frames++;
  if (c->count % c->every != 0) return EDGERT_OK;
  /* Sized for the worst case: every stream byte escaped to 6, plus the fixed text and two
   * 20-digit numbers. The length passed to emit is what was written, never more. */
  cap = 6 * strlen(stream) + 96;
  out = malloc(cap);
  if (out == NULL) return EDGERT_ERR_NO_MEMORY;
  memcpy(out, "{\"stream\":\"", 11);
  used = 11 + json_escape(stream, out + 11);
  tail = snprintf(out + used, cap - used, "\",\"count\":%ld,\"frames\":%ld}", c->count, c->frames);
  if (tail < 0 || (size_t)tail >= cap - used) {
    free(out);
    c->host->log(c->ctx, EDGERT_LOG_ERROR, "internal error: output buffer too small");
    return EDGERT_ERR_INTERNAL;
  }
  st = c->host->emit(c->ctx, "count", out, used + (size_t)tail);
  free(out);
  return st;
}

static void destroy(void* instance) { free(instance); }

static const edgert_plugin_descriptor descriptor = {
    sizeof(edgert_plugin_descriptor), EDGERT_ABI_VERSION, EDGERT_KIND_BUSINESS, "record_counter", "1.0.0",
    "counts inputs per instance and emits the running count", "{\"every\": {\"type\": \"integer\", \"default\": 1, "
    "\"description\": \"emit once every this many inputs (positive)\"}}",
    create, NULL, process, NULL, NULL, destroy, NULL, NULL, NULL, NULL};

EDGERT_DECLARE_PLUGIN(descriptor);
