#include "mm/memory_restore.h"

#include <fcntl.h>
#include <linux/prctl.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "core/image_reader.h"
#include "core/status.h"
#include "mm/memory_capture.h"
#include "mm/page_array.h"
#include "mm/sysv_shm.h"
#include "sys/kernel.h"
#include "sys/credentials.h"
#include "sys/proc.h"

namespace crlib {
namespace {

constexpr uint64_t kLowestAddress = 0x10000;
constexpr uint64_t kHighestAddress = 0x7ffffffff000;

// The madvise() calls that restore VmaRecord::vm_flags, in this order.
struct Advice {
  uint32_t flag;
  int advice;
  const char* name;
};
constexpr Advice kAdvice[] = {
    {kVmaDontFork, MADV_DONTFORK, "madvise(MADV_DONTFORK)"},
    {kVmaWipeOnFork, MADV_WIPEONFORK, "madvise(MADV_WIPEONFORK)"},
    {kVmaDontDump, MADV_DONTDUMP, "madvise(MADV_DONTDUMP)"},
    {kVmaHugePage, MADV_HUGEPAGE, "madvise(MADV_HUGEPAGE)"},
    {kVmaNoHugePage, MADV_NOHUGEPAGE, "madvise(MADV_NOHUGEPAGE)"},
    {kVmaMergeable, MADV_MERGEABLE, "madvise(MADV_MERGEABLE)"},
};

bool IsSpecial(VmaKind k) {
  return k == VmaKind::kVdso || k == VmaKind::kVvar || k == VmaKind::kVvarVclock;
}

struct Special {
  VmaKind kind;
  uint64_t start, end;
};

std::vector<Special> SpecialsOf(const std::vector<VmaRecord>& vmas) {
  std::vector<Special> out;
  for (const VmaRecord& v : vmas) {
    auto k = static_cast<VmaKind>(v.kind);
    if (IsSpecial(k)) out.push_back({k, v.start, v.end});
  }
  return out;
}

absl::StatusOr<std::vector<Special>> OwnSpecials(pid_t pid) {
  CRLIB_ASSIGN_OR_RETURN(std::vector<sys::MapsEntry> maps, sys::ReadMaps(pid));
  std::vector<Special> out;
  for (const sys::MapsEntry& m : maps) {
    auto k = SpecialMappingKind(m.path);
    if (k && IsSpecial(*k)) out.push_back({*k, m.start, m.end});
  }
  return out;
}

const char* KindName(VmaKind k) {
  switch (k) {
    case VmaKind::kVdso: return "[vdso]";
    case VmaKind::kVvar: return "[vvar]";
    case VmaKind::kVvarVclock: return "[vvar_vclock]";
    default: return "?";
  }
}

// Moves the tracee's special mappings so they sit at `target`'s addresses,
// one mremap each, through a free range when the two places overlap.
absl::Status MoveSpecials(Tracee* t, std::vector<Special> current, const std::vector<Special>& target,
                          const std::vector<AddressRange>& occupied) {
  auto move_to = [&](auto address_of) -> absl::Status {
    for (size_t i = 0; i < current.size(); ++i) {
      uint64_t to = address_of(i);
      if (to == current[i].start) continue;
      uint64_t size = current[i].end - current[i].start;
      CRLIB_RETURN_IF_ERROR(t->CheckedSyscall("mremap of the vDSO area", SYS_mremap,
                                              {current[i].start, size, size,
                                               MREMAP_MAYMOVE | MREMAP_FIXED, to})
                                .status());
      current[i].end = to + size;
      current[i].start = to;
    }
    return absl::OkStatus();
  };
  const uint64_t lo = target.front().start, hi = target.back().end;
  bool overlap = false;
  for (const Special& c : current) overlap |= c.start < hi && lo < c.end;
  if (overlap && current.front().start != lo) {
    std::vector<AddressRange> busy = occupied;
    for (const Special& c : current) busy.push_back({c.start, c.end});
    CRLIB_ASSIGN_OR_RETURN(uint64_t temp, FindFreeRange(hi - lo, busy));
    CRLIB_RETURN_IF_ERROR(move_to([&](size_t i) { return temp + (target[i].start - lo); }));
  }
  CRLIB_RETURN_IF_ERROR(move_to([&](size_t i) { return target[i].start; }));
  return t->FindSyscallSite();
}

}  // namespace

absl::StatusOr<uint64_t> FindFreeRange(uint64_t size, std::vector<AddressRange> occupied) {
  std::sort(occupied.begin(), occupied.end());
  uint64_t candidate = kLowestAddress;
  for (const AddressRange& r : occupied) {
    if (r.first >= candidate + size) break;
    candidate = std::max(candidate, r.second);
  }
  if (candidate + size > kHighestAddress) {
    return absl::ResourceExhaustedError("no free address range for restore's scratch area");
  }
  return candidate;
}

absl::Status CheckSpecialMappings(const ProcessImage& image) {
  std::vector<Special> want = SpecialsOf(image.vmas);
  CRLIB_ASSIGN_OR_RETURN(std::vector<Special> have, OwnSpecials(getpid()));
  bool same = want.size() == have.size();
  for (size_t i = 0; same && i < want.size(); ++i) {
    same = want[i].kind == have[i].kind &&
           want[i].end - want[i].start == have[i].end - have[i].start &&
           want[i].start - want.front().start == have[i].start - have.front().start;
  }
  if (!same || want.empty()) {
    auto describe = [](const std::vector<Special>& s) {
      std::string out;
      for (const Special& x : s) absl::StrAppendFormat(&out, " %s(%d KiB)", KindName(x.kind), (x.end - x.start) / 1024);
      return out.empty() ? std::string(" none") : out;
    };
    return absl::FailedPreconditionError(absl::StrFormat(
        "the image's vDSO layout (%s) differs from this kernel's (%s); restore on the kernel it "
        "was taken on",
        describe(want).substr(1), describe(have).substr(1)));
  }
  return absl::OkStatus();
}

absl::Status RebuildAddressSpace(Tracee* t, const ProcessImage& image, const RestoredObjects& files,
                                 AddressRange scratch) {
  const pid_t pid = t->tid();
  CRLIB_ASSIGN_OR_RETURN(std::vector<sys::MapsEntry> maps, sys::ReadMaps(pid));
  // 1. Unmap everything inherited but the special mappings and the scratch
  //    range, in as few calls as the layout allows.
  std::vector<AddressRange> keep = {scratch};
  for (const sys::MapsEntry& m : maps) {
    if (SpecialMappingKind(m.path)) keep.push_back({m.start, m.end});
  }
  // Memory shared copy-on-write with the parent: the fork that made this
  // process gave it the parent's restored copy (LoadTreeImage checked
  // that the parent has the same VMA).
  for (const VmaRecord& v : image.vmas) {
    if (v.vm_flags & kVmaInherited) keep.push_back({v.start, v.end});
  }
  std::sort(keep.begin(), keep.end());
  std::vector<Tracee::RemoteCall> unmaps;  // one batch: one stop for every gap
  uint64_t from = kLowestAddress;
  for (const AddressRange& k : keep) {
    if (k.first >= kHighestAddress) break;  // [vsyscall]
    if (k.first > from) unmaps.push_back({SYS_munmap, {from, k.first - from}});
    from = std::max(from, k.second);
  }
  if (from < kHighestAddress) unmaps.push_back({SYS_munmap, {from, kHighestAddress - from}});
  CRLIB_RETURN_IF_ERROR(t->RunBatch(scratch.first, scratch.second - scratch.first,
                                    absl::MakeSpan(unmaps), [&](size_t i) {
                                      return absl::StrFormat(
                                          "munmap of the inherited address space 0x%x-0x%x",
                                          unmaps[i].args[0], unmaps[i].args[0] + unmaps[i].args[1]);
                                    }));
  // 2. The mm fields and the executable, now that the inherited executable
  //    is no longer mapped (the kernel refuses to switch while it is, and
  //    the image may map the very same file).
  CRLIB_RETURN_IF_ERROR(RestoreMmFields(t, image, files, scratch.first));
  // 3. The vDSO and vvar areas to where the image had them.
  std::vector<AddressRange> image_ranges;
  for (const VmaRecord& v : image.vmas) image_ranges.push_back({v.start, v.end});
  image_ranges.push_back(scratch);
  CRLIB_ASSIGN_OR_RETURN(std::vector<Special> current, OwnSpecials(pid));
  CRLIB_RETURN_IF_ERROR(MoveSpecials(t, current, SpecialsOf(image.vmas), image_ranges));
  // 4. SysV attachments first: the madvise calls below may name them.
  CRLIB_RETURN_IF_ERROR(AttachSysvSegments(t, image));
  // 5. The image's VMAs, with their final protections; pages are written
  //    through /proc/PID/mem, which may write read-only memory. A process
  //    linked against many libraries has hundreds of VMAs: the mmaps run
  //    as batches, one stop each, from code and a table in the scratch
  //    area (executable, past the part used for arguments). The madvise
  //    and mlock calls that give VMAs their recorded VmFlags follow the
  //    mmaps in the same batches.
  struct Why {
    const VmaRecord* vma;
    const char* call;
  };
  std::vector<Why> why;
  std::vector<Tracee::RemoteCall> calls;
  for (const VmaRecord& v : image.vmas) {
    const auto kind = static_cast<VmaKind>(v.kind);
    if (IsSpecial(kind) || kind == VmaKind::kVsyscall) continue;
    uint64_t flags = MAP_FIXED | (v.flags & (MAP_SHARED | MAP_PRIVATE | MAP_GROWSDOWN));
    // Without it a sparse reservation larger than RAM + swap (an ASan
    // shadow, a JVM heap) is refused by the overcommit heuristic.
    if (v.vm_flags & kVmaNoReserve) flags |= MAP_NORESERVE;
    if (kind == VmaKind::kSysvShm) continue;  // attached already, with shmat
    if (v.vm_flags & kVmaInherited) continue;  // kept from the parent
    uint64_t fd = static_cast<uint64_t>(-1);
    if (v.object) {
      // Shared memory, a memfd, a deleted file: the one restored inode.
      fd = static_cast<uint64_t>(files.fd(v.object));
    } else if (kind == VmaKind::kFile) {
      fd = static_cast<uint64_t>(files.fd(v.file));
    } else {
      flags |= MAP_ANONYMOUS;
    }
    why.push_back({&v, "mmap"});
    calls.push_back({SYS_mmap, {v.start, v.end - v.start, v.prot, flags, fd, v.pgoff}});
  }
  // The parent's pages this process did not have.
  for (const PageRun& d : image.page_drops) {
    const VmaRecord* in = nullptr;
    for (const VmaRecord& v : image.vmas) {
      if (v.start <= d.address && d.address < v.end) in = &v;
    }
    why.push_back({in, "madvise(MADV_DONTNEED) of a page the parent has"});
    calls.push_back({SYS_madvise, {d.address, d.pages * image.info.page_size, MADV_DONTNEED}});
  }
  for (const auto& [flag, advice, name] : kAdvice) {
    for (const VmaRecord& v : image.vmas) {
      if (!(v.vm_flags & flag)) continue;
      why.push_back({&v, name});
      calls.push_back({SYS_madvise, {v.start, v.end - v.start, static_cast<uint64_t>(advice)}});
    }
  }
  for (const VmaRecord& v : image.vmas) {
    if (v.vm_flags & kVmaLockOnFault) {
      why.push_back({&v, "mlock2(MLOCK_ONFAULT)"});
      calls.push_back({SYS_mlock2, {v.start, v.end - v.start, MLOCK_ONFAULT}});
    } else if (v.vm_flags & kVmaLocked) {
      why.push_back({&v, "mlock"});
      calls.push_back({SYS_mlock, {v.start, v.end - v.start}});
    }
  }
  return t->RunBatch(scratch.first, scratch.second - scratch.first, absl::MakeSpan(calls),
                     [&](size_t i) {
                       return absl::StrFormat("%s: mapping 0x%x-0x%x %s", why[i].call,
                                              why[i].vma->start, why[i].vma->end, why[i].vma->name);
                     });
}

absl::Status CheckLockedMemory(const ProcessImage& image) {
  uint64_t locked = 0;
  for (const VmaRecord& v : image.vmas) {
    if (v.vm_flags & (kVmaLocked | kVmaLockOnFault)) locked += v.end - v.start;
  }
  if (locked == 0) return absl::OkStatus();
  // The restored process locks its VMAs while it still has our
  // credentials and limits (the image's come last): our CAP_IPC_LOCK or
  // our RLIMIT_MEMLOCK decide.
  CRLIB_ASSIGN_OR_RETURN(bool ipc_lock, sys::WeHoldCapability(CAP_IPC_LOCK));
  if (ipc_lock) return absl::OkStatus();
  rlimit limit{};
  if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0) return Errno("getrlimit(RLIMIT_MEMLOCK)");
  if (limit.rlim_cur != RLIM_INFINITY && locked > limit.rlim_cur) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "the image has %d KiB of mlocked memory; RLIMIT_MEMLOCK here is %d KiB and this process "
        "lacks CAP_IPC_LOCK", locked / 1024, limit.rlim_cur / 1024));
  }
  return absl::OkStatus();
}

