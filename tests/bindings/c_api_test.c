/* The C ABI through the public header alone, compiled as C: versions,
 * status names, errors, options, nocr marks, checkpoint of another process
 * (mappable images too),
 * self-checkpoint of a multi-threaded process restored twice. Real
 * processes; run as root (restore chooses PIDs). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "c_check.h"
#include "crlib/crlib.h"

static char dir[256];

static void Path(char *out, size_t size, const char *name) {
  snprintf(out, size, "%s/%s", dir, name);
}

static int Exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static int TracerOf(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  int tracer = -1;
  while (f && fgets(line, sizeof(line), f)) sscanf(line, "TracerPid: %d", &tracer);
  if (f) fclose(f);
  return tracer;
}

/* Closes every descriptor but 0-2 (a child about to be checkpointed must
 * not hold the test runner's pipes). */
static void CloseInheritedFds(void) {
  for (int fd = 3; fd < 1024; ++fd) close(fd);
}

static void TestVersionsAndNames(void) {
  char expected[32];
  snprintf(expected, sizeof(expected), "%d.%d.%d", CRLIB_VERSION_MAJOR, CRLIB_VERSION_MINOR,
           CRLIB_VERSION_PATCH);
  CHECK(crlib_version() == CRLIB_VERSION_NUMBER);
  CHECK(strcmp(crlib_version_string(), expected) == 0);
  CHECK(strcmp(crlib_version_string(), CRLIB_VERSION_STRING) == 0);
  CHECK(strcmp(crlib_status_name(CRLIB_E_BUSY), "CRLIB_E_BUSY") == 0);
  CHECK(strcmp(crlib_status_name(CRLIB_RESTORED), "CRLIB_RESTORED") == 0);
  CHECK(strcmp(crlib_status_name(12345), "CRLIB_UNKNOWN_STATUS") == 0);
  /* NULL errors are fine everywhere. */
  CHECK(crlib_error_code(NULL) == 0);
  CHECK(crlib_error_errno(NULL) == 0);
  CHECK(strcmp(crlib_error_message(NULL), "") == 0);
  crlib_error_free(NULL);
}

static void TestArgumentErrors(void) {
  crlib_error *err = (crlib_error *)1;
  char image[512];
  Path(image, sizeof(image), "never.img");
  CHECK(crlib_checkpoint(getpid(), NULL, NULL, &err) == CRLIB_E_INVALID_ARGUMENT);
  CHECK(err != NULL && crlib_error_code(err) == CRLIB_E_INVALID_ARGUMENT);
  CHECK(err != NULL && strstr(crlib_error_message(err), "path") != NULL);
  crlib_error_free(err);

  crlib_checkpoint_options bad = CRLIB_CHECKPOINT_OPTIONS_INIT;
  bad.size = 3;
  CHECK(crlib_checkpoint_self(image, &bad, NULL) == CRLIB_E_INVALID_ARGUMENT);
  crlib_checkpoint_options kill_self = CRLIB_CHECKPOINT_OPTIONS_INIT;
  kill_self.flags = CRLIB_CHECKPOINT_KILL;
  CHECK(crlib_checkpoint_self(image, &kill_self, NULL) == CRLIB_E_INVALID_ARGUMENT);
  CHECK(!Exists(image));

  /* A PID that just ended. */
  pid_t gone = fork();
  if (gone == 0) _exit(0);
  waitpid(gone, NULL, 0);
  err = NULL;
  CHECK(crlib_checkpoint(gone, image, NULL, &err) == CRLIB_E_NOT_FOUND);
  char pid_text[32];
  snprintf(pid_text, sizeof(pid_text), "%d", (int)gone);
  CHECK(err != NULL && strstr(crlib_error_message(err), pid_text) != NULL);
  crlib_error_free(err);
  CHECK(!Exists(image));

  pid_t pid = 0;
  err = NULL;
  CHECK(crlib_restore(image, NULL, &pid, &err) == CRLIB_E_NOT_FOUND);
  CHECK(err != NULL && crlib_error_errno(err) == ENOENT);
  crlib_error_free(err);

  /* Not an image. */
  char junk[512];
  Path(junk, sizeof(junk), "junk.img");
  FILE *f = fopen(junk, "w");
  fputs("this is not a crlib image, not even close to one\n", f);
  fclose(f);
  err = NULL;
  CHECK(crlib_restore(junk, NULL, &pid, &err) == CRLIB_E_BAD_IMAGE);
  CHECK(err != NULL && strlen(crlib_error_message(err)) > 0);
  crlib_error_free(err);
}

