/* A library both the test host and a test plugin link, standing for any library a
 * host and its plugins share (libstdc++, a logger, a vendor SDK) and its locks. */
#include <pthread.h>

#define SHARED_API __attribute__((visibility("default")))

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

SHARED_API void scan_shared_lock(void);
SHARED_API void scan_shared_unlock(void);
SHARED_API void scan_shared_lock(void) { pthread_mutex_lock(&mu); }
SHARED_API void scan_shared_unlock(void) { pthread_mutex_unlock(&mu); }
