// `crlib demo` (what `make demo` runs): a sample process counts, is
// checkpointed and killed, then restored, and counts on from where it was.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "core/context.h"
#include "core/status.h"
#include "cr/checkpoint.h"
#include "cr/restore.h"
#include "tools/crlib/commands.h"

namespace crlib::cli {
namespace {

void Sleep(int ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

[[noreturn]] void Workload() {
  // Some state worth keeping: a heap table whose checksum it prints.
  const int kEntries = 1 << 20;
  auto* table = static_cast<unsigned*>(malloc(kEntries * sizeof(unsigned)));
  unsigned sum = 0;
  for (int i = 0; i < kEntries; ++i) sum += table[i] = i * 2654435761u;
  for (unsigned counter = 1;; ++counter) {
    printf("    [pid %d] counter = %u, table checksum = %08x\n", getpid(), counter, sum);
    fflush(stdout);
    Sleep(300);
  }
}

}  // namespace

absl::StatusOr<int> DemoCommand(const Args& args) {
  if (!args.empty()) return absl::InvalidArgumentError("usage: crlib demo");
  char dir[] = "/tmp/crlib-demo-XXXXXX";
  if (!mkdtemp(dir)) return Errno("mkdtemp");
  const std::string image = std::string(dir) + "/demo.img";
  // A regular file as stdout is restored by path at its offset, as a new
  // open file; in append mode the restored process and this demo cannot
  // overwrite each other's lines.
  struct stat out;
  if (fstat(1, &out) == 0 && S_ISREG(out.st_mode)) fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_APPEND);
  fflush(stdout);
  pid_t child = fork();
  if (child < 0) return Errno("fork");
  if (child == 0) {
    // Only the standard streams: whatever else we inherited is not the
    // workload's (and a pipe leading elsewhere could not be restored).
    syscall(SYS_close_range, 3, ~0u, 0);
    Workload();
  }
  printf("crlib demo: started pid %d\n", child);
  fflush(stdout);
  Sleep(1000);

  Context dump_ctx;
  absl::Status st = CheckpointProcess(&dump_ctx, child, image, {});
  if (!st.ok()) {
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    rmdir(dir);
    return st;
  }
  int status;
  waitpid(child, &status, 0);
  const Stats& d = dump_ctx.stats();
  printf("crlib demo: checkpointed pid %d to %s: %.1f KiB, %d pages (%d zero pages skipped), "
         "stopped %.1f ms\n",
         child, image.c_str(), d.bytes / 1024.0, static_cast<int>(d.pages_stored),
         static_cast<int>(d.pages_zero), d.frozen_ns / 1e6);
  printf("crlib demo: pid %d is gone (%s); restoring it\n", child,
         WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "exited");
  fflush(stdout);
  Sleep(300);

  Context restore_ctx;
  absl::StatusOr<pid_t> restored = RestoreProcess(&restore_ctx, image);
  unlink(image.c_str());
  rmdir(dir);
  CRLIB_RETURN_IF_ERROR(restored.status());
  printf("crlib demo: restored pid %d in %.1f ms; it continues:\n", *restored,
         restore_ctx.stats().total_ns / 1e6);
  fflush(stdout);
  Sleep(1000);
  kill(*restored, SIGTERM);
  waitpid(*restored, &status, 0);
  printf("crlib demo: done (the restored process was stopped with %s)\n",
         WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : "an exit");
  return 0;
}

}  // namespace crlib::cli
