// Checkpoint of a process's address space: its VMAs, the fields
// PR_SET_MM_MAP restores, and the pages that differ from what restore can
// rebuild without them (zero pages and file pages never stored).
#ifndef CRLIB_MM_MEMORY_CAPTURE_H_
#define CRLIB_MM_MEMORY_CAPTURE_H_

#include <sys/types.h>

#include <optional>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "absl/strings/string_view.h"
#include "core/context.h"
#include "core/records.h"
#include "core/shared_objects.h"
#include "mm/page_array.h"
#include "sys/kernel.h"
#include "sys/proc.h"
#include "sys/unique_fd.h"
#include "remote/tracee.h"

namespace crlib {

struct VmaInfo {
  sys::MapsEntry map;
  VmaKind kind = VmaKind::kAnonymous;
  uint32_t vm_flags = 0;  // VmaFlag bits
  InodeKind inode_kind = InodeKind::kDeletedFile;  // kinds 8-10: the inode it maps
  // Registered with a userfaultfd (smaps "um", "uw", "ui"): a live dump's
  // own tracking (DirtyTracker), or the process's or another's, which
  // crlib does not carry.
  bool userfaultfd = false;
  // Anonymous memory a mapped restore gave the process, still a private
  // mapping of that image file: recorded as anonymous, and every page of
  // it stored, present or not (mm/mapped_restore.h).
  bool from_image = false;
};

// Whether a VMA can hold pages restore cannot rebuild without the image:
// not the special mappings, and not shared file mappings, whose data
// lives in the file.
bool MayHoldPages(VmaKind kind, bool shared);

using PageRangeFn = absl::FunctionRef<absl::Status(uint64_t start, uint64_t end)>;

// Copies ranges of a process's memory into a PageArray through
// /proc/PID/mem, which needs no ptrace stop: a live dump reads the
// process while it runs.
class PageCopier {
 public:
  static absl::StatusOr<PageCopier> Open(pid_t pid, uint64_t page_size);

  // Calls `run` for each range of the pages of `v` an image needs, in
  // address order: present or swapped, and of a private file mapping only
  // those copied on write. PAGEMAP_SCAN skips unpopulated page tables.
  absl::Status ForEachNeeded(const VmaInfo& v, PageRangeFn run);

  // Adds pages [start, end) to `pages`, leaving out `guards` (guard
  // regions, sorted; reading one fails).
  absl::Status Copy(PageArray& pages, uint64_t start, uint64_t end,
                    absl::Span<const PageRun> guards);

  uint64_t page_size() const { return page_; }

 private:
  PageCopier() = default;
  absl::Status Read(uint64_t address, void* buffer, size_t size);
  absl::Status ReadRun(PageArray& pages, uint64_t start, uint64_t end);
  pid_t pid_ = 0;
  uint64_t page_ = 4096;
  std::string pagemap_path_;
  sys::UniqueFd pagemap_, mem_;
  std::vector<sys::PageRegion> regions_;
  bool scan_ = true;  // PAGEMAP_SCAN works (Linux 6.7)
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

// What a live dump (mm/live_copy.h) already wrote of a process's memory.
struct LiveMemory {
  ObjectRef mm_ref = 0;        // the memory map its pages name
  std::vector<PageRun> stale;  // copied, then unmapped before the stop
  // An incremental dump: VMAs (exact ranges, sorted) whose other pages
  // are the parent image's (kVmaFromParent), and the chain record.
  std::vector<std::pair<uint64_t, uint64_t>> from_parent;
  std::optional<ChainRecord> chain;
};

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
// the pages that differ go into the image. With `live`, the map is the
// one whose pages a live dump wrote already.
absl::StatusOr<WrittenMemoryMap> WriteMemoryMap(Context* ctx, Tracee* tracee,
                                               const std::vector<VmaInfo>& vmas, uint64_t brk,
                                               ObjectRef process,
                                               const ParentMemory* parent = nullptr,
                                               const LiveMemory* live = nullptr);

// Adds the pages of `map` to `pages` (page data comes last in an image:
// every process's records first, then every process's pages, in that
// order); the caller flushes `pages` after the last process.
absl::Status WriteMemoryPages(Context* ctx, Tracee* tracee, const std::vector<VmaInfo>& vmas,
                              const WrittenMemoryMap& map, PageArray* pages);

}  // namespace crlib

#endif  // CRLIB_MM_MEMORY_CAPTURE_H_
