/* test_pattern: a capture plugin (a DCT) in plain C. Produces GRAY8 frames with a
 * moving vertical bar, `width` x `height` pixels, then ends after `frames` frames
 * (0: never). Each frame's buffer is the plugin's own and is freed by the host
 * through the release callback once the last consumer is done with it. */
#include <edgert/plugin_abi.h>

#include <stdlib.h>
#include <string.h>

typedef struct {
  const edgert_host_api* host;
  edgert_host_ctx* ctx;
  long width, height, frames, produced;
} pattern;

static long config_long(const edgert_host_api* host, edgert_host_ctx* ctx, const char* key, long fallback) {
  char buf[32];
  return host->config_get(ctx, key, buf, sizeof buf, NULL) == EDGERT_OK ? atol(buf) : fallback;
}

static edgert_status create(const edgert_host_api* host, edgert_host_ctx* ctx, void* module_data,
                            const char* config, size_t len, void** instance) {
  pattern* p = calloc(1, sizeof *p);
  (void)module_data, (void)config, (void)len;
  if (p == NULL) return EDGERT_ERR_NO_MEMORY;
  p->host = host, p->ctx = ctx;
  p->width = config_long(host, ctx, "width", 64);
  p->height = config_long(host, ctx, "height", 48);
  p->frames = config_long(host, ctx, "frames", 0);
  if (p->width < 1 || p->height < 1 || p->width > 8192 || p->height > 8192 || p->frames < 0) {
    host->log(ctx, EDGERT_LOG_ERROR, "width and height must be 1..8192 and frames >= 0");
    free(p);
    return EDGERT_ERR_INVALID_ARGUMENT;
  }
  *instance = p;
  return EDGERT_OK;
}

static void release(void* pixels) { free(pixels); }

static edgert_status capture(void* instance, edgert_capture* out) {
  pattern* p = instance;
  long y, bar;
  unsigned char* px;
  if (p->frames > 0 && p->produced >= p->frames) return EDGERT_ERR_END_OF_STREAM;
  px = malloc((size_t)(p->width * p->height));
  if (px == NULL) return EDGERT_ERR_NO_MEMORY;
  memset(px, 16, (size_t)(p->width * p->height));
  bar = p->produced % p->width;
  for (y = 0; y < p->height; ++y) px[y * p->width + bar] = 235;
  p->produced++;
  out->pixel_format = EDGERT_PIXEL_GRAY8;
  out->data = px;
  out->width = (int32_t)p->width;
  out->height = (int32_t)p->height;
  out->stride = (int32_t)p->width;
  out->timestamp_ns = p->host->wall_ns(p->ctx);
  out->release = release;
  out->release_data = px;
  return EDGERT_OK;
}

static void destroy(void* instance) { free(instance); }

static const edgert_plugin_descriptor descriptor = {
    sizeof(edgert_plugin_descriptor), EDGERT_ABI_VERSION, EDGERT_KIND_CAPTURE, "test_pattern", "1.0.0",
    "synthetic GRAY8 frames with a moving bar", "{\"width\": {\"type\": \"integer\", \"default\": 64, \"minimum\": 1, \"maximum\": 8192, "
    "\"description\": \"frame width in pixels\"}, "
    "\"height\": {\"type\": \"integer\", \"default\": 48, \"minimum\": 1, \"maximum\": 8192, "
    "\"description\": \"frame height in pixels\"}, "
    "\"frames\": {\"type\": \"integer\", \"default\": 0, \"minimum\": 0, "
    "\"description\": \"frames before end of stream; 0: endless\"}}",
    create, NULL, NULL, capture, NULL, destroy, NULL, NULL, NULL, NULL};

EDGERT_DECLARE_PLUGIN(descriptor);
