#include "cr/checkpoint.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/types/span.h"
#include "core/byte_stream.h"
#include "core/image_writer.h"
#include "core/status.h"
#include "files/carried_inode.h"
#include "files/file_capture.h"
#include "mm/live_copy.h"
#include "mm/memory_capture.h"
#include "sys/kernel.h"
#include "sys/proc.h"
#include "task/attributes.h"
#include "task/thread_capture.h"
#include "cr/ask_process.h"
#include "cr/image_chain.h"
#include "cr/live_dump.h"
#include "cr/restore_check.h"
#include "task/schedule.h"
#include "remote/tracee.h"
#include "remote/vdso_site.h"
#include "task/uncarried_state.h"

namespace crlib {
namespace {

// Refuses `results` (CheckpointOptions::syscall_results) before anything
// is written unless each names a thread stopped inside a system call that
// has not completed.
absl::Status CheckSyscallResults(absl::Span<const std::unique_ptr<Tracee>> threads,
                                 const std::map<pid_t, int64_t>& results) {
  for (const auto& [result_tid, value] : results) {
    // A local copy: clang 14 cannot capture a structured binding.
    const pid_t tid = result_tid;
    auto it = std::find_if(threads.begin(), threads.end(),
                           [&](const auto& t) { return t->tid() == tid; });
    if (it == threads.end()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "syscall_results names thread %d, which is not a thread of pid %d", tid,
          threads.front()->tid()));
    }
    ArchRegs regs = (*it)->initial_regs();
    CRLIB_RETURN_IF_ERROR(Annotate((*it)->arch().SetSyscallResult(&regs, value),
                                   absl::StrFormat("syscall_results names thread %d of pid %d",
                                                   tid, threads.front()->tid())));
  }
  return absl::OkStatus();
}

// Refuses, before anything is written, the inodes the image cannot carry
// among `fds` and `vmas` (CheckCarriedInode; a memfd sealed against
// writes yet mapped writable and shared; a partial SysV attachment).
absl::Status CheckCarriedInodes(pid_t pid, const std::vector<FdInfo>& fds,
                                const std::vector<VmaInfo>& vmas, uint64_t deleted_file_limit) {
  std::vector<std::pair<CarriedInodeSource, const VmaInfo*>> sources;
  for (const FdInfo& fd : fds) {
    if (auto s = CarriedInodeOfFd(pid, fd)) sources.emplace_back(std::move(*s), nullptr);
  }
  for (const VmaInfo& v : vmas) {
    if (auto s = CarriedInodeOfVma(pid, v)) sources.emplace_back(std::move(*s), &v);
  }
  absl::flat_hash_map<std::pair<uint64_t, uint64_t>, uint32_t> seals;  // of memfds, by identity
  for (const auto& [source, vma] : sources) {
    CRLIB_ASSIGN_OR_RETURN(CarriedInodeFacts facts, InspectCarriedInode(source));
    CRLIB_RETURN_IF_ERROR(CheckCarriedInode(source, facts, deleted_file_limit));
    seals[{source.dev, source.inode}] = facts.seals;
    if (vma == nullptr) continue;
    const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    const uint64_t whole = AlignUp(static_cast<uint64_t>(facts.st.st_size), page);
    if (vma->kind == VmaKind::kSysvShm &&
        (vma->map.offset != 0 || vma->map.end - vma->map.start != whole)) {
      return absl::UnimplementedError(absl::StrFormat(
          "%s is not supported: only whole SysV segments attached with shmat are", source.what));
    }
  }
  // A write seal taken while a writable shared mapping existed: restore
  // would have to map it writable after sealing, which the kernel refuses.
  for (const auto& [source, vma] : sources) {
    if (vma && vma->map.shared && vma->map.write &&
        (seals[{source.dev, source.inode}] & F_SEAL_FUTURE_WRITE)) {
      return absl::UnimplementedError(absl::StrFormat(
          "%s is not supported: a writable shared mapping of a memfd sealed with "
          "F_SEAL_FUTURE_WRITE",
          source.what));
    }
  }
  if (std::any_of(vmas.begin(), vmas.end(), [](const VmaInfo& v) { return v.kind == VmaKind::kSysvShm; })) {
    struct stat ours{}, theirs{};
    if (stat("/proc/self/ns/ipc", &ours) != 0 ||
        stat(absl::StrCat("/proc/", pid, "/ns/ipc").c_str(), &theirs) != 0 ||
        ours.st_ino != theirs.st_ino) {
      return absl::UnimplementedError(absl::StrFormat(
          "pid %d attaches SysV shared memory of another IPC namespace than crlib's; IPC "
          "namespaces are not supported yet", pid));
    }
  }
  return absl::OkStatus();
}

