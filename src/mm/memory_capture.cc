#include "mm/memory_capture.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/image_writer.h"
#include "core/status.h"
#include "files/file_capture.h"
#include "mm/page_array.h"
#include "sys/kernel.h"

namespace crlib {

std::optional<VmaKind> SpecialMappingKind(const std::string& name) {
  if (name == "[vdso]") return VmaKind::kVdso;
  if (name == "[vvar]") return VmaKind::kVvar;
  if (name == "[vvar_vclock]") return VmaKind::kVvarVclock;
  if (name == "[vsyscall]") return VmaKind::kVsyscall;
  return std::nullopt;
}

absl::StatusOr<std::vector<VmaInfo>> ScanVmas(pid_t pid) {
  CRLIB_ASSIGN_OR_RETURN(std::vector<sys::MapsEntry> maps, sys::ReadMaps(pid));
  std::vector<VmaInfo> out;
  for (sys::MapsEntry& m : maps) {
    VmaInfo v;
    auto unsupported = [&](const char* why) {
      return absl::UnimplementedError(absl::StrFormat(
          "mapping 0x%x-0x%x %s is not supported: %s", m.start, m.end,
          m.path.empty() ? "(anonymous)" : m.path, why));
    };
    if (auto special = SpecialMappingKind(m.path)) {
      v.kind = *special;
    } else if (m.path == "[heap]") {
      v.kind = VmaKind::kHeap;
    } else if (m.path == "[stack]") {
      v.kind = VmaKind::kStack;
    } else if (m.path.empty() || absl::StartsWith(m.path, "[anon:")) {
      if (m.shared) return unsupported("shared anonymous memory");
      v.kind = VmaKind::kAnonymous;
    } else if (m.path[0] == '[') {
      return unsupported("unknown special mapping");
    } else if (m.inode == 0 || absl::EndsWith(m.path, " (deleted)")) {
      return unsupported(m.shared ? "shared memory or a deleted file"
                                  : "a mapping of a deleted file");
    } else {
      v.kind = VmaKind::kFile;
    }
    v.map = std::move(m);
    out.push_back(std::move(v));
  }
  return out;
}

namespace {

// Whether a VMA can hold pages restore cannot rebuild without the image:
// not the special mappings, and not shared file mappings, whose data
// lives in the file.
bool MayHoldPages(VmaKind kind, bool shared) {
  switch (kind) {
    case VmaKind::kAnonymous:
    case VmaKind::kHeap:
    case VmaKind::kStack:
      return true;
    case VmaKind::kFile:
      return !shared;
    default:
      return false;
  }
}

// Which pages of such a VMA the image needs, by their pagemap entry.
bool PageNeeded(VmaKind kind, bool shared, uint64_t pagemap) {
  if (!MayHoldPages(kind, shared)) return false;
  if (kind != VmaKind::kFile) return pagemap & (sys::kPagemapPresent | sys::kPagemapSwapped);
  // A private file page differs from the file once it was copied on
  // write: then it is anonymous (present without the file bit) or swapped.
  return (pagemap & sys::kPagemapSwapped) ||
         ((pagemap & sys::kPagemapPresent) && !(pagemap & sys::kPagemapFileOrShared));
}

absl::Status WritePages(Context* ctx, Tracee* tracee, const std::vector<VmaInfo>& vmas,
                        ObjectRef mm) {
  const uint64_t page = ctx->writer()->info().page_size;
  std::string path = absl::StrCat("/proc/", tracee->tid(), "/pagemap");
  int pagemap = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (pagemap < 0) return Errno("open %s", path);
  PageArray pages(ctx, mm);
  std::vector<uint64_t> entries;
  absl::Status st;
  for (const VmaInfo& v : vmas) {
    // Only VMAs that can hold pages the image needs are looked at; the
    // special mappings ([vsyscall] lies outside the address space that
    // pagemap covers) and shared file mappings never do.
    if (!MayHoldPages(v.kind, v.map.shared)) continue;
    const uint64_t total = (v.map.end - v.map.start) / page;
    for (uint64_t first = 0; first < total && st.ok();) {
      const uint64_t count = std::min<uint64_t>(total - first, 65536);
      entries.resize(count);
      const uint64_t base = v.map.start + first * page;
      ssize_t n = pread(pagemap, entries.data(), count * 8, static_cast<off_t>(base / page * 8));
      if (n < 0) {
        st = Errno("read of %s at 0x%x", path, base);
        break;
      }
      if (n != static_cast<ssize_t>(count * 8)) {
        st = absl::InternalError(absl::StrFormat("read of %s at 0x%x: %d of %d bytes", path, base,
                                                 n, count * 8));
        break;
      }
      for (uint64_t i = 0; i < count && st.ok();) {
        if (!PageNeeded(v.kind, v.map.shared, entries[i])) {
          ++i;
          continue;
        }
        uint64_t j = i;
        while (j < count && PageNeeded(v.kind, v.map.shared, entries[j])) ++j;
        // Pages [i, j) are needed: read them straight into the batch.
        for (uint64_t k = i; k < j && st.ok();) {
          absl::StatusOr<absl::Span<uint8_t>> buf = pages.Reserve(base + k * page, j - k);
          if (!buf.ok()) {
            st = buf.status();
            break;
          }
          st = tracee->ReadMemory(base + k * page, buf->data(), buf->size());
          if (st.ok()) st = pages.Commit(buf->size() / page);
          k += buf->size() / page;
        }
        i = j;
      }
      first += count;
    }
    if (!st.ok()) break;
  }
  close(pagemap);
  CRLIB_RETURN_IF_ERROR(st);
  return pages.Flush();
}

}  // namespace

absl::Status WriteMemoryMap(Context* ctx, Tracee* tracee, const std::vector<VmaInfo>& vmas,
                            uint64_t brk, ObjectRef process) {
  const pid_t pid = tracee->tid();
  ImageWriter* w = ctx->writer();
  CRLIB_ASSIGN_OR_RETURN(std::vector<std::string> stat_fields, sys::ReadStatFields(pid));
  // proc(5) field N is stat[N - 3].
  auto field = [&](int n) -> uint64_t {
    uint64_t v = 0;
    if (n - 3 < static_cast<int>(stat_fields.size())) (void)absl::SimpleAtoi(stat_fields[n - 3], &v);
    return v;
  };
  MemoryMapRecord mm;
  mm.start_code = field(26);
  mm.end_code = field(27);
  mm.start_stack = field(28);
  mm.start_data = field(45);
  mm.end_data = field(46);
  mm.start_brk = field(47);
  mm.arg_start = field(48);
  mm.arg_end = field(49);
  mm.env_start = field(50);
  mm.env_end = field(51);
  mm.brk = brk;
  CRLIB_ASSIGN_OR_RETURN(std::string auxv, sys::ReadFile(absl::StrCat("/proc/", pid, "/auxv")));
  mm.auxv.resize(auxv.size() / 8);
  memcpy(mm.auxv.data(), auxv.data(), mm.auxv.size() * 8);
  CRLIB_ASSIGN_OR_RETURN(mm.exe_path, sys::ReadLink(absl::StrCat("/proc/", pid, "/exe")));
  ObjectRef mm_ref = ctx->registry().NewRef();
  // The executable's record comes first so the memory map can name it; it
  // is parented to the process, like the map itself.
  struct stat exe_st{};
  if (stat(absl::StrCat("/proc/", pid, "/exe").c_str(), &exe_st) != 0) {
    return Errno("stat /proc/%d/exe", pid);
  }
  CRLIB_ASSIGN_OR_RETURN(mm.exe_file,
                         InternMappedFile(ctx, mm.exe_path, exe_st.st_dev, exe_st.st_ino, process));
  CRLIB_RETURN_IF_ERROR(w->Write(mm, mm_ref, process));

  for (const VmaInfo& v : vmas) {
    VmaRecord rec;
    rec.start = v.map.start;
    rec.end = v.map.end;
    rec.pgoff = v.map.offset;
    rec.prot = (v.map.read ? PROT_READ : 0) | (v.map.write ? PROT_WRITE : 0) |
               (v.map.exec ? PROT_EXEC : 0);
    rec.flags = v.map.shared ? MAP_SHARED : MAP_PRIVATE;
    if (v.kind == VmaKind::kStack) rec.flags |= MAP_GROWSDOWN;
    rec.kind = static_cast<uint32_t>(v.kind);
    rec.name = v.map.path;
    if (v.kind == VmaKind::kFile) {
      rec.dev = makedev(v.map.dev_major, v.map.dev_minor);
      rec.inode = v.map.inode;
      CRLIB_ASSIGN_OR_RETURN(rec.file, InternMappedFile(ctx, v.map.path, rec.dev, rec.inode, mm_ref));
    }
    CRLIB_RETURN_IF_ERROR(w->Write(rec, ctx->registry().NewRef(), mm_ref));
  }
  return WritePages(ctx, tracee, vmas, mm_ref);
}

}  // namespace crlib
