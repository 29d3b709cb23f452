#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/context.h"
#include "core/status.h"
#include "cr/checkpoint.h"
#include "cr/restore.h"
#include "sys/proc.h"
#include "tools/crlib/commands.h"

namespace crlib::cli {
namespace {

// Options of the form "--name VALUE" or "--name=VALUE", and flags; an
// option in `repeatable` may be given any number of times (GetAll).
class ArgParser {
 public:
  explicit ArgParser(const Args& args) : args_(args) {}
  absl::Status Parse(const std::vector<std::string>& with_value, const std::vector<std::string>& flags,
                     const std::vector<std::string>& repeatable = {}) {
    for (size_t i = 0; i < args_.size(); ++i) {
      std::string a = args_[i], value;
      size_t eq = a.find('=');
      if (eq != std::string::npos) {
        value = a.substr(eq + 1);
        a = a.substr(0, eq);
      }
      if (std::find(flags.begin(), flags.end(), a) != flags.end() && eq == std::string::npos) {
        values_[a] = "1";
      } else if (std::find(with_value.begin(), with_value.end(), a) != with_value.end() ||
                 std::find(repeatable.begin(), repeatable.end(), a) != repeatable.end()) {
        if (eq == std::string::npos) {
          if (i + 1 >= args_.size()) return absl::InvalidArgumentError(a + " needs a value");
          value = args_[++i];
        }
        values_[a] = value;
        all_values_[a].push_back(value);
      } else {
        return absl::InvalidArgumentError("unknown argument " + args_[i]);
      }
    }
    return absl::OkStatus();
  }
  std::string Get(const std::string& name) const {
    auto it = values_.find(name);
    return it == values_.end() ? "" : it->second;
  }
  bool Has(const std::string& name) const { return values_.contains(name); }
  // Every value given to a repeatable option, in order.
  std::vector<std::string> GetAll(const std::string& name) const {
    auto it = all_values_.find(name);
    return it == all_values_.end() ? std::vector<std::string>() : it->second;
  }

 private:
  const Args& args_;
  std::map<std::string, std::string> values_;
  std::map<std::string, std::vector<std::string>> all_values_;
};

// The values of `--inherit-fd KEY=FD` options: key -> an fd of ours.
absl::StatusOr<std::map<std::string, int>> ParseInheritFds(const std::vector<std::string>& values) {
  std::map<std::string, int> out;
  for (const std::string& v : values) {
    const size_t eq = v.rfind('=');
    int fd = -1;
    if (eq == std::string::npos || eq == 0 || !absl::SimpleAtoi(v.substr(eq + 1), &fd) || fd < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--inherit-fd takes KEY=FD (a key `crlib inspect` shows, e.g. 'pipe:[123456]=3'), not '",
          v, "'"));
    }
    if (!out.emplace(v.substr(0, eq), fd).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("--inherit-fd gives key ", v.substr(0, eq), " twice"));
    }
  }
  return out;
}

double Ms(int64_t ns) { return static_cast<double>(ns) / 1e6; }

// SIGINT, SIGTERM and SIGHUP during a dump or restore cancel it at its
// next step, which undoes it like any failure: the process dumped runs on
// as it was and no image is left, or nothing restored is left running.
// The handler only records the signal (and whether it was sent to crlib
// alone, rather than by the terminal to its whole process group).
volatile sig_atomic_t g_signal = 0;
volatile sig_atomic_t g_signal_sent_to_us = 0;

void OnSignal(int sig, siginfo_t* info, void*) {
  g_signal = sig;
  g_signal_sent_to_us = info->si_code == SI_USER || info->si_code == SI_QUEUE ||
                        info->si_code == SI_TKILL;
}

class CancelOnSignals {
 public:
  static constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};
  CancelOnSignals() {
    struct sigaction sa {};
    sa.sa_sigaction = OnSignal;
    sa.sa_flags = SA_SIGINFO;  // no SA_RESTART: a blocked wait returns
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < std::size(kSignals); ++i) sigaction(kSignals[i], &sa, &old_[i]);
  }
  ~CancelOnSignals() {
    for (size_t i = 0; i < std::size(kSignals); ++i) sigaction(kSignals[i], &old_[i], nullptr);
  }
  // The progress callback: go on unless a signal came.
  static bool GoOn(Phase, uint64_t, uint64_t) { return g_signal == 0; }
  // `st`, or the reason it was cancelled when a signal did it.
  static absl::Status Explain(const absl::Status& st, const std::string& outcome) {
    // Cancelled at a step, or a blocking call the signal cut short (the
    // open of a FIFO nobody reads, say).
    if (st.ok() || g_signal == 0) return st;
    return absl::CancelledError(
        absl::StrFormat("interrupted by SIG%s: %s", sigabbrev_np(g_signal), outcome));
  }

 private:
  struct sigaction old_[std::size(kSignals)];
};

