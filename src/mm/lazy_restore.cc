#include "mm/lazy_restore.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <vector>

#include "absl/strings/str_format.h"
#include "core/status.h"
#include "mm/extent_map.h"
#include "mm/memory_capture.h"
#include "mm/page_array.h"
#include "sys/proc.h"
#include "sys/unique_fd.h"

namespace crlib {
namespace {

// Events that change what a process is owed: without them a page copied
// into a range the process has since dropped, moved or unmapped, or one
// missing in a child that forked before it came, would be wrong.
constexpr uint64_t kUffdFeatures = UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMAP |
                                   UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP;
// Pages copied in for one fault (the faulting page and those after it, as
// far as the same extent goes): a process touching memory in order faults
// once per 64 KiB instead of once per page.
constexpr uint64_t kFaultPages = 16;
// Pages copied in one background step, between two looks at the faults.
constexpr uint64_t kPushPages = 256;

bool IsPrivateAnonymous(const VmaRecord& v) {
  const auto kind = static_cast<VmaKind>(v.kind);
  return (kind == VmaKind::kAnonymous || kind == VmaKind::kHeap || kind == VmaKind::kStack) &&
         (v.flags & MAP_PRIVATE) && v.object == 0;
}

// Whether VMA `v`'s pages can be served through a userfaultfd in MISSING
// mode: private anonymous memory, not locked (mlock populates it with zero
// pages before the pages come, which UFFDIO_COPY would then refuse to
// replace), holding no guard region (installed after the pages).
bool Servable(const VmaRecord& v, const ProcessImage& image) {
  if (!IsPrivateAnonymous(v)) return false;
  if (v.vm_flags & (kVmaLocked | kVmaLockOnFault | kVmaInherited)) return false;
  for (const PageRun& g : image.guards) {
    if (g.address < v.end && v.start < g.address + g.pages * image.info.page_size) return false;
  }
  return true;
}

}  // namespace

absl::Status CheckLazyRestore(const TreeImage& tree) {
  // A parent's children are forked from it while it is built, and inherit
  // its memory: served lazily, their copies would miss the pages it had
  // not received yet. One process for now.
  if (tree.processes.size() != 1) {
    return absl::UnimplementedError(absl::StrFormat(
        "lazy restore of a tree of %d processes is not supported; restore it without lazy",
        tree.processes.size()));
  }
  return absl::OkStatus();
}

// The server behind LazyPages: prepared on the restoring thread, then run
// on a thread of its own; only the members under "shared" are touched by
// both.
class LazyServer {
 public:
  ~LazyServer() = default;

  absl::Status Prepare(Tracee* t, const ProcessImage& image, ImageReader* reader,
                       std::shared_ptr<void> keep_alive);
  void Run();
  absl::Status Wait();
  void Stop();
  void Release();
  int done_fd() const { return done_fd_.fd; }
  LazyPages::Progress progress() const {
    LazyPages::Progress p;
    p.pages_total = total_;
    p.pages_eager = eager_;
    p.pages_faulted = faulted_.load();
    p.pages_pushed = pushed_.load();
    p.done_ns = done_ns_.load();
    return p;
  }

 private:
  // One address space being served: the restored process's, or a child's
  // it forked during the lazy phase (its own userfaultfd, from the fork
  // event).
  struct Target {
    sys::UniqueFd uffd;
    pid_t pid = 0;  // the restored process; 0 for a child (unknown)
    // Pages still owed: current address -> address in the image.
    ExtentMap owed;
    std::deque<uint64_t> faults;  // page addresses waiting for an answer
    bool gone = false;            // its memory is gone (it exited)
  };
  // How a copy into a target ended.
  enum class Outcome { kDone, kRetry };

  // Where the pages of a record are: an image file's are read when needed
  // (`mark`); a stream's are read before the process runs (`data`).
  struct PageRecord {
    ImageReader::Bookmark mark;
    uint64_t pages = 0;
    std::unique_ptr<uint8_t[]> data;
  };
  struct CacheSlot {
    int64_t record = -1;
    uint64_t used = 0;
    std::vector<uint8_t> data;
  };

