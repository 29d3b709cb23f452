#include "cr/restore.h"

#include <fcntl.h>
#include <linux/prctl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "arch/arch_backend.h"
#include "core/byte_stream.h"
#include "core/image_reader.h"
#include "core/status.h"
#include "files/file_restore.h"
#include "files/tty_restore.h"
#include "mm/memory_restore.h"
#include "sys/kernel.h"
#include "sys/proc.h"
#include "task/attributes.h"
#include "image/process_image.h"
#include "cr/restore_check.h"
#include "task/schedule.h"
#include "task/thread_restore.h"
#include "remote/tracee.h"

namespace crlib {
namespace {

constexpr uint64_t kKeyctlJoinSessionKeyring = 1;  // KEYCTL_JOIN_SESSION_KEYRING

// Creates the child that becomes the restored process: PID `pid`, dies
// with us until restore is done, traced by us and stopped. Raw system calls
// only in the child: it is a copy of this process that glibc did not fork.
absl::StatusOr<pid_t> CloneWithPid(pid_t pid) {
  // A PID no process holds may still be on its way to being freed (see
  // AwaitTidRelease), e.g. that of a process whose last thread reaped it.
  const auto deadline = std::chrono::steady_clock::now() + sys::kTidReleaseWait;
  long r;
  do {
    r = sys::CloneWithPid(pid);
  } while (r < 0 && errno == EEXIST && sys::AwaitTidRelease(pid, deadline));
  if (r == 0) {
    syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0) == 0) {
      syscall(SYS_kill, syscall(SYS_getpid), SIGSTOP);
    }
    syscall(SYS_exit_group, 127);
  }
  if (r < 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(absl::StrFormat("pid %d is in use by another process", pid));
    }
    return Errno("clone3 with set_tid %d (needs CAP_SYS_ADMIN)", pid);
  }
  return static_cast<pid_t>(r);
}

// Closes every descriptor of stopped process `t` but `keep`, a
// close_range per gap rather than a remote close per descriptor.
absl::Status CloseAllBut(Tracee* t, const std::set<int>& keep) {
  CRLIB_ASSIGN_OR_RETURN(std::vector<int> open_fds, sys::ListFds(t->tid()));
  std::sort(open_fds.begin(), open_fds.end());
  for (size_t i = 0; i < open_fds.size();) {
    if (keep.contains(open_fds[i])) {
      ++i;
      continue;
    }
    const int first = open_fds[i];
    auto next_kept = keep.upper_bound(first);
    while (i < open_fds.size() && (next_kept == keep.end() || open_fds[i] < *next_kept)) ++i;
    const int last = open_fds[i - 1];
    CRLIB_RETURN_IF_ERROR(t->CheckedSyscall("close_range", SYS_close_range,
                                            {static_cast<uint64_t>(first),
                                             static_cast<uint64_t>(last), 0})
                              .status());
  }
  return absl::OkStatus();
}