// "-" as an image: the standard stream, moved to a descriptor of its own
// so that nothing else crlib prints or the restored process reads can mix
// with the image (stdout is pointed at stderr, stdin at /dev/null).
absl::StatusOr<int> StandardStreamImage(int stream) {
  int fd = fcntl(stream, F_DUPFD_CLOEXEC, 3);
  if (fd < 0) return Errno("fcntl(F_DUPFD) of fd %d", stream);
  int replacement = stream == STDOUT_FILENO ? dup(STDERR_FILENO) : open("/dev/null", O_RDWR);
  if (replacement < 0 || dup2(replacement, stream) < 0) {
    absl::Status st = Errno("replacing fd %d, now the image", stream);
    close(fd);
    return st;
  }
  close(replacement);
  return fd;
}

}  // namespace

absl::StatusOr<int> DumpCommand(const Args& args) {
  ArgParser p(args);
  CRLIB_RETURN_IF_ERROR(p.Parse({"--pid", "--image", "--compress", "--deleted-file-limit", "--parent"},
                                {"--leave-running", "--mappable", "--stats", "--stopped", "--track",
                                 "--tcp-established"}));
  int pid = 0;
  if (!absl::SimpleAtoi(p.Get("--pid"), &pid) || pid <= 0) {
    return absl::InvalidArgumentError(
        "usage: crlib dump --pid PID --image PATH|- [--leave-running] [--compress LEVEL] "
        "[--mappable] [--stopped] [--track] [--parent IMAGE] [--tcp-established] "
        "[--deleted-file-limit BYTES]");
  }
  if (p.Get("--image").empty()) return absl::InvalidArgumentError("dump: --image PATH is required");
  Options options;
  if (p.Has("--compress") && (!absl::SimpleAtoi(p.Get("--compress"), &options.compression_level) ||
                              options.compression_level < 1 || options.compression_level > 19)) {
    return absl::InvalidArgumentError("--compress takes a zstd level from 1 to 19, not '" +
                                      p.Get("--compress") + "'");
  }
  options.mappable = p.Has("--mappable");
  CRLIB_RETURN_IF_ERROR(CheckOptions(options));
  // --track leaves the process running: tracking a killed one is moot.
  CheckpointOptions co{.leave_running = p.Has("--leave-running") || p.Has("--track"),
                       .live = !p.Has("--stopped"),
                       .track = p.Has("--track"),
                       .tcp_established = p.Has("--tcp-established"),
                       .parent_image = p.Get("--parent")};
  if (p.Has("--deleted-file-limit") &&
      !absl::SimpleAtoi(p.Get("--deleted-file-limit"), &co.deleted_file_limit)) {
    return absl::InvalidArgumentError("--deleted-file-limit takes a number of bytes, not '" +
                                      p.Get("--deleted-file-limit") + "'");
  }
  std::string image = p.Get("--image");
  int image_fd = -1;
  if (image == "-") {
    CRLIB_ASSIGN_OR_RETURN(image_fd, StandardStreamImage(STDOUT_FILENO));
    co.image_fd = image_fd;
    image = "standard output";
  }
  Context ctx(options);
  CancelOnSignals cancel;
  ctx.set_progress(CancelOnSignals::GoOn);
  absl::Status st = CheckpointProcess(&ctx, pid, image, co);
  if (image_fd >= 0) close(image_fd);
  CRLIB_RETURN_IF_ERROR(CancelOnSignals::Explain(
      st, absl::StrFormat("pid %d runs on as it was, no image was written", pid)));
  if (p.Has("--stats")) {
    const Stats& s = ctx.stats();
    fprintf(stderr,
            "crlib: dump: %d bytes, %d pages stored (%d zero skipped), frozen %.2f ms (registers "
            "borrowed %.2f ms, restore check %.2f ms), total %.2f ms\n",
            static_cast<int>(s.bytes), static_cast<int>(s.pages_stored), static_cast<int>(s.pages_zero),
            Ms(s.frozen_ns), Ms(s.borrowed_ns), Ms(s.check_ns), Ms(s.total_ns));
    if (s.live_rounds > 0) {
      fprintf(stderr, "crlib: dump: live: memory copied while it ran, then %d rounds of what it wrote\n",
              s.live_rounds);
    } else if (s.live_refused[0] != '\0') {
      fprintf(stderr, "crlib: dump: stopped for the whole dump: %s\n", s.live_refused);
    }
    if (s.incremental_refused[0] != '\0') {
      fprintf(stderr, "crlib: dump: every page, not only those written since the parent: %s\n",
              s.incremental_refused);
    }
  }
  return 0;
}

