/* A process tree through the C ABI alone: a process with a helper child
 * checkpoints itself (crlib_checkpoint_self takes the whole tree, less
 * its own dumper), and the image is restored with crlib_restore, plainly
 * and twice at once with CRLIB_RESTORE_PID_NAMESPACE. Real processes; run
 * as root (restore chooses PIDs). */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "c_check.h"
#include "crlib/crlib.h"

static int ReadAll(int fd, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, (char *)buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

/* What the helper child answers to '?'. */
struct Answer {
  pid_t pid;
  pid_t ppid;
};

/* The helper child: answers '?' with its pid and parent's pid on `out`,
 * exits 0 on 'q', 3 once its parent is gone (end of file). Blocked in
 * read() meanwhile, which is where the dump finds it. */
static int HelperChild(int in, int out) {
  for (;;) {
    char c;
    ssize_t n = read(in, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n != 1) return 3;
    if (c == 'q') return 0;
    struct Answer a = {getpid(), getppid()};
    if (write(out, &a, sizeof(a)) != (ssize_t)sizeof(a)) return 4;
  }
}

/* Asks the helper child through the pipes; 0 if it answers as `helper`,
 * the child of this process. */
static int AskHelper(int req, int ans, pid_t helper) {
  struct Answer a;
  if (write(req, "?", 1) != 1 || ReadAll(ans, &a, sizeof(a)) != 0) return -1;
  return a.pid == helper && a.ppid == getpid() ? 0 : -2;
}

/* The tree's root. Starts its helper child, then checkpoints itself.
 * Exit codes: 10 in the original once the image is written and the helper
 * ended; in a restored copy, after SIGUSR1, 20 when its parent is the
 * original's parent (a plain restore) or 21 when it is PID 1 (a restore
 * in a new PID namespace), its helper child answering as before and
 * exiting when told to; anything else is a failure. */
static int Root(const char *image) {
  for (int fd = 3; fd < 1024; ++fd) close(fd);
  const pid_t parent = getppid();
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, NULL);
  int req[2], ans[2];
  if (pipe(req) != 0 || pipe(ans) != 0) return 1;
  pid_t helper = fork();
  if (helper < 0) return 1;
  if (helper == 0) {
    close(req[1]);
    close(ans[0]);
    _exit(HelperChild(req[0], ans[1]));
  }
  close(req[0]);
  close(ans[1]);
  if (AskHelper(req[1], ans[0], helper) != 0) return 2;

  crlib_error *err = NULL;
  int r = crlib_checkpoint_self(image, NULL, &err);
  if (r == CRLIB_CHECKPOINTED) {
    if (AskHelper(req[1], ans[0], helper) != 0) return 3;
    if (write(req[1], "q", 1) != 1) return 4;
    int status;
    if (waitpid(helper, &status, 0) != helper || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      return 5;
    }
    return 10;
  }
  if (r != CRLIB_RESTORED) {
    fprintf(stderr, "self-checkpoint: %s: %s\n", crlib_status_name(r), crlib_error_message(err));
    crlib_error_free(err);
    return 6;
  }
  /* Restored: wait for the test's go, which it sends once it has looked
   * at us from outside. */
  struct timespec ten = {10, 0};
  if (sigtimedwait(&usr1, NULL, &ten) != SIGUSR1) return 7;
  if (AskHelper(req[1], ans[0], helper) != 0) return 8;
  if (write(req[1], "q", 1) != 1) return 9;
  int status;
  if (waitpid(helper, &status, 0) != helper) return 11;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 12;
  if (getppid() == parent) return 20;
  return getppid() == 1 ? 21 : 13;
}

/* The PIDs /proc/PID/task/PID/children lists: up to `max`, their count. */
static int Children(pid_t pid, pid_t *out, int max) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  int n = 0, child;
  while (n < max && fscanf(f, "%d", &child) == 1) out[n++] = child;
  fclose(f);
  return n;
}

/* The last field of the NSpid: line of /proc/PID/status: the PID inside
 * the process's own PID namespace. */
static pid_t InnerPid(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  pid_t inner = -1;
  while (f && fgets(line, sizeof(line), f)) {
    if (strncmp(line, "NSpid:", 6) != 0) continue;
    for (char *p = strtok(line + 6, " \t\n"); p; p = strtok(NULL, " \t\n")) inner = atoi(p);
  }
  if (f) fclose(f);
  return inner;
}

