// The records of event objects behind file descriptors: eventfd, timerfd,
// signalfd, inotify and epoll. Part of core/records.h, which includes it;
// docs/FORMAT.md has one table per type. Each names its kFile record by
// `file` (one record per open file description, written once however many
// fds and processes share it).
#ifndef CRLIB_CORE_EVENT_RECORDS_H_
#define CRLIB_CORE_EVENT_RECORDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/codec.h"
#include "core/record_types.h"

namespace crlib {

// Parent: the file table. An eventfd's counter and mode.
struct EventfdRecord {
  static constexpr RecordType kType = RecordType::kEventfd;
  static constexpr const char* kName = "eventfd";
  ObjectRef file = 0;
  uint64_t count = 0;      // "eventfd-count"
  uint32_t semaphore = 0;  // 1: EFD_SEMAPHORE
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("file", s.file); v("count", s.count); v("semaphore", s.semaphore); }
};

// Parent: the file table. A timerfd: its clock, its schedule and the
// expirations not yet read. `deadline_ns` is the next expiry on the
// timer's reference clock (TimerfdReferenceClock): its own clock for an
// absolute timer (TFD_TIMER_ABSTIME), the clock its relative countdown
// runs on otherwise; `reference_now_ns` is that clock at the dump.
struct TimerfdRecord {
  static constexpr RecordType kType = RecordType::kTimerfd;
  static constexpr const char* kName = "timerfd";
  ObjectRef file = 0;
  int32_t clock = 0;            // clockid_t ("clockid")
  uint32_t settime_flags = 0;   // TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET
  uint64_t ticks = 0;           // expirations not yet read
  int64_t interval_ns = 0;      // it_interval; 0: one-shot
  int64_t deadline_ns = 0;      // next expiry on the reference clock; 0: disarmed
  int64_t reference_now_ns = 0;  // the reference clock at the dump
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("file", s.file); v("clock", s.clock); v("settime_flags", s.settime_flags);
    v("ticks", s.ticks); v("interval_ns", s.interval_ns); v("deadline_ns", s.deadline_ns);
    v("reference_now_ns", s.reference_now_ns);
  }
};

// Parent: the file table. A signalfd's mask.
struct SignalfdRecord {
  static constexpr RecordType kType = RecordType::kSignalfd;
  static constexpr const char* kName = "signalfd";
  ObjectRef file = 0;
  uint64_t mask = 0;  // bit (n-1) for signal n ("sigmask")
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("file", s.file); v("mask", s.mask); }
};

struct InotifyWatch {
  uint32_t wd = 0;    // watch descriptor, the same after restore
  uint32_t mask = 0;  // IN_* events and IN_ONESHOT, IN_EXCL_UNLINK, IN_MASK_CREATE
  uint64_t dev = 0, inode = 0;  // the watched inode (st_dev, st_ino)
  std::string path;   // where it was at the dump
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("wd", s.wd); v("mask", s.mask); v("dev", s.dev); v("inode", s.inode); v("path", s.path);
  }
};

// Parent: the file table. An inotify instance's watches, by wd. Queued
// events are not carried (docs/CHECKPOINT.md).
struct InotifyRecord {
  static constexpr RecordType kType = RecordType::kInotify;
  static constexpr const char* kName = "inotify";
  ObjectRef file = 0;
  std::vector<InotifyWatch> watches;  // in wd order
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("file", s.file); v("watches", s.watches); }
};

struct EpollEntry {
  uint32_t fd = 0;       // the target's fd number in the holder (the epitem's key)
  uint32_t events = 0;   // EPOLL* as the kernel shows them (EPOLLONESHOT alone: fired)
  uint64_t data = 0;     // epoll_data
  ObjectRef target = 0;  // the target's file record
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("fd", s.fd); v("events", s.events); v("data", s.data); v("target", s.target);
  }
};

// Parent: the file table of the process that fills it at restore, which
// holds every target at its `fd`. An epoll instance's interest list.
struct EpollRecord {
  static constexpr RecordType kType = RecordType::kEpoll;
  static constexpr const char* kName = "epoll";
  ObjectRef file = 0;
  std::vector<EpollEntry> entries;
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("file", s.file); v("entries", s.entries); }
};

}  // namespace crlib

#endif  // CRLIB_CORE_EVENT_RECORDS_H_