absl::StatusOr<int> RestoreCommand(const Args& args) {
  ArgParser p(args);
  CRLIB_RETURN_IF_ERROR(
      p.Parse({"--image"},
              {"--detach", "--stats", "--trust-image", "--check", "--pid-ns", "--copy-pages",
               "--lazy"},
              {"--inherit-fd"}));
  if (p.Get("--image").empty()) {
    return absl::InvalidArgumentError(
        "usage: crlib restore --image PATH|- [--check] [--detach] [--lazy] [--trust-image] "
        "[--pid-ns] [--copy-pages] [--inherit-fd KEY=FD]...");
  }
  RestoreOptions ro{.trust_image = p.Has("--trust-image"),
                    .pid_namespace = p.Has("--pid-ns"),
                    .copy_pages = p.Has("--copy-pages")};
  CRLIB_ASSIGN_OR_RETURN(ro.inherit_fds, ParseInheritFds(p.GetAll("--inherit-fd")));
  std::string image = p.Get("--image");
  if (image == "-") {
    CRLIB_ASSIGN_OR_RETURN(ro.image_fd, StandardStreamImage(STDIN_FILENO));
    image = "standard input";
  }
  if (p.Has("--check")) {
    absl::StatusOr<RestoreCheckReport> r = CheckRestore(image, ro);
    if (ro.image_fd >= 0) close(ro.image_fd);
    CRLIB_RETURN_IF_ERROR(r.status());
    printf("%s: restorable here: pid %d, %zu processes, %zu threads, %zu mappings, %zu fds, "
           "%llu pages\n",
           image.c_str(), r->pid, r->processes, r->threads, r->mappings, r->fds,
           static_cast<unsigned long long>(r->pages));
    return 0;
  }
  Context ctx;
  CancelOnSignals cancel;
  ctx.set_progress(CancelOnSignals::GoOn);
  // Lazily, this process serves the pages from a thread of its own until
  // every one is in: it returns no sooner, --detach or not.
  std::unique_ptr<LazyPages> lazy;
  const int64_t started = NowNs();
  absl::StatusOr<pid_t> restored =
      RestoreProcess(&ctx, image, ro, p.Has("--lazy") ? &lazy : nullptr);
  if (ro.image_fd >= 0) close(ro.image_fd);
  CRLIB_RETURN_IF_ERROR(
      CancelOnSignals::Explain(restored.status(), "nothing restored is left running"));
  const pid_t pid = *restored;
  if (!ctx.pages_copied_reason().empty()) {
    fprintf(stderr, "crlib: restore: pages copied, not mapped: %s\n",
            ctx.pages_copied_reason().c_str());
  }
  if (p.Has("--stats")) {
    fprintf(stderr, "crlib: restore: pid %d running after %.2f ms, %d pages %s (%d mapped)\n",
            pid, Ms(ctx.stats().total_ns), static_cast<int>(ctx.stats().pages_stored),
            lazy ? "to serve lazily" : "loaded", static_cast<int>(ctx.stats().pages_mapped));
  }
  // Waits for the last page, and says how they came when asked.
  auto await_pages = [&]() -> absl::Status {
    if (!lazy) return absl::OkStatus();
    absl::Status st = lazy->Wait();
    if (st.ok() && p.Has("--stats")) {
      const LazyPages::Progress pr = lazy->progress();
      fprintf(stderr,
              "crlib: restore: pages served until %.2f ms (every one in, or the processes "
              "gone): %d on a fault, %d in the background, %d before it ran\n",
              Ms(pr.done_ns - started),
              static_cast<int>(pr.pages_faulted), static_cast<int>(pr.pages_pushed),
              static_cast<int>(pr.pages_eager));
    }
    return st;
  };
  if (p.Has("--detach")) {
    if (!ro.pid_namespace) {
      printf("%d\n", pid);
    } else {
      // The init's first child is the root (children are listed in the
      // order they came; orphans it adopts come after); none once the root
      // has exited already.
      absl::StatusOr<std::vector<pid_t>> children = sys::ListChildren(pid);
      printf("%d %d\n", pid, children.ok() && !children->empty() ? children->front() : 0);
    }
    fflush(stdout);
    CRLIB_RETURN_IF_ERROR(await_pages());
    return 0;
  }
  // Waiting for the restored process, crlib stands in for it: a signal
  // sent to crlib alone is passed on, as is one the terminal sent to
  // crlib's process group when the restored process is not in it.
  int status;
  g_signal = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return Errno("waitpid(%d)", pid);
    const int sig = g_signal;
    g_signal = 0;
    if (sig != 0 && (g_signal_sent_to_us || getpgid(pid) != getpgrp())) kill(pid, sig);
  }
  CRLIB_RETURN_IF_ERROR(await_pages());
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

}  // namespace crlib::cli
