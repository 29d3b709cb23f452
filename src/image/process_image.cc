#include "image/process_image.h"

#include <linux/capability.h>

#include <algorithm>
#include <set>

#include "absl/strings/str_format.h"
#include "core/status.h"

namespace crlib {
namespace {

absl::StatusOr<Bytes> ReadBulk(ImageReader* reader) {
  Bytes data;
  CRLIB_RETURN_IF_ERROR(reader->ReadBulkChunks(1 << 20, [&](absl::Span<const uint8_t> chunk) {
    data.insert(data.end(), chunk.begin(), chunk.end());
    return absl::OkStatus();
  }));
  return data;
}

// The page records close an image (docs/FORMAT.md). From a source that
// can seek they are checked to the end record now, before anything is
// created (page contents are verified when they are loaded), and the
// reader goes back to the first; from a stream they are read once, when
// loaded, and the reader keeps the first for that.
absl::Status CheckPageRecords(ImageReader* reader, const Record* first, TreeImage* tree) {
  // Each process's pages, in the order of the processes.
  size_t at = 0;
  auto owner = [&](const Record* rec) -> absl::StatusOr<ProcessImage*> {
    while (at < tree->processes.size() && tree->processes[at].mm_ref != rec->header.parent) ++at;
    if (at == tree->processes.size()) {
      return absl::DataLossError(absl::StrFormat(
          "record %d at offset %d: pages outside any memory map, or out of process order",
          rec->index, rec->offset));
    }
    return &tree->processes[at];
  };
  CRLIB_RETURN_IF_ERROR(owner(first).status());
  tree->pages_checked = reader->source()->CanSeek();
  for (ProcessImage& p : tree->processes) p.pages_checked = tree->pages_checked;
  if (!tree->pages_checked) return reader->Unread();
  const ImageReader::Bookmark start = reader->BeforeCurrent();
  for (const Record* rec = first; rec != nullptr;) {
    if (rec->type() != RecordType::kPages) {
      return absl::DataLossError(absl::StrFormat(
          "record %d at offset %d (%s) follows the page data, which must come last", rec->index,
          rec->offset, RecordTypeName(rec->header.type)));
    }
    CRLIB_ASSIGN_OR_RETURN(ProcessImage * image, owner(rec));
    ++image->page_records;
    CRLIB_ASSIGN_OR_RETURN(PagesRecord pages, reader->Decode<PagesRecord>(*rec));
    image->page_count += pages.page_count;
    tree->page_count += pages.page_count;
    CRLIB_ASSIGN_OR_RETURN(rec, reader->Next());
  }
  return reader->Rewind(start);
}

// An event object's record into `events`, keyed by its file; an epoll's
// also into the list of those `image` fills. One record per file.
absl::Status LoadEventRecord(ImageReader* reader, const Record& rec, EventObjects* events,
                             ProcessImage* image) {
  auto put = [&](auto* records, auto record) -> absl::Status {
    const ObjectRef file = record.file;
    if (!records->emplace(file, std::move(record)).second) {
      return absl::DataLossError(absl::StrFormat("record %d: a second %s record for file %d",
                                                 rec.index, RecordTypeName(rec.header.type), file));
    }
    return absl::OkStatus();
  };
  auto load = [&](auto* records) -> absl::Status {
    using R = typename std::remove_pointer_t<decltype(records)>::mapped_type;
    CRLIB_ASSIGN_OR_RETURN(R r, reader->Decode<R>(rec));
    return put(records, std::move(r));
  };
  switch (rec.type()) {
    case RecordType::kEventfd:
      return load(&events->eventfds);
    case RecordType::kTimerfd:
      return load(&events->timerfds);
    case RecordType::kSignalfd:
      return load(&events->signalfds);
    case RecordType::kInotify:
      return load(&events->inotifies);
    case RecordType::kEpoll: {
      CRLIB_ASSIGN_OR_RETURN(EpollRecord r, reader->Decode<EpollRecord>(rec));
      image->epolls_to_fill.push_back(r.file);
      return put(&events->epolls, std::move(r));
    }
    default:
      return absl::InternalError("not an event record");
  }
}

}  // namespace

bool ImageMayOwn(const ProcessRecord& p, uint32_t uid, uint32_t gid) {
  if (p.cap_effective & (uint64_t{1} << CAP_CHOWN)) return true;
  const bool uid_ok = uid == p.uid || uid == p.euid || uid == p.suid || uid == p.fsuid;
  const bool gid_ok = gid == p.gid || gid == p.egid || gid == p.sgid || gid == p.fsgid ||
                      std::find(p.groups.begin(), p.groups.end(), gid) != p.groups.end();
  return uid_ok && gid_ok;
}

sys::Credentials ImageCredentials(const ProcessRecord& p) {
  return {.uid = p.uid, .euid = p.euid, .suid = p.suid, .fsuid = p.fsuid,
          .gid = p.gid, .egid = p.egid, .sgid = p.sgid, .fsgid = p.fsgid,
          .groups = p.groups,
          .cap_inheritable = p.cap_inheritable, .cap_permitted = p.cap_permitted,
          .cap_effective = p.cap_effective, .cap_bounding = p.cap_bounding,
          .cap_ambient = p.cap_ambient, .securebits = p.securebits};
}

namespace {

// The objects several processes may refer to, loaded once for the tree.
struct SharedObjectImages {
  std::map<ObjectRef, FileImage> files;
  std::map<ObjectRef, PipeImage> pipes;
  std::map<ObjectRef, InodeImage> inodes;
  std::map<ObjectRef, TtyRecord> ttys;
  std::map<ObjectRef, SocketImage> sockets;
  EventObjects events;
};

// Every reference of `image` (with the tree's shared objects) resolves.
absl::Status CheckReferences(const ProcessImage& image);

// Each kVmaInherited VMA of `image` has its twin in the parent (the same
// range, kind and protection), which is what the restored parent's fork
// gives it; every page drop lies in such a VMA.
absl::Status CheckInheritedMemory(const ProcessImage& image, const TreeImage& tree) {
  const ProcessImage* parent = nullptr;
  for (const ProcessImage& p : tree.processes) {
    if (p.process.pid == image.process.ppid && &p != &image) parent = &p;
  }
  auto inherited_at = [&](uint64_t start, uint64_t end) {
    return std::any_of(image.vmas.begin(), image.vmas.end(), [&](const VmaRecord& v) {
      return (v.vm_flags & kVmaInherited) && v.start <= start && end <= v.end;
    });
  };
  for (const VmaRecord& v : image.vmas) {
    if (!(v.vm_flags & kVmaInherited)) continue;
    const bool twin = parent != nullptr && !(parent->process.flags & kProcessZombie) &&
                      std::any_of(parent->vmas.begin(), parent->vmas.end(), [&](const VmaRecord& p) {
                        return p.start == v.start && p.end == v.end && p.kind == v.kind &&
                               p.prot == v.prot && p.flags == v.flags && p.file == v.file &&
                               p.pgoff == v.pgoff &&
                               !(p.vm_flags & (kVmaDontFork | kVmaWipeOnFork));
                      });
    if (!twin) {
      return absl::DataLossError(absl::StrFormat(
          "VMA 0x%x-0x%x is inherited, but its parent has no such VMA", v.start, v.end));
    }
  }
  for (const PageRun& d : image.page_drops) {
    if (d.pages == 0 || !inherited_at(d.address, d.address + d.pages * image.info.page_size)) {
      return absl::DataLossError(absl::StrFormat(
          "page drop at 0x%x (%d pages) outside every inherited VMA", d.address, d.pages));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TreeImage> LoadTreeImage(ImageReader* reader) {
  TreeImage tree;
  SharedObjectImages shared;
  tree.processes.reserve(16);
  ProcessImage* current = nullptr;
  std::set<uint32_t> pids;
  for (;;) {
    CRLIB_ASSIGN_OR_RETURN(const Record* rec, reader->Next());
    if (rec == nullptr) break;
    if (rec->type() == RecordType::kPages) {
      if (std::none_of(tree.processes.begin(), tree.processes.end(),
                       [](const ProcessImage& p) { return p.mm_ref != 0; })) {
        return absl::DataLossError("page data before the memory map");
      }
      CRLIB_RETURN_IF_ERROR(CheckPageRecords(reader, rec, &tree));
      break;
    }
    // Room a live dump reserved for records and did not need.
    if (rec->type() == RecordType::kFiller) continue;
    if (rec->type() == RecordType::kProcess) {
      ProcessImage next;
      next.info = reader->info();
      next.ref = rec->header.self;
      CRLIB_ASSIGN_OR_RETURN(next.process, reader->Decode<ProcessRecord>(*rec));
      if (!next.ref || next.process.pid == 0 || !pids.insert(next.process.pid).second) {
        return absl::DataLossError(absl::StrFormat(
            "record %d: process %d has no ref, pid 0 or a pid seen before", rec->index,
            next.process.pid));
      }
      if (!tree.processes.empty()) {
        // Parents come before their children: the restore creates them so.
        const bool parent_seen = pids.contains(next.process.ppid) &&
                                 next.process.ppid != next.process.pid;
        if (!parent_seen) {
          return absl::DataLossError(absl::StrFormat(
              "record %d: pid %d's parent %d is not an earlier process of the image", rec->index,
              next.process.pid, next.process.ppid));
        }
      }
      tree.processes.push_back(std::move(next));
      current = &tree.processes.back();
      continue;
    }
    if (current == nullptr) {
      return absl::DataLossError(absl::StrFormat("record %d at offset %d (%s) before any process",
                                                 rec->index, rec->offset,
                                                 RecordTypeName(rec->header.type)));
    }
    ProcessImage& image = *current;
    ObjectRef& mm_ref = image.mm_ref;
    ObjectRef& file_table = image.file_table;
    auto thread_of = [&](ObjectRef ref) -> ThreadImage* {
    for (ThreadImage& t : image.threads) {
      if (t.ref == ref) return &t;
    }
    return nullptr;
  };
    const RecordHeader& h = rec->header;
    auto misplaced = [&](const char* what) {
      return absl::DataLossError(absl::StrFormat("record %d at offset %d: %s", rec->index,
                                                 rec->offset, what));
    };
    switch (rec->type()) {
      case RecordType::kProcess:  // above
      case RecordType::kFiller:   // above
        break;
      case RecordType::kThread: {
        if (h.parent != image.ref) return misplaced("thread outside its process");
        ThreadImage t;
        t.ref = h.self;
        CRLIB_ASSIGN_OR_RETURN(t.record, reader->Decode<ThreadRecord>(*rec));
        image.threads.push_back(std::move(t));
        break;
      }
      case RecordType::kX86Registers:
      case RecordType::kXstate:
      case RecordType::kXstateComponent: {
        ThreadImage* t = thread_of(h.parent);
        if (!t) return misplaced("CPU state outside a thread");
        t->cpu.push_back(*rec);
        break;
      }
      case RecordType::kSchedule: {
        ThreadImage* t = thread_of(h.parent);
        if (!t) return misplaced("scheduling outside a thread");
        if (t->schedule) return misplaced("second scheduling record of a thread");
        CRLIB_ASSIGN_OR_RETURN(t->schedule, reader->Decode<ScheduleRecord>(*rec));
        break;
      }
      case RecordType::kSignalHandlers: {
        CRLIB_ASSIGN_OR_RETURN(image.handlers, reader->Decode<SignalHandlersRecord>(*rec));
        break;
      }
      case RecordType::kPendingSignals: {
        CRLIB_ASSIGN_OR_RETURN(PendingSignalsRecord p, reader->Decode<PendingSignalsRecord>(*rec));
        if (h.parent == image.ref) {
          image.shared_pending = std::move(p);
        } else if (ThreadImage* t = thread_of(h.parent)) {
          t->pending = std::move(p);
        } else {
          return misplaced("pending signals outside a thread or process");
        }
        break;
      }
      case RecordType::kRlimits: {
        CRLIB_ASSIGN_OR_RETURN(image.rlimits, reader->Decode<RlimitsRecord>(*rec));
        break;
      }
      case RecordType::kItimers: {
        CRLIB_ASSIGN_OR_RETURN(image.itimers, reader->Decode<ItimersRecord>(*rec));
        break;
      }
      case RecordType::kProcessAttributes: {
        if (h.parent != image.ref) return misplaced("process attributes outside the process");
        CRLIB_ASSIGN_OR_RETURN(image.attributes, reader->Decode<ProcessAttributesRecord>(*rec));
        break;
      }
      case RecordType::kThreadAttributes: {
        ThreadImage* t = thread_of(h.parent);
        if (!t) return misplaced("thread attributes outside a thread");
        CRLIB_ASSIGN_OR_RETURN(t->attributes, reader->Decode<ThreadAttributesRecord>(*rec));
        break;
      }
      case RecordType::kPosixTimers: {
        if (h.parent != image.ref) return misplaced("POSIX timers outside the process");
        CRLIB_ASSIGN_OR_RETURN(image.posix_timers, reader->Decode<PosixTimersRecord>(*rec));
        break;
      }
      case RecordType::kSeccomp: {
        if (h.parent != image.ref) return misplaced("seccomp filters outside the process");
        CRLIB_ASSIGN_OR_RETURN(image.seccomp, reader->Decode<SeccompRecord>(*rec));
        break;
      }
      case RecordType::kMemoryMap: {
        if (mm_ref) return misplaced("second memory map");
        mm_ref = h.self;
        CRLIB_ASSIGN_OR_RETURN(image.mm, reader->Decode<MemoryMapRecord>(*rec));
        break;
      }
      case RecordType::kVma: {
        if (h.parent != mm_ref) return misplaced("VMA outside the memory map");
        CRLIB_ASSIGN_OR_RETURN(VmaRecord v, reader->Decode<VmaRecord>(*rec));
        if (v.start >= v.end || v.start % image.info.page_size || v.end % image.info.page_size ||
            (!image.vmas.empty() && v.start < image.vmas.back().end)) {
          return misplaced("VMA out of order or not page-aligned");
        }
        image.vmas.push_back(std::move(v));
        break;
      }
      case RecordType::kPages:  // the last section: CheckPageRecords
        break;
      case RecordType::kPageDrops: {
        if (h.parent != mm_ref || !image.page_drops.empty()) return misplaced("page drops outside the memory map");
        CRLIB_ASSIGN_OR_RETURN(PageDropsRecord d, reader->Decode<PageDropsRecord>(*rec));
        image.page_drops = std::move(d.runs);
        break;
      }
      case RecordType::kStalePages: {
        if (h.parent != mm_ref || !image.stale_pages.empty()) return misplaced("stale pages outside the memory map");
        CRLIB_ASSIGN_OR_RETURN(StalePagesRecord d, reader->Decode<StalePagesRecord>(*rec));
        image.stale_pages = std::move(d.runs);
        break;
      }
      case RecordType::kChain: {
        if (h.parent != mm_ref || image.chain) return misplaced("chain record outside the memory map");
        CRLIB_ASSIGN_OR_RETURN(image.chain, reader->Decode<ChainRecord>(*rec));
        if (!image.chain->parent_path.empty() && image.chain->parent_path[0] != '/') {
          return misplaced("chain record with a relative parent path");
        }
        break;
      }
      case RecordType::kGuardRegions: {
        if (h.parent != mm_ref || !image.guards.empty()) return misplaced("guard regions outside the memory map");
        CRLIB_ASSIGN_OR_RETURN(GuardRegionsRecord g, reader->Decode<GuardRegionsRecord>(*rec));
        image.guards = std::move(g.runs);
        break;
      }
      case RecordType::kFileTable:
        if (file_table) return misplaced("second file table");
        file_table = h.self;
        break;
      case RecordType::kFile: {
        FileImage f;
        f.ref = h.self;
        CRLIB_ASSIGN_OR_RETURN(f.record, reader->Decode<FileRecord>(*rec));
        if (h.bulk_length) {
          CRLIB_ASSIGN_OR_RETURN(f.contents, ReadBulk(reader));
        }
        shared.files[f.ref] = std::move(f);
        break;
      }
      case RecordType::kPipe: {
        PipeImage p;
        p.ref = h.self;
        CRLIB_ASSIGN_OR_RETURN(p.record, reader->Decode<PipeRecord>(*rec));
        if (h.bulk_length) {
          CRLIB_ASSIGN_OR_RETURN(p.buffered, ReadBulk(reader));
        }
        shared.pipes[p.ref] = std::move(p);
        break;
      }
      case RecordType::kInode: {
        CRLIB_ASSIGN_OR_RETURN(InodeImage inode, StageCarriedInode(reader, *rec));
        if (!inode.ref || shared.inodes.contains(inode.ref)) return misplaced("inode without a unique ref");
        shared.inodes[inode.ref] = std::move(inode);
        break;
      }
      case RecordType::kTty: {
        if (h.parent != file_table || !h.self) return misplaced("tty outside the file table");
        CRLIB_ASSIGN_OR_RETURN(shared.ttys[h.self], reader->Decode<TtyRecord>(*rec));
        break;
      }
      case RecordType::kSocket: {
        if (h.parent != file_table || !h.self || shared.sockets.contains(h.self)) {
          return misplaced("socket outside the file table or without a unique ref");
        }
        SocketImage socket;
        socket.ref = h.self;
        CRLIB_ASSIGN_OR_RETURN(socket.record, reader->Decode<SocketRecord>(*rec));
        if (h.bulk_length) {
          CRLIB_ASSIGN_OR_RETURN(socket.data, ReadBulk(reader));
        }
        // A dump's check of its own records has no bulk: nothing to match.
        const bool elided = rec->header.flags & kRecordBulkElided;
        uint64_t queued = 0;
        for (const SocketMessage& m : elided ? std::vector<SocketMessage>() : socket.record.queue) {
          if (m.length > socket.data.size() - queued) return misplaced("socket queue longer than its bulk");
          queued += m.length;
        }
        if (!elided && queued != socket.data.size()) return misplaced("socket bulk longer than its queue");
        shared.sockets[h.self] = std::move(socket);
        break;
      }
      case RecordType::kTcpConnection: {
        auto socket = shared.sockets.find(h.parent);
        if (socket == shared.sockets.end() || socket->second.tcp) {
          return misplaced("TCP connection outside a socket, or a second one");
        }
        SocketImage& s = socket->second;
        CRLIB_ASSIGN_OR_RETURN(s.tcp, reader->Decode<TcpConnectionRecord>(*rec));
        if (h.bulk_length) {
          CRLIB_ASSIGN_OR_RETURN(s.send_queue, ReadBulk(reader));
        }
        const bool elided = rec->header.flags & kRecordBulkElided;
        if (!elided && (s.send_queue.size() != s.tcp->send_length ||
                        s.tcp->unsent_length > s.tcp->send_length)) {
          return misplaced("TCP send queue of another length than its record says");
        }
        break;
      }
      case RecordType::kEventfd:
      case RecordType::kTimerfd:
      case RecordType::kSignalfd:
      case RecordType::kInotify:
      case RecordType::kEpoll:
        if (h.parent != file_table) return misplaced("event object outside the file table");
        CRLIB_RETURN_IF_ERROR(LoadEventRecord(reader, *rec, &shared.events, &image));
        break;
      case RecordType::kFd: {
        if (h.parent != file_table) return misplaced("fd outside the file table");
        CRLIB_ASSIGN_OR_RETURN(FdRecord fd, reader->Decode<FdRecord>(*rec));
        image.fds.push_back(fd);
        break;
      }
      case RecordType::kFileLock: {
        if (h.parent != file_table) return misplaced("file lock outside the file table");
        CRLIB_ASSIGN_OR_RETURN(FileLockRecord lock, reader->Decode<FileLockRecord>(*rec));
        image.locks.push_back(lock);
        break;
      }
      case RecordType::kProcessDirs: {
        if (h.parent != image.ref) return misplaced("process dirs outside the process");
        CRLIB_ASSIGN_OR_RETURN(ProcessDirsRecord dirs, reader->Decode<ProcessDirsRecord>(*rec));
        image.dirs = dirs;
        break;
      }
      case RecordType::kEnd:
        break;
    }
  }
  if (tree.processes.empty()) return absl::DataLossError("image holds no process");
  for (const ProcessImage& image : tree.processes) {
    CRLIB_RETURN_IF_ERROR(Annotate(CheckInheritedMemory(image, tree),
                                   absl::StrFormat("pid %d", image.process.pid)));
  }
  for (ProcessImage& image : tree.processes) {
    image.files = shared.files;
    image.pipes = shared.pipes;
    image.inodes = shared.inodes;
    image.ttys = shared.ttys;
    image.sockets = shared.sockets;
    image.events = shared.events;
    CRLIB_RETURN_IF_ERROR(Annotate(CheckReferences(image),
                                   absl::StrFormat("pid %d", image.process.pid)));
  }
  return tree;
}

namespace {

// Every event-object file has its record of its kind, and every record a
// file of that kind; an epoll's holder has each target at its fd.
absl::Status CheckEventReferences(const ProcessImage& image) {
  const EventObjects& ev = image.events;
  auto has_record = [&](FileKind kind, ObjectRef ref) {
    switch (kind) {
      case FileKind::kEventfd: return ev.eventfds.contains(ref);
      case FileKind::kTimerfd: return ev.timerfds.contains(ref);
      case FileKind::kSignalfd: return ev.signalfds.contains(ref);
      case FileKind::kInotify: return ev.inotifies.contains(ref);
      case FileKind::kEpoll: return ev.epolls.contains(ref);
      default: return false;
    }
  };
  size_t event_files = 0;
  for (const auto& [ref, f] : image.files) {
    const auto kind = static_cast<FileKind>(f.record.kind);
    if (kind < FileKind::kEventfd || kind > FileKind::kEpoll) continue;
    ++event_files;
    if (!has_record(kind, ref)) {
      return absl::DataLossError(absl::StrFormat("event file %d (kind %d) has no record", ref, f.record.kind));
    }
  }
  if (event_files != ev.eventfds.size() + ev.timerfds.size() + ev.signalfds.size() +
                         ev.inotifies.size() + ev.epolls.size()) {
    return absl::DataLossError("an event record names a file of another kind or none");
  }
  std::map<uint32_t, ObjectRef> fds;
  for (const FdRecord& fd : image.fds) fds[fd.fd] = fd.file;
  for (ObjectRef ref : image.epolls_to_fill) {
    if (std::none_of(image.fds.begin(), image.fds.end(),
                     [&](const FdRecord& fd) { return fd.file == ref; })) {
      return absl::DataLossError(absl::StrFormat("epoll %d is filled by pid %d, which holds no fd of it",
                                                 ref, image.process.pid));
    }
    for (const EpollEntry& e : ev.epolls.at(ref).entries) {
      auto fd = fds.find(e.fd);
      if (fd == fds.end() || fd->second != e.target) {
        return absl::DataLossError(absl::StrFormat(
            "epoll %d has an entry for fd %d of pid %d, which does not hold file %d there", ref,
            e.fd, image.process.pid, e.target));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CheckReferences(const ProcessImage& image) {
  if (image.process.flags & kProcessZombie) {
    if (!image.threads.empty() || image.mm_ref || image.file_table) {
      return absl::DataLossError("a zombie with threads, memory or files");
    }
    return absl::OkStatus();
  }
  if (image.threads.empty()) return absl::DataLossError("image holds no thread");
  if (image.threads.front().record.tid != image.process.pid) {
    return absl::DataLossError(
        absl::StrFormat("the first thread (%d) is not the main thread of pid %d",
                        image.threads.front().record.tid, image.process.pid));
  }
  std::set<uint32_t> tids;
  for (const ThreadImage& t : image.threads) {
    if (t.record.tid == 0 || !tids.insert(t.record.tid).second) {
      return absl::DataLossError(
          absl::StrFormat("thread id %d is 0 or appears twice", t.record.tid));
    }
  }
  if (!image.mm_ref) return absl::DataLossError("image holds no memory map");
  // Every reference must resolve before restore relies on it.
  for (const FdRecord& fd : image.fds) {
    if (!image.files.contains(fd.file)) {
      return absl::DataLossError(absl::StrFormat("fd %d names file %d, which the image lacks", fd.fd, fd.file));
    }
  }
  CRLIB_RETURN_IF_ERROR(CheckEventReferences(image));
  for (const auto& [ref, f] : image.files) {
    const auto kind = static_cast<FileKind>(f.record.kind);
    const bool needs_pipe =
        kind == FileKind::kPipe || kind == FileKind::kFifo || kind == FileKind::kDeletedFifo;
    if ((f.record.pipe || needs_pipe) && !image.pipes.contains(f.record.pipe)) {
      return absl::DataLossError(absl::StrFormat("file %d names pipe %d, which the image lacks", ref, f.record.pipe));
    }
    if ((kind == FileKind::kSocket) != (f.record.socket != 0) ||
        (f.record.socket && !image.sockets.contains(f.record.socket))) {
      return absl::DataLossError(absl::StrFormat(
          "file %d (kind %d) names socket %d, which the image lacks or the kind does not take",
          ref, f.record.kind, f.record.socket));
    }
    if (f.record.object && !image.inodes.contains(f.record.object)) {
      return absl::DataLossError(absl::StrFormat("file %d names inode %d, which the image lacks", ref, f.record.object));
    }
    if (static_cast<FileKind>(f.record.kind) == FileKind::kMemfd && !f.record.object) {
      return absl::DataLossError(absl::StrFormat("memfd file %d names no inode", ref));
    }
  }
  for (const FileLockRecord& lock : image.locks) {
    if (!image.files.contains(lock.file)) {
      return absl::DataLossError(absl::StrFormat("a file lock names file %d, which the image lacks", lock.file));
    }
  }
  for (ObjectRef dir : {image.RemovedCwd(), image.dirs ? image.dirs->root : 0}) {
    if (dir && !image.files.contains(dir)) {
      return absl::DataLossError(absl::StrFormat("cwd or root names file %d, which the image lacks", dir));
    }
  }
  for (const auto& [ref, f] : image.files) {
    const auto kind = static_cast<FileKind>(f.record.kind);
    const bool terminal =
        kind == FileKind::kPtyMaster || kind == FileKind::kPtySlave || kind == FileKind::kDevTty;
    if (terminal != (f.record.tty != 0) || (f.record.tty && !image.ttys.contains(f.record.tty))) {
      return absl::DataLossError(absl::StrFormat(
          "file %d (kind %d) names tty %d, which the image lacks or the kind does not take", ref,
          f.record.kind, f.record.tty));
    }
    if (kind == FileKind::kDevTty && !(image.ttys.at(f.record.tty).flags & kTtyControlling)) {
      return absl::DataLossError(absl::StrFormat(
          "file %d is /dev/tty, but its tty is not the controlling terminal", ref));
    }
  }
  for (const auto& [ref, tty] : image.ttys) {
    if ((tty.flags & kTtyControlling) && image.process.sid != image.process.pid) {
      return absl::DataLossError(absl::StrFormat(
          "tty %d is the controlling terminal, but pid %d does not lead its session", ref,
          image.process.pid));
    }
  }
  for (const VmaRecord& v : image.vmas) {
    if (v.file && !image.files.contains(v.file)) {
      return absl::DataLossError(absl::StrFormat("VMA 0x%x names file %d, which the image lacks", v.start, v.file));
    }
    const auto kind = static_cast<VmaKind>(v.kind);
    const bool carried = kind == VmaKind::kSharedAnonymous || kind == VmaKind::kSysvShm ||
                         kind == VmaKind::kCarriedFile;
    if (carried != (v.object != 0) || (v.object && !image.inodes.contains(v.object))) {
      return absl::DataLossError(absl::StrFormat("VMA 0x%x (kind %d) names inode %d, which the image lacks", v.start, v.kind, v.object));
    }
  }
  for (const SeccompFilter& f : image.seccomp ? image.seccomp->filters : std::vector<SeccompFilter>{}) {
    if (f.program.empty() || f.program.size() % 8 || f.program.size() > 4096 * 8) {
      return absl::DataLossError(absl::StrFormat(
          "seccomp filter of %d bytes: not a whole number of 8-byte instructions, 1 to 4096",
          f.program.size()));
    }
  }
  // A guard region lies inside one VMA, in order: restore installs it
  // with madvise, which would fail half-way on anything else.
  uint64_t guards_end = 0;
  for (const PageRun& g : image.guards) {
    const uint64_t end = g.address + g.pages * image.info.page_size;
    auto in = std::find_if(image.vmas.begin(), image.vmas.end(), [&](const VmaRecord& v) {
      return v.start <= g.address && end <= v.end;
    });
    if (g.pages == 0 || g.address % image.info.page_size || g.address < guards_end ||
        end < g.address || in == image.vmas.end()) {
      return absl::DataLossError(absl::StrFormat(
          "guard region 0x%x (%d pages) is out of order or outside every VMA", g.address, g.pages));
    }
    guards_end = end;
  }
  if (image.mm.exe_file && !image.files.contains(image.mm.exe_file)) {
    return absl::DataLossError("memory map names an executable the image lacks");
  }
  return absl::OkStatus();
}

}  // namespace

}  // namespace crlib
