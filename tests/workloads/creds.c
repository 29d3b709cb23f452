/* Credentials: started as root, drops itself to a user, its group and a
 * list of supplementary groups, keeping only the capabilities it is told
 * to, and holds a file open. A second thread does nothing but wait: the
 * kernel keeps credentials per thread, so both must come back. After
 * SIGUSR1 each thread's IDs, groups, capability sets (effective,
 * permitted, inheritable, bounding, ambient) and securebits must be those
 * it had, and a file readable only by root's group must stay closed.
 *
 *   creds UID GID GROUPS FORBIDDEN HELD [CAPS]
 *
 * GROUPS is a comma-separated list of gids; FORBIDDEN a file of mode 0640
 * owned by root:root (expected: EACCES); HELD a file opened read-only and
 * kept open, which the test may make unreadable to UID before a restore.
 * CAPS, hexadecimal: capabilities kept in the effective, permitted,
 * inheritable and ambient sets, the only ones left in the bounding set;
 * with it the process keeps SECBIT_KEEP_CAPS. Without it: no capability,
 * the bounding set untouched. Prints "CREDS <what it has>" before READY. */
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "workload.h"

/* The calling thread's credentials: its lines of /proc/thread-self/status
 * that hold them, and its securebits, on one line. */
static int describe(char* out, size_t size) {
  static const char* const keys[] = {"Uid:",    "Gid:",    "Groups:", "CapInh:",
                                     "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"};
  char status[8192];
  int fd = open("/proc/thread-self/status", O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n = read(fd, status, sizeof(status) - 1);
  close(fd);
  if (n <= 0) return -1;
  status[n] = '\0';
  size_t used = 0;
  for (char* line = strtok(status, "\n"); line; line = strtok(NULL, "\n")) {
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); ++k) {
      if (strncmp(line, keys[k], strlen(keys[k])) != 0) continue;
      for (char* c = line; *c; ++c) {
        if (*c == '\t') *c = ' ';
      }
      used += (size_t)snprintf(out + used, used < size ? size - used : 0, "%s ", line);
    }
  }
  snprintf(out + used, used < size ? size - used : 0, "securebits: %d",
           prctl(PR_GET_SECUREBITS));
  return 0;
}

static char thread_before[1024], thread_after[1024];
static int thread_ready;  /* thread_before is written */

static void* idle_thread(void* arg) {
  (void)arg;
  describe(thread_before, sizeof(thread_before));
  __atomic_store_n(&thread_ready, 1, __ATOMIC_RELEASE);
  wl_wait_nap();
  describe(thread_after, sizeof(thread_after));
  return NULL;
}

/* Keeps `caps` in every set of the calling thread (see the top). */
static int keep_caps(uint64_t caps, uid_t uid) {
  int last = 0;
  int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY);
  char text[16] = {0};
  if (fd < 0 || read(fd, text, sizeof(text) - 1) <= 0) return -1;
  close(fd);
  last = atoi(text);
  for (int cap = 0; cap <= last; ++cap) {
    if (!(caps & (1ull << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) return -1;
  }
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 || setresuid(uid, uid, uid) != 0) return -1;
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2];
  for (int i = 0; i < 2; ++i) {
    d[i].effective = d[i].permitted = d[i].inheritable = (uint32_t)(caps >> (32 * i));
  }
  if (syscall(SYS_capset, &h, d) != 0) return -1;
  for (int cap = 0; cap <= last; ++cap) {
    if ((caps & (1ull << cap)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0) {
      return -1;
    }
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 6 && argc != 7) return wl_fail("usage: creds UID GID GROUPS FORBIDDEN HELD [CAPS]");
  uid_t uid = (uid_t)strtoul(argv[1], NULL, 10);
  gid_t gid = (gid_t)strtoul(argv[2], NULL, 10);
  gid_t groups[64];
  size_t ngroups = 0;
  for (char* g = strtok(argv[3], ","); g && ngroups < 64; g = strtok(NULL, ",")) {
    groups[ngroups++] = (gid_t)strtoul(g, NULL, 10);
  }
  int held = open(argv[5], O_RDONLY);
  if (held < 0) return wl_fail("open %s: %s", argv[5], strerror(errno));
  /* Groups first: after the uid changes, setgroups needs rights we lack.
   * glibc's wrappers change every thread; there is only one yet. */
  if (setgroups(ngroups, groups) != 0 || setresgid(gid, gid, gid) != 0) {
    return wl_fail("dropping to group %u: %s", gid, strerror(errno));
  }
  /* Leaving uid 0 clears every capability set unless kept. */
  if (argc == 7 ? keep_caps(strtoull(argv[6], NULL, 16), uid) != 0
                : setresuid(uid, uid, uid) != 0) {
    return wl_fail("dropping to user %u: %s", uid, strerror(errno));
  }
  char before[1024], after[1024];
  if (describe(before, sizeof(before)) != 0) return wl_fail("reading credentials");
  wl_install_handler();
  pthread_t thread;
  if (pthread_create(&thread, NULL, idle_thread, NULL) != 0) return wl_fail("pthread_create");
  while (!__atomic_load_n(&thread_ready, __ATOMIC_ACQUIRE)) usleep(1000);
  wl_say("CREDS %s", before);
  wl_ready();
  wl_wait_nap();

  pthread_join(thread, NULL);
  if (describe(after, sizeof(after)) != 0) return wl_fail("reading credentials");
  if (strcmp(before, after) != 0) return wl_fail("main thread had %s, now %s", before, after);
  if (strcmp(thread_before, thread_after) != 0) {
    return wl_fail("second thread had %s, now %s", thread_before, thread_after);
  }
  int fd = open(argv[4], O_RDONLY);
  if (fd >= 0 || errno != EACCES) {
    return wl_fail("open %s as %s: %s, not EACCES", argv[4], after,
                   fd >= 0 ? "opened" : strerror(errno));
  }
  char byte;
  if (pread(held, &byte, 1, 0) < 0) return wl_fail("read of held %s: %s", argv[5], strerror(errno));
  wl_say("OK %s", after);
  return 0;
}