static void TestSelfCheckpointTakesItsChild(const char *image) {
  pid_t root = fork();
  if (root == 0) _exit(Root(image));
  int code = WaitCode(root);
  if (code != 10) fprintf(stderr, "original root: exit code %d\n", code);
  CHECK(code == 10);
  if (code != 10) return;

  /* A plain restore: the root with its PID, our child again. */
  pid_t pid = 0;
  crlib_error *err = NULL;
  int r = crlib_restore(image, NULL, &pid, &err);
  CHECK(r == CRLIB_OK);
  if (r != CRLIB_OK) {
    fprintf(stderr, "restore: %s\n", crlib_error_message(err));
    crlib_error_free(err);
    return;
  }
  CHECK(pid == root);
  pid_t kids[4];
  CHECK(Children(root, kids, 4) == 1);  /* the helper child, and no dumper */
  /* Its PIDs are taken now: a check says so, unless in a PID namespace. */
  crlib_restore_options check = CRLIB_RESTORE_OPTIONS_INIT;
  check.flags = CRLIB_RESTORE_CHECK_ONLY;
  CHECK(crlib_restore(image, &check, &pid, NULL) == CRLIB_E_BUSY);
  check.flags = CRLIB_RESTORE_CHECK_ONLY | CRLIB_RESTORE_PID_NAMESPACE;
  pid = 0;
  CHECK(crlib_restore(image, &check, &pid, NULL) == CRLIB_OK);
  CHECK(pid == root);
  /* Bits past the known ones are still refused. */
  check.flags = CRLIB_RESTORE_LAZY << 1;
  err = NULL;
  CHECK(crlib_restore(image, &check, &pid, &err) == CRLIB_E_INVALID_ARGUMENT);
  CHECK(err != NULL && strstr(crlib_error_message(err), "flags") != NULL);
  crlib_error_free(err);
  kill(root, SIGUSR1);
  code = WaitCode(root);
  if (code != 20) fprintf(stderr, "restored root: exit code %d\n", code);
  CHECK(code == 20);

  /* Twice at once, each copy in its own PID namespace: the call returns
   * the init, whose one child is the root, with the recorded PID inside. */
  pid_t init[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    crlib_restore_options o = CRLIB_RESTORE_OPTIONS_INIT;
    o.flags = CRLIB_RESTORE_PID_NAMESPACE;
    /* The second as a caller built before inherit_fds: a flag needs no
     * newer struct. */
    if (i == 1) o.size = offsetof(crlib_restore_options, inherit_fds);
    err = NULL;
    r = crlib_restore(image, &o, &init[i], &err);
    CHECK(r == CRLIB_OK);
    if (r != CRLIB_OK) {
      fprintf(stderr, "restore in a PID namespace: %s\n", crlib_error_message(err));
      crlib_error_free(err);
      init[i] = 0;
    }
  }
  for (int i = 0; i < 2; ++i) {
    if (init[i] == 0) continue;
    CHECK(InnerPid(init[i]) == 1);
    pid_t outer[4];
    int n = Children(init[i], outer, 4);
    CHECK(n == 1);
    if (n != 1) {
      kill(init[i], SIGKILL);
      WaitCode(init[i]);
      continue;
    }
    CHECK(outer[0] != root);
    CHECK(InnerPid(outer[0]) == root);
    CHECK(Children(outer[0], kids, 4) == 1);
    kill(outer[0], SIGUSR1);
  }
  for (int i = 0; i < 2; ++i) {
    if (init[i] == 0) continue;
    code = WaitCode(init[i]);
    if (code != 21) fprintf(stderr, "init of copy %d: exit code %d\n", i, code);
    CHECK(code == 21);  /* the root's */
  }

}

int main(void) {
  char dir[] = "/tmp/crlib-c-tree-XXXXXX";
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  char image[256];
  snprintf(image, sizeof(image), "%s/tree.img", dir);
  TestSelfCheckpointTakesItsChild(image);
  if (!failures) {
    unlink(image);
    rmdir(dir);
  }
  printf("%s\n", failures ? "c_tree_test: FAILED" : "c_tree_test: ok");
  return failures != 0;
}