static volatile sig_atomic_t leave_requests;
static void OnUsr1(int sig) {
  (void)sig;
  ++leave_requests;
}

/* A child that holds two nested nocr marks and leaves one per SIGUSR1. It
 * keeps no descriptor but 0-2 and the mark's, so once the marks are gone a
 * checkpoint of it goes through. */
static pid_t StartMarkedChild(void) {
  pid_t pid = fork();
  if (pid == 0) {
    CloseInheritedFds();
    signal(SIGUSR1, OnUsr1);
    if (crlib_nocr_enter("outer reason") != CRLIB_OK) _exit(3);
    if (crlib_nocr_enter("flushing the journal") != CRLIB_OK) _exit(3);
    int handled = 0;
    for (;;) {
      while (handled < leave_requests) {
        if (crlib_nocr_leave() != CRLIB_OK) _exit(4);
        ++handled;
      }
      usleep(1000);
    }
  }
  return pid;
}

/* Polls /proc/PID/fd until a descriptor's link contains `want` (or, with
 * want NULL, until none contains "crlib-nocr"). */
static int WaitForMark(pid_t pid, const char *want) {
  for (int tries = 0; tries < 2000; ++tries) {
    int found = 0, any = 0;
    for (int fd = 0; fd < 64; ++fd) {
      char path[64], link[512];
      snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
      ssize_t n = readlink(path, link, sizeof(link) - 1);
      if (n <= 0) continue;
      link[n] = '\0';
      if (strstr(link, "crlib-nocr")) any = 1;
      if (want && strstr(link, want)) found = 1;
    }
    if (want ? found : !any) return 1;
    usleep(1000);
  }
  return 0;
}

static void TestNocrMarks(void) {
  /* In this process: nested marks, the innermost reason wins. */
  char image[512];
  Path(image, sizeof(image), "self-nocr.img");
  CHECK(crlib_nocr_leave() == CRLIB_E_INVALID_ARGUMENT);
  CHECK(crlib_nocr_enter("outer") == CRLIB_OK);
  CHECK(crlib_nocr_enter("inner work") == CRLIB_OK);
  crlib_error *err = NULL;
  CHECK(crlib_checkpoint_self(image, NULL, &err) == CRLIB_E_NOT_CHECKPOINTABLE);
  CHECK(err != NULL && strstr(crlib_error_message(err), "inner work") != NULL);
  crlib_error_free(err);
  CHECK(crlib_nocr_leave() == CRLIB_OK);
  err = NULL;
  CHECK(crlib_checkpoint_self(image, NULL, &err) == CRLIB_E_NOT_CHECKPOINTABLE);
  CHECK(err != NULL && strstr(crlib_error_message(err), "outer") != NULL);
  crlib_error_free(err);
  CHECK(crlib_nocr_leave() == CRLIB_OK);
  CHECK(crlib_nocr_leave() == CRLIB_E_INVALID_ARGUMENT);
  CHECK(!Exists(image));

  /* Seen from outside, by another process, without attaching first. */
  pid_t child = StartMarkedChild();
  CHECK(child > 0);
  if (child <= 0) return;
  CHECK(WaitForMark(child, "crlib-nocr:flushing the journal"));
  Path(image, sizeof(image), "other-nocr.img");
  err = NULL;
  CHECK(crlib_checkpoint(child, image, NULL, &err) == CRLIB_E_NOT_CHECKPOINTABLE);
  CHECK(err != NULL && strstr(crlib_error_message(err), "flushing the journal") != NULL);
  crlib_error_free(err);
  CHECK(!Exists(image));
  kill(child, SIGUSR1);
  CHECK(WaitForMark(child, "crlib-nocr:outer reason"));
  err = NULL;
  CHECK(crlib_checkpoint(child, image, NULL, &err) == CRLIB_E_NOT_CHECKPOINTABLE);
  CHECK(err != NULL && strstr(crlib_error_message(err), "outer reason") != NULL);
  crlib_error_free(err);
  kill(child, SIGUSR1);
  CHECK(WaitForMark(child, NULL));
  /* No mark left: the checkpoint goes through and the child runs on. */
  crlib_stats stats = CRLIB_STATS_INIT;
  crlib_checkpoint_options o = CRLIB_CHECKPOINT_OPTIONS_INIT;
  o.stats = &stats;
  err = NULL;
  int r = crlib_checkpoint(child, image, &o, &err);
  CHECK(r == CRLIB_OK);
  if (r != CRLIB_OK) fprintf(stderr, "checkpoint: %s\n", crlib_error_message(err));
  crlib_error_free(err);
  CHECK(Exists(image));
  CHECK(stats.image_bytes > 0 && stats.pages_stored > 0 && stats.total_ns >= stats.frozen_ns &&
        stats.frozen_ns > 0);
  CHECK(waitpid(child, NULL, WNOHANG) == 0); /* still running */
  kill(child, SIGKILL);
  CHECK(WaitCode(child) == 128 + SIGKILL);
}