  absl::Status ReadIndex(const ProcessImage& image);
  absl::StatusOr<const uint8_t*> RecordPages(uint32_t record);
  absl::Status CreateUffd(Tracee* t);
  absl::Status Serve();
  absl::Status ReadEvents(size_t target);
  absl::Status HandleEvent(size_t target, const uffd_msg& msg);
  absl::StatusOr<Outcome> ServeFaults(Target* t);
  absl::StatusOr<Outcome> CopyIn(Target* t, uint64_t start, uint64_t end, bool fault);
  absl::StatusOr<Outcome> Copy(Target* t, uint64_t dst, const uint8_t* src, uint64_t len,
                               bool fault);
  absl::StatusOr<Outcome> Zero(Target* t, uint64_t address);
  void Wake(Target* t, uint64_t address, uint64_t len);
  ExtentMap InheritedByChild(const Target& parent);
  void KillProcesses();
  void Finish(absl::Status st);

  uint64_t page_ = 4096;
  ImageReader* reader_ = nullptr;
  std::shared_ptr<void> keep_alive_;
  pid_t root_ = 0;
  std::vector<VmaRecord> vmas_;
  ExtentMap index_;  // image address -> (record, byte offset in its pages)
  std::vector<PageRecord> records_;
  CacheSlot cache_[2];
  uint64_t clock_ = 0;
  std::vector<std::unique_ptr<Target>> targets_;
  size_t next_push_ = 0;
  uint64_t total_ = 0, eager_ = 0;

  // Shared.
  // Written by Stop() and Release(), which set these first.
  sys::UniqueFd control_fd_, done_fd_;
  std::atomic<bool> stopping_{false}, released_{false};
  std::atomic<uint64_t> faulted_{0}, pushed_{0};
  std::atomic<int64_t> done_ns_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool finished_ = false;
  absl::Status status_;
};

absl::Status LazyServer::ReadIndex(const ProcessImage& image) {
  const bool stream = !reader_->source()->CanSeek();
  for (;;) {
    CRLIB_ASSIGN_OR_RETURN(const Record* rec, reader_->Next());
    if (rec == nullptr) return absl::OkStatus();
    if (rec->type() != RecordType::kPages || rec->header.parent != image.mm_ref) {
      return absl::DataLossError(absl::StrFormat(
          "record %d at offset %d follows the page data but is not pages of the memory map",
          rec->index, rec->offset));
    }
    CRLIB_ASSIGN_OR_RETURN(PagesRecord pages, reader_->Decode<PagesRecord>(*rec));
    PageRecord r{.mark = reader_->BeforeCurrent(), .pages = pages.page_count};
    if (stream) {
      // Read once, kept until served: a later record may replace any page
      // (the last one wins), so none is final before the stream ends.
      r.data.reset(new uint8_t[pages.page_count * page_]);
      uint64_t used = 0;
      CRLIB_RETURN_IF_ERROR(ReadPages(reader_, *rec, pages,
                                      [&](uint64_t, uint64_t n) -> absl::StatusOr<uint8_t*> {
                                        uint8_t* p = r.data.get() + used;
                                        used += n * page_;
                                        return p;
                                      }));
    }
    const auto number = static_cast<uint32_t>(records_.size());
    uint64_t offset = 0;
    for (const PageRun& run : pages.runs) {
      if (run.pages > (UINT64_MAX - run.address) / page_) {
        return absl::DataLossError(absl::StrFormat("pages record %d: run at 0x%x of %d pages",
                                                   rec->index, run.address, run.pages));
      }
      index_.Insert({run.address, run.address + run.pages * page_, number, offset});
      offset += run.pages * page_;
    }
    records_.push_back(std::move(r));
  }
}

absl::StatusOr<const uint8_t*> LazyServer::RecordPages(uint32_t record) {
  PageRecord& r = records_[record];
  if (r.data) return r.data.get();
  CacheSlot* slot = &cache_[0];
  for (CacheSlot& s : cache_) {
    if (s.record == record) {
      s.used = ++clock_;
      return s.data.data();
    }
    if (s.used < slot->used) slot = &s;
  }
  slot->record = -1;
  CRLIB_RETURN_IF_ERROR(reader_->Rewind(r.mark));
  CRLIB_ASSIGN_OR_RETURN(const Record* rec, reader_->Next());
  if (rec == nullptr || rec->type() != RecordType::kPages) {
    return absl::DataLossError(absl::StrFormat(
        "the image changed while its pages were served: no pages record at offset %d",
        r.mark.offset));
  }
  CRLIB_ASSIGN_OR_RETURN(PagesRecord pages, reader_->Decode<PagesRecord>(*rec));
  if (pages.page_count != r.pages) {
    return absl::DataLossError(absl::StrFormat(
        "the image changed while its pages were served: pages record %d holds %d pages, not %d",
        rec->index, pages.page_count, r.pages));
  }
  slot->data.resize(pages.page_count * page_);
  uint64_t used = 0;
  CRLIB_RETURN_IF_ERROR(ReadPages(reader_, *rec, pages,
                                  [&](uint64_t, uint64_t n) -> absl::StatusOr<uint8_t*> {
                                    uint8_t* p = slot->data.data() + used;
                                    used += n * page_;
                                    return p;
                                  }));
  slot->record = record;
  slot->used = ++clock_;
  return slot->data.data();
}

// The userfaultfd is made by the process (one serves only the address
// space of its creator) and taken from it. Not UFFD_USER_MODE_ONLY: a
// system call that touches a page not yet in (read(2) into a buffer, a
// futex) must wait for it like the process's own code, not fail with
// EFAULT. That needs CAP_SYS_PTRACE, which the process still has from the
// restorer here (its own credentials come later).
absl::Status LazyServer::CreateUffd(Tracee* t) {
  CRLIB_ASSIGN_OR_RETURN(int64_t remote, t->CheckedSyscall("userfaultfd(O_CLOEXEC|O_NONBLOCK)",
                                                          SYS_userfaultfd,
                                                          {O_CLOEXEC | O_NONBLOCK}));
  sys::UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, t->tid(), 0)));
  if (pidfd.fd < 0) return Errno("pidfd_open(%d)", t->tid());
  auto target = std::make_unique<Target>();
  target->uffd.fd = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.fd, remote, 0));
  if (target->uffd.fd < 0) return Errno("pidfd_getfd(pid %d, fd %d)", t->tid(), remote);
  CRLIB_RETURN_IF_ERROR(
      t->CheckedSyscall("close of the userfaultfd", SYS_close, {static_cast<uint64_t>(remote)})
          .status());
  uffdio_api api{.api = UFFD_API, .features = kUffdFeatures, .ioctls = 0};
  if (ioctl(target->uffd.fd, UFFDIO_API, &api) != 0) {
    return Errno("ioctl(UFFDIO_API, features 0x%x) on the userfaultfd of pid %d", kUffdFeatures,
                 t->tid());
  }
  target->pid = t->tid();
  targets_.push_back(std::move(target));
  return absl::OkStatus();
}