// What the dump learns of the process before and right after seizing it.
struct ProcessFacts {
  bool stopped = false;  // in a group stop (SIGSTOP and friends) when seized
  std::string status;    // /proc/PID/status, read once it is stopped
};

// The first field of a "Key:\tA\tB ..." line of /proc/PID/status, as a
// number; `fallback` when absent.
int64_t StatusNumber(absl::string_view status, absl::string_view key, int64_t fallback) {
  absl::StatusOr<std::string> v = sys::StatusField(status, key);
  int64_t n;
  if (!v.ok() || !absl::SimpleAtoi(v->substr(0, v->find_first_of(" \t")), &n)) return fallback;
  return n;
}

// "pid P is traced by pid T (NAME)" when a tracer other than us holds the
// process whose /proc/PID/status is `status`.
std::optional<std::string> OtherTracer(pid_t pid, absl::string_view status) {
  const int64_t tracer = StatusNumber(status, "TracerPid", 0);
  if (tracer == 0 || tracer == getpid()) return std::nullopt;
  const auto t = static_cast<pid_t>(tracer);
  return absl::StrFormat("pid %d is traced by pid %d (%s)", pid, tracer,
                         ThreadComm(t, t).value_or("?"));
}

// Processes crlib refuses, or must treat specially, recognized from /proc
// before anything touches them, each named in the error.
absl::StatusOr<ProcessFacts> LookBeforeSeizing(pid_t pid) {
  ProcessFacts facts;
  CRLIB_ASSIGN_OR_RETURN(std::string status, sys::ReadFile(absl::StrCat("/proc/", pid, "/status")));
  CRLIB_ASSIGN_OR_RETURN(std::string state, sys::StatusField(status, "State"));
  if (absl::StartsWith(state, "Z") || absl::StartsWith(state, "X")) {
    CRLIB_ASSIGN_OR_RETURN(std::vector<pid_t> tids, sys::ListThreads(pid));
    bool any_alive = false;
    for (pid_t tid : tids) {
      absl::StatusOr<std::vector<std::string>> stat = sys::ReadStatFields(tid);
      any_alive |= tid != pid && stat.ok() && !stat->empty() && (*stat)[0] != "Z" && (*stat)[0] != "X";
    }
    if (!any_alive) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "pid %d is a zombie: it has exited and waits for its parent (pid %d) to reap it; "
          "there is nothing to checkpoint",
          pid, StatusNumber(status, "PPid", 0)));
    }
    return absl::UnimplementedError(absl::StrFormat(
        "pid %d: its main thread has exited (pthread_exit) while other threads run; such "
        "processes are not supported",
        pid));
  }
  if (std::optional<std::string> traced = OtherTracer(pid, status)) {
    return absl::FailedPreconditionError(
        absl::StrCat(*traced, "; a process has one tracer: detach it first"));
  }
  // NSpid lists the PID in each namespace from ours down to the process's
  // own: more than one means it lives in a PID namespace below ours, where
  // it knows itself by another PID (1 for the namespace's init). Restore
  // would give it its PID here.
  if (absl::StatusOr<std::string> nspid = sys::StatusField(status, "NSpid"); nspid.ok()) {
    std::vector<std::string> ids = absl::StrSplit(*nspid, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (ids.size() > 1) {
      return absl::UnimplementedError(absl::StrFormat(
          "pid %d is %s of a PID namespace below crlib's (its pid there is %s); restoring it "
          "would change the pid it knows itself by, and PID namespaces are not supported yet",
          pid, ids.back() == "1" ? "the init" : "a process", ids.back()));
    }
  }
  // Every other namespace must be crlib's own: a restore creates the
  // process in the restorer's namespaces, so one of its own (a container's
  // mounts, network, hostname ...) would be silently exchanged.
  for (const char* ns : {"mnt", "net", "uts", "ipc", "user", "cgroup", "time", "pid",
                         "pid_for_children", "time_for_children"}) {
    absl::StatusOr<std::string> theirs = sys::ReadLink(absl::StrCat("/proc/", pid, "/ns/", ns));
    absl::StatusOr<std::string> ours = sys::ReadLink(absl::StrCat("/proc/self/ns/", ns));
    if (!ours.ok()) continue;  // a kernel without this namespace type
    if (!theirs.ok()) return theirs.status();
    if (*theirs != *ours) {
      return absl::UnimplementedError(absl::StrFormat(
          "pid %d is in another %s namespace than crlib (%s, crlib's is %s); a restore would "
          "put it in the restorer's, and namespaces are not supported yet",
          pid, ns, *theirs, *ours));
    }
  }
  facts.stopped = absl::StartsWith(state, "T");
  return facts;
}

