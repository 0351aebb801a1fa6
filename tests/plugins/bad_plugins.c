/* Deliberately broken plugins, one per BAD_<name> define (see tests/CMakeLists.txt).
 * Each must be refused, or fail, with a clear message while the host keeps working. */
#include <edgert/plugin_abi.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>

static edgert_status create_ok(const edgert_host_api* h, edgert_host_ctx* c, void* m, const char* j, size_t n,
                               void** out) {
  (void)h, (void)c, (void)m, (void)j, (void)n;
  *out = malloc(1);
  return *out ? EDGERT_OK : EDGERT_ERR_NO_MEMORY;
}
static edgert_status create_fails(const edgert_host_api* h, edgert_host_ctx* c, void* m, const char* j, size_t n,
                                  void** out) {
  (void)m, (void)j, (void)n, (void)out;
  h->log(c, EDGERT_LOG_ERROR, "cannot open /dev/video7: no such device");
  return EDGERT_ERR_INVALID_ARGUMENT;
}
static edgert_status process_ok(void* i, const edgert_input* in) {
  (void)i, (void)in;
  return EDGERT_OK;
}
static void destroy_ok(void* i) { free(i); }

#if defined(BAD_NO_ENTRY)
int not_a_plugin(void);
int not_a_plugin(void) { return 42; }

#elif defined(BAD_FUTURE_ABI)
/* Speaks only ABI 2.0: refuses any offer whose range does not reach 2.x. */
static const edgert_plugin_descriptor d = {sizeof d, EDGERT_MAKE_VERSION(2, 0), EDGERT_KIND_BUSINESS, "future", "9.0.0",
                                           "from the future", NULL, create_ok, NULL, process_ok, NULL, NULL, destroy_ok,
                                           NULL, NULL, NULL, NULL};
EDGERT_PLUGIN_EXPORT edgert_status edgert_plugin_entry(const edgert_host_offer* o, const edgert_plugin_descriptor** out);
EDGERT_PLUGIN_EXPORT edgert_status edgert_plugin_entry(const edgert_host_offer* o, const edgert_plugin_descriptor** out) {
  if (EDGERT_VERSION_MAJOR_OF(o->max_version) < 2) return EDGERT_ERR_UNSUPPORTED;
  *out = &d;
  return EDGERT_OK;
}

#elif defined(BAD_FUTURE_ANSWER)
/* Ignores the offer and answers 2.0 anyway. */
static const edgert_plugin_descriptor d = {sizeof d, EDGERT_MAKE_VERSION(2, 0), EDGERT_KIND_BUSINESS, "future_liar",
                                           "9.0.0", "", NULL, create_ok, NULL, process_ok, NULL, NULL, destroy_ok, NULL, NULL, NULL, NULL};
EDGERT_PLUGIN_EXPORT edgert_status edgert_plugin_entry(const edgert_host_offer* o, const edgert_plugin_descriptor** out);
EDGERT_PLUGIN_EXPORT edgert_status edgert_plugin_entry(const edgert_host_offer* o, const edgert_plugin_descriptor** out) {
  (void)o;
  *out = &d;
  return EDGERT_OK;
}

#elif defined(BAD_NULL_CALLBACK)
static const edgert_plugin_descriptor d = {sizeof d, EDGERT_ABI_VERSION, EDGERT_KIND_BUSINESS, "no_process", "1.0.0",
                                           "", NULL, create_ok, NULL, NULL, NULL, NULL, destroy_ok, NULL, NULL, NULL, NULL};
EDGERT_DECLARE_PLUGIN(d);

#elif defined(BAD_CREATE_FAILS)
static const edgert_plugin_descriptor d = {sizeof d, EDGERT_ABI_VERSION, EDGERT_KIND_BUSINESS, "create_fails", "1.0.0",
                                           "", NULL, create_fails, NULL, process_ok, NULL, NULL, destroy_ok, NULL, NULL, NULL, NULL};
EDGERT_DECLARE_PLUGIN(d);

#elif defined(BAD_BAD_SIGNATURE)
static const edgert_plugin_descriptor d = {sizeof d, EDGERT_ABI_VERSION, EDGERT_KIND_BUSINESS, "has space", "1.0.0",
                                           "", NULL, create_ok, NULL, process_ok, NULL, NULL, destroy_ok, NULL, NULL, NULL, NULL};
EDGERT_DECLARE_PLUGIN(d);

#elif defined(BAD_NEWER_FIELDS) || defined(GOOD_LONGER_ZERO)
/* A descriptor from a newer minor: one field this host does not know, appended. */
typedef struct {
  edgert_plugin_descriptor v1;
  void* added_later;
} descriptor_v1_1;
#if defined(BAD_NEWER_FIELDS)
static int marker;
static const descriptor_v1_1 d = {{sizeof d, EDGERT_ABI_VERSION, EDGERT_KIND_BUSINESS, "newer_fields", "1.1.0", "",
                                   NULL, create_ok, NULL, process_ok, NULL, NULL, destroy_ok, NULL, NULL, NULL, NULL},
                                  &marker};
#else
static const descriptor_v1_1 d = {{sizeof d, EDGERT_ABI_VERSION, EDGERT_KIND_BUSINESS, "longer_zero", "1.1.0", "",
                                   NULL, create_ok, NULL, process_ok, NULL, NULL, destroy_ok, NULL, NULL, NULL, NULL},
                                  NULL};