absl::Status LazyServer::Prepare(Tracee* t, const ProcessImage& image, ImageReader* reader,
                                 std::shared_ptr<void> keep_alive) {
  page_ = image.info.page_size;
  reader_ = reader;
  keep_alive_ = std::move(keep_alive);
  root_ = t->tid();
  vmas_ = image.vmas;
  control_fd_.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  done_fd_.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (control_fd_.fd < 0 || done_fd_.fd < 0) return Errno("eventfd");
  CRLIB_RETURN_IF_ERROR(ReadIndex(image));
  // Pages a live dump copied from memory the process unmapped before its
  // stop: never served (what is mapped there now is another mapping).
  for (const PageRun& s : image.stale_pages) index_.Cut(s.address, s.address + s.pages * page_);
  // What is owed (pages of servable VMAs, at their own addresses) and
  // what must be written now, record by record.
  auto owed = std::make_unique<ExtentMap>();
  std::vector<Extent> now;
  std::vector<const VmaRecord*> served;
  for (const VmaRecord& v : image.vmas) {
    std::vector<Extent> pages = index_.Overlapping(v.start, v.end);
    if (pages.empty()) continue;
    if (!Servable(v, image)) {
      now.insert(now.end(), pages.begin(), pages.end());
      continue;
    }
    served.push_back(&v);
    for (const Extent& e : pages) {
      owed->Insert({e.start, e.end, 0, e.start});
      total_ += (e.end - e.start) / page_;
    }
  }
  std::stable_sort(now.begin(), now.end(),
                   [](const Extent& a, const Extent& b) { return a.tag < b.tag; });
  for (const Extent& e : now) {
    CRLIB_ASSIGN_OR_RETURN(const uint8_t* data, RecordPages(e.tag));
    CRLIB_RETURN_IF_ERROR(t->WriteMemory(e.start, data + e.value, e.end - e.start));
    eager_ += (e.end - e.start) / page_;
  }
  if (owed->empty()) return absl::OkStatus();
  CRLIB_RETURN_IF_ERROR(CreateUffd(t));
  Target* root = targets_.front().get();
  for (const VmaRecord* v : served) {
    uffdio_register reg{.range = {.start = v->start, .len = v->end - v->start},
                        .mode = UFFDIO_REGISTER_MODE_MISSING,
                        .ioctls = 0};
    if (ioctl(root->uffd.fd, UFFDIO_REGISTER, &reg) != 0) {
      return Errno("ioctl(UFFDIO_REGISTER) of mapping 0x%x-0x%x %s in pid %d", v->start, v->end,
                   v->name, root_);
    }
  }
  root->owed = std::move(*owed);
  return absl::OkStatus();
}

