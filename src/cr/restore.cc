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

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <map>
#include <optional>
#include <set>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "arch/arch_backend.h"
#include "core/byte_stream.h"
#include "core/image_reader.h"
#include "core/status.h"
#include "files/event_restore.h"
#include "files/file_restore.h"
#include "files/tcp_connection.h"
#include "files/tty_restore.h"
#include "mm/mapped_restore.h"
#include "mm/lazy_restore.h"
#include "cr/image_chain.h"
#include "mm/memory_restore.h"
#include "sys/kernel.h"
#include "sys/proc.h"
#include "task/attributes.h"
#include "image/process_image.h"
#include "cr/restore_check.h"
#include "task/schedule.h"
#include "task/thread_restore.h"
#include "task/xfeatures.h"
#include "remote/tracee.h"

namespace crlib {
namespace {

constexpr uint64_t kKeyctlJoinSessionKeyring = 1;  // KEYCTL_JOIN_SESSION_KEYRING

// Whether this kernel has keyrings (CONFIG_KEYS), asked of our own session
// keyring: anything but ENOSYS says it has.
bool KernelHasKeyrings() {
  constexpr long kKeyctlGetKeyringId = 0;       // KEYCTL_GET_KEYRING_ID
  constexpr long kKeySpecSessionKeyring = -3;  // KEY_SPEC_SESSION_KEYRING
  return syscall(SYS_keyctl, kKeyctlGetKeyringId, kKeySpecSessionKeyring, 0) >= 0 ||
         errno != ENOSYS;
}

// The close_range calls that close every descriptor of stopped process
// `t` but `keep`: one per gap rather than a remote close per descriptor.
absl::StatusOr<std::vector<Tracee::RemoteCall>> CloseAllBut(Tracee* t, const std::set<int>& keep) {
  CRLIB_ASSIGN_OR_RETURN(std::vector<int> open_fds, sys::ListFds(t->tid()));
  std::sort(open_fds.begin(), open_fds.end());
  std::vector<Tracee::RemoteCall> calls;
  for (size_t i = 0; i < open_fds.size();) {
    if (keep.contains(open_fds[i])) {
      ++i;
      continue;
    }
    const int first = open_fds[i];
    auto next_kept = keep.upper_bound(first);
    while (i < open_fds.size() && (next_kept == keep.end() || open_fds[i] < *next_kept)) ++i;
    const int last = open_fds[i - 1];
    calls.push_back({SYS_close_range, {static_cast<uint64_t>(first), static_cast<uint64_t>(last), 0}});
  }
  return calls;
}

// One process of the tree being restored.
struct Restoring {
  const ProcessImage* image = nullptr;
  // Its threads, the main one first; every one created is here, for the
  // caller to kill on error.
  std::vector<std::unique_ptr<Tracee>> threads;
  bool made_zombie_children = false;  // its SIGCHLDs from them are not the image's
  bool zombie() const { return image->process.flags & kProcessZombie; }
  pid_t pid() const { return threads.front()->tid(); }  // in our PID namespace
};

auto Step(const char* name) {
  return [name](absl::Status st) {
    return st.ok() ? st : Annotate(st, absl::StrCat("restore step '", name, "'"));
  };
}

// Creates process `child` as a child of `parent` (a remote fork-like
// clone3 with its recorded PID, in the parent's PID namespace), traced and
// stopped before it runs any code; a copy of the parent as it is now.
absl::StatusOr<std::unique_ptr<Tracee>> ForkChild(Tracee* parent, const ProcessRecord& child,
                                                  uint64_t scratch) {
  sys::CloneArgs args{};
  args.exit_signal = child.exit_signal;
  // What the child shared with its parent beyond a fork's copies.
  if (child.flags & kProcessSharesFiles) args.flags |= CLONE_FILES;
  if (child.flags & kProcessSharesFs) args.flags |= CLONE_FS;
  return parent->CloneWithTid(args, static_cast<pid_t>(child.pid), scratch, "pid");
}

// First stage of process `r`, which exists and is a copy of its creator:
// everything its children must inherit (session, group, the tree's open
// files, the address space with its pages), so that it can fork them.
// `image_fd`, when not -1, is the image file, mapped from rather than
// copied (the process has it at the same number, from the restorer
// through its parents; BuildLate closes it with the other strays). With
// `lazy`, the pages are left to a LazyPages server started here, which
// keeps `input` (the image) alive. An incremental image's `chain` gives
// its older pages first.
absl::Status BuildEarly(Context* ctx, Restoring* r, const OpenedFiles& files, ImageReader* reader,
                        int image_fd, const std::vector<AddressRange>& forked,
                        AddressRange scratch_range, bool root, bool scratch_inherited,
                        std::unique_ptr<LazyPages>* lazy, const std::shared_ptr<void>& input,
                        ImageChain* chain) {
  Tracee* t = r->threads.front().get();
  const ProcessImage& image = *r->image;
  // No handler may run in place of a remote call; threads created later
  // inherit this mask.
  CRLIB_RETURN_IF_ERROR(t->SetSigmask(~uint64_t{0}));
  // Children inherit the scratch area at the same address (and the root a
  // PID namespace's init's); the calls below run there in one batch.
  if (root && !scratch_inherited) {
    CRLIB_RETURN_IF_ERROR(Step("scratch")(
        t->CheckedSyscall("mmap of the scratch area", SYS_mmap,
                          {scratch_range.first, kRestoreScratchBytes,
                           PROT_READ | PROT_WRITE | PROT_EXEC,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                           static_cast<uint64_t>(-1), 0})
            .status()));
  }
  std::vector<Tracee::RemoteCall> calls;
  std::vector<std::string> steps;
  auto add = [&](const char* step, const char* what, Tracee::RemoteCall call) {
    calls.push_back(call);
    steps.push_back(absl::StrCat("restore step '", step, "': ", what));
  };
  if (root) {
    // The root is a copy of the restorer: first drop every descriptor it
    // inherited but the tree's files and the standard streams. Above all
    // the write end of an image pipe the caller may hold: while the child
    // kept it, the restore reading that pipe would never see its end.
    std::set<int> needed = {0, 1, 2};
    for (int fd : files.all()) needed.insert(fd);
    if (image_fd >= 0) needed.insert(image_fd);
    absl::StatusOr<std::vector<Tracee::RemoteCall>> closes = CloseAllBut(t, needed);
    CRLIB_RETURN_IF_ERROR(Step("file descriptors")(closes.status()));
    for (const Tracee::RemoteCall& c : *closes) add("file descriptors", "close_range", c);
  }
  // The inherited rseq area (the restorer's, or the restored parent's that
  // a fork inherits) is about to be unmapped: the kernel must stop writing
  // to it first.
  sys::PtraceRseqConfiguration rseq{};
  if (ptrace(static_cast<__ptrace_request>(sys::kPtraceGetRseqConfiguration), t->tid(),
             sizeof(rseq), &rseq) > 0 &&
      rseq.rseq_abi_size > 0) {
    add("rseq unregister", "rseq(UNREGISTER)",
        {SYS_rseq,
         {rseq.rseq_abi_pointer, rseq.rseq_abi_size, sys::kRseqFlagUnregister, rseq.signature}});
  }
  // Its recorded session (its own) or process group (its own); a group
  // led by another process is joined later (JoinProcessGroups).
  const ProcessRecord& p = image.process;
  if (p.sid == p.pid) {
    add("session", "setsid", {SYS_setsid});
  } else if (p.pgid == p.pid) {
    add("process group", "setpgid", {SYS_setpgid, {0, 0}});
  }
  // The root inherited the restorer's session keyring, whose keys are not
  // the image's to have: a new, empty one, before any thread or child is
  // made (they share it). Keyrings themselves are not carried
  // (CHECKPOINT.md). A kernel without keyrings (ENOSYS here too) has none
  // to leave behind.
  if (root && KernelHasKeyrings()) {
    add("session keyring", "keyctl(JOIN_SESSION_KEYRING, NULL)",
        {SYS_keyctl, {kKeyctlJoinSessionKeyring, 0}});
  }
  CRLIB_RETURN_IF_ERROR(t->RunBatch(scratch_range.first, kRestoreScratchBytes, absl::MakeSpan(calls),
                                    [&](size_t i) { return steps[i]; }));
  if (r->zombie()) return absl::OkStatus();
  CRLIB_RETURN_IF_ERROR(
      Step("address space")(RebuildAddressSpace(t, image, files, scratch_range)));
  if (lazy != nullptr) {
    absl::StatusOr<std::unique_ptr<LazyPages>> started =
        LazyPages::Start(ctx, t, image, reader, input);
    CRLIB_RETURN_IF_ERROR(Step("lazy pages")(started.status()));
    *lazy = std::move(*started);
    return Step("guard regions")(RestoreGuardRegions(t, image));
  }
  uint64_t pages = 0;
  std::optional<PageMapper> mapper;
  if (image_fd >= 0) {
    mapper.emplace(image, image_fd, reader->info().page_size, scratch_range, forked);
  }
  if (root) {
    // Oldest first, each only where every newer image inherits its pages.
    for (ChainLink& link : chain->links) {
      CRLIB_RETURN_IF_ERROR(Step("pages")(Annotate(
          LoadPages(ctx, t, link.process, link.reader.get(), nullptr, &pages),
          absl::StrCat("parent image ", link.path))));
    }
  }
  CRLIB_RETURN_IF_ERROR(
      Step("pages")(LoadPages(ctx, t, image, reader, mapper ? &*mapper : nullptr, &pages)));
  ctx->stats().pages_stored += pages;
  if (mapper) ctx->stats().pages_mapped += mapper->pages_mapped();
  return Step("guard regions")(RestoreGuardRegions(t, image));
}

// Makes traced process `t` exit with `code` once released: its registers
// are set to call exit_group there, then it is detached (untraced, it is
// reaped by its parent, not by us).
absl::Status ExitOnRelease(Tracee* t, uint64_t code) {
  ArchRegs regs = t->initial_regs();
  t->arch().SetSyscall(&regs, t->syscall_site(), SYS_exit_group, {code});
  CRLIB_RETURN_IF_ERROR(t->SetRegs(regs));
  return t->Detach();
}

// Waits until process `pid` (`what`, for the error) has exited and waits
// to be reaped: its parent's SIGCHLD is then pending.
absl::Status AwaitZombie(pid_t pid, const char* what) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    absl::StatusOr<std::vector<std::string>> stat = sys::ReadStatFields(pid);
    if (stat.ok() && !stat->empty() && (*stat)[0] == "Z") return absl::OkStatus();
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::DeadlineExceededError(absl::StrFormat("%s %d did not exit", what, pid));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// A zombie of the image: exits with its recorded wait status, untraced,
// and is left for its restored parent to reap.
absl::Status MakeZombie(Restoring* r) {
  Tracee* t = r->threads.front().get();
  const uint32_t status = r->image->process.exit_code;
  const int signal = static_cast<int>(status & 0x7f);
  if (signal == 0) {
    CRLIB_RETURN_IF_ERROR(ExitOnRelease(t, (status >> 8) & 0xff));
  } else {
    // Killed by `signal`: its default action, no core file.
    rlimit64 no_core{0, 0};
    if (prlimit64(t->tid(), RLIMIT_CORE, &no_core, nullptr) != 0) {
      return Errno("prlimit(RLIMIT_CORE) on pid %d", t->tid());
    }
    CRLIB_RETURN_IF_ERROR(t->CheckedSyscall("rt_sigaction", SYS_rt_sigaction,
                                            {static_cast<uint64_t>(signal), 0, 0, 8})
                              .status());
    CRLIB_RETURN_IF_ERROR(t->SetSigmask(0));
    CRLIB_RETURN_IF_ERROR(t->Detach(signal));
  }
  // Its parent's SIGCHLD must be there before the parent's pending signals
  // are set, to be taken away again.
  return AwaitZombie(t->tid(), "zombie pid");
}

// Takes away the SIGCHLDs the zombies made for `t`'s process while it was
// built (the image's own pending signals are queued after).
absl::Status DrainChildSignals(Tracee* t, uint64_t scratch) {
  const uint64_t set = uint64_t{1} << (SIGCHLD - 1);
  const timespec zero{};
  CRLIB_RETURN_IF_ERROR(t->WriteMemory(scratch, &set, sizeof(set)));
  CRLIB_RETURN_IF_ERROR(t->WriteMemory(scratch + 16, &zero, sizeof(zero)));
  for (;;) {
    CRLIB_ASSIGN_OR_RETURN(int64_t r, t->Syscall(SYS_rt_sigtimedwait, {scratch, 0, scratch + 16, 8}));
    if (r < 0) return absl::OkStatus();  // EAGAIN: none left
  }
}

// The process groups led by another process of the tree, joined once
// every process exists. A group whose leader had exited (its members
// live on) is made again: a short-lived process with the leader's PID,
// forked by the group's first member (so in its session), creates the
// group, the members join it, and it exits and is reaped by that member.
absl::Status JoinProcessGroups(std::vector<Restoring>& tree, uint64_t scratch) {
  std::set<uint32_t> pids;
  for (const Restoring& r : tree) pids.insert(r.image->process.pid);
  const uint32_t root_pgid = tree.front().image->process.pgid;
  std::map<uint32_t, Restoring*> leaderless;  // group -> its first member
  for (Restoring& r : tree) {
    const ProcessRecord& p = r.image->process;
    if (&r == &tree.front() || p.sid == p.pid || p.pgid == p.pid || p.pgid == root_pgid) continue;
    if (!pids.contains(p.pgid) && !leaderless.contains(p.pgid)) leaderless[p.pgid] = &r;
  }
  std::vector<std::pair<Restoring*, std::unique_ptr<Tracee>>> stand_ins;
  for (const auto& [pgid, member] : leaderless) {
    ProcessRecord leader{.pid = pgid, .exit_signal = SIGCHLD};
    CRLIB_ASSIGN_OR_RETURN(std::unique_ptr<Tracee> t,
                           ForkChild(member->threads.front().get(), leader, scratch));
    stand_ins.emplace_back(member, std::move(t));
    CRLIB_RETURN_IF_ERROR(Step("process group")(
        stand_ins.back().second->CheckedSyscall("setpgid", SYS_setpgid, {0, 0}).status()));
  }
  absl::Status st = [&]() -> absl::Status {
    for (Restoring& r : tree) {
      const ProcessRecord& p = r.image->process;
      if (&r == &tree.front() || p.pgid == p.pid || p.sid == p.pid || p.pgid == root_pgid) continue;
      Tracee* t = r.threads.front().get();
      CRLIB_ASSIGN_OR_RETURN(int64_t now, t->CheckedSyscall("getpgid", SYS_getpgid, {0}));
      if (now == p.pgid) continue;
      CRLIB_RETURN_IF_ERROR(Step("process group")(
          t->CheckedSyscall("setpgid", SYS_setpgid, {0, p.pgid}).status()));
    }
    return absl::OkStatus();
  }();
  // The stand-in leaders go, whatever happened: each exits (untraced) and
  // its member reaps it.
  for (auto& [member, leader] : stand_ins) {
    const pid_t pid = leader->tid();
    if (!ExitOnRelease(leader.get(), 0).ok()) kill(pid, SIGKILL);
    leader.reset();
    absl::Status exited = AwaitZombie(pid, "stand-in leader");
    if (st.ok()) st = exited;
    const uint32_t inner = static_cast<uint32_t>(
        member->image->process.pgid);  // its PID where the member lives
    absl::StatusOr<int64_t> reaped =
        member->threads.front()->CheckedSyscall("wait4 of the stand-in group leader", SYS_wait4,
                                                {inner, 0, __WALL, 0});
    if (st.ok() && !reaped.ok()) st = reaped.status();
    member->made_zombie_children = true;  // its SIGCHLD is not the image's
  }
  return st;
}

// Second stage of process `r`, once every process of the tree exists:
// its own descriptors, attributes, threads, credentials and CPU state.
// Leaves its threads stopped, ready to be released with the others.
absl::Status BuildLate(Context* ctx, Restoring* r, const OpenedFiles& files,
                       AddressRange scratch_range) {
  (void)ctx;
  std::vector<std::unique_ptr<Tracee>>* threads = &r->threads;
  const ProcessImage& image = *r->image;
  Tracee* t = threads->front().get();
  const pid_t pid = t->tid();
  const uint64_t scratch = scratch_range.first;
  auto step = [](const char* name, absl::Status st) { return Step(name)(st); };
  const ProcessRecord& p = image.process;
  // A table shared with the parent (CLONE_FILES) was set up by the parent,
  // earlier in image order: the same descriptors, the same locks owner.
  const bool own_table = !(p.flags & kProcessSharesFiles);
  // Descriptors: move each into place, then close everything else.
  std::set<int> targets;
  if (own_table) {
  // One batch of dup3 calls, then the close_range calls that close
  // everything else: one stop.
  std::vector<Tracee::RemoteCall> calls;
  std::vector<const FdRecord*> dup_of;
  for (const FdRecord& fd : image.fds) {
    targets.insert(static_cast<int>(fd.fd));
    const FileImage& f = image.files.at(fd.file);
    if (static_cast<FileKind>(f.record.kind) == FileKind::kInherited) continue;
    if (static_cast<FileKind>(f.record.kind) == FileKind::kDevTty) continue;  // with the session
    if (MadeInProcess(f.record)) continue;  // a pidfd: RestorePidfds below
    calls.push_back({SYS_dup3,
                     {static_cast<uint64_t>(files.fd(fd.file)), fd.fd,
                      (fd.fd_flags & FD_CLOEXEC) ? static_cast<uint64_t>(O_CLOEXEC) : 0}});
    dup_of.push_back(&fd);
  }
  // The descriptors open now, but the targets (kept): the dups only add
  // targets, so the gaps stay the same after them.
  absl::StatusOr<std::vector<Tracee::RemoteCall>> closes = CloseAllBut(t, targets);
  CRLIB_RETURN_IF_ERROR(step("file descriptors", closes.status()));
  // A removed cwd is entered through our descriptor for it, before it
  // goes: then the closes wait for that call.
  const bool removed_cwd = image.RemovedCwd();
  if (!removed_cwd) calls.insert(calls.end(), closes->begin(), closes->end());
  auto what = [&](size_t i) {
    return i < dup_of.size() ? absl::StrFormat("dup3 to fd %d", dup_of[i]->fd)
                             : std::string("close_range");
  };
  CRLIB_RETURN_IF_ERROR(step("file descriptors",
                             t->RunBatch(scratch, kRestoreScratchBytes, absl::MakeSpan(calls), what)));
  if (removed_cwd) {
    CRLIB_RETURN_IF_ERROR(step("cwd", EnterRemovedCwd(t, image, files)));
    CRLIB_RETURN_IF_ERROR(step("file descriptors",
                               t->RunBatch(scratch, kRestoreScratchBytes, absl::MakeSpan(*closes),
                                           [](size_t) { return std::string("close_range"); })));
  }
  // Every process of the tree exists now, zombies too.
  CRLIB_RETURN_IF_ERROR(step("pidfds", RestorePidfds(t, image)));
  CRLIB_RETURN_IF_ERROR(step("file locks", RestoreProcessLocks(t, image, scratch)));
  // Its targets are all in place, at the image's numbers.
  CRLIB_RETURN_IF_ERROR(step("epoll entries", RestoreEpollEntries(t, image, scratch)));
  }

  // Process attributes.
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
    CRLIB_RETURN_IF_ERROR(
        step("controlling terminal", RestoreControllingTerminal(t, image, scratch)));
  }
  if (r->made_zombie_children) CRLIB_RETURN_IF_ERROR(step("zombies", DrainChildSignals(t, scratch)));
  // Each thread's own state, the main thread's first: threads it creates
  // inherit its name. Creating them needs the rights credentials may drop.
  CRLIB_RETURN_IF_ERROR(
      RestoreThreadAttributes(t, pid, image.threads.front(), ThreadStart{}, scratch));
  CRLIB_RETURN_IF_ERROR(CreateThreads(t, image, scratch, threads));
  // Before any xstate is loaded (RestoreCpuState); AMX tile data needs it.
  CRLIB_RETURN_IF_ERROR(RestoreDynamicFeatures(*threads, image, scratch));
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
  return absl::OkStatus();
}

}  // namespace