/* ---- Progress callbacks: phases reported, and cancelling undoes ---- */

struct ProgressLog {
  int cancel_at; /* a CRLIB_PHASE_*, or 0 never to cancel */
  unsigned seen; /* bit per phase */
};

static int OnProgress(int phase, uint64_t done, uint64_t total, void *user_data) {
  struct ProgressLog *log = user_data;
  (void)done;
  (void)total;
  if (phase >= 1 && phase <= 8) log->seen |= 1u << phase;
  return phase == log->cancel_at;
}


static void TestProgressAndCancel(void) {
  pid_t child = fork();
  if (child == 0) {
    CloseInheritedFds();
    for (;;) pause();
  }
  usleep(20000);
  char image[512];
  Path(image, sizeof(image), "progress.img");
  crlib_checkpoint_options o = CRLIB_CHECKPOINT_OPTIONS_INIT;
  struct ProgressLog log = {CRLIB_PHASE_MEMORY, 0};
  o.progress = OnProgress;
  o.progress_user_data = &log;
  crlib_error *err = NULL;
  /* Cancelled while pages are written: no image, the process runs on. */
  CHECK(crlib_checkpoint(child, image, &o, &err) == CRLIB_E_CANCELLED);
  crlib_error_free(err);
  CHECK(log.seen & (1u << CRLIB_PHASE_FREEZE));
  CHECK(log.seen & (1u << CRLIB_PHASE_STATE));
  CHECK(!Exists(image));
  CHECK(waitpid(child, NULL, WNOHANG) == 0);
  CHECK(TracerOf(child) == 0);
  /* Not cancelled: every phase, then the image. */
  log.cancel_at = 0;
  log.seen = 0;
  o.flags = CRLIB_CHECKPOINT_KILL;
  CHECK(crlib_checkpoint(child, image, &o, NULL) == CRLIB_OK);
  CHECK(log.seen == ((1u << CRLIB_PHASE_FREEZE) | (1u << CRLIB_PHASE_STATE) |
                     (1u << CRLIB_PHASE_MEMORY) | (1u << CRLIB_PHASE_DONE)));
  CHECK(WaitCode(child) == 128 + SIGKILL);

  /* Restore, cancelled before anything exists and while pages load: the
   * PID stays free. */
  crlib_restore_options ro = CRLIB_RESTORE_OPTIONS_INIT;
  ro.progress = OnProgress;
  ro.progress_user_data = &log;
  pid_t pid = 0;
  for (int phase = CRLIB_PHASE_STATE; phase <= CRLIB_PHASE_MEMORY; ++phase) {
    log.cancel_at = phase;
    log.seen = 0;
    CHECK(crlib_restore(image, &ro, &pid, NULL) == CRLIB_E_CANCELLED);
    CHECK(kill(child, 0) == -1 && errno == ESRCH);
  }
  /* Check only: the PID it would have, nothing created. */
  log.cancel_at = 0;
  ro.flags = CRLIB_RESTORE_CHECK_ONLY;
  pid = 0;
  CHECK(crlib_restore(image, &ro, &pid, NULL) == CRLIB_OK);
  CHECK(pid == child);
  CHECK(kill(child, 0) == -1 && errno == ESRCH);
  ro.flags = 0;
  log.seen = 0;
  crlib_stats stats = CRLIB_STATS_INIT;
  ro.stats = &stats;
  CHECK(crlib_restore(image, &ro, &pid, NULL) == CRLIB_OK);
  CHECK(pid == child);
  CHECK(log.seen == ((1u << CRLIB_PHASE_STATE) | (1u << CRLIB_PHASE_MEMORY) |
                     (1u << CRLIB_PHASE_DONE)));
  CHECK(stats.image_bytes > 0 && stats.pages_stored > 0 && stats.total_ns > 0);
  CHECK(waitpid(pid, NULL, WNOHANG) == 0);
  kill(pid, SIGKILL);
  CHECK(WaitCode(pid) == 128 + SIGKILL);

  /* Lazily: the call returns once it runs; the handle says when every
   * page is in. Without a place for the handle: refused. */
  crlib_lazy *lazy = NULL;
  ro.flags = CRLIB_RESTORE_LAZY;
  ro.progress = NULL;
  CHECK(crlib_restore(image, &ro, &pid, NULL) == CRLIB_E_INVALID_ARGUMENT);
  ro.lazy = &lazy;
  CHECK(crlib_restore(image, &ro, &pid, NULL) == CRLIB_OK);
  CHECK(pid == child && lazy != NULL && crlib_lazy_fd(lazy) >= 0);
  CHECK(crlib_lazy_wait(lazy, NULL) == CRLIB_OK);
  struct pollfd done = {crlib_lazy_fd(lazy), POLLIN, 0};
  CHECK(poll(&done, 1, 0) == 1);
  crlib_lazy_free(lazy);
  CHECK(waitpid(pid, NULL, WNOHANG) == 0);
  kill(pid, SIGKILL);
  CHECK(WaitCode(pid) == 128 + SIGKILL);
  crlib_lazy_free(NULL);
  CHECK(crlib_lazy_fd(NULL) == -1);
}