// A seize refused by the kernel, explained: the usual cause of EPERM for
// root is another tracer that attached meanwhile, or Yama.
absl::Status ExplainSeizeFailure(pid_t pid, const absl::Status& st) {
  if (StatusErrno(st) != EPERM) return st;
  absl::StatusOr<std::string> status = sys::ReadFile(absl::StrCat("/proc/", pid, "/status"));
  if (status.ok()) {
    if (std::optional<std::string> traced = OtherTracer(pid, *status)) return Annotate(st, *traced);
  }
  return Annotate(st, "crlib needs the right to ptrace the process (root, or the same user "
                      "under Yama ptrace_scope 0)");
}

// One process of the dumped tree, and what the dump learns of it.
struct TreeMember {
  pid_t pid = 0;
  ProcessFacts facts;
  std::vector<std::unique_ptr<Tracee>> threads;  // empty for a zombie
  std::vector<std::string> stat;                 // /proc/PID/stat after the comm
  std::vector<FdInfo> fds;
  std::vector<VmaInfo> vmas;
  std::optional<AskedState> asked;
  WrittenMemoryMap map;
  bool zombie() const { return threads.empty(); }
};

// Field `n` (1-based, as proc(5) numbers them) of a stat line split after
// its comm (field 3 first), or 0.
int64_t StatField(const std::vector<std::string>& stat, size_t n) {
  int64_t v = 0;
  if (n < 3 || n - 3 >= stat.size() || !absl::SimpleAtoi(stat[n - 3], &v)) return 0;
  return v;
}

// The process record of `m`, from what /proc shows.
absl::StatusOr<ProcessRecord> DescribeProcess(const TreeMember& m, const TreeMember* parent) {
  ProcessRecord proc;
  const pid_t pid = m.pid;
  proc.pid = static_cast<uint32_t>(pid);
  proc.ppid = static_cast<uint32_t>(StatField(m.stat, 4));
  // -1 recorded as an ID would make restore skip setsid/setpgid quietly.
  proc.pgid = static_cast<uint32_t>(StatField(m.stat, 5));
  proc.sid = static_cast<uint32_t>(StatField(m.stat, 6));
  if (proc.pgid == 0 || proc.sid == 0) {
    return absl::DataLossError(absl::StrFormat("pid %d: no process group or session in its stat", pid));
  }
  proc.exit_signal = static_cast<uint32_t>(StatField(m.stat, 38));
  CRLIB_ASSIGN_OR_RETURN(proc.comm, ThreadComm(pid, pid));
  if (m.zombie()) {
    proc.flags |= kProcessZombie;
    proc.exit_code = static_cast<uint32_t>(StatField(m.stat, 52));
    return proc;
  }
  CRLIB_RETURN_IF_ERROR(ParseStatus(m.facts.status, &proc));
  proc.ppid = static_cast<uint32_t>(StatField(m.stat, 4));
  if (m.facts.stopped) proc.flags |= kProcessStopped;
  // An fd table or cwd/root/umask shared with the parent (CLONE_FILES,
  // CLONE_FS) is shared again: the child is created with the same flags.
  if (parent != nullptr && !parent->zombie()) {
    if (syscall(SYS_kcmp, parent->pid, pid, KCMP_FILES, 0, 0) == 0) proc.flags |= kProcessSharesFiles;
    if (syscall(SYS_kcmp, parent->pid, pid, KCMP_FS, 0, 0) == 0) proc.flags |= kProcessSharesFs;
  }
  proc.securebits = m.asked->securebits;
  CRLIB_ASSIGN_OR_RETURN(std::string personality,
                         sys::ReadFile(absl::StrCat("/proc/", pid, "/personality")));
  proc.personality = static_cast<uint32_t>(strtoul(personality.c_str(), nullptr, 16));
  CRLIB_ASSIGN_OR_RETURN(proc.cwd, sys::ReadLink(absl::StrCat("/proc/", pid, "/cwd")));
  CRLIB_ASSIGN_OR_RETURN(proc.root, sys::ReadLink(absl::StrCat("/proc/", pid, "/root")));
  return proc;
}