absl::Status CheckGuardRegions(const ProcessImage& image) {
  if (image.guards.empty()) return absl::OkStatus();
  // mlock over a guard region fails but leaves the VMA locked; the VMA is
  // mapped locked here, and MADV_GUARD_INSTALL refuses locked VMAs.
  for (const PageRun& g : image.guards) {
    for (const VmaRecord& v : image.vmas) {
      if (g.address >= v.start && g.address < v.end && (v.vm_flags & (kVmaLocked | kVmaLockOnFault))) {
        return absl::UnimplementedError(absl::StrFormat(
            "guard region 0x%x (%d pages) lies in mlocked mapping 0x%x-0x%x, where the kernel "
            "cannot install it again",
            g.address, g.pages, v.start, v.end));
      }
    }
  }
  const size_t page = image.info.page_size;
  void* probe = mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (probe == MAP_FAILED) return Errno("mmap of a page to probe MADV_GUARD_INSTALL");
  const int r = madvise(probe, page, sys::kMadvGuardInstall);
  const int err = errno;
  munmap(probe, page);
  if (r != 0) {
    return ErrnoError(err, absl::StrFormat(
                               "the image has %d guard regions (MADV_GUARD_INSTALL, Linux 6.13), "
                               "which this kernel cannot install",
                               image.guards.size()));
  }
  return absl::OkStatus();
}