// Every step after the child exists. `threads` holds its main thread and
// gets every thread created here, for the caller to kill on error.
absl::Status BuildProcess(Context* ctx, std::vector<std::unique_ptr<Tracee>>* threads,
                          const ProcessImage& image, const OpenedFiles& files,
                          ImageReader* reader, AddressRange scratch_range) {
  Tracee* t = threads->front().get();
  const pid_t pid = t->tid();
  auto step = [](const char* name, absl::Status st) {
    return st.ok() ? st : Annotate(st, absl::StrCat("restore step '", name, "'"));
  };
  // No handler may run in place of a remote call; threads created later
  // inherit this mask.
  CRLIB_RETURN_IF_ERROR(t->SetSigmask(~uint64_t{0}));
  // The child is a copy of the restorer: first drop every descriptor it
  // inherited but the files it needs and the standard streams. Above all
  // the write end of an image pipe the caller may hold: while the child
  // kept it, the restore reading that pipe would never see its end.
  std::set<int> needed = {0, 1, 2};
  for (int fd : files.all()) needed.insert(fd);
  CRLIB_RETURN_IF_ERROR(step("file descriptors", CloseAllBut(t, needed)));
  // The inherited rseq area is about to be unmapped: the kernel must stop
  // writing to it first.
  sys::PtraceRseqConfiguration rseq{};
  if (ptrace(static_cast<__ptrace_request>(sys::kPtraceGetRseqConfiguration), pid, sizeof(rseq),
             &rseq) > 0 &&
      rseq.rseq_abi_size > 0) {
    CRLIB_RETURN_IF_ERROR(step("rseq unregister",
                               t->CheckedSyscall("rseq(UNREGISTER)", SYS_rseq,
                                                 {rseq.rseq_abi_pointer, rseq.rseq_abi_size,
                                                  sys::kRseqFlagUnregister, rseq.signature})
                                   .status()));
  }
  const uint64_t scratch = scratch_range.first;
  CRLIB_RETURN_IF_ERROR(step("scratch", t->CheckedSyscall("mmap of the scratch area", SYS_mmap,
                                                          {scratch, kRestoreScratchBytes,
                                                           PROT_READ | PROT_WRITE | PROT_EXEC,
                                                           MAP_PRIVATE | MAP_ANONYMOUS |
                                                               MAP_FIXED_NOREPLACE,
                                                           static_cast<uint64_t>(-1), 0})
                                            .status()));
  CRLIB_RETURN_IF_ERROR(step("address space", RebuildAddressSpace(t, image, files, scratch_range)));
  uint64_t pages = 0;
  CRLIB_RETURN_IF_ERROR(step("pages", LoadPages(ctx, t, image, reader, &pages)));
  ctx->stats().pages_stored = pages;
  CRLIB_RETURN_IF_ERROR(step("guard regions", RestoreGuardRegions(t, image)));

  // Descriptors: move each into place, then close everything else.
  std::set<int> targets;
  for (const FdRecord& fd : image.fds) {
    targets.insert(static_cast<int>(fd.fd));
    const FileImage& f = image.files.at(fd.file);
    if (static_cast<FileKind>(f.record.kind) == FileKind::kInherited) continue;
    if (static_cast<FileKind>(f.record.kind) == FileKind::kDevTty) continue;  // with the session
    CRLIB_RETURN_IF_ERROR(step(
        "file descriptors",
        t->CheckedSyscall("dup3", SYS_dup3,
                          {static_cast<uint64_t>(files.fd(fd.file)), fd.fd,
                           (fd.fd_flags & FD_CLOEXEC) ? static_cast<uint64_t>(O_CLOEXEC) : 0})
            .status()));
  }
  // A removed cwd is entered through our descriptor for it, before it goes.
  CRLIB_RETURN_IF_ERROR(step("cwd", EnterRemovedCwd(t, image, files)));
  // Everything else goes.
  CRLIB_RETURN_IF_ERROR(step("file descriptors", CloseAllBut(t, targets)));
  CRLIB_RETURN_IF_ERROR(step("file locks", RestoreProcessLocks(t, image, scratch)));

  // Process attributes.
  const ProcessRecord& p = image.process;
  auto remote_string = [&](const std::string& s) -> absl::StatusOr<uint64_t> {
    if (s.size() + 1 > kRestoreScratchBytes) return absl::OutOfRangeError("path too long: " + s);
    CRLIB_RETURN_IF_ERROR(t->WriteMemory(scratch, s.c_str(), s.size() + 1));
    return scratch;
  };
  if (p.root != "/") {
    CRLIB_ASSIGN_OR_RETURN(uint64_t path, remote_string(p.root));
    CRLIB_RETURN_IF_ERROR(step("root", t->CheckedSyscall("chroot", SYS_chroot, {path}).status()));
  }
  CRLIB_RETURN_IF_ERROR(t->CheckedSyscall("umask", SYS_umask, {p.umask}).status());
  CRLIB_RETURN_IF_ERROR(t->CheckedSyscall("personality", SYS_personality, {p.personality}).status());
  CRLIB_RETURN_IF_ERROR(step("rlimits", RestoreRlimits(pid, image)));
  CRLIB_RETURN_IF_ERROR(step("interval timers", RestoreItimers(t, image, scratch)));
  CRLIB_RETURN_IF_ERROR(step("signal handlers", RestoreSignalHandlers(t, image, scratch)));
  if (p.sid == p.pid) {
    CRLIB_RETURN_IF_ERROR(step("session", t->CheckedSyscall("setsid", SYS_setsid).status()));
    CRLIB_RETURN_IF_ERROR(
        step("controlling terminal", RestoreControllingTerminal(t, image, scratch)));
  } else if (p.pgid == p.pid) {
    CRLIB_RETURN_IF_ERROR(step("process group", t->CheckedSyscall("setpgid", SYS_setpgid, {0, 0}).status()));
  }
  // The child inherited the restorer's session keyring, whose keys are
  // not the image's to have: a new, empty one, before any thread is made
  // (they share it). Keyrings themselves are not carried (CHECKPOINT.md).
  {
    absl::StatusOr<int64_t> joined = t->Syscall(SYS_keyctl, {kKeyctlJoinSessionKeyring, 0});
    CRLIB_RETURN_IF_ERROR(joined.status());
    if (*joined < 0 && *joined != -ENOSYS) {
      return step("session keyring",
                  ErrnoError(static_cast<int>(-*joined),
                             absl::StrFormat("keyctl(JOIN_SESSION_KEYRING, NULL) in pid %d", pid)));
    }
  }
  // Each thread's own state, the main thread's first: threads it creates
  // inherit its name. Creating them needs the rights credentials may drop.
  CRLIB_RETURN_IF_ERROR(
      RestoreThreadAttributes(t, pid, image.threads.front(), ThreadStart{}, scratch));
  CRLIB_RETURN_IF_ERROR(CreateThreads(t, image, scratch, threads));
  if (image.shared_pending) {
    CRLIB_RETURN_IF_ERROR(
        step("pending signals", QueueSignals(t, pid, *image.shared_pending, scratch)));
  }
  // Every thread exists (a timer may name one); loginuid needs our rights.
  CRLIB_RETURN_IF_ERROR(RestoreProcessAttributes(t, image, scratch));
  // Credentials last: after them a thread may lack the rights the steps
  // above needed.
  for (const std::unique_ptr<Tracee>& thread : *threads) {
    CRLIB_RETURN_IF_ERROR(RestoreCredentials(thread.get(), p, scratch));
  }
  // Scheduling from outside, by TID: the check before the point of no
  // return made sure the image may claim it.
  for (size_t i = 0; i < threads->size(); ++i) {
    if (!image.threads[i].schedule) continue;
    const pid_t tid = (*threads)[i]->tid();
    CRLIB_RETURN_IF_ERROR(
        ThreadStep("scheduling", tid, RestoreSchedule(tid, *image.threads[i].schedule)));
  }
  // The cwd after the credentials, so that the kernel checks the image's
  // right to enter it, not ours (threads share it: CLONE_FS).
  if (!image.RemovedCwd()) {
    CRLIB_ASSIGN_OR_RETURN(uint64_t cwd, remote_string(p.cwd));
    CRLIB_RETURN_IF_ERROR(step("cwd", t->CheckedSyscall("chdir", SYS_chdir, {cwd}).status()));
  }
  CRLIB_RETURN_IF_ERROR(t->CheckedSyscall("prctl(PR_SET_PDEATHSIG)", SYS_prctl, {PR_SET_PDEATHSIG, 0}).status());
  // The image's parent-death signals, dumpable (both reset by a credential
  // change) and no_new_privs (one-way).
  CRLIB_RETURN_IF_ERROR(RestoreAttributesAfterCredentials(*threads, image));
  CRLIB_RETURN_IF_ERROR(step("scratch", t->CheckedSyscall("munmap of the scratch area", SYS_munmap,
                                                          {scratch, kRestoreScratchBytes})
                                            .status()));
  // Seccomp: the last system calls; a filter may forbid any after it.
  CRLIB_RETURN_IF_ERROR(RestoreSeccomp(*threads, image));
  // CPU state last; only when every thread is complete may any run.
  for (size_t i = 0; i < threads->size(); ++i) {
    CRLIB_RETURN_IF_ERROR(RestoreCpuState((*threads)[i].get(), image.threads[i]));
  }
  // A process dumped in a group stop comes back stopped: the SIGSTOP is
  // queued while every thread is still held, and takes effect before any
  // of them runs an instruction once detached.
  if (p.flags & kProcessStopped) {
    if (kill(pid, SIGSTOP) != 0) return Errno("kill(%d, SIGSTOP) to restore its stopped state", pid);
  }
  for (const std::unique_ptr<Tracee>& thread : *threads) {
    CRLIB_RETURN_IF_ERROR(ThreadStep("detach", thread->tid(), thread->Detach()));
  }
  return absl::OkStatus();
}

}  // namespace

