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
#include "sys/proc.h"
#include "remote/tracee.h"

namespace crlib {

struct VmaInfo {
  sys::MapsEntry map;
  VmaKind kind = VmaKind::kAnonymous;
  uint32_t vm_flags = 0;  // VmaFlag bits
  InodeKind inode_kind = InodeKind::kDeletedFile;  // kinds 8-10: the inode it maps
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

// What WriteMemoryMap wrote that the pages need.
struct WrittenMemoryMap {
  ObjectRef mm_ref = 0;
  std::vector<PageRun> guards;  // guard regions, never read
};

// Writes the memory map record, the VMAs and the guard regions of stopped
// `tracee` under `process`, naming mapped files and carried inodes
// through ctx->objects(). `brk` is the current program break.
absl::StatusOr<WrittenMemoryMap> WriteMemoryMap(Context* ctx, Tracee* tracee,
                                               const std::vector<VmaInfo>& vmas, uint64_t brk,
                                               ObjectRef process);

// Writes the pages of `map` (page data comes last in an image: every
// process's records first, then every process's pages, in that order).
absl::Status WriteMemoryPages(Context* ctx, Tracee* tracee, const std::vector<VmaInfo>& vmas,
                              const WrittenMemoryMap& map);

}  // namespace crlib

#endif  // CRLIB_MM_MEMORY_CAPTURE_H_