// Writes the records of stopped process `m` but its pages, in the order
// restore consumes them. No remote call runs here: only /proc, ptrace
// requests that read, and /proc/PID/mem.
absl::Status WriteProcess(Context* ctx, TreeMember* m, const TreeMember* parent,
                          const CheckpointOptions& options, DescriptionHolders* holders,
                          const LiveMemory* live) {
  ImageWriter* w = ctx->writer();
  ObjectRegistry& reg = ctx->registry();
  CRLIB_ASSIGN_OR_RETURN(ProcessRecord proc, DescribeProcess(*m, parent));
  ObjectRef process_ref = reg.NewRef();
  CRLIB_RETURN_IF_ERROR(w->Write(proc, process_ref, 0));
  if (m->zombie()) return absl::OkStatus();
  const pid_t pid = m->pid;
  AskedState& asked = *m->asked;
  for (size_t i = 0; i < m->threads.size(); ++i) {
    const Tracee& thread = *m->threads[i];
    ArchRegs regs = thread.initial_regs();
    if (auto it = options.syscall_results.find(thread.tid()); it != options.syscall_results.end()) {
      // The image holds the call as returned: no longer inside it.
      CRLIB_RETURN_IF_ERROR(thread.arch().SetSyscallResult(&regs, it->second));
      asked.threads[i].syscall_nr = -1;
    }
    ObjectRef thread_ref = reg.NewRef();
    CRLIB_RETURN_IF_ERROR(w->Write(asked.threads[i], thread_ref, process_ref));
    CRLIB_RETURN_IF_ERROR(thread.arch().CaptureCpu(thread.tid(), regs, w, thread_ref));
    CRLIB_ASSIGN_OR_RETURN(PendingSignalsRecord own, PeekSignals(thread.tid(), false));
    if (!own.signals.empty()) CRLIB_RETURN_IF_ERROR(w->Write(own, 0, thread_ref));
    CRLIB_RETURN_IF_ERROR(w->Write(asked.thread_attributes[i], 0, thread_ref));
    CRLIB_ASSIGN_OR_RETURN(ScheduleRecord schedule, CaptureSchedule(thread.tid()));
    CRLIB_RETURN_IF_ERROR(w->Write(schedule, 0, thread_ref));
  }

  CRLIB_RETURN_IF_ERROR(w->Write(asked.handlers, 0, process_ref));
  CRLIB_ASSIGN_OR_RETURN(PendingSignalsRecord shared, PeekSignals(pid, true));
  if (!shared.signals.empty()) CRLIB_RETURN_IF_ERROR(w->Write(shared, 0, process_ref));
  RlimitsRecord limits;
  CRLIB_ASSIGN_OR_RETURN(std::vector<sys::Limit> lims, sys::ReadLimits(pid));
  for (size_t r = 0; r < lims.size() && r < RLIM_NLIMITS; ++r) {
    limits.limits.push_back(
        {.resource = static_cast<uint32_t>(r), .cur = lims[r].cur, .max = lims[r].max});
  }
  CRLIB_RETURN_IF_ERROR(w->Write(limits, 0, process_ref));
  CRLIB_RETURN_IF_ERROR(w->Write(asked.timers, 0, process_ref));
  CRLIB_RETURN_IF_ERROR(w->Write(asked.attributes, 0, process_ref));
  if (!asked.posix_timers.timers.empty()) {
    CRLIB_RETURN_IF_ERROR(w->Write(asked.posix_timers, 0, process_ref));
  }
  if (asked.seccomp) CRLIB_RETURN_IF_ERROR(w->Write(*asked.seccomp, 0, process_ref));

  CRLIB_RETURN_IF_ERROR(WriteFileTable(ctx, pid, m->fds, process_ref, holders));
  // Memory still shared copy-on-write with the parent is restored so.
  ParentMemory parent_memory;
  if (parent != nullptr && !parent->zombie()) parent_memory = {.pid = parent->pid, .vmas = &parent->vmas};
  CRLIB_ASSIGN_OR_RETURN(m->map, WriteMemoryMap(ctx, m->threads.front().get(), m->vmas,
                                                asked.brk, process_ref,
                                                parent_memory.pid ? &parent_memory : nullptr, live));
  return absl::OkStatus();
}

// What a tree restore cannot rebuild yet, refused by name before anything
// is written: an address space shared with the parent (CLONE_VM, vfork),
// a session that is neither the process's own nor its parent's.
absl::Status RefuseUnsupportedRelations(const std::vector<TreeMember>& tree) {
  auto member = [&](pid_t pid) -> const TreeMember* {
    for (const TreeMember& m : tree) {
      if (m.pid == pid) return &m;
    }
    return nullptr;
  };
  for (size_t i = 1; i < tree.size(); ++i) {
    const TreeMember& m = tree[i];
    const pid_t ppid = static_cast<pid_t>(StatField(m.stat, 4));
    const TreeMember* parent = member(ppid);
    if (parent == nullptr) {
      return absl::InternalError(absl::StrFormat("pid %d: its parent %d is not in the tree", m.pid, ppid));
    }
    const pid_t sid = static_cast<pid_t>(StatField(m.stat, 6));
    if (sid != m.pid && sid != static_cast<pid_t>(StatField(parent->stat, 6))) {
      return absl::UnimplementedError(absl::StrFormat(
          "pid %d is in session %d, which is neither its own nor its parent's (pid %d): such "
          "trees are not supported yet",
          m.pid, sid, ppid));
    }
    if (m.zombie() || parent->zombie()) continue;
    // Signal handlers are shared only with the address space (CLONE_SIGHAND
    // needs CLONE_VM).
    if (syscall(SYS_kcmp, ppid, m.pid, KCMP_VM, 0, 0) == 0) {
      return absl::UnimplementedError(absl::StrFormat(
          "pid %d shares its address space and signal handlers with its parent %d (CLONE_VM, "
          "vfork); not supported",
          m.pid, ppid));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckOptions(const Options& options) {
  if (options.compression_level < 0 || options.compression_level > 19) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "compression level %d is not in 1..19 (0: none)", options.compression_level));
  }
  if (options.compression_level > 0 && options.mappable) {
    return absl::InvalidArgumentError(
        "an image cannot be both compressed and mappable (mapped restore needs raw pages)");
  }
  return absl::OkStatus();
}

