// Checkpoint of a process's address space: its VMAs, the fields
// PR_SET_MM_MAP restores, and the pages that differ from what restore can
// rebuild without them (zero pages and file pages never stored).
#ifndef CRLIB_MM_MEMORY_CAPTURE_H_
#define CRLIB_MM_MEMORY_CAPTURE_H_

#include <sys/types.h>

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/context.h"
#include "core/records.h"
#include "core/shared_objects.h"
#include "mm/page_array.h"
#include "sys/proc.h"
#include "remote/tracee.h"

namespace crlib {

struct VmaInfo {
  sys::MapsEntry map;
  VmaKind kind = VmaKind::kAnonymous;
  uint32_t vm_flags = 0;  // VmaFlag bits
  InodeKind inode_kind = InodeKind::kDeletedFile;  // kinds 8-10: the inode it maps
  // Anonymous memory a mapped restore gave the process, still a private
  // mapping of that image file: recorded as anonymous, and every page of
  // it stored, present or not (mm/mapped_restore.h).
  bool from_image = false;
};

// The VmaFlag bits of smaps' "VmFlags:" codes; codes crlib does not
// restore (rd, wr, ac, sd ...) are ignored.
uint32_t VmaFlagsFromSmaps(absl::string_view codes);

// Reads (from /proc/PID/smaps, once) and classifies the VMAs of `pid`; fails with Unimplemented naming
// the first mapping crlib cannot restore.
absl::StatusOr<std::vector<VmaInfo>> ScanVmas(pid_t pid);

// The inode a shared anonymous, SysV, memfd or deleted-file mapping of
// stopped `pid` maps, for its InodeRecord; nullopt for other kinds.
std::optional<CarriedInodeSource> CarriedInodeOfVma(pid_t pid, const VmaInfo& v);

// Names the special mappings ([vdso], [vvar] ...) or returns nullopt.
std::optional<VmaKind> SpecialMappingKind(const std::string& name);

// The parent of a process being dumped, whose private anonymous memory
// the process may still share copy-on-write.
struct ParentMemory {
  pid_t pid = 0;
  const std::vector<VmaInfo>* vmas = nullptr;
};

// Whether VMA `v` may be one the process inherited from `parent` at fork:
// private anonymous, the same range, kind and protection there, and
// neither side MADV_DONTFORK or MADV_WIPEONFORK.
bool InheritableFromParent(const VmaInfo& v, const ParentMemory& parent);

// What WriteMemoryMap wrote that the pages need.
struct WrittenMemoryMap {
  ObjectRef mm_ref = 0;
  std::vector<PageRun> guards;  // guard regions, never read
  // Per VMA (empty: none): shared with the parent (kVmaInherited), and
  // then the pages the process has for itself, to store.
  std::vector<bool> inherited;
  std::vector<std::vector<PageRun>> own_pages;
  std::vector<PageRun> drops;  // the parent's pages it lacks (PageDropsRecord)
};

// Writes the memory map record, the VMAs and the guard regions of stopped
// `tracee` under `process`, naming mapped files and carried inodes
// through ctx->objects(). `brk` is the current program break. With
// `parent` (stopped too, and dumped before it), private anonymous memory
// still shared copy-on-write with it is marked kVmaInherited and only
// the pages that differ go into the image.
absl::StatusOr<WrittenMemoryMap> WriteMemoryMap(Context* ctx, Tracee* tracee,
                                               const std::vector<VmaInfo>& vmas, uint64_t brk,
                                               ObjectRef process,
                                               const ParentMemory* parent = nullptr);

// Adds the pages of `map` to `pages` (page data comes last in an image:
// every process's records first, then every process's pages, in that
// order); the caller flushes `pages` after the last process.
absl::Status WriteMemoryPages(Context* ctx, Tracee* tracee, const std::vector<VmaInfo>& vmas,
                              const WrittenMemoryMap& map, PageArray* pages);

}  // namespace crlib

#endif  // CRLIB_MM_MEMORY_CAPTURE_H_
