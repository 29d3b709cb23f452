#include "cr/self_checkpoint.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>
#include <type_traits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/status.h"
#include "sys/proc.h"
#include "cr/checkpoint.h"
#include "sys/nocr.h"

namespace crlib {
namespace {

// What the rendezvous read() returns in a restored process: more than the
// size of the read, so no real read can return it.
constexpr int64_t kRestoredResult = 0x52455354;  // "REST"
constexpr uint32_t kReplyMagic = 0x43524c59;     // "CRLY"
// How long the helper waits for the caller to block in its read.
constexpr auto kRendezvousTimeout = std::chrono::seconds(10);

// The helper's answer, written with one write() so it arrives whole.
struct Reply {
  uint32_t magic = 0;
  int32_t code = 0;  // absl::StatusCode
  int32_t sys_errno = 0;
  uint32_t not_checkpointable = 0;
  Stats stats;
  char message[2048] = {};
  char reason[256] = {};  // of a nocr mark
};
static_assert(std::is_trivially_copyable_v<Reply>);
static_assert(sizeof(Reply) <= PIPE_BUF, "a pipe write of at most PIPE_BUF bytes is atomic");
static_assert(kRestoredResult > static_cast<int64_t>(sizeof(Reply)));

void CopyString(absl::string_view from, char* to, size_t size) {
  const size_t n = std::min(from.size(), size - 1);
  // An empty string_view may hold a null data(), which memcpy must not
  // get even for 0 bytes (UBSan stops make test-sanitize on it).
  if (n > 0) memcpy(to, from.data(), n);
  to[n] = '\0';
}

// True once thread `tid` of `pid` is blocked in read(fd, ...).
bool BlockedInRead(pid_t pid, pid_t tid, int fd) {
  absl::StatusOr<std::string> text =
      sys::ReadFile(absl::StrCat("/proc/", pid, "/task/", tid, "/syscall"));
  if (!text.ok()) return false;
  std::vector<absl::string_view> f = absl::StrSplit(*text, ' ');
  uint64_t nr, arg0;
  return f.size() > 2 && absl::SimpleAtoi(f[0], &nr) && nr == SYS_read &&
         absl::SimpleHexAtoi(f[1], &arg0) && arg0 == static_cast<uint64_t>(fd);
}

// The helper: waits for the go byte, then for the caller's thread to block
// in its read, dumps the caller (which keeps running) and replies. Runs in
// a fork of a possibly multi-threaded process: it only calls crlib code,
// which takes no locks another thread of the caller could hold except
// malloc's, which glibc resets at fork. Ends with _exit, so the caller's
// stdio buffers and atexit handlers are not run twice.
[[noreturn]] void RunHelper(const Options& options, const std::string& image_path, int image_fd,
                            pid_t caller, pid_t caller_tid, int go_fd, int rendezvous_fd,
                            int reply_fd) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != caller) _exit(1);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  char go;
  if (read(go_fd, &go, 1) != 1) _exit(1);  // the caller gave up
  Reply reply;
  reply.magic = kReplyMagic;
  Context ctx(options);
  absl::Status st = [&]() -> absl::Status {
    const auto deadline = std::chrono::steady_clock::now() + kRendezvousTimeout;
    while (!BlockedInRead(caller, caller_tid, rendezvous_fd)) {
      if (std::chrono::steady_clock::now() > deadline) {
        return absl::DeadlineExceededError(absl::StrFormat(
            "self-checkpoint: thread %d did not reach its rendezvous in %d s", caller_tid,
            std::chrono::duration_cast<std::chrono::seconds>(kRendezvousTimeout).count()));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    CheckpointOptions o;
    o.leave_running = true;
    o.skip_fds = {rendezvous_fd};
    // The helper inherited the caller's image descriptor and writes to it;
    // the caller's own copy is not part of its image.
    o.image_fd = image_fd;
    if (image_fd >= 0) o.skip_fds.push_back(image_fd);
    o.skip_children = {getpid()};
    o.syscall_results[caller_tid] = kRestoredResult;
    return CheckpointProcess(&ctx, caller, image_path, o);
  }();
  reply.code = static_cast<int32_t>(st.code());
  reply.sys_errno = StatusErrno(st);
  reply.stats = ctx.stats();
  CopyString(st.message(), reply.message, sizeof(reply.message));
  if (std::optional<std::string> reason = NotCheckpointableReason(st)) {
    reply.not_checkpointable = 1;
    CopyString(*reason, reply.reason, sizeof(reply.reason));
  }
  ssize_t n = write(reply_fd, &reply, sizeof(reply));
  _exit(n == static_cast<ssize_t>(sizeof(reply)) ? 0 : 1);
}

absl::Status ReplyStatus(const Reply& r) {
  if (r.not_checkpointable) return NotCheckpointableError(getpid(), r.reason);
  absl::Status st(static_cast<absl::StatusCode>(r.code), r.message);
  AttachErrno(&st, r.sys_errno);
  return st;
}

std::string WaitText(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("was killed by signal ", WTERMSIG(status));
  return absl::StrCat("ended with wait status ", status);
}

}  // namespace

absl::StatusOr<SelfResult> CheckpointSelf(Context* ctx, const std::string& image_path,
                                          int image_fd) {
  static std::mutex* const one_at_a_time = new std::mutex;
  std::lock_guard<std::mutex> lock(*one_at_a_time);
  const int64_t start = NowNs();
  if (std::optional<std::string> reason = NoCrHeld()) {
    return NotCheckpointableError(getpid(), *reason);
  }
  CRLIB_RETURN_IF_ERROR(ctx->Progress(Phase::kFreeze));
  int go[2], rendezvous[2];
  if (pipe2(go, O_CLOEXEC) != 0) return Errno("pipe2 for the self-checkpoint helper");
  if (pipe2(rendezvous, O_CLOEXEC) != 0) {
    absl::Status st = Errno("pipe2 for the self-checkpoint rendezvous");
    close(go[0]);
    close(go[1]);
    return st;
  }
  // No signal handler may run on this thread while it waits: the image
  // must catch it inside its read. The mask comes back on both sides.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t self = getpid();
  const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
  const pid_t helper = fork();
  if (helper == 0) {
    close(go[1]);
    close(rendezvous[0]);
    RunHelper(ctx->options(), image_path, image_fd, self, tid, go[0], rendezvous[0], rendezvous[1]);
  }
  const int fork_errno = errno;
  close(go[0]);
  close(rendezvous[1]);
  if (helper < 0) {
    close(go[1]);
    close(rendezvous[0]);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return ErrnoError(fork_errno, "fork of the self-checkpoint helper");
  }
  // Under Yama's ptrace_scope 1 a child may trace its parent only if told
  // so; EINVAL means there is no Yama.
  prctl(PR_SET_PTRACER, helper, 0, 0, 0);
  (void)!write(go[1], "g", 1);
  close(go[1]);

  Reply reply;
  long n;
  do {
    n = syscall(SYS_read, rendezvous[0], &reply, sizeof(reply));
  } while (n < 0 && errno == EINTR);
  if (n == kRestoredResult) {
    // A restored process: the pipe was left out of the image (its number
    // is closed here) and the helper is not our child.
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return SelfResult::kRestored;
  }
  const int read_errno = errno;
  close(rendezvous[0]);
  int status = 0;
  const pid_t waited = waitpid(helper, &status, 0);  // may fail if the caller reaps children itself
  prctl(PR_SET_PTRACER, 0, 0, 0, 0);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (n < 0) return ErrnoError(read_errno, "read of the self-checkpoint reply");
  if (n != static_cast<long>(sizeof(reply)) || reply.magic != kReplyMagic) {
    return absl::InternalError(absl::StrFormat(
        "the self-checkpoint helper (pid %d) %s without a reply", helper,
        waited == helper ? WaitText(status) : "ended"));
  }
  CRLIB_RETURN_IF_ERROR(ReplyStatus(reply));
  ctx->stats() = reply.stats;
  ctx->stats().total_ns = NowNs() - start;
  (void)ctx->Progress(Phase::kDone);  // too late to cancel: the image exists
  return SelfResult::kCheckpointed;
}

}  // namespace crlib