void LazyServer::Wake(Target* t, uint64_t address, uint64_t len) {
  uffdio_range range{.start = address, .len = len};
  ioctl(t->uffd.fd, UFFDIO_WAKE, &range);  // nobody waiting is fine
}

absl::StatusOr<LazyServer::Outcome> LazyServer::Copy(Target* t, uint64_t dst, const uint8_t* src,
                                                     uint64_t len, bool fault) {
  uint64_t done = 0;
  absl::StatusOr<Outcome> outcome = Outcome::kDone;
  while (done < len && !t->gone) {
    uffdio_copy c{.dst = dst + done,
                  .src = reinterpret_cast<uint64_t>(src + done),
                  .len = len - done,
                  .mode = 0,
                  .copy = 0};
    const int r = ioctl(t->uffd.fd, UFFDIO_COPY, &c);
    if (c.copy > 0) {
      (fault ? faulted_ : pushed_) += static_cast<uint64_t>(c.copy) / page_;
      done += static_cast<uint64_t>(c.copy);
    }
    if (r == 0) break;
    if (c.copy > 0) continue;  // a part: the next try says what stopped it
    const int err = c.copy < 0 ? static_cast<int>(-c.copy) : errno;
    if (err == EEXIST) {
      // The page is there already (the process dropped and touched it
      // again, say): it stays, and whoever waits for it goes on.
      Wake(t, dst + done, page_);
      done += page_;
    } else if (err == ENOENT) {
      // No registered mapping there any more: an unmap event follows.
      done += page_;
    } else if (err == EAGAIN) {
      // An event (remove, remap, unmap, fork) waits to be read first.
      outcome = Outcome::kRetry;
      break;
    } else if (err == ESRCH || err == ENOSPC) {
      t->gone = true;  // its address space is gone: it exited
    } else {
      outcome = ErrnoError(err, absl::StrFormat("ioctl(UFFDIO_COPY) of %d bytes at 0x%x",
                                                len - done, dst + done));
      break;
    }
  }
  t->owed.Cut(dst, dst + done);
  return outcome;
}

absl::StatusOr<LazyServer::Outcome> LazyServer::Zero(Target* t, uint64_t address) {
  uffdio_zeropage z{.range = {.start = address, .len = page_}, .mode = 0, .zeropage = 0};
  if (ioctl(t->uffd.fd, UFFDIO_ZEROPAGE, &z) == 0) return Outcome::kDone;
  const int err = z.zeropage < 0 ? static_cast<int>(-z.zeropage) : errno;
  switch (err) {
    case EEXIST: Wake(t, address, page_); return Outcome::kDone;
    case ENOENT: return Outcome::kDone;
    case EAGAIN: return Outcome::kRetry;
    case ESRCH:
    case ENOSPC: t->gone = true; return Outcome::kDone;
    default:
      return ErrnoError(err, absl::StrFormat("ioctl(UFFDIO_ZEROPAGE) at 0x%x", address));
  }
}

// Copies the owed pages of [start, end) into `t`, each from the record that
// holds it last.
absl::StatusOr<LazyServer::Outcome> LazyServer::CopyIn(Target* t, uint64_t start, uint64_t end,
                                                       bool fault) {
  for (const Extent& part : t->owed.Overlapping(start, end)) {
    const uint64_t from = part.value, to = part.value + (part.end - part.start);
    for (const Extent& piece : index_.Overlapping(from, to)) {
      CRLIB_ASSIGN_OR_RETURN(const uint8_t* data, RecordPages(piece.tag));
      CRLIB_ASSIGN_OR_RETURN(Outcome o, Copy(t, part.start + (piece.start - from),
                                             data + piece.value, piece.end - piece.start, fault));
      if (o == Outcome::kRetry || t->gone) return o;
    }
  }
  return Outcome::kDone;
}