namespace {

// The image behind `image_path` or `options.image_fd`, read through one
// descriptor for every pass: a file replaced by another meanwhile cannot
// mix two images into a process that never existed, and a pipe or FIFO is
// read once.
class ImageInput {
 public:
  static absl::StatusOr<std::unique_ptr<ImageInput>> Open(const std::string& image_path,
                                                          const RestoreOptions& options,
                                                          bool verify_bulk) {
    auto in = std::unique_ptr<ImageInput>(new ImageInput);
    in->fd_ = options.image_fd;
    if (in->fd_ < 0) {
      in->fd_ = in->owned_fd_ = open(image_path.c_str(), O_RDONLY | O_CLOEXEC);
      if (in->fd_ < 0) return Errno("open %s", image_path);
    }
    // Who vouches for the image: CheckImageTrust.
    if (fstat(in->fd_, &in->file_) != 0) return Errno("fstat %s", image_path);
    in->source_ = std::make_unique<FdSource>(in->fd_);
    CRLIB_ASSIGN_OR_RETURN(in->reader_, ImageReader::Open(in->source_.get(),
                                                          ReaderOptions{.verify_bulk = verify_bulk}));
    return in;
  }
  ~ImageInput() {
    if (owned_fd_ >= 0) close(owned_fd_);
  }
  ImageReader* reader() { return reader_.get(); }
  const struct stat& file() const { return file_; }