/* ---- Images through descriptors: out through a socket, in through a pipe ---- */

/* Copies `from` to `to` until the end, then closes both. */
struct Pump {
  int from, to;
};

static void *PumpThread(void *arg) {
  struct Pump *p = arg;
  char buf[65536];
  for (ssize_t n; (n = read(p->from, buf, sizeof(buf))) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || write(p->to, buf, (size_t)n) != n) break;
  }
  close(p->from);
  close(p->to);
  return NULL;
}

static void TestImageThroughDescriptors(void) {
  pid_t child = fork();
  if (child == 0) {
    CloseInheritedFds();
    for (;;) pause();
  }
  usleep(20000);
  char path[512];
  Path(path, sizeof(path), "through-fds.img");
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  struct Pump out = {sv[1], open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)};
  pthread_t t;
  CHECK(pthread_create(&t, NULL, PumpThread, &out) == 0);
  crlib_checkpoint_options o = CRLIB_CHECKPOINT_OPTIONS_INIT;
  o.flags = CRLIB_CHECKPOINT_KILL;
  o.image_fd = sv[0];
  crlib_error *err = NULL;
  int r = crlib_checkpoint(child, NULL, &o, &err);
  CHECK(r == CRLIB_OK);
  if (r != CRLIB_OK) fprintf(stderr, "checkpoint to fd: %s\n", crlib_error_message(err));
  crlib_error_free(err);
  close(sv[0]);
  pthread_join(t, NULL);
  CHECK(WaitCode(child) == 128 + SIGKILL);

  /* The pipe's write end is ours (a thread of this process feeds it): the
   * restored child, a copy of this process, must not keep it open. */
  int p[2];
  CHECK(pipe2(p, O_CLOEXEC) == 0);
  struct Pump in = {open(path, O_RDONLY | O_CLOEXEC), p[1]};
  CHECK(pthread_create(&t, NULL, PumpThread, &in) == 0);
  crlib_restore_options ro = CRLIB_RESTORE_OPTIONS_INIT;
  ro.image_fd = p[0];
  pid_t pid = 0;
  err = NULL;
  r = crlib_restore(NULL, &ro, &pid, &err);
  CHECK(r == CRLIB_OK);
  if (r != CRLIB_OK) fprintf(stderr, "restore from fd: %s\n", crlib_error_message(err));
  crlib_error_free(err);
  close(p[0]);
  pthread_join(t, NULL);
  CHECK(pid == child);
  if (r == CRLIB_OK) {
    CHECK(waitpid(pid, NULL, WNOHANG) == 0);
    kill(pid, SIGKILL);
    CHECK(WaitCode(pid) == 128 + SIGKILL);
  }
}

