/* A root master and a worker with other credentials (nginx, apache,
 * postfix): the root (uid 0) opens ROOT_FILE, which it makes root's and
 * mode 0600, and keeps the fd; it makes WORKER_FILE owned by 65534, mode
 * 0600, and forks a worker that drops to uid/gid 65534 (setgroups,
 * setresgid, setresuid), opens WORKER_FILE, which only 65534 (and root)
 * may open, and keeps the root's fd it inherited. Kernel state: each
 * process's credentials and, restored, files opened with the rights of
 * the process that holds them first, across the two: a pipe from the worker
 * to the root (made by the root), a pipe the worker made after the drop,
 * and a page of MAP_SHARED memory the root mapped before the fork. After
 * SIGUSR1 the worker checks its uid/gid, that it still reads both files
 * through its fds, that it cannot open ROOT_FILE itself, its own pipe and
 * the shared page, then writes to the root through the root's pipe and
 * the page; the root checks its uid, its fd, the pipe and the page.
 * Usage: tree_creds ROOT_FILE WORKER_FILE */
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>

#include "tree.h"

enum { kUser = 65534 };
static const char kRootText[] = "for root only\n";
static const char kWorkerText[] = "for the worker only\n";

/* The start of `fd` is `text`. */
static int check_reads(const char* role, int fd, const char* text, const char* what) {
  char buf[64] = {0};
  ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  if (n < 0) return wl_fail("%s: pread of %s (fd %d): %s", role, what, fd, strerror(errno));
  if (strcmp(buf, text) != 0) return wl_fail("%s: %s reads \"%s\"", role, what, buf);
  return 0;
}

static const char* root_file;
static const char* worker_file;
static int root_fd = -1;
static int to_root[2] = {-1, -1}; /* made by the root, written by the worker */
static volatile int* shared;      /* MAP_SHARED, mapped by the root */

static int worker(pid_t parent) {
  if (setgroups(0, NULL) != 0 || setresgid(kUser, kUser, kUser) != 0 ||
      setresuid(kUser, kUser, kUser) != 0) {
    return wl_fail("worker: dropping to %d: %s", kUser, strerror(errno));
  }
  int own = open(worker_file, O_RDWR | O_CLOEXEC);
  if (own < 0) return wl_fail("worker: open %s: %s", worker_file, strerror(errno));
  close(to_root[0]);
  int mine[2];
  if (pipe(mine) != 0) return wl_fail("worker: pipe: %s", strerror(errno));
  if (wl_write_all(mine[1], "w", 1) != 0) return wl_fail("worker: write: %s", strerror(errno));
  tr_report_ready();
  tr_wait_go(parent);
  uid_t r, e, s;
  gid_t gr, ge, gs;
  getresuid(&r, &e, &s);
  getresgid(&gr, &ge, &gs);
  if (r != kUser || e != kUser || s != kUser || gr != kUser || ge != kUser || gs != kUser) {
    return wl_fail("worker: uids %d/%d/%d gids %d/%d/%d, expected %d", (int)r, (int)e, (int)s,
                   (int)gr, (int)ge, (int)gs, kUser);
  }
  if (getgroups(0, NULL) != 0) return wl_fail("worker: has supplementary groups");
  int rc = check_reads("worker", root_fd, kRootText, "the root's inherited file");
  rc |= check_reads("worker", own, kWorkerText, "its own file");
  int again = open(root_file, O_RDONLY | O_CLOEXEC);
  if (again >= 0 || errno != EACCES) {
    rc |= wl_fail("worker: open of %s gave %d (%s), expected EACCES", root_file, again,
                  again >= 0 ? "opened" : strerror(errno));
  }
  char c = 0;
  if (read(mine[0], &c, 1) != 1 || c != 'w') rc |= wl_fail("worker: its own pipe lost its byte");
  if (shared[0] != 0x5eed) rc |= wl_fail("worker: shared page holds %#x", shared[0]);
  shared[1] = 0xbee;
  if (wl_write_all(to_root[1], "k", 1) != 0) rc |= wl_fail("worker: write to the root: %s", strerror(errno));
  return rc;
}

/* Creates `path` holding `text`, owned by `uid`:`gid`, mode 0600: its fd, or -1. */
static int make_file(const char* path, const char* text, uid_t uid, gid_t gid) {
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    wl_fail("open %s: %s", path, strerror(errno));
    return -1;
  }
  if (wl_write_all(fd, text, strlen(text)) != 0 || fchown(fd, uid, gid) != 0 ||
      fchmod(fd, 0600) != 0) {
    wl_fail("making %s: %s", path, strerror(errno));
    return -1;
  }
  return fd;
}

int main(int argc, char** argv) {
  if (argc != 3) return wl_fail("usage: tree_creds ROOT_FILE WORKER_FILE");
  root_file = argv[1];
  worker_file = argv[2];
  wl_install_handler();
  if (getuid() != 0) return wl_fail("must start as root");
  root_fd = make_file(root_file, kRootText, 0, 0);
  if (root_fd < 0) return 1;
  int w = make_file(worker_file, kWorkerText, kUser, kUser);
  if (w < 0) return 1;
  close(w);
  shared = tr_shared_page();
  if (!shared) return wl_fail("mmap: %s", strerror(errno));
  shared[0] = 0x5eed;
  if (tr_open_ready() != 0 || pipe(to_root) != 0) return wl_fail("pipe: %s", strerror(errno));
  pid_t child = tr_fork(worker);
  if (child < 0) return wl_fail("fork: %s", strerror(errno));
  close(to_root[1]);
  if (tr_await_ready(1) != 0) return 1;

  wl_ready();
  wl_wait_nap();

  tr_forward_go(&child, 1);
  int rc = 0;
  if (getuid() != 0 || geteuid() != 0) rc |= wl_fail("root: uid %d, euid %d", (int)getuid(), (int)geteuid());
  rc |= check_reads("root", root_fd, kRootText, "its file");
  char c = 0;
  if (read(to_root[0], &c, 1) != 1 || c != 'k') rc |= wl_fail("root: nothing from the worker's pipe");
  rc |= tr_reap_ok(child, "worker");
  if (shared[1] != 0xbee) rc |= wl_fail("root: the worker's write to the shared page is not seen");
  if (rc != 0) return 1;
  wl_say("OK root uid 0 and worker uid %d, each with its files", kUser);
  return 0;
}
