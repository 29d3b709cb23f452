// The records of a process's memory: its map, VMAs, pages, carried
// inodes and what a live or incremental dump adds. Part of core/records.h,
// which includes it; docs/FORMAT.md has one table per type.
#ifndef CRLIB_CORE_MEMORY_RECORDS_H_
#define CRLIB_CORE_MEMORY_RECORDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/codec.h"
#include "core/record_types.h"

namespace crlib {

// Parent: the process. The values PR_SET_MM_MAP takes.
struct MemoryMapRecord {
  static constexpr RecordType kType = RecordType::kMemoryMap;
  static constexpr const char* kName = "memory_map";
  uint64_t start_code = 0, end_code = 0, start_data = 0, end_data = 0;
  uint64_t start_brk = 0, brk = 0, start_stack = 0;
  uint64_t arg_start = 0, arg_end = 0, env_start = 0, env_end = 0;
  ObjectRef exe_file = 0;
  std::vector<uint64_t> auxv;  // (type, value) pairs
  std::string exe_path;
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("start_code", s.start_code); v("end_code", s.end_code);
    v("start_data", s.start_data); v("end_data", s.end_data);
    v("start_brk", s.start_brk); v("brk", s.brk);
    v("start_stack", s.start_stack);
    v("arg_start", s.arg_start); v("arg_end", s.arg_end);
    v("env_start", s.env_start); v("env_end", s.env_end);
    v("exe_file", s.exe_file);
    v("auxv", s.auxv);
    v("exe_path", s.exe_path);
  }
};

enum class VmaKind : uint32_t {
  kAnonymous = 0,
  kFile = 1,
  kHeap = 2,
  kStack = 3,
  kVdso = 4,
  kVvar = 5,
  kVvarVclock = 6,
  kVsyscall = 7,
  kSharedAnonymous = 8,  // MAP_SHARED|MAP_ANONYMOUS or a shared /dev/zero: maps `object`
  kSysvShm = 9,           // a shmat attachment of the SysV segment `object`
  kCarriedFile = 10,      // a memfd or a deleted file, shared or private: maps `object`
};

// VmaRecord::vm_flags: the VMA properties beyond protection and sharing
// that change what the process sees, from smaps' VmFlags. Our own stable
// values, not the kernel's VM_* bits (those are internal and move).
enum VmaFlag : uint32_t {
  kVmaNoReserve = 1 << 0,    // nr: MAP_NORESERVE, no commit accounting
  kVmaDontFork = 1 << 1,     // dc: MADV_DONTFORK
  kVmaWipeOnFork = 1 << 2,   // wf: MADV_WIPEONFORK
  kVmaDontDump = 1 << 3,     // dd: MADV_DONTDUMP
  kVmaHugePage = 1 << 4,     // hg: MADV_HUGEPAGE
  kVmaNoHugePage = 1 << 5,   // nh: MADV_NOHUGEPAGE
  kVmaMergeable = 1 << 6,    // mg: MADV_MERGEABLE (KSM)
  kVmaLocked = 1 << 7,       // lo: mlock
  kVmaLockOnFault = 1 << 8,  // lf: mlock2(MLOCK_ONFAULT)
  // Not a kernel flag: a private VMA (anonymous or of a file) the process
  // shares copy-on-write with its parent (same range and file, same pages
  // where both have them). Restore keeps the copy the child gets when its restored
  // parent forks it; the image holds only the pages that differ (zero
  // pages too), and PageDropsRecord the pages the child does not have.
  kVmaInherited = 1 << 9,
  // Not a kernel flag: an incremental image (ChainRecord with a parent)
  // holds only the pages of this VMA written since its parent image was
  // taken; every other page is the parent's (its own image, or further up
  // the chain where that one has the flag too).
  kVmaFromParent = 1 << 10,
};

// Parent: the memory map.
struct VmaRecord {
  static constexpr RecordType kType = RecordType::kVma;
  static constexpr const char* kName = "vma";
  uint64_t start = 0, end = 0;
  uint64_t pgoff = 0;  // file offset in bytes
  uint32_t prot = 0;   // PROT_*
  uint32_t flags = 0;  // MAP_SHARED / MAP_PRIVATE / MAP_GROWSDOWN ...
  uint32_t kind = 0;   // VmaKind
  ObjectRef file = 0;  // the kFile it maps, for file mappings
  uint64_t dev = 0, inode = 0;
  std::string name;  // path or [heap], [stack], [vdso] ...
  uint32_t vm_flags = 0;  // VmaFlag bits
  ObjectRef object = 0;   // the kInode it maps (kinds 8-10), or 0
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("start", s.start); v("end", s.end); v("pgoff", s.pgoff);
    v("prot", s.prot); v("flags", s.flags); v("kind", s.kind);
    v("file", s.file); v("dev", s.dev); v("inode", s.inode);
    v("name", s.name); v("vm_flags", s.vm_flags);
    v("object", s.object);
  }
};

enum class PageEncoding : uint32_t { kRaw = 0, kZstd = 1 };

struct PageRun {
  uint64_t address = 0;
  uint64_t pages = 0;
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("address", s.address); v("pages", s.pages); }
};