/* ---- An external pipe, given back with inherit_fds ---- */

static volatile sig_atomic_t write_now;
static void OnWriteNow(int sig) {
  (void)sig;
  write_now = 1;
}

/* A child holds our pipe's write end at fd 7, its read end stays ours:
 * the pipe is external. Its restore fails without inherit_fds, naming the
 * key, and with them the restored child writes into our pipe. */
static void TestExternalPipe(void) {
  int p[2];
  CHECK(pipe2(p, O_CLOEXEC) == 0);
  struct stat st;
  CHECK(fstat(p[0], &st) == 0);
  char key[64];
  snprintf(key, sizeof(key), "pipe:[%lu]", (unsigned long)st.st_ino);
  signal(SIGUSR2, OnWriteNow);
  pid_t child = fork();
  if (child == 0) {
    if (dup2(p[1], 7) != 7) _exit(2);
    for (int fd = 3; fd < 1024; ++fd) {
      if (fd != 7) close(fd);
    }
    /* Naps, not pause(): a restore restarts the call it was dumped in,
     * which could be after the handler already ran. */
    while (!write_now) usleep(10000);
    _exit(write(7, "external\n", 9) == 9 ? 0 : 1);
  }
  usleep(20000);
  char image[512];
  Path(image, sizeof(image), "external.img");
  crlib_checkpoint_options o = CRLIB_CHECKPOINT_OPTIONS_INIT;
  o.flags = CRLIB_CHECKPOINT_KILL;
  crlib_error *err = NULL;
  int r = crlib_checkpoint(child, image, &o, &err);
  CHECK(r == CRLIB_OK);
  if (r != CRLIB_OK) fprintf(stderr, "checkpoint of an external pipe: %s\n", crlib_error_message(err));
  crlib_error_free(err);
  CHECK(WaitCode(child) == 128 + SIGKILL);

  pid_t pid = 0;
  err = NULL;
  CHECK(crlib_restore(image, NULL, &pid, &err) == CRLIB_E_INCOMPATIBLE);
  CHECK(err != NULL && strstr(crlib_error_message(err), key) != NULL &&
        strstr(crlib_error_message(err), "--inherit-fd") != NULL);
  crlib_error_free(err);
  CHECK(kill(child, 0) == -1 && errno == ESRCH);

  crlib_restore_options ro = CRLIB_RESTORE_OPTIONS_INIT;
  crlib_inherit_fd given = {key, p[1]};
  ro.inherit_fds = &given;
  ro.inherit_fds_count = 1;
  err = NULL;
  r = crlib_restore(image, &ro, &pid, &err);
  CHECK(r == CRLIB_OK);
  if (r != CRLIB_OK) fprintf(stderr, "restore with inherit_fds: %s\n", crlib_error_message(err));
  crlib_error_free(err);
  if (r == CRLIB_OK) {
    CHECK(pid == child);
    kill(pid, SIGUSR2);
    CHECK(WaitCode(pid) == 0);
    char got[16] = {0};
    CHECK(read(p[0], got, sizeof(got) - 1) == 9 && strcmp(got, "external\n") == 0);
  }
  signal(SIGUSR2, SIG_DFL);
  close(p[0]);
  close(p[1]);
}

/* ---- Self-checkpoint of a multi-threaded process ---- */

static volatile uint64_t spins[2];
static volatile int stop_threads;
static __thread uint64_t tls_value;

static void *Spinner(void *arg) {
  int i = (int)(intptr_t)arg;
  tls_value = 1000 + i;
  while (!stop_threads) {
    spins[i]++;
    if (tls_value != 1000u + i) return (void *)1;
    if ((spins[i] & 0xffff) == 0) usleep(100);
  }
  return NULL;
}