#endif
EDGERT_PLUGIN_EXPORT edgert_status edgert_plugin_entry(const edgert_host_offer* o, const edgert_plugin_descriptor** out);
EDGERT_PLUGIN_EXPORT edgert_status edgert_plugin_entry(const edgert_host_offer* o, const edgert_plugin_descriptor** out) {
  if (edgert_negotiate_version(o) == 0) return EDGERT_ERR_UNSUPPORTED;
  *out = &d.v1;
  return EDGERT_OK;
}

#elif defined(GOOD_SHORT_DESCRIPTOR) || defined(GOOD_PRERELEASE)
/* Plugins built against the pre-release 1.0 header: their descriptor ends at or before
 * update_config and their create() has no module_data argument. The host zero-fills
 * the rest and calls create() the old way. The instance keeps the configuration it
 * was given and emits it, so a test sees whether create() got its arguments right. */
typedef edgert_status (*prerelease_create_fn)(const edgert_host_api*, edgert_host_ctx*, const char*, size_t, void**);
typedef struct {
  const edgert_host_api* host;
  edgert_host_ctx* ctx;
  char config[256];
} prerelease;
static edgert_status create_prerelease(const edgert_host_api* h, edgert_host_ctx* c, const char* j, size_t n,
                                       void** out) {
  prerelease* p;
  if (j == NULL || n >= sizeof p->config) return EDGERT_ERR_INVALID_ARGUMENT;
  p = calloc(1, sizeof *p);
  if (p == NULL) return EDGERT_ERR_NO_MEMORY;
  p->host = h, p->ctx = c;
  memcpy(p->config, j, n);
  *out = p;
  return EDGERT_OK;
}
static edgert_status process_prerelease(void* i, const edgert_input* in) {
  prerelease* p = i;
  (void)in;
  return p->host->emit(p->ctx, "config", p->config, strlen(p->config));
}
#if defined(GOOD_SHORT_DESCRIPTOR)
#define PRERELEASE_SIZE offsetof(edgert_plugin_descriptor, update_config)
#define PRERELEASE_SIGNATURE "short_descriptor"
#else
#define PRERELEASE_SIZE offsetof(edgert_plugin_descriptor, module_init)
#define PRERELEASE_SIGNATURE "prerelease"
#endif
/* Bytes beyond struct_size that the host must not read: a module_init that refuses
 * the file and a `next` that loops back. */
static edgert_status init_must_not_run(const edgert_host_api* h, edgert_host_ctx* c, void** m) {
  (void)m;
  h->log(c, EDGERT_LOG_ERROR, "module_init read beyond struct_size");
  return EDGERT_ERR_INTERNAL;
}
static const edgert_plugin_descriptor d = {PRERELEASE_SIZE, EDGERT_ABI_VERSION, EDGERT_KIND_BUSINESS,
                                           PRERELEASE_SIGNATURE, "0.9.0", "", "{\"limit\": 3}",
                                           (edgert_status(*)(const edgert_host_api*, edgert_host_ctx*, void*,
                                                             const char*, size_t, void**))(void (*)(void))
                                               create_prerelease,
                                           NULL, process_prerelease, NULL, NULL, destroy_ok, NULL,
                                           init_must_not_run, NULL, &d};
EDGERT_DECLARE_PLUGIN(d);

#elif defined(BAD_CREATE_FAILS_LATE)
/* create() fails after handing out an instance: the host must destroy() it (the
 * header's create-fails rule). destroy() calls are counted for the test. */
static int destroyed;
EDGERT_PLUGIN_EXPORT int bad_plugins_destroyed(void);
EDGERT_PLUGIN_EXPORT int bad_plugins_destroyed(void) { return destroyed; }
static void destroy_counted(void* i) {
  ++destroyed;
  free(i);
}
static edgert_status create_late(const edgert_host_api* h, edgert_host_ctx* c, void* m, const char* j, size_t n,
                                 void** out) {
  (void)m, (void)j, (void)n;
  *out = malloc(16);
  h->log(c, EDGERT_LOG_ERROR, "model file is truncated");
  return EDGERT_ERR_NO_MEMORY;
}
static const edgert_plugin_descriptor d = {sizeof d, EDGERT_ABI_VERSION, EDGERT_KIND_BUSINESS, "create_fails_late",
                                           "1.0.0", "", NULL, create_late, NULL, process_ok, NULL, NULL,
                                           destroy_counted, NULL, NULL, NULL, NULL};
EDGERT_DECLARE_PLUGIN(d);

#elif defined(BAD_CRASH_ON_LOAD)
/* Crashes in a constructor, before the host can call anything. */
__attribute__((constructor)) static void boom(void) { raise(SIGSEGV); }
static const edgert_plugin_descriptor d = {sizeof d, EDGERT_ABI_VERSION, EDGERT_KIND_BUSINESS, "crasher", "1.0.0", "",
                                           NULL, create_ok, NULL, process_ok, NULL, NULL, destroy_ok, NULL, NULL, NULL, NULL};
EDGERT_DECLARE_PLUGIN(d);

#else
#error "define one BAD_* or GOOD_* variant"
#endif
