/* An inotify instance whose watches must fire after a restore, under the
 * same watch descriptors: wd 1 on a directory, wd 2 freed (a gap), wd 3 on
 * another directory, wd 4 on a file. An event queued before the dump is
 * dropped by a restore (docs/CHECKPOINT.md): the workload reports whether
 * it found it ("queued=kept" or "queued=dropped"). argv[1]: a directory
 * of the test's. */
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <sys/stat.h>

#include "workload.h"

static char dir_a[PATH_MAX], dir_b[PATH_MAX], dir_c[PATH_MAX], file[PATH_MAX];

/* Reads one event (blocking up to 1 s); returns its wd and mask. */
static int next_event(int in, uint32_t* mask, char* name, size_t name_size) {
  _Alignas(struct inotify_event) char buf[4096];
  for (int tries = 0; tries < 10; ++tries) {
    ssize_t n = read(in, buf, sizeof(buf));
    if (n > 0) {
      struct inotify_event* ev = (struct inotify_event*)buf;
      *mask = ev->mask;
      snprintf(name, name_size, "%.*s", (int)name_size - 1, ev->len ? ev->name : "");
      return ev->wd;
    }
    struct timespec nap = {0, 100 * 1000 * 1000};
    nanosleep(&nap, NULL);
  }
  return -1;
}

int main(int argc, char** argv) {
  if (argc < 2) return wl_fail("usage: inotify_watch DIR");
  wl_install_handler();
  snprintf(dir_a, sizeof(dir_a), "%s/watched-a", argv[1]);
  snprintf(dir_b, sizeof(dir_b), "%s/watched-b", argv[1]);
  snprintf(dir_c, sizeof(dir_c), "%s/watched-c", argv[1]);
  snprintf(file, sizeof(file), "%s/watched-file", argv[1]);
  mkdir(dir_a, 0755);
  mkdir(dir_b, 0755);
  mkdir(dir_c, 0755);
  int f = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (f < 0) return wl_fail("create %s: %s", file, strerror(errno));
  close(f);
  int in = inotify_init1(IN_NONBLOCK);
  int wd_a = inotify_add_watch(in, dir_a, IN_CREATE);
  int wd_b = inotify_add_watch(in, dir_b, IN_CREATE);
  int wd_c = inotify_add_watch(in, dir_c, IN_CREATE | IN_DELETE);
  int wd_f = inotify_add_watch(in, file, IN_MODIFY);
  if (wd_a != 1 || wd_b != 2 || wd_c != 3 || wd_f != 4) return wl_fail("wds %d %d %d %d", wd_a, wd_b, wd_c, wd_f);
  inotify_rm_watch(in, wd_b);
  /* Drain the IN_IGNORED of the removal, then queue one event. */
  _Alignas(struct inotify_event) char buf[4096];
  while (read(in, buf, sizeof(buf)) > 0) {
  }
  char path[PATH_MAX + 16];
  snprintf(path, sizeof(path), "%s/before", dir_a);
  close(open(path, O_WRONLY | O_CREAT, 0644));
  wl_ready();
  wl_wait_nap();

  /* Was the queued event carried? */
  uint32_t mask = 0;
  char name[256];
  const char* queued = "dropped";
  ssize_t n = read(in, buf, sizeof(buf));
  if (n > 0) queued = "kept";
  /* The same wds: adding a watch on a watched inode returns its wd. */
  if (inotify_add_watch(in, dir_a, IN_CREATE | IN_MASK_ADD) != 1 ||
      inotify_add_watch(in, dir_c, IN_CREATE | IN_MASK_ADD) != 3 ||
      inotify_add_watch(in, file, IN_MODIFY | IN_MASK_ADD) != 4) {
    return wl_fail("watch descriptors changed");
  }
  /* And they fire. */
  snprintf(path, sizeof(path), "%s/after", dir_c);
  close(open(path, O_WRONLY | O_CREAT, 0644));
  int wd = next_event(in, &mask, name, sizeof(name));
  if (wd != 3 || !(mask & IN_CREATE) || strcmp(name, "after") != 0) {
    return wl_fail("create in %s: event wd %d mask 0x%x name %s", dir_c, wd, mask, name);
  }
  f = open(file, O_WRONLY | O_APPEND);
  if (f < 0 || write(f, "z", 1) != 1) return wl_fail("write %s", file);
  close(f);
  wd = next_event(in, &mask, name, sizeof(name));
  if (wd != 4 || !(mask & IN_MODIFY)) return wl_fail("modify of %s: event wd %d mask 0x%x", file, wd, mask);
  /* A new watch gets the next number after the highest. */
  int wd_new = inotify_add_watch(in, dir_b, IN_CREATE);
  if (wd_new != 5) return wl_fail("a new watch got wd %d, want 5", wd_new);
  wl_say("OK inotify wds 1 3 4 fire, queued=%s", queued);
  return 0;
}