/* Checkpoints itself with two threads running. Exit codes: 10 in the
 * original, 20 in a restored copy whose threads run on and join. */
static int SelfCheckpointChild(const char *image) {
  CloseInheritedFds();
  uint64_t *heap = malloc(1 << 20);
  for (size_t i = 0; i < (1 << 20) / 8; ++i) heap[i] = i * 2654435761u;
  pthread_t threads[2];
  for (int i = 0; i < 2; ++i) pthread_create(&threads[i], NULL, Spinner, (void *)(intptr_t)i);
  while (spins[0] == 0 || spins[1] == 0) usleep(100);
  crlib_error *err = NULL;
  int r = crlib_checkpoint_self(image, NULL, &err);
  if (r == CRLIB_CHECKPOINTED) {
    stop_threads = 1;
    for (int i = 0; i < 2; ++i) pthread_join(threads[i], NULL);
    return 10;
  }
  if (r != CRLIB_RESTORED) {
    fprintf(stderr, "self-checkpoint: %s: %s\n", crlib_status_name(r), crlib_error_message(err));
    return 1;
  }
  for (size_t i = 0; i < (1 << 20) / 8; ++i) {
    if (heap[i] != i * 2654435761u) return 2;
  }
  /* The threads were restored too: they still count. */
  uint64_t before[2] = {spins[0], spins[1]};
  for (int tries = 0; tries < 2000 && (spins[0] == before[0] || spins[1] == before[1]); ++tries) {
    usleep(1000);
  }
  if (spins[0] == before[0] || spins[1] == before[1]) return 3;
  stop_threads = 1;
  for (int i = 0; i < 2; ++i) {
    void *ret = (void *)1;
    pthread_join(threads[i], &ret);
    if (ret != NULL) return 4;
  }
  return 20;
}

/* A self-checkpoint that fails after the helper has stopped us (a netlink
 * socket is refused) leaves this process as it was: not traced, running,
 * the same signal mask, the helper reaped, no image. Exit 0 when all
 * holds. */
static int FailedSelfCheckpointChild(const char *image) {
  CloseInheritedFds();
  if (socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE) < 0) return 10;
  sigset_t before, after;
  sigemptyset(&before);
  sigaddset(&before, SIGUSR2);
  pthread_sigmask(SIG_SETMASK, &before, NULL);
  crlib_error *err = NULL;
  int r = crlib_checkpoint_self(image, NULL, &err);
  if (r != CRLIB_E_UNSUPPORTED) return 11;
  if (strstr(crlib_error_message(err), "socket") == NULL) return 12;
  crlib_error_free(err);
  if (Exists(image)) return 13;
  pthread_sigmask(SIG_SETMASK, NULL, &after);
  if (sigismember(&after, SIGUSR2) != 1 || sigismember(&after, SIGTERM) != 0) return 14;
  if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD) return 15; /* helper reaped */
  return TracerOf(getpid()) == 0 ? 0 : 16;
}

static void TestFailedSelfCheckpointLeavesCallerIntact(void) {
  char image[512];
  Path(image, sizeof(image), "refused.img");
  pid_t child = fork();
  if (child == 0) _exit(FailedSelfCheckpointChild(image));
  int code = WaitCode(child);
  if (code != 0) fprintf(stderr, "failed self-checkpoint child: code %d\n", code);
  CHECK(code == 0);
}

static void TestSelfCheckpointRestoresTwice(void) {
  char image[512];
  Path(image, sizeof(image), "self.img");
  pid_t child = fork();
  if (child == 0) _exit(SelfCheckpointChild(image));
  CHECK(WaitCode(child) == 10);
  CHECK(Exists(image));
  for (int round = 0; round < 2; ++round) {
    pid_t pid = 0;
    crlib_stats stats = CRLIB_STATS_INIT;
    crlib_restore_options o = CRLIB_RESTORE_OPTIONS_INIT;
    o.stats = &stats;
    crlib_error *err = NULL;
    int r = crlib_restore(image, &o, &pid, &err);
    CHECK(r == CRLIB_OK);
    if (r != CRLIB_OK) {
      fprintf(stderr, "restore: %s\n", crlib_error_message(err));
      crlib_error_free(err);
      return;
    }
    CHECK(pid == child);
    CHECK(WaitCode(pid) == 20);
  }
  /* Its PID is taken by a running copy: the restore says so. */
  pid_t pid = 0;
  crlib_error *err = NULL;
  if (crlib_restore(image, NULL, &pid, &err) == CRLIB_OK) {
    int r2 = crlib_restore(image, NULL, &pid, NULL);
    CHECK(r2 == CRLIB_E_BUSY);
    CHECK(WaitCode(pid) == 20);
  } else {
    CHECK(0);
    crlib_error_free(err);
  }
}