namespace {

// The ancestors of an incremental image (cr/image_chain.h), opened and
// checked before anything is created.
absl::StatusOr<ImageChain> OpenChainOf(const TreeImage& tree, const struct stat& image_file,
                                       bool trusted) {
  if (tree.processes.size() > 1 && tree.root().chain) {
    return absl::DataLossError("a chain record in an image of several processes");
  }
  return OpenImageChain(tree.root(), image_file, trusted);
}

// The image behind `image_path` or `options.image_fd`, read through one
// descriptor for every pass: a file replaced by another meanwhile cannot
// mix two images into a process that never existed, and a pipe or FIFO is
// read once.
class ImageInput {
 public:
  // `own_fd`: a descriptor the caller lends is duplicated, for a reader
  // that outlives the call (a lazy restore).
  static absl::StatusOr<std::unique_ptr<ImageInput>> Open(const std::string& image_path,
                                                          const RestoreOptions& options,
                                                          bool verify_bulk, bool own_fd = false) {
    auto in = std::unique_ptr<ImageInput>(new ImageInput);
    in->fd_ = options.image_fd;
    if (in->fd_ >= 0 && own_fd) {
      in->fd_ = in->owned_fd_ = fcntl(options.image_fd, F_DUPFD_CLOEXEC, 0);
      if (in->fd_ < 0) return Errno("fcntl(F_DUPFD) of image fd %d", options.image_fd);
    }
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
  int fd() const { return fd_; }
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
  CRLIB_ASSIGN_OR_RETURN(const TreeImage tree, LoadTreeImage(reader));
  CRLIB_RETURN_IF_ERROR(OpenChainOf(tree, in->file(), options.trust_image).status());
  CRLIB_RETURN_IF_ERROR(PrepareRestore(tree, in->file(),
                                       {.trust_image = options.trust_image,
                                        .pid_namespace = options.pid_namespace,
                                        .inherit_fds = options.inherit_fds,
                                        .check_only = true})
                            .status());
  RestoreCheckReport report{.pid = static_cast<pid_t>(tree.root().process.pid),
                            .processes = tree.processes.size()};
  for (const ProcessImage& p : tree.processes) {
    report.threads += p.threads.size();
    report.mappings += p.vmas.size();
    report.fds += p.fds.size();
  }
  report.pages = tree.page_count;
  if (tree.pages_checked) return report;  // and their data verified
  // A stream: the page records LoadTreeImage left for the loader.
  for (;;) {
    CRLIB_ASSIGN_OR_RETURN(const Record* rec, reader->Next());
    if (rec == nullptr) break;
    CRLIB_ASSIGN_OR_RETURN(PagesRecord pages, reader->Decode<PagesRecord>(*rec));
    report.pages += pages.page_count;
  }
  return report;
}

namespace {

// The first process a restore creates, a child of the caller: the root
// itself with its recorded PID, or with `pid_namespace` a minimal init,
// PID 1 of a new PID namespace, which creates the root (ForkChild) and
// then reaps orphans until the root exits, exiting with its status. Raw
// system calls only in the child: it is a copy of this process that glibc
// did not fork.
absl::StatusOr<pid_t> CreateFirstProcess(pid_t root_pid, bool pid_namespace) {
  const auto deadline = std::chrono::steady_clock::now() + sys::kTidReleaseWait;
  long r;
  if (pid_namespace) {
    sys::CloneArgs args{};
    args.flags = CLONE_NEWPID;
    args.exit_signal = SIGCHLD;
    r = syscall(SYS_clone3, &args, sizeof(args));
  } else {
    do {
      r = sys::CloneWithPid(root_pid);
    } while (r < 0 && errno == EEXIST && sys::AwaitTidRelease(root_pid, deadline));
  }
  if (r == 0) {
    syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0) == 0) {
      syscall(SYS_kill, syscall(SYS_getpid), SIGSTOP);
    }
    if (!pid_namespace) syscall(SYS_exit_group, 127);
    // The init, released once the tree is built: no handler of the
    // restorer's may run here.
    for (int sig = 1; sig <= 64; ++sig) {
      uint64_t dfl[4] = {0, 0, 0, 0};
      syscall(SYS_rt_sigaction, sig, dfl, nullptr, 8);
    }
    for (;;) {
      int status = 0;
      long w = syscall(SYS_wait4, -1, &status, __WALL, nullptr);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) syscall(SYS_exit_group, 0);
      if (w == root_pid) {
        syscall(SYS_exit_group, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
      }
    }
  }
  if (r < 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(absl::StrFormat("pid %d is in use by another process", root_pid));
    }
    if (pid_namespace) return Errno("clone3(CLONE_NEWPID) (needs CAP_SYS_ADMIN)");
    return Errno("clone3 with set_tid %d (needs CAP_SYS_ADMIN)", root_pid);
  }
  return static_cast<pid_t>(r);
}

}  // namespace