absl::Status RestoreGuardRegions(Tracee* t, const ProcessImage& image) {
  for (const PageRun& g : image.guards) {
    const std::string what =
        absl::StrFormat("madvise(0x%x, %d pages, MADV_GUARD_INSTALL)", g.address, g.pages);
    CRLIB_RETURN_IF_ERROR(
        t->CheckedSyscall(what.c_str(), SYS_madvise,
                          {g.address, g.pages * image.info.page_size,
                           static_cast<uint64_t>(sys::kMadvGuardInstall)})
            .status());
  }
  return absl::OkStatus();
}

std::vector<PageRun> WithoutStale(const PageRun& run, absl::Span<const PageRun> stale,
                                  uint64_t page) {
  std::vector<PageRun> out;
  uint64_t at = run.address;
  const uint64_t end = run.address + run.pages * page;
  for (const PageRun& s : stale) {
    const uint64_t s_end = s.address + s.pages * page;
    if (s_end <= at || s.address >= end) continue;
    if (s.address > at) out.push_back({at, (s.address - at) / page});
    at = std::max(at, s_end);
  }
  if (at < end) out.push_back({at, (end - at) / page});
  return out;
}

absl::Status LoadPages(Context* ctx, Tracee* t, const ProcessImage& image, ImageReader* reader,
                       uint64_t* pages_loaded) {
  const uint64_t page = reader->info().page_size;
  const uint64_t total = reader->source()->Remaining().value_or(0) + reader->offset();
  std::vector<uint8_t> staging;
  for (;;) {
    CRLIB_ASSIGN_OR_RETURN(const Record* rec, reader->Next());
    if (rec == nullptr) return absl::OkStatus();
    // The next process's pages (LoadTreeImage checked their order).
    if (rec->type() == RecordType::kPages && rec->header.parent != image.mm_ref) {
      return reader->Unread();
    }
    if (rec->type() != RecordType::kPages) {
      return absl::DataLossError(absl::StrFormat(
          "record %d at offset %d follows the page data but is not pages of the memory map",
          rec->index, rec->offset));
    }
    CRLIB_ASSIGN_OR_RETURN(PagesRecord pages, reader->Decode<PagesRecord>(*rec));
    staging.resize(pages.page_count * page);
    uint64_t used = 0;
    CRLIB_RETURN_IF_ERROR(ReadPages(reader, *rec, pages,
                                    [&](uint64_t, uint64_t n) -> absl::StatusOr<uint8_t*> {
                                      uint8_t* p = staging.data() + used;
                                      used += n * page;
                                      return p;
                                    }));
    used = 0;
    for (const PageRun& run : pages.runs) {
      for (const PageRun& part : WithoutStale(run, image.stale_pages, page)) {
        CRLIB_RETURN_IF_ERROR(t->WriteMemory(part.address,
                                             staging.data() + used + (part.address - run.address),
                                             part.pages * page));
      }
      used += run.pages * page;
    }
    *pages_loaded += pages.page_count;
    CRLIB_RETURN_IF_ERROR(ctx->Progress(Phase::kMemory, reader->offset(), total));
  }
}