absl::Status CheckpointProcess(Context* ctx, pid_t pid, const std::string& image_path,
                               const CheckpointOptions& options) {
  const int64_t start = NowNs();
  CRLIB_RETURN_IF_ERROR(CheckOptions(ctx->options()));
  if (pid <= 0 || !sys::ProcessExists(pid)) {
    return absl::NotFoundError(absl::StrFormat("no process with pid %d", pid));
  }
  if (pid == getpid()) {
    return absl::InvalidArgumentError("a process cannot dump itself directly");
  }
  // Incremental dumps keep tracking the process's writes between dumps
  // (cr/image_chain.h); the parent image is checked before anything else.
  const bool tracking = options.track || !options.parent_image.empty();
  if (options.track && !options.leave_running) {
    return absl::InvalidArgumentError(
        "tracking a process's writes for a later incremental dump needs it left running "
        "(--leave-running)");
  }
  std::optional<ParentImage> parent_image;
  if (!options.parent_image.empty()) {
    CRLIB_ASSIGN_OR_RETURN(parent_image, ReadParentImage(options.parent_image, pid));
  }
  std::vector<TreeMember> tree(1);
  CRLIB_ASSIGN_OR_RETURN(tree.front().facts, LookBeforeSeizing(pid));
  tree.front().pid = pid;
  // Where the image goes, before the process is touched: a FIFO's open
  // waits for its reader, which must not keep the process frozen. A
  // mappable image file is read-only: restores map it only while nobody
  // may write it (docs/CHECKPOINT.md, "Mapped restore").
  CRLIB_ASSIGN_OR_RETURN(
      std::unique_ptr<ImageSink> sink,
      OpenImageSink(image_path, options.image_fd, ctx->options().mappable ? 0400 : 0600));
  // A live dump copies the memory while the process runs; it needs an
  // image file (the records go before the pages, written at the stop). A
  // process it cannot serve is dumped stopped, on an emptied file.
  std::unique_ptr<LiveDump> live;
  auto* file = dynamic_cast<AtomicFileSink*>(sink.get());
  TrackingPlan plan{.keep = tracking && options.leave_running,
                    .resume_fd = parent_image ? parent_image->chain.tracking_fd : -1};
  if (tracking && !(options.live && file != nullptr && !tree.front().facts.stopped)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "pid %d: an incremental dump tracks a running process's writes into an image file: %s",
        pid, tree.front().facts.stopped ? "it is stopped"
             : file == nullptr          ? "the image is a stream"
                                        : "not with a stopped dump (--stopped)"));
  }
  if (options.live && file != nullptr && !tree.front().facts.stopped) {
    absl::StatusOr<std::unique_ptr<LiveDump>> started =
        StartLiveDump(ctx, pid, file, options.skip_children, plan);
    if (!started.ok() && plan.resume_fd >= 0 && !absl::IsCancelled(started.status()) &&
        sys::ProcessExists(pid)) {
      // The tracking the parent left is gone (the process closed it, or a
      // later dump failed): every page, and tracking anew.
      ctx->stats().set_incremental_refused(started.status().message());
      CRLIB_RETURN_IF_ERROR(file->Restart());
      ctx->registry() = ObjectRegistry();
      plan.resume_fd = -1;
      started = StartLiveDump(ctx, pid, file, options.skip_children, plan);
    }
    if (started.ok()) {
      live = std::move(*started);
    } else if (absl::IsCancelled(started.status()) || !sys::ProcessExists(pid)) {
      return started.status();
    } else if (tracking) {
      std::string why(started.status().message());
      if (ctx->stats().incremental_refused[0] != '\0') {
        // Most likely a later dump took the parent's tracking on.
        why = absl::StrFormat(
            "%s (the tracking parent image %s left is gone: %s; if a later dump took it, name "
            "that dump's image with --parent)",
            why, parent_image->path, ctx->stats().incremental_refused);
      }
      return absl::FailedPreconditionError(
          absl::StrFormat("pid %d cannot be tracked for incremental dumps: %s", pid, why));
    } else {
      ctx->stats().set_live_refused(started.status().message());
      CRLIB_RETURN_IF_ERROR(file->Restart());
      ctx->registry() = ObjectRegistry();
    }
  }
  // Where the process keeps the tracking after this dump, and whether
  // this image holds only what was written since the parent's.
  const int tracking_fd = live ? live->tracking_fd : -1;
  const bool incremental = live && plan.resume_fd >= 0;
  CRLIB_RETURN_IF_ERROR(ctx->Progress(Phase::kFreeze));
  int64_t frozen_at = 0;
  // Established TCP connections are held still while they are read
  // (files/tcp_connection.h), and let go before anything runs again.
  TcpFreeze tcp(options.tcp_established);
  // From here on every failure resumes every thread of every process as it
  // was: registers and signal mask restored, then detached.
  auto resume = [&](bool failed) -> absl::Status {
    tcp.Release();
    absl::Status first;
    // A failed dump leaves no tracking behind that no image names.
    if (failed && tracking_fd >= 0 && !tree.front().threads.empty()) {
      first = EndTracking(tree.front().threads.front().get(), tracking_fd);
    }
    for (TreeMember& m : tree) {
      for (const std::unique_ptr<Tracee>& thread : m.threads) {
        // A thread that ran remote calls must not go on with their
        // registers or with every signal blocked: it would crash or never
        // see a signal again. One more try (a failed ptrace changed
        // nothing), then the process is killed rather than left to run
        // corrupted.
        absl::Status st = thread->RestoreInitialState();
        if (!st.ok()) st = thread->RestoreInitialState();
        if (!st.ok()) {
          Tracee::KillProcess(m.threads);
          st = Annotate(st, absl::StrFormat("pid %d killed: thread %d could not be resumed as it was",
                                            m.pid, thread->tid()));
          if (first.ok()) first = st;
          break;
        }
        // If the detach fails the thread stays stopped, registers
        // restored, until we exit and the kernel detaches it.
        st = thread->Detach();
        if (first.ok()) first = st;
      }
    }
    return first;
  };
  // Resumes the processes as soon as everything of theirs is read (with
  // --leave-running): the image is finished while they run.
  bool resumed = false;
  absl::Status resumed_status;
  auto resume_now = [&]() -> absl::Status {
    resumed = true;
    if (frozen_at) ctx->stats().frozen_ns = NowNs() - frozen_at;
    resumed_status = resume(/*failed=*/false);
    return absl::OkStatus();
  };
  absl::Status st = [&]() -> absl::Status {
    // Every task is seized before any state is captured. A process is
    // seized, then its children are listed: stopped, it forks no more, so
    // one pass over the growing list finds every descendant.
    for (size_t i = 0; i < tree.size(); ++i) {
      TreeMember& m = tree[i];
      if (i > 0) {
        CRLIB_ASSIGN_OR_RETURN(m.stat, sys::ReadStatFields(m.pid));
        if (!m.stat.empty() && m.stat[0] == "Z") continue;  // a zombie: nothing to seize
        CRLIB_ASSIGN_OR_RETURN(m.facts, LookBeforeSeizing(m.pid));
      }
      absl::StatusOr<std::vector<std::unique_ptr<Tracee>>> seized = Tracee::SeizeProcess(m.pid);
      if (!seized.ok()) return ExplainSeizeFailure(m.pid, seized.status());
      m.threads = std::move(*seized);
      if (i == 0) frozen_at = NowNs();
      // What /proc shows of the stopped process: credentials, signals, IDs.
      CRLIB_ASSIGN_OR_RETURN(m.facts.status, sys::ReadFile(absl::StrCat("/proc/", m.pid, "/status")));
      CRLIB_ASSIGN_OR_RETURN(m.stat, sys::ReadStatFields(m.pid));
      CRLIB_ASSIGN_OR_RETURN(std::vector<pid_t> children, sys::ListChildren(m.pid));
      for (pid_t child : children) {
        if (i == 0 && std::find(options.skip_children.begin(), options.skip_children.end(), child) !=
                          options.skip_children.end()) {
          continue;
        }
        TreeMember next;
        next.pid = child;
        tree.push_back(std::move(next));
      }
    }
    CRLIB_RETURN_IF_ERROR(RefuseUnsupportedRelations(tree));
    CRLIB_RETURN_IF_ERROR(CheckSyscallResults(tree.front().threads, options.syscall_results));
    // Refuse unsupported resources before anything is written; a nocr
    // mark (seen among the descriptors) comes first. A pidfd is carried
    // when it refers to a process of the tree (zombies too).
    std::set<pid_t> tree_pids;
    for (const TreeMember& m : tree) tree_pids.insert(m.pid);
    for (size_t i = 0; i < tree.size(); ++i) {
      TreeMember& m = tree[i];
      if (m.zombie()) continue;
      // The root's: the self-checkpoint's pipe, and our tracking.
      std::vector<int> skip_fds = options.skip_fds;
      if (tracking_fd >= 0) skip_fds.push_back(tracking_fd);
      CRLIB_ASSIGN_OR_RETURN(m.fds, ScanFds(m.pid, tree_pids,
                                            i == 0 ? absl::MakeConstSpan(skip_fds)
                                                   : absl::Span<const int>(),
                                            &tcp));
      if (i == 0 && live) {
        // smaps would cost the stop time in populated pages.
        CRLIB_ASSIGN_OR_RETURN(m.vmas, live->copy->ScanAtStop(m.facts.status));
      } else {
        CRLIB_ASSIGN_OR_RETURN(m.vmas, ScanVmas(m.pid));
      }
      CRLIB_RETURN_IF_ERROR(
          RefuseUserfaultfdMemory(m.vmas, i == 0 && live ? live->copy.get() : nullptr));
      CRLIB_RETURN_IF_ERROR(CheckCarriedInodes(m.pid, m.fds, m.vmas, options.deleted_file_limit));
      std::vector<pid_t> tids;
      for (const std::unique_ptr<Tracee>& thread : m.threads) tids.push_back(thread->tid());
      // A live dump read the mappings' policies with its last VMA scan.
      const bool fresh = i == 0 && live && live->copy->unchanged_at_stop() && live->numa_maps;
      CRLIB_RETURN_IF_ERROR(
          RefuseUncarriedProcState(m.pid, tids, fresh ? &*live->numa_maps : nullptr));
    }
    {
      // A pipe whose ends are both in the tree is internal; one leading
      // outside is external (or a reconnected standard stream).
      std::vector<std::vector<FdInfo>*> tree_fds;
      for (TreeMember& m : tree) tree_fds.push_back(&m.fds);
      CRLIB_RETURN_IF_ERROR(ClassifyPipeEnds(tree_fds));
      CRLIB_RETURN_IF_ERROR(ClassifySockets(tree_fds));
    }
    CRLIB_RETURN_IF_ERROR(ctx->Progress(Phase::kState));
    // The remote calls first, and only then the image: every thread has
    // its own registers and signal mask back before a byte is written.
    const int64_t asked_at = NowNs();
    for (TreeMember& m : tree) {
      if (m.zombie()) continue;
      CRLIB_RETURN_IF_ERROR(SuspendSeccomp(m.threads));
      CRLIB_ASSIGN_OR_RETURN(m.asked, AskProcess(m.threads, m.facts.status));
    }
    ctx->stats().borrowed_ns = NowNs() - asked_at;

    // The records a restore reads before the pages, kept to check them.
    // A dump that succeeds must restore: what a restore here would refuse
    // (a file the image's user cannot open, a vDSO it cannot place ...)
    // fails the dump before the image is committed, while the processes
    // can still run on untouched. The check needs only those records, so
    // it runs on a thread of its own while the pages are copied.
    std::vector<uint8_t> records;
    MemorySink records_sink(&records);
    FileObjectWriter objects;
    ctx->set_objects(&objects);
    // A dump that succeeds must restore: what a restore here would refuse
    // (a file the image's user cannot open, a vDSO it cannot place ...)
    // fails the dump, while the processes can still run on untouched. The
    // check runs on its own thread as soon as the records are complete,
    // while the pages are written.
    absl::Status checked = absl::InternalError("the image's records were never complete");
    std::thread check;
    absl::Cleanup join_check = [&] {
      if (check.joinable()) check.join();
    };
    auto start_check = [&] {
      check = std::thread([&] {
        const int64_t check_at = NowNs();
        checked = Annotate(CheckDumpedImage(records), "the image would not restore on this machine");
        ctx->stats().check_ns = NowNs() - check_at;
      });
    };
    // Every process's records (parents first), then every process's pages.
    DescriptionHolders holders;
    auto write_records = [&]() -> absl::Status {
      for (TreeMember& m : tree) {
        const pid_t ppid = static_cast<pid_t>(StatField(m.stat, 4));
        const TreeMember* parent = nullptr;
        for (const TreeMember& p : tree) {
          if (&p != &m && p.pid == ppid) parent = &p;
        }
        std::optional<LiveMemory> memory;
        if (live && &m == &tree.front()) {
          memory = LiveMemory{.mm_ref = live->copy->mm_ref(),
                              .stale = live->copy->StaleRuns(m.vmas)};
          if (incremental) {
            for (const VmaInfo& v : m.vmas) {
              if (live->copy->FromParent(v)) memory->from_parent.emplace_back(v.map.start, v.map.end);
            }
          }
        }
        if (tracking && &m == &tree.front()) {
          if (!memory) memory.emplace();
          CRLIB_ASSIGN_OR_RETURN(memory->chain,
                                 NewChainRecord(m.pid, options.leave_running ? tracking_fd : -1,
                                                live && incremental ? &*parent_image : nullptr));
        }
        CRLIB_RETURN_IF_ERROR(
            WriteProcess(ctx, &m, parent, options, &holders, memory ? &*memory : nullptr));
      }
      return absl::OkStatus();
    };
    // Reads the pages; with --leave-running the processes then run on
    // while the image is finished: nothing of theirs is read after this.
    auto write_pages = [&](PageArray& pages, bool skip_root) -> absl::Status {
      for (TreeMember& m : tree) {
        if (m.zombie() || (skip_root && &m == &tree.front())) continue;
        CRLIB_RETURN_IF_ERROR(WriteMemoryPages(ctx, m.threads.front().get(), m.vmas, m.map, &pages));
      }
      if (options.leave_running) CRLIB_RETURN_IF_ERROR(resume_now());
      return pages.Flush();
    };
    std::optional<ImageWriter> stopped_writer;
    ImageWriter* writer = nullptr;
    if (live) {
      // The pages copied while it ran are in the image; the records go
      // into the room reserved before them, then the rest of the pages.
      writer = live->writer.get();
      ctx->set_writer(writer);
      live->pages->set_phase(Phase::kMemory);
      CRLIB_RETURN_IF_ERROR(live->pages->Flush());
      CRLIB_RETURN_IF_ERROR(writer->CopyPrefix(&records_sink, RecordType::kPages, start_check));
      absl::Status filled =
          writer->FillReserved(live->reservation, write_records, live->copy->mm_ref());
      if (absl::IsResourceExhausted(filled)) {
        // It grew (threads, mappings, files) beyond the room: the image
        // is written again from its start, stopped, as without --live.
        ctx->stats().set_live_refused(filled.message());
        live.reset();
        ctx->set_writer(nullptr);
        CRLIB_RETURN_IF_ERROR(file->Restart());
        ctx->registry() = ObjectRegistry();
        objects = FileObjectWriter();
        holders = DescriptionHolders();
        records.clear();
      } else {
        CRLIB_RETURN_IF_ERROR(filled);
        TreeMember& root = tree.front();
        CRLIB_RETURN_IF_ERROR(live->copy->Finish(root.vmas, root.map.guards, *live->pages));
        CRLIB_RETURN_IF_ERROR(write_pages(*live->pages, /*skip_root=*/true));
        ctx->stats().live_rounds = live->rounds;
      }
    }
    if (!live) {
      stopped_writer.emplace(sink.get(),
                             DescribeImage(tree.front().threads.front()->arch(), ctx->options()));
      writer = &*stopped_writer;
      ctx->set_writer(writer);
      CRLIB_RETURN_IF_ERROR(writer->CopyPrefix(&records_sink, RecordType::kPages, start_check));
      CRLIB_RETURN_IF_ERROR(writer->Begin());
      CRLIB_RETURN_IF_ERROR(write_records());
      PageArray pages(ctx, 0);  // one worker and one pair of buffers for all
      CRLIB_RETURN_IF_ERROR(write_pages(pages, /*skip_root=*/false));
    }
    CRLIB_RETURN_IF_ERROR(writer->Finish());
    ctx->stats().records = writer->record_count();
    ctx->stats().bytes = writer->bytes_written();
    std::move(join_check).Invoke();
    CRLIB_RETURN_IF_ERROR(checked);
    return sink->Commit();
  }();
  if (live) live->pages.reset();  // its worker writes through ctx's writer
  ctx->set_writer(nullptr);
  ctx->set_objects(nullptr);
  if (resumed) {
    if (!st.ok() && tracking_fd >= 0) {
      // Failed after it was resumed (the commit): its tracking goes too.
      (void)EndTrackingOf(pid, tracking_fd);
    }
    if (st.ok() && !resumed_status.ok()) {
      st = Annotate(resumed_status, absl::StrFormat("image %s written, but resuming pid %d failed",
                                                    image_path, pid));
    }
  } else if (!st.ok() || options.leave_running) {
    absl::Status resumed = resume(/*failed=*/!st.ok());
    // The image is committed and complete: it stays, the error says so.
    if (st.ok() && !resumed.ok()) {
      st = Annotate(resumed, absl::StrFormat("image %s written, but resuming pid %d failed",
                                             image_path, pid));
    }
  } else {
    // The image is complete and durable: the processes may go, the
    // children first (none outlives the root to be reparented running).
    // Their connections, in repair mode, close without a word to the peer.
    tcp.Keep();
    for (auto m = tree.rbegin(); m != tree.rend(); ++m) {
      if (!m->zombie()) Tracee::KillProcess(m->threads);
    }
  }
  if (frozen_at && !resumed) ctx->stats().frozen_ns = NowNs() - frozen_at;
  ctx->stats().total_ns = NowNs() - start;
  if (st.ok()) (void)ctx->Progress(Phase::kDone);  // too late to cancel
  return st;
}

}  // namespace crlib
