// A checkpointed process as restore needs it: every record of the image
// except page contents, decoded and cross-checked before anything is
// created. Pages stay in the image and are streamed in a second pass.
#ifndef CRLIB_IMAGE_PROCESS_IMAGE_H_
#define CRLIB_IMAGE_PROCESS_IMAGE_H_

#include <map>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "core/image_reader.h"
#include "core/records.h"
#include "image/staged_inode.h"
#include "sys/credentials.h"

namespace crlib {

struct FileImage {
  ObjectRef ref = 0;
  FileRecord record;
  Bytes contents;  // deleted files
};

struct PipeImage {
  ObjectRef ref = 0;
  PipeRecord record;
  Bytes buffered;
};

struct SocketImage {
  ObjectRef ref = 0;
  SocketRecord record;
  Bytes data;  // the queued messages' bytes, one after the other (record.queue)
  std::optional<TcpConnectionRecord> tcp;  // an established TCP connection
  Bytes send_queue;  // its send queue
};

// Event objects (core/event_records.h), by the ref of the file record
// each describes.
struct EventObjects {
  std::map<ObjectRef, EventfdRecord> eventfds;
  std::map<ObjectRef, TimerfdRecord> timerfds;
  std::map<ObjectRef, SignalfdRecord> signalfds;
  std::map<ObjectRef, InotifyRecord> inotifies;
  std::map<ObjectRef, EpollRecord> epolls;
};

struct ThreadImage {
  ObjectRef ref = 0;
  ThreadRecord record;
  std::vector<Record> cpu;  // CPU-range records, for the ArchBackend
  std::optional<PendingSignalsRecord> pending;
  std::optional<ThreadAttributesRecord> attributes;  // absent in older images
  std::optional<ScheduleRecord> schedule;
};

struct ProcessImage {
  ImageInfo info;
  ObjectRef ref = 0;
  ProcessRecord process;
  std::vector<ThreadImage> threads;  // the main thread first
  SignalHandlersRecord handlers;
  std::optional<PendingSignalsRecord> shared_pending;
  RlimitsRecord rlimits;
  ItimersRecord itimers;
  // Absent in older images: restore then leaves these attributes as the
  // restorer's child has them.
  std::optional<ProcessAttributesRecord> attributes;
  PosixTimersRecord posix_timers;
  std::optional<SeccompRecord> seccomp;
  ObjectRef mm_ref = 0;
  ObjectRef file_table = 0;
  MemoryMapRecord mm;
  std::vector<VmaRecord> vmas;
  std::vector<PageRun> guards;  // guard regions, in address order, inside `vmas`
  // Pages of kVmaInherited VMAs the parent has and this process lacks.
  std::vector<PageRun> page_drops;
  // Pages of the page records to skip: copied by a live dump from memory
  // the process unmapped before the stop (stale_pages record).
  std::vector<PageRun> stale_pages;
  // Identity and parent of an image of a tracked process (`dump --track`
  // or `--parent`); absent otherwise.
  std::optional<ChainRecord> chain;
  // The objects of the whole tree (any process may name them): the same
  // in every process of a TreeImage.
  std::map<ObjectRef, FileImage> files;
  std::map<ObjectRef, PipeImage> pipes;
  std::map<ObjectRef, InodeImage> inodes;  // contents staged while reading
  std::map<ObjectRef, TtyRecord> ttys;  // pty pairs, by ref
  std::map<ObjectRef, SocketImage> sockets;
  EventObjects events;
  // The epolls (file refs) whose record this process's file table holds:
  // it fills them at restore, at its own fds.
  std::vector<ObjectRef> epolls_to_fill;
  std::vector<FdRecord> fds;
  std::vector<FileLockRecord> locks;  // in image order
  // Identity of the cwd and root, and the file records of those a path
  // cannot restore; absent from older images.
  std::optional<ProcessDirsRecord> dirs;
  // The file record of a removed cwd, or 0.
  ObjectRef RemovedCwd() const { return dirs ? dirs->cwd : 0; }
  // Whether the page records were checked to the end record already (an
  // image file), and how many there are; a stream's are read only once.
  bool pages_checked = false;
  uint64_t page_records = 0;
  uint64_t page_count = 0;  // pages in them (when checked)
};

// A checkpointed process tree: every process, parents before children
// (the order restore creates them in and their pages come in).
struct TreeImage {
  std::vector<ProcessImage> processes;  // [0] is the root
  bool pages_checked = false;
  uint64_t page_count = 0;  // all processes' pages (when checked)
  const ProcessImage& root() const { return processes.front(); }
};

// The credentials process record `p` claims, as the kernel takes them.
sys::Credentials ImageCredentials(const ProcessRecord& p);

// Whether process `p`'s credentials could own a file of `uid`:`gid`
// (one of its uids and gids or groups, or CAP_CHOWN): a restore must not
// hand out inodes owned by someone the image could not have made owner
// (a set-user-ID memfd of root's, say).
bool ImageMayOwn(const ProcessRecord& p, uint32_t uid, uint32_t gid);

// Reads the records of `reader` up to the page data, which comes last,
// and checks that they form a restorable tree of processes (each
// process's records follow its process record; its parent comes before
// it; the page records of each process follow those of the one before). Next() on `reader`
// then returns the first page record (or nullptr if there is none). From
// an image file the page records are checked to the end record first
// (their data when they are loaded); a stream is read once. The contents
// of inode records are staged on the way, in memfds and shmem inodes of
// this process (InodeImage::staged), never in our heap; they go with the
// last copy of the returned image.
absl::StatusOr<TreeImage> LoadTreeImage(ImageReader* reader);

}  // namespace crlib

#endif  // CRLIB_IMAGE_PROCESS_IMAGE_H_