 private:
  ImageInput() = default;
  int fd_ = -1;
  int owned_fd_ = -1;
  struct stat file_{};
  std::unique_ptr<FdSource> source_;
  std::unique_ptr<ImageReader> reader_;
};

}  // namespace

absl::StatusOr<RestoreCheckReport> CheckRestore(const std::string& image_path,
                                                const RestoreOptions& options) {
  // Every byte is verified, page data included: nothing is read again.
  CRLIB_ASSIGN_OR_RETURN(std::unique_ptr<ImageInput> in,
                         ImageInput::Open(image_path, options, /*verify_bulk=*/true));
  ImageReader* reader = in->reader();
  CRLIB_ASSIGN_OR_RETURN(const ProcessImage image, LoadProcessImage(reader));
  CRLIB_RETURN_IF_ERROR(
      PrepareRestore(image, in->file(),
                     {.trust_image = options.trust_image, .inherit_fds = options.inherit_fds})
          .status());
  RestoreCheckReport report{.pid = static_cast<pid_t>(image.process.pid),
                            .threads = image.threads.size(),
                            .mappings = image.vmas.size(),
                            .fds = image.fds.size()};
  report.pages = image.page_count;
  if (image.pages_checked) return report;  // and their data verified
  // A stream: the page records LoadProcessImage left for the loader.
  for (;;) {
    CRLIB_ASSIGN_OR_RETURN(const Record* rec, reader->Next());
    if (rec == nullptr) break;
    CRLIB_ASSIGN_OR_RETURN(PagesRecord pages, reader->Decode<PagesRecord>(*rec));
    report.pages += pages.page_count;
  }
  return report;
}

absl::StatusOr<pid_t> RestoreProcess(Context* ctx, const std::string& image_path,
                                     const RestoreOptions& options) {
  const int64_t start = NowNs();
  // Page checksums are verified when the pages are loaded, before the
  // process runs; the first pass reads everything else.
  CRLIB_ASSIGN_OR_RETURN(std::unique_ptr<ImageInput> in,
                         ImageInput::Open(image_path, options, /*verify_bulk=*/false));
  ImageReader* reader = in->reader();
  CRLIB_ASSIGN_OR_RETURN(const ProcessImage image, LoadProcessImage(reader));
  const pid_t pid = static_cast<pid_t>(image.process.pid);
  CRLIB_ASSIGN_OR_RETURN(RestorePreparation prep,
                         PrepareRestore(image, in->file(),
                                        {.trust_image = options.trust_image,
                                         .inherit_fds = options.inherit_fds}));
  const OpenedFiles& files = prep.files;
  const uint64_t scratch = prep.scratch;

  // Last chance to cancel with nothing created.
  CRLIB_RETURN_IF_ERROR(ctx->Progress(Phase::kState));
  // The point of no return: from here a failure kills the child.
  CRLIB_ASSIGN_OR_RETURN(pid_t child, CloneWithPid(pid));
  absl::StatusOr<std::unique_ptr<Tracee>> t = Tracee::AdoptStoppedChild(child);
  if (!t.ok()) {
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    return t.status();
  }
  std::vector<std::unique_ptr<Tracee>> threads;
  threads.push_back(std::move(*t));
  absl::Status st =
      BuildProcess(ctx, &threads, image, files, reader, {scratch, scratch + kRestoreScratchBytes});
  ctx->stats().bytes = reader->offset();
  if (!st.ok()) {
    Tracee::KillProcess(threads);
    return Annotate(st, absl::StrFormat("restore of pid %d failed, nothing left running", pid));
  }
  ctx->stats().total_ns = NowNs() - start;
  (void)ctx->Progress(Phase::kDone);  // it runs: too late to cancel
  return child;
}

}  // namespace crlib