absl::StatusOr<LazyServer::Outcome> LazyServer::ServeFaults(Target* t) {
  while (!t->faults.empty() && !t->gone) {
    const uint64_t a = t->faults.front();
    const Extent* e = t->owed.Find(a);
    // Not owed: no page in the image (a zero page), or one the process
    // dropped since: both read as zeros.
    absl::StatusOr<Outcome> o =
        e == nullptr ? Zero(t, a) : CopyIn(t, a, std::min(e->end, a + kFaultPages * page_), true);
    CRLIB_RETURN_IF_ERROR(o.status());
    if (*o == Outcome::kRetry) return o;
    t->faults.pop_front();
  }
  return Outcome::kDone;
}

// The owed pages a child forked from `parent` is owed: the same, but for
// the mappings a child does not get (MADV_DONTFORK) or gets empty
// (MADV_WIPEONFORK). Read from the smaps of the restored process; a child's
// child is judged by the image's flags.
ExtentMap LazyServer::InheritedByChild(const Target& parent) {
  ExtentMap owed = parent.owed;
  auto drop = [&](uint64_t start, uint64_t end, uint32_t vm_flags) {
    if (vm_flags & (kVmaWipeOnFork | kVmaDontFork)) owed.Cut(start, end);
  };
  absl::StatusOr<std::vector<sys::MapsEntry>> maps = absl::NotFoundError("pid unknown");
  if (parent.pid != 0) maps = sys::ReadSmaps(parent.pid);
  if (maps.ok()) {
    for (const sys::MapsEntry& m : *maps) drop(m.start, m.end, VmaFlagsFromSmaps(m.vm_flags));
  } else {
    for (const VmaRecord& v : vmas_) drop(v.start, v.end, v.vm_flags);
  }
  return owed;
}

absl::Status LazyServer::HandleEvent(size_t target, const uffd_msg& msg) {
  Target* t = targets_[target].get();
  switch (msg.event) {
    case UFFD_EVENT_PAGEFAULT:
      t->faults.push_back(msg.arg.pagefault.address & ~(page_ - 1));
      return absl::OkStatus();
    case UFFD_EVENT_FORK: {
      // The child's pages missing here are missing there too; it gets a
      // userfaultfd of its own, in our fd table now.
      auto child = std::make_unique<Target>();
      child->uffd.fd = static_cast<int>(msg.arg.fork.ufd);
      child->owed = InheritedByChild(*t);
      targets_.push_back(std::move(child));
      return absl::OkStatus();
    }
    case UFFD_EVENT_REMAP: {
      const uint64_t from = msg.arg.remap.from, to = msg.arg.remap.to;
      for (const Extent& e : t->owed.Cut(from, from + msg.arg.remap.len)) {
        t->owed.Insert({to + (e.start - from), to + (e.end - from), e.tag, e.value});
      }
      return absl::OkStatus();
    }
    case UFFD_EVENT_REMOVE:
    case UFFD_EVENT_UNMAP:
      // Dropped (MADV_DONTNEED, MADV_REMOVE) or unmapped: what the image
      // had there must never come back.
      t->owed.Cut(msg.arg.remove.start, msg.arg.remove.end);
      return absl::OkStatus();
    default:
      return absl::InternalError(absl::StrFormat("userfaultfd event 0x%x not asked for", msg.event));
  }
}

absl::Status LazyServer::ReadEvents(size_t target) {
  uffd_msg msgs[32];
  for (;;) {
    const ssize_t n = read(targets_[target]->uffd.fd, msgs, sizeof(msgs));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return absl::OkStatus();
    if (n < 0) return Errno("read of a userfaultfd");
    for (size_t i = 0; i < static_cast<size_t>(n) / sizeof(uffd_msg); ++i) {
      CRLIB_RETURN_IF_ERROR(HandleEvent(target, msgs[i]));
    }
  }
}

