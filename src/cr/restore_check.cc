#include "cr/restore_check.h"

#include <sys/resource.h>
#include <unistd.h>

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "arch/arch_backend.h"
#include "core/byte_stream.h"
#include "core/image_reader.h"
#include "core/status.h"
#include "files/tty_restore.h"
#include "mm/memory_restore.h"
#include "mm/sysv_shm.h"
#include "sys/proc.h"
#include "task/attributes.h"
#include "image/image_trust.h"
#include "task/schedule.h"
#include "task/xfeatures.h"

namespace crlib {
namespace {

// Hard limits above our own need CAP_SYS_RESOURCE; find out now, not after
// the child exists.
absl::Status CheckRlimits(const ProcessImage& image) {
  for (const Rlimit& r : image.rlimits.limits) {
    rlimit64 ours;
    if (prlimit64(0, static_cast<__rlimit_resource>(r.resource), nullptr, &ours) != 0) continue;
    if (r.max <= ours.rlim_max) continue;
    rlimit64 probe = ours;  // raising our own hard limit is the same check
    probe.rlim_max = r.max;
    if (prlimit64(0, static_cast<__rlimit_resource>(r.resource), &probe, nullptr) != 0) {
      return Errno("rlimit %d: the image's hard limit %d is above ours (%d) and cannot be raised",
                   r.resource, r.max, ours.rlim_max);
    }
    prlimit64(0, static_cast<__rlimit_resource>(r.resource), &ours, nullptr);
  }
  return absl::OkStatus();
}

absl::Status CheckMachine(const ProcessImage& image) {
  const ArchBackend* arch = FindArchBackend(image.info.cpu_family);
  if (arch == nullptr || arch != &HostArchBackend()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "image is for CPU family %s, which this machine cannot run",
        CpuFamilyName(image.info.cpu_family)));
  }
  CRLIB_RETURN_IF_ERROR(arch->CheckImage(image.info));
  CRLIB_RETURN_IF_ERROR(CheckPermittedFeatures(image));
  if (image.info.page_size != static_cast<uint32_t>(sysconf(_SC_PAGESIZE))) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "image page size %d differs from this machine's %d", image.info.page_size,
        sysconf(_SC_PAGESIZE)));
  }
  for (const ThreadImage& thread : image.threads) {
    CRLIB_RETURN_IF_ERROR(Annotate(arch->CheckCpu(thread.cpu),
                                   absl::StrFormat("thread %d", thread.record.tid)));
  }
  return absl::OkStatus();
}