/* A restored process snapshots itself again: exit 10 in the original, 11
 * in the copy restored from the first image once it wrote the second, 12
 * in the copy restored from the second. */
static int ChainChild(const char *first, const char *second) {
  CloseInheritedFds();
  int r = crlib_checkpoint_self(first, NULL, NULL);
  if (r == CRLIB_CHECKPOINTED) return 10;
  if (r != CRLIB_RESTORED) return 1;
  r = crlib_checkpoint_self(second, NULL, NULL);
  if (r == CRLIB_CHECKPOINTED) return 11;
  return r == CRLIB_RESTORED ? 12 : 2;
}

static void TestRestoredProcessCheckpointsItselfAgain(void) {
  char first[512], second[512];
  Path(first, sizeof(first), "chain-1.img");
  Path(second, sizeof(second), "chain-2.img");
  pid_t child = fork();
  if (child == 0) _exit(ChainChild(first, second));
  CHECK(WaitCode(child) == 10);
  pid_t pid = 0;
  CHECK(crlib_restore(first, NULL, &pid, NULL) == CRLIB_OK);
  CHECK(WaitCode(pid) == 11);
  CHECK(crlib_restore(second, NULL, &pid, NULL) == CRLIB_OK);
  CHECK(WaitCode(pid) == 12);
}

/* ---- Mappable images: pages mapped at restore, or copied on request ---- */

static void TestMappableImage(void) {
  enum { kBytes = 8 << 20 };
  /* The child's memory, a copy of ours: compared through /proc/PID/mem. */
  unsigned char *data = mmap(NULL, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                             -1, 0);
  CHECK(data != MAP_FAILED);
  for (size_t i = 0; i < kBytes; ++i) data[i] = (unsigned char)(i * 7 + i / 4096);
  pid_t child = fork();
  if (child == 0) {
    CloseInheritedFds();
    for (;;) pause();
  }
  usleep(20000);
  char image[512];
  Path(image, sizeof(image), "mappable.img");
  crlib_checkpoint_options o = CRLIB_CHECKPOINT_OPTIONS_INIT;
  o.flags = CRLIB_CHECKPOINT_MAPPABLE | CRLIB_CHECKPOINT_COMPRESS;
  CHECK(crlib_checkpoint(child, image, &o, NULL) == CRLIB_E_INVALID_ARGUMENT);
  o.flags = CRLIB_CHECKPOINT_MAPPABLE | CRLIB_CHECKPOINT_KILL;
  CHECK(crlib_checkpoint(child, image, &o, NULL) == CRLIB_OK);
  CHECK(WaitCode(child) == 128 + SIGKILL);
  struct stat st;
  CHECK(stat(image, &st) == 0 && (st.st_mode & 07777) == 0400);
  for (int copy = 0; copy < 2; ++copy) {
    crlib_restore_options ro = CRLIB_RESTORE_OPTIONS_INIT;
    crlib_stats stats = CRLIB_STATS_INIT;
    ro.stats = &stats;
    ro.flags = copy ? CRLIB_RESTORE_COPY_PAGES : 0;
    pid_t pid = 0;
    CHECK(crlib_restore(image, &ro, &pid, NULL) == CRLIB_OK);
    CHECK(copy ? stats.pages_mapped == 0 : stats.pages_mapped >= kBytes / 4096);
    CHECK(stats.pages_mapped <= stats.pages_stored);
    char mem[64];
    snprintf(mem, sizeof(mem), "/proc/%d/mem", (int)pid);
    int fd = open(mem, O_RDONLY | O_CLOEXEC);
    unsigned char *back = malloc(kBytes);
    CHECK(fd >= 0 && back != NULL);
    CHECK(pread(fd, back, kBytes, (off_t)(uintptr_t)data) == kBytes);
    CHECK(memcmp(back, data, kBytes) == 0);
    free(back);
    close(fd);
    kill(pid, SIGKILL);
    CHECK(WaitCode(pid) == 128 + SIGKILL);
  }
  munmap(data, kBytes);
}