enum class InodeKind : uint32_t {
  kSharedAnonymous = 0,  // the shmem inode of MAP_SHARED|MAP_ANONYMOUS or /dev/zero
  kMemfd = 1,
  kDeletedFile = 2,  // a regular file with no name left
  kSysvShm = 3,      // a SysV shared memory segment
};

// InodeRecord::sysv_flags.
inline constexpr uint32_t kSysvRemoved = 1u << 0;  // IPC_RMID while attached

// A byte range of an inode's contents.
struct DataRun {
  uint64_t offset = 0;
  uint64_t length = 0;
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("offset", s.offset); v("length", s.length); }
};

// An inode whose contents the image carries, restored as one inode that
// every fd (FileRecord::object) and mapping (VmaRecord::object) naming it
// shares. Processes share it by naming the same ref. Parent: the file
// table or memory map that first referred to it. Bulk: the bytes of
// `runs`, in order; everything else up to `size` is a hole.
struct InodeRecord {
  static constexpr RecordType kType = RecordType::kInode;
  static constexpr const char* kName = "inode";
  uint32_t kind = 0;  // InodeKind
  uint32_t mode = 0;  // st_mode
  uint32_t uid = 0, gid = 0;
  uint64_t size = 0;
  uint64_t dev = 0, inode = 0;  // identity at checkpoint
  int64_t atime_ns = 0, mtime_ns = 0;
  uint32_t seals = 0;  // memfd: F_GET_SEALS
  std::string name;    // memfd name ("memfd:" left out), deleted file's path, "/SYSV<key>" ...
  std::vector<DataRun> runs;
  int32_t sysv_key = 0;  // SysV: the segment's key, id and kSysv* flags
  uint32_t sysv_id = 0;
  uint32_t sysv_flags = 0;
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("kind", s.kind); v("mode", s.mode); v("uid", s.uid); v("gid", s.gid);
    v("size", s.size); v("dev", s.dev); v("inode", s.inode);
    v("atime_ns", s.atime_ns); v("mtime_ns", s.mtime_ns);
    v("seals", s.seals); v("name", s.name); v("runs", s.runs);
    v("sysv_key", s.sysv_key); v("sysv_id", s.sysv_id); v("sysv_flags", s.sysv_flags);
  }
};

// Parent: the memory map. Bulk: the pages of `runs`, in order, either raw
// (page_count * page_size bytes) or as one zstd frame that decodes to them.
struct PagesRecord {
  static constexpr RecordType kType = RecordType::kPages;
  static constexpr const char* kName = "pages";
  uint32_t encoding = 0;  // PageEncoding
  uint64_t page_count = 0;
  std::vector<PageRun> runs;
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("encoding", s.encoding); v("page_count", s.page_count); v("runs", s.runs);
  }
};

// Parent: the memory map; at most one, before the pages. The guard
// regions (MADV_GUARD_INSTALL) of its VMAs: never read, installed again
// once the pages are written.
struct GuardRegionsRecord {
  static constexpr RecordType kType = RecordType::kGuardRegions;
  static constexpr const char* kName = "guard_regions";
  std::vector<PageRun> runs;  // in address order
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("runs", s.runs); }
};

// Parent: the memory map; at most one, before the pages. Pages of
// kVmaInherited VMAs that the parent has and the child does not: dropped
// (MADV_DONTNEED) from the copy the child inherits.
struct PageDropsRecord {
  static constexpr RecordType kType = RecordType::kPageDrops;
  static constexpr const char* kName = "page_drops";
  std::vector<PageRun> runs;  // in address order
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("runs", s.runs); }
};

// Parent: the memory map; at most one, before the pages. Runs of this
// process's page records that restore skips: a live dump copied them
// while the process ran, and the process unmapped them (or mapped
// something else there) before the stop.
struct StalePagesRecord {
  static constexpr RecordType kType = RecordType::kStalePages;
  static constexpr const char* kName = "stale_pages";
  std::vector<PageRun> runs;  // in address order
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("runs", s.runs); }
};

// Parent: the memory map; at most one. Written by dumps that keep
// tracking the process's writes (`crlib dump --track`, or a round with
// `--parent`): the image's identity, and the way to its parent image.
struct ChainRecord {
  static constexpr RecordType kType = RecordType::kChain;
  static constexpr const char* kName = "chain";
  uint64_t id_high = 0, id_low = 0;  // random, this image's identity
  uint64_t start_time = 0;  // the process's, proc(5) stat field 22
  int32_t tracking_fd = -1;  // the process's descriptor that keeps the tracking
  std::string parent_path;  // absolute; empty: no parent, every page is here
  uint64_t parent_id_high = 0, parent_id_low = 0;
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("id_high", s.id_high); v("id_low", s.id_low); v("start_time", s.start_time);
    v("tracking_fd", s.tracking_fd); v("parent_path", s.parent_path);
    v("parent_id_high", s.parent_id_high); v("parent_id_low", s.parent_id_low);
  }
};

}  // namespace crlib

#endif  // CRLIB_CORE_MEMORY_RECORDS_H_
