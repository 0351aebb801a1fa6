/* Plugins that misbehave while being loaded, one per SCAN_<name> define (see
 * tests/CMakeLists.txt). They are only ever loaded by the isolated scanner.
 *
 * The hanging variants wait until the file named by EDGERT_TEST_RELEASE exists
 * (forever when it is unset), so a test can unblock a scanner that failed to kill
 * them instead of hanging itself. */
#define _GNU_SOURCE
#include <edgert/plugin_abi.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static edgert_status create_ok(const edgert_host_api* h, edgert_host_ctx* c, void* m, const char* j, size_t n,
                               void** out) {
  (void)h, (void)c, (void)m, (void)j, (void)n;
  *out = malloc(1);
  return *out ? EDGERT_OK : EDGERT_ERR_NO_MEMORY;
}
static edgert_status process_ok(void* i, const edgert_input* in) {
  (void)i, (void)in;
  return EDGERT_OK;
}
static void destroy_ok(void* i) { free(i); }

#if defined(SCAN_HANG_ON_LOAD) || defined(SCAN_CLOSE_AND_HANG)
static void wait_for_release(void) {
  const char* file = getenv("EDGERT_TEST_RELEASE");
  const struct timespec tick = {0, 10 * 1000 * 1000};
  while (file == NULL || access(file, F_OK) != 0) nanosleep(&tick, NULL);
}
#endif

#if defined(SCAN_HANG_ON_LOAD)
/* Hangs in a constructor, before the host can call anything. */
__attribute__((constructor)) static void hang(void) { wait_for_release(); }
#define SIGNATURE "hanger"

#elif defined(SCAN_CLOSE_AND_HANG)
/* Closes every inherited descriptor (the scanner's answer pipe among them), then
 * hangs: the scanner sees end-of-file from a process that has not exited. */
__attribute__((constructor)) static void close_and_hang(void) {
  for (int fd = 3; fd < 4096; ++fd) close(fd);
  wait_for_release();
}
#define SIGNATURE "closer"

#elif defined(SCAN_SHARED_LOCK)
/* Takes a lock in a library the host has loaded too (scan_shared_lock.c), from a
 * constructor: a forked child would find it held by whichever host thread held it. */
void scan_shared_lock(void);
void scan_shared_unlock(void);
__attribute__((constructor)) static void take_shared_lock(void) {
  scan_shared_lock();
  scan_shared_unlock();
}
#define SIGNATURE "shared_lock"

#elif defined(SCAN_SIGPROBE)
/* Reports, in its description, the signal mask and SIGUSR2's disposition it was
 * loaded with: a scanner must not hand its caller's blocked or ignored signals on. */
static char probe[64] = "not probed";
__attribute__((constructor)) static void probe_signals(void) {
  sigset_t cur;
  struct sigaction usr2;
  sigprocmask(SIG_BLOCK, NULL, &cur);
  sigaction(SIGUSR2, NULL, &usr2);
  const int blocked = sigismember(&cur, SIGINT) || sigismember(&cur, SIGTERM) || sigismember(&cur, SIGHUP) ||
                      sigismember(&cur, SIGUSR1);
  snprintf(probe, sizeof probe, "mask=%s usr2=%s", blocked ? "blocked" : "clear",
           usr2.sa_handler == SIG_IGN ? "ignored" : "default");
}
#define SIGNATURE "sigprobe"
#define DESCRIPTION probe

#else
#error "define one SCAN_* variant"
#endif

#ifndef DESCRIPTION
#define DESCRIPTION "scanner test plugin"
#endif

static const edgert_plugin_descriptor d = {sizeof d, EDGERT_ABI_VERSION, EDGERT_KIND_BUSINESS, SIGNATURE, "1.0.0",
                                           DESCRIPTION, NULL, create_ok, NULL, process_ok, NULL, NULL, destroy_ok,
                                           NULL};
EDGERT_DECLARE_PLUGIN(d);