/* ---- Incremental checkpoints: CRLIB_CHECKPOINT_TRACK, parent_image ---- */

static void TestIncrementalCheckpoint(void) {
  pid_t child = fork();
  if (child == 0) {
    CloseInheritedFds();
    static char buffer[4 << 20];
    memset(buffer, 7, sizeof(buffer));
    for (;;) pause();
  }
  usleep(50000);
  char full[512], next[512], plain[512], refused[512];
  Path(full, sizeof(full), "tracked.img");
  Path(next, sizeof(next), "incremental.img");
  Path(plain, sizeof(plain), "untracked.img");
  Path(refused, sizeof(refused), "refused.img");
  /* An image without tracking, taken first (a tracked process is dumped
   * along its chain), cannot be a parent. */
  crlib_checkpoint_options untracked = CRLIB_CHECKPOINT_OPTIONS_INIT;
  CHECK(crlib_checkpoint(child, plain, &untracked, NULL) == CRLIB_OK);
  crlib_stats first = CRLIB_STATS_INIT, second = CRLIB_STATS_INIT;
  crlib_checkpoint_options o = CRLIB_CHECKPOINT_OPTIONS_INIT;
  o.flags = CRLIB_CHECKPOINT_TRACK;
  o.stats = &first;
  crlib_error *err = NULL;
  int r = crlib_checkpoint(child, full, &o, &err);
  if (r != CRLIB_OK) fprintf(stderr, "tracked checkpoint: %s\n", crlib_error_message(err));
  CHECK(r == CRLIB_OK);
  crlib_error_free(err);
  /* Nothing written since: the second image holds none of the buffer's
   * 1024 pages (what it does hold is memory not tracked: a sanitizer's
   * shadow is copied whole each time). */
  o.flags = 0;
  o.parent_image = full;
  o.stats = &second;
  err = NULL;
  r = crlib_checkpoint(child, next, &o, &err);
  if (r != CRLIB_OK) fprintf(stderr, "incremental checkpoint: %s\n", crlib_error_message(err));
  CHECK(r == CRLIB_OK);
  crlib_error_free(err);
  CHECK(second.pages_stored + 1000 <= first.pages_stored);
  o.parent_image = plain;
  o.stats = NULL;
  err = NULL;
  CHECK(crlib_checkpoint(child, refused, &o, &err) == CRLIB_E_INVALID_ARGUMENT);
  CHECK(err != NULL && strstr(crlib_error_message(err), "tracking") != NULL);
  crlib_error_free(err);
  CHECK(!Exists(refused));
  /* Not for a self-checkpoint. */
  o.parent_image = NULL;
  o.flags = CRLIB_CHECKPOINT_TRACK;
  CHECK(crlib_checkpoint_self(refused, &o, NULL) == CRLIB_E_INVALID_ARGUMENT);
  CHECK(waitpid(child, NULL, WNOHANG) == 0); /* still running */
  kill(child, SIGKILL);
  CHECK(WaitCode(child) == 128 + SIGKILL);
}

int main(void) {
  snprintf(dir, sizeof(dir), "/tmp/crlib-c-api-XXXXXX");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  TestVersionsAndNames();
  TestArgumentErrors();
  TestNocrMarks();
  TestFailedSelfCheckpointLeavesCallerIntact();
  TestProgressAndCancel();
  TestImageThroughDescriptors();
  TestMappableImage();
  TestIncrementalCheckpoint();
  TestExternalPipe();
  TestRestoredProcessCheckpointsItselfAgain();
  TestSelfCheckpointRestoresTwice();
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  if (!failures) (void)!system(cmd);
  printf("%s\n", failures ? "c_api_test: FAILED" : "c_api_test: ok");
  return failures != 0;
}