absl::Status RestoreMmFields(Tracee* t, const ProcessImage& image, const RestoredObjects& files,
                             uint64_t scratch) {
  const MemoryMapRecord& mm = image.mm;
  prctl_mm_map map{};
  map.start_code = mm.start_code;
  map.end_code = mm.end_code;
  map.start_data = mm.start_data;
  map.end_data = mm.end_data;
  map.start_brk = mm.start_brk;
  map.brk = mm.brk;
  map.start_stack = mm.start_stack;
  map.arg_start = mm.arg_start;
  map.arg_end = mm.arg_end;
  map.env_start = mm.env_start;
  map.env_end = mm.env_end;
  const uint64_t auxv_at = scratch + AlignUp(sizeof(map), 16);
  map.auxv = reinterpret_cast<__u64*>(auxv_at);
  map.auxv_size = static_cast<__u32>(mm.auxv.size() * 8);
  map.exe_fd = static_cast<__u32>(mm.exe_file ? files.fd(mm.exe_file) : -1);
  // A fork of a restored parent already has the parent's executable, and
  // the kernel refuses to change it while a VMA kept from the parent maps
  // it: left as it is when it is the same file.
  if (mm.exe_file && std::any_of(image.vmas.begin(), image.vmas.end(), [](const VmaRecord& v) {
        return (v.vm_flags & kVmaInherited) && static_cast<VmaKind>(v.kind) == VmaKind::kFile;
      })) {
    struct stat now, want;
    const std::string exe = absl::StrFormat("/proc/%d/exe", t->tid());
    if (stat(exe.c_str(), &now) == 0 && fstat(files.fd(mm.exe_file), &want) == 0 &&
        now.st_dev == want.st_dev && now.st_ino == want.st_ino) {
      map.exe_fd = static_cast<__u32>(-1);
    }
  }
  CRLIB_RETURN_IF_ERROR(t->WriteMemory(scratch, &map, sizeof(map)));
  CRLIB_RETURN_IF_ERROR(t->WriteMemory(auxv_at, mm.auxv.data(), mm.auxv.size() * 8));
  return t->CheckedSyscall("prctl(PR_SET_MM, PR_SET_MM_MAP)", SYS_prctl,
                           {PR_SET_MM, PR_SET_MM_MAP, scratch, sizeof(map)})
      .status();
}

}  // namespace crlib
