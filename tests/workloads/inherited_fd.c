/* Two processes writing through one open file description: the root opens
 * a regular file (argv[1], default /tmp/crlib-inherited-PID.dat) O_RDWR
 * without O_APPEND and forks; both write fixed-size records, one every
 * 2 ms, before and after the checkpoint. Kernel state: a file description
 * (and its offset) inherited across fork, so one offset moves for both.
 * After SIGUSR1 each writes a final record and stops; the root then reads
 * the file: every record whole, each writer's sequence 0, 1, 2, ... with
 * nothing lost, overwritten or doubled, the file exactly the records, and
 * the shared offset at its end. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "tree.h"

enum { kReadyRecords = 10 };

struct record {
  uint32_t writer; /* 0 root, 1 child */
  uint32_t final;  /* 1 on a writer's last record, whose seq is its count */
  uint64_t seq;
  uint64_t check;
  uint64_t pad;
};

static struct record* all; /* the file read back; global, so no leak checker minds */

static uint64_t check_of(uint32_t writer, uint32_t final, uint64_t seq) {
  return wl_mix(((uint64_t)writer << 32 | final) ^ wl_mix(seq));
}

static int put(int fd, uint32_t writer, uint32_t final, uint64_t seq) {
  struct record r = {writer, final, seq, check_of(writer, final, seq), 0};
  return write(fd, &r, sizeof(r)) == (ssize_t)sizeof(r) ? 0 : -1;
}

/* Writes a record every 2 ms until SIGUSR1, then the final one. */
static int writer_loop(int fd, uint32_t writer, pid_t parent) {
  uint64_t seq = 0;
  while (!wl_go) {
    if (put(fd, writer, 0, seq++) != 0) return wl_fail("writer %u: write: %s", writer, strerror(errno));
    if (seq == kReadyRecords && writer == 1) tr_report_ready();
    struct timespec ts = {0, 2 * 1000 * 1000};
    nanosleep(&ts, NULL);
    if (parent != 0 && getppid() != parent) _exit(3);
    if (writer == 0 && seq == kReadyRecords) {
      if (tr_await_ready(1) != 0) return 1;
      wl_ready();
    }
  }
  if (put(fd, writer, 1, seq) != 0) return wl_fail("writer %u: final write: %s", writer, strerror(errno));
  return 0;
}

int main(int argc, char** argv) {
  wl_install_handler();
  char path[256];
  snprintf(path, sizeof(path), "%s", argc > 1 ? argv[1] : "");
  if (argc <= 1) snprintf(path, sizeof(path), "/tmp/crlib-inherited-%d.dat", (int)getpid());
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return wl_fail("open %s: %s", path, strerror(errno));
  if (tr_open_ready() != 0) return wl_fail("pipe: %s", strerror(errno));
  const pid_t me = getpid();
  pid_t child = fork();
  if (child < 0) return wl_fail("fork: %s", strerror(errno));
  if (child == 0) _exit(writer_loop(fd, 1, me));
  int rc = writer_loop(fd, 0, 0);
  kill(child, SIGUSR1);
  rc |= tr_reap_ok(child, "child");
  if (rc != 0) return 1;

  struct stat st;
  if (fstat(fd, &st) != 0) return wl_fail("fstat: %s", strerror(errno));
  const off_t at = lseek(fd, 0, SEEK_CUR);
  if (at != st.st_size) return wl_fail("offset %lld, file size %lld", (long long)at, (long long)st.st_size);
  if (st.st_size % (off_t)sizeof(struct record) != 0) return wl_fail("size %lld: a torn record", (long long)st.st_size);
  const size_t n = (size_t)st.st_size / sizeof(struct record);
  all = malloc(n * sizeof(struct record) + 1);
  if (!all || wl_pread_all(fd, all, n * sizeof(struct record), 0) != 0) return wl_fail("read back %s", path);
  uint64_t next[2] = {0, 0};
  int done[2] = {0, 0};
  for (size_t i = 0; i < n; ++i) {
    const struct record* r = &all[i];
    if (r->writer > 1 || r->final > 1 || r->check != check_of(r->writer, r->final, r->seq)) {
      return wl_fail("record %zu is damaged (overwritten?)", i);
    }
    if (done[r->writer] || r->seq != next[r->writer]) {
      return wl_fail("record %zu: writer %u seq %llu, expected %llu%s", i, r->writer,
                     (unsigned long long)r->seq, (unsigned long long)next[r->writer],
                     done[r->writer] ? " (after its final record)" : "");
    }
    done[r->writer] = (int)r->final;
    if (!r->final) ++next[r->writer];
  }
  if (!done[0] || !done[1]) return wl_fail("a final record is missing (root %d, child %d)", done[0], done[1]);
  if (n != next[0] + next[1] + 2) return wl_fail("%zu records for %llu + %llu written", n,
                                                 (unsigned long long)next[0], (unsigned long long)next[1]);
  if (argc <= 1) unlink(path);
  wl_say("OK %zu records through one offset (root %llu, child %llu)", n, (unsigned long long)next[0],
         (unsigned long long)next[1]);
  return 0;
}