absl::StatusOr<pid_t> RestoreProcess(Context* ctx, const std::string& image_path,
                                     const RestoreOptions& options,
                                     std::unique_ptr<LazyPages>* lazy) {
  const int64_t start = NowNs();
  // Page checksums are verified when the pages are loaded, before the
  // process runs (or, lazily, before they are served); the first pass
  // reads everything else.
  CRLIB_ASSIGN_OR_RETURN(std::shared_ptr<ImageInput> in,
                         ImageInput::Open(image_path, options, /*verify_bulk=*/false,
                                          /*own_fd=*/lazy != nullptr));
  ImageReader* reader = in->reader();
  CRLIB_ASSIGN_OR_RETURN(const TreeImage image, LoadTreeImage(reader));
  // Established TCP connections were held still by a packet filter since
  // the dump (files/tcp_connection.h): once restored, or once the restore
  // has failed, it goes, and the peers' packets reach the connections, or
  // find them gone.
  absl::Cleanup release_connections = [&image] {
    std::set<std::string> tables;
    for (const auto& [ref, socket] : image.root().sockets) {
      if (socket.tcp) tables.insert(socket.tcp->filter);
    }
    for (const std::string& table : tables) (void)ReleaseTcpFilter(table);
  };
  if (lazy != nullptr) CRLIB_RETURN_IF_ERROR(CheckLazyRestore(image));
  CRLIB_ASSIGN_OR_RETURN(ImageChain chain, OpenChainOf(image, in->file(), options.trust_image));
  if (lazy != nullptr && !chain.links.empty()) {
    return absl::FailedPreconditionError(
        "an incremental image (dumped with --parent) is not restored lazily: restore it without "
        "--lazy");
  }
  const pid_t pid = static_cast<pid_t>(image.root().process.pid);
  CRLIB_ASSIGN_OR_RETURN(RestorePreparation prep,
                         PrepareRestore(image, in->file(),
                                        {.trust_image = options.trust_image,
                                         .pid_namespace = options.pid_namespace,
                                         .inherit_fds = options.inherit_fds}));
  const OpenedFiles& files = prep.files;
  const AddressRange scratch{prep.scratch, prep.scratch + kRestoreScratchBytes};
  // Pages of a mappable image file are mapped, unless it is not safe to
  // (mm/mapped_restore.h): then copied, and the caller told why.
  int image_fd = -1;
  const std::vector<AddressRange> forked = ForkedRanges(image);
  if (!chain.links.empty() && (reader->info().flags & kImageMappable)) {
    ctx->set_pages_copied_reason("an incremental image's pages are copied over its parents'");
  } else if (!options.copy_pages) {
    absl::Status mappable = CheckMappedRestore(*reader, in->fd(), in->file());
    if (mappable.ok()) {
      image_fd = in->fd();
    } else if (reader->info().flags & kImageMappable) {
      ctx->set_pages_copied_reason(std::string(mappable.message()));
    }
  }

  // Last chance to cancel with nothing created.
  CRLIB_RETURN_IF_ERROR(ctx->Progress(Phase::kState));
  // The point of no return: from here a failure kills every process made.
  CRLIB_ASSIGN_OR_RETURN(pid_t first, CreateFirstProcess(pid, options.pid_namespace));
  absl::StatusOr<std::unique_ptr<Tracee>> first_tracee = Tracee::AdoptStoppedChild(first);
  if (!first_tracee.ok()) {
    kill(first, SIGKILL);
    waitpid(first, nullptr, 0);
    return first_tracee.status();
  }
  std::unique_ptr<Tracee> init;  // with a PID namespace
  std::vector<Restoring> tree(image.processes.size());
  auto kill_all = [&]() {
    for (auto r = tree.rbegin(); r != tree.rend(); ++r) {
      if (!r->threads.empty()) Tracee::KillProcess(r->threads);
    }
    if (init) {
      std::vector<std::unique_ptr<Tracee>> one;
      one.push_back(std::move(init));
      Tracee::KillProcess(one);
    }
  };
  absl::Status st = [&]() -> absl::Status {
    if (options.pid_namespace) {
      init = std::move(*first_tracee);
      // The init's scratch area, which the root inherits (batch code runs
      // there: executable).
      CRLIB_RETURN_IF_ERROR(init->CheckedSyscall("mmap of the scratch area", SYS_mmap,
                                                 {scratch.first, kRestoreScratchBytes,
                                                  PROT_READ | PROT_WRITE | PROT_EXEC,
                                                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                                                  static_cast<uint64_t>(-1), 0})
                                .status());
      CRLIB_ASSIGN_OR_RETURN(std::unique_ptr<Tracee> root,
                             ForkChild(init.get(), image.root().process, scratch.first));
      tree[0].threads.push_back(std::move(root));
    } else {
      tree[0].threads.push_back(std::move(*first_tracee));
    }
    // Each process is created by its restored parent, which is then a
    // copy of the image's as far as a child inherits (session, group,
    // address space): parents come first in the image.
    for (size_t i = 0; i < tree.size(); ++i) {
      Restoring& r = tree[i];
      r.image = &image.processes[i];
      if (i > 0) {
        const uint32_t ppid = r.image->process.ppid;
        auto parent = std::find_if(tree.begin(), tree.begin() + static_cast<long>(i),
                                   [&](const Restoring& p) { return p.image->process.pid == ppid; });
        if (parent == tree.begin() + static_cast<long>(i) || parent->zombie()) {
          return absl::DataLossError(absl::StrFormat("pid %d: no live parent %d before it",
                                                     r.image->process.pid, ppid));
        }
        CRLIB_ASSIGN_OR_RETURN(std::unique_ptr<Tracee> child,
                               ForkChild(parent->threads.front().get(), r.image->process,
                                         scratch.first));
        r.threads.push_back(std::move(child));
        if (r.zombie()) parent->made_zombie_children = true;
      }
      CRLIB_RETURN_IF_ERROR(Annotate(BuildEarly(ctx, &r, files, reader, image_fd, forked, scratch,
                                                i == 0, options.pid_namespace, lazy, in, &chain),
                                     absl::StrFormat("pid %d", r.image->process.pid)));
    }
    CRLIB_RETURN_IF_ERROR(JoinProcessGroups(tree, scratch.first));
    for (Restoring& r : tree) {
      if (!r.zombie()) continue;
      CRLIB_RETURN_IF_ERROR(Annotate(MakeZombie(&r), absl::StrFormat("zombie pid %d", r.image->process.pid)));
      r.threads.clear();  // untraced now; its parent reaps it
    }
    for (Restoring& r : tree) {
      if (r.zombie()) continue;
      CRLIB_RETURN_IF_ERROR(Annotate(BuildLate(ctx, &r, files, scratch),
                                     absl::StrFormat("pid %d", r.image->process.pid)));
    }
    if (init) {
      // The init lives as long as the tree, not as long as the restorer.
      CRLIB_RETURN_IF_ERROR(init->CheckedSyscall("prctl(PR_SET_PDEATHSIG)", SYS_prctl,
                                                 {PR_SET_PDEATHSIG, 0})
                                .status());
      CRLIB_RETURN_IF_ERROR(init->CheckedSyscall("munmap of the scratch area", SYS_munmap,
                                                 {scratch.first, kRestoreScratchBytes})
                                .status());
      CRLIB_RETURN_IF_ERROR(init->RestoreInitialState());
    }
    // Every process is complete: release them all, the children first.
    for (auto r = tree.rbegin(); r != tree.rend(); ++r) {
      if (r->zombie()) continue;
      // A process dumped in a group stop comes back stopped: the SIGSTOP
      // is queued while every thread is still held, and takes effect
      // before any of them runs an instruction once detached.
      if (r->image->process.flags & kProcessStopped) {
        if (kill(r->pid(), SIGSTOP) != 0) {
          return Errno("kill(%d, SIGSTOP) to restore its stopped state", r->pid());
        }
      }
      for (const std::unique_ptr<Tracee>& thread : r->threads) {
        CRLIB_RETURN_IF_ERROR(ThreadStep("detach", thread->tid(), thread->Detach()));
      }
    }
    if (init) CRLIB_RETURN_IF_ERROR(init->Detach());
    if (lazy != nullptr && *lazy != nullptr) (*lazy)->Released();
    return absl::OkStatus();
  }();
  if (lazy == nullptr) ctx->stats().bytes = reader->offset();  // else the server's now
  if (!st.ok()) {
    kill_all();
    if (lazy != nullptr && *lazy != nullptr) {
      (*lazy)->Abandon();
      lazy->reset();
    }
    return Annotate(st, absl::StrFormat("restore of pid %d failed, nothing left running", pid));
  }
  ctx->stats().total_ns = NowNs() - start;
  (void)ctx->Progress(Phase::kDone);  // it runs: too late to cancel
  return first;
}

}  // namespace crlib