absl::Status CheckPidsFree(const ProcessImage& image) {
  const pid_t pid = static_cast<pid_t>(image.process.pid);
  if (sys::ProcessExists(pid)) {
    return absl::AlreadyExistsError(absl::StrFormat("pid %d is in use by another process", pid));
  }
  for (size_t i = 1; i < image.threads.size(); ++i) {
    const uint32_t tid = image.threads[i].record.tid;
    if (sys::ProcessExists(static_cast<pid_t>(tid))) {
      return absl::AlreadyExistsError(absl::StrFormat(
          "tid %d (a thread of pid %d) is in use by another process", tid, pid));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RestorePreparation> PrepareRestore(const TreeImage& tree,
                                                  const struct stat& image_file,
                                                  const PreflightOptions& options) {
  const ProcessImage& root = tree.root();
  std::set<uint32_t> pids;
  for (const ProcessImage& image : tree.processes) pids.insert(image.process.pid);
  size_t live = 0;
  std::set<std::string> checked_limits;
  for (const ProcessImage& image : tree.processes) {
    // PIDs are free by construction in a new PID namespace. (Its message
    // names the PID already.)
    if (!options.original_alive && !options.pid_namespace) CRLIB_RETURN_IF_ERROR(CheckPidsFree(image));
    const absl::Status st = [&]() -> absl::Status {
      if (image.process.flags & kProcessZombie) {
        // Made by its parent, which must be restored too.
        if (&image == &root || !pids.contains(image.process.ppid)) {
          return absl::DataLossError("a zombie without its parent in the image");
        }
        return absl::OkStatus();
      }
      ++live;
      CRLIB_RETURN_IF_ERROR(CheckMachine(image));
      CRLIB_RETURN_IF_ERROR(CheckImageTrust(image, image_file, options.trust_image));
      CRLIB_RETURN_IF_ERROR(CheckSpecialMappings(image));
      CRLIB_RETURN_IF_ERROR(CheckLockedMemory(image));
      CRLIB_RETURN_IF_ERROR(CheckGuardRegions(image));
      CRLIB_RETURN_IF_ERROR(CheckSysvSegments(image));
      // Forked processes mostly share one set of limits: probed once.
      std::string limits;
      for (const Rlimit& r : image.rlimits.limits) absl::StrAppend(&limits, r.resource, ":", r.max, ";");
      if (checked_limits.insert(limits).second) CRLIB_RETURN_IF_ERROR(CheckRlimits(image));
      CRLIB_RETURN_IF_ERROR(CheckSchedule(image, image_file, options.trust_image));
      CRLIB_RETURN_IF_ERROR(CheckAttributes(image));
      return absl::OkStatus();
    }();
    CRLIB_RETURN_IF_ERROR(Annotate(st, absl::StrFormat("pid %d", image.process.pid)));
  }
  // The PIDs of the stand-in leaders of groups whose leader had exited.
  if (!options.original_alive && !options.pid_namespace) {
    for (const ProcessImage& image : tree.processes) {
      const ProcessRecord& p = image.process;
      if (&image == &root || p.sid == p.pid || p.pgid == p.pid || p.pgid == root.process.pgid ||
          pids.contains(p.pgid)) {
        continue;
      }
      if (sys::ProcessExists(static_cast<pid_t>(p.pgid))) {
        return absl::AlreadyExistsError(absl::StrFormat(
            "pid %d (to lead process group %d again, whose leader had exited) is in use by "
            "another process",
            p.pgid, p.pgid));
      }
    }
  }
  // The original holds its ptys' indexes until it is killed.
  if (!options.original_alive) CRLIB_RETURN_IF_ERROR(CheckTerminals(root));
  for (const auto& [ref, tty] : root.ttys) {
    if ((tty.flags & kTtyControlling) && live > 1) {
      return absl::UnimplementedError(
          "the tree's controlling terminal is a pty it holds; with more than one process "
          "this is not supported yet");
    }
  }
  // One set of open files for the whole tree, which every process
  // inherits: a description several processes share stays one. Each file
  // is opened with the credentials of the first process holding it.
  std::vector<const ProcessImage*> images;
  for (const ProcessImage& image : tree.processes) images.push_back(&image);
  CRLIB_RETURN_IF_ERROR(
      CheckInheritFds(images, options.inherit_fds, options.accept_unmapped_externals));
  CRLIB_RETURN_IF_ERROR(CheckPidfds(images));
  CRLIB_ASSIGN_OR_RETURN(OpenedFiles files,
                         OpenedFiles::OpenTree(images, {.any_pty_index = options.original_alive,
                                                        .original_alive = options.original_alive,
                                                        .inherit_fds = options.inherit_fds,
                                                        .check_only = options.check_only ||
                                                                      options.original_alive}));
  // One scratch range, free in every process and in ours (the root is a
  // copy of us; each child inherits its parent's).
  std::vector<AddressRange> busy;
  for (const ProcessImage& image : tree.processes) {
    for (const VmaRecord& v : image.vmas) busy.push_back({v.start, v.end});
  }
  CRLIB_ASSIGN_OR_RETURN(std::vector<sys::MapsEntry> own, sys::ReadMaps(getpid()));
  for (const sys::MapsEntry& m : own) busy.push_back({m.start, m.end});
  CRLIB_ASSIGN_OR_RETURN(uint64_t scratch, FindFreeRange(kRestoreScratchBytes, busy));
  return RestorePreparation{.files = std::move(files), .scratch = scratch};
}

absl::Status CheckDumpedImage(absl::Span<const uint8_t> records) {
  MemorySource source(records, /*as_stream=*/true);
  CRLIB_ASSIGN_OR_RETURN(std::unique_ptr<ImageReader> reader,
                         ImageReader::Open(&source, {.accept_elided_bulk = true}));
  CRLIB_ASSIGN_OR_RETURN(const TreeImage tree, LoadTreeImage(reader.get()));
  struct stat owner{};  // the image is the caller's, mode 0600
  owner.st_mode = S_IFREG | 0600;
  owner.st_uid = geteuid();
  owner.st_gid = getegid();
  return PrepareRestore(tree, owner, {.original_alive = true, .accept_unmapped_externals = true,
                                      .check_only = true})
      .status();
}

}  // namespace crlib