absl::Status LazyServer::Serve() {
  for (;;) {
    // A target that owes nothing more is closed: its mappings are
    // unregistered and the kernel fills what it is asked for since (zeros
    // where the process dropped pages) on its own.
    for (size_t i = 0; i < targets_.size();) {
      Target* t = targets_[i].get();
      if (!t->gone && t->owed.empty() && t->faults.empty()) {
        CRLIB_RETURN_IF_ERROR(ReadEvents(i));  // a last fork or fault
      }
      if (t->gone || (t->owed.empty() && t->faults.empty())) {
        targets_.erase(targets_.begin() + static_cast<long>(i));
      } else {
        ++i;
      }
    }
    if (targets_.empty()) return absl::OkStatus();
    // The background copy waits until the process runs: until then it
    // would only take CPU time from the restore.
    const bool push = released_;
    std::vector<pollfd> fds = {{control_fd_.fd, POLLIN, 0}};
    bool work = false;
    for (const auto& t : targets_) {
      fds.push_back({t->uffd.fd, POLLIN, 0});
      work |= (push && !t->owed.empty()) || !t->faults.empty();
    }
    if (poll(fds.data(), fds.size(), work ? 0 : -1) < 0 && errno != EINTR) return Errno("poll");
    if (fds[0].revents) {
      uint64_t count;
      (void)!read(control_fd_.fd, &count, sizeof(count));
    }
    if (stopping_) return absl::AbortedError("lazy restore abandoned");
    const size_t count = targets_.size();  // a fork adds one
    for (size_t i = 0; i < count; ++i) {
      if (fds[i + 1].revents & POLLIN) CRLIB_RETURN_IF_ERROR(ReadEvents(i));
      if (fds[i + 1].revents & (POLLERR | POLLHUP)) targets_[i]->gone = true;
    }
    bool retry = false;
    for (size_t i = 0; i < count; ++i) {
      CRLIB_ASSIGN_OR_RETURN(Outcome o, ServeFaults(targets_[i].get()));
      retry |= o == Outcome::kRetry;
    }
    if (retry || !push) continue;  // events first
    Target* t = targets_[next_push_++ % targets_.size()].get();
    if (const Extent* e = t->owed.First(); e != nullptr && !t->gone) {
      CRLIB_RETURN_IF_ERROR(
          CopyIn(t, e->start, std::min(e->end, e->start + kPushPages * page_), false).status());
    }
  }
}

// The restored process and every process under it, which may hold pages
// the image had no right version of; killed before their userfaultfds
// close, so that no fault of theirs is answered after (with a zero page).
void LazyServer::KillProcesses() {
  std::vector<pid_t> all = {root_};
  for (size_t i = 0; i < all.size(); ++i) {
    absl::StatusOr<std::vector<pid_t>> children = sys::ListChildren(all[i]);
    if (children.ok()) all.insert(all.end(), children->begin(), children->end());
  }
  for (pid_t p : all) kill(p, SIGKILL);
}

void LazyServer::Finish(absl::Status st) {
  done_ns_ = NowNs();
  {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = std::move(st);
    finished_ = true;
  }
  cv_.notify_all();
  const uint64_t one = 1;
  (void)!write(done_fd_.fd, &one, sizeof(one));
}

void LazyServer::Run() {
  absl::Status st = Serve();
  if (!st.ok() && !absl::IsAborted(st)) {
    KillProcesses();
    st = Annotate(st, absl::StrFormat("lazy restore of pid %d failed; pid %d and its children "
                                      "were killed",
                                      root_, root_));
  }
  targets_.clear();  // closes the userfaultfds
  keep_alive_.reset();
  Finish(std::move(st));
}

absl::Status LazyServer::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return finished_; });
  return status_;
}

void LazyServer::Stop() {
  stopping_ = true;
  const uint64_t one = 1;
  (void)!write(control_fd_.fd, &one, sizeof(one));
}

void LazyServer::Release() {
  released_ = true;
  const uint64_t one = 1;
  (void)!write(control_fd_.fd, &one, sizeof(one));
}

absl::StatusOr<std::unique_ptr<LazyPages>> LazyPages::Start(Context* ctx, Tracee* t,
                                                            const ProcessImage& image,
                                                            ImageReader* reader,
                                                            std::shared_ptr<void> keep_alive) {
  auto lazy = std::unique_ptr<LazyPages>(new LazyPages);
  lazy->server_ = std::make_unique<LazyServer>();
  CRLIB_RETURN_IF_ERROR(lazy->server_->Prepare(t, image, reader, std::move(keep_alive)));
  const Progress p = lazy->server_->progress();
  ctx->stats().pages_stored += p.pages_total + p.pages_eager;
  ctx->stats().bytes = reader->offset();
  lazy->thread_ = std::thread([s = lazy->server_.get()] { s->Run(); });
  return lazy;
}

LazyPages::~LazyPages() {
  if (thread_.joinable()) (void)Wait();  // else it never served
}

absl::Status LazyPages::Wait() {
  absl::Status st = server_->Wait();
  std::call_once(joined_, [&] { thread_.join(); });
  return st;
}

int LazyPages::done_fd() const { return server_->done_fd(); }

void LazyPages::Released() { server_->Release(); }

void LazyPages::Abandon() {
  server_->Stop();
  (void)Wait();
}

LazyPages::Progress LazyPages::progress() const { return server_->progress(); }

}  // namespace crlib
