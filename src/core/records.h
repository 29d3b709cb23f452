// Every record type of the image, with its fields in wire order.
//
// A record's `self` reference names the object it describes (0 when nothing
// refers to it); its `parent` names the object it belongs to. docs/FORMAT.md
// has one table per type; tests/core/format_doc_test.cc keeps them equal.
#ifndef CRLIB_CORE_RECORDS_H_
#define CRLIB_CORE_RECORDS_H_

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "core/codec.h"
#include "core/event_records.h"
#include "core/memory_records.h"
#include "core/record_types.h"
#include "core/socket_records.h"

namespace crlib {

// Last record of every image: totals of everything before it.
struct EndRecord {
  static constexpr RecordType kType = RecordType::kEnd;
  static constexpr const char* kName = "end";
  uint64_t record_count = 0;  // records before this one
  uint64_t payload_bytes = 0;  // sum of their payload lengths
  uint64_t bulk_bytes = 0;     // sum of their bulk lengths
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("record_count", s.record_count);
    v("payload_bytes", s.payload_bytes);
    v("bulk_bytes", s.bulk_bytes);
  }
};

// No payload; its bulk is zeros that a live dump reserved for records
// (ImageWriter::Reserve) and did not need. Readers pass over it.
struct FillerRecord {
  static constexpr RecordType kType = RecordType::kFiller;
  static constexpr const char* kName = "filler";
  template <typename S, typename V>
  static void Fields(S&, V&) {}
};

struct ProcessRecord {
  static constexpr RecordType kType = RecordType::kProcess;
  static constexpr const char* kName = "process";
  uint32_t pid = 0, ppid = 0, pgid = 0, sid = 0;
  uint32_t uid = 0, euid = 0, suid = 0, fsuid = 0;
  uint32_t gid = 0, egid = 0, sgid = 0, fsgid = 0;
  uint32_t personality = 0;
  uint32_t umask = 0;
  uint32_t exit_signal = 0;  // signal sent to the parent at exit
  uint32_t flags = 0;        // kProcess* below
  std::string comm;
  std::string cwd;
  std::string root;
  // Appended fields (docs/FORMAT.md: newer writers append at the end).
  std::vector<uint32_t> groups;  // supplementary groups, as /proc shows them
  uint64_t cap_inheritable = 0;  // capability sets, bit n for capability n
  uint64_t cap_permitted = 0;
  uint64_t cap_effective = 0;
  uint64_t cap_bounding = 0;
  uint64_t cap_ambient = 0;
  uint32_t securebits = 0;  // prctl(PR_GET_SECUREBITS) of the main thread
  uint32_t exit_code = 0;   // a zombie's wait status (kProcessZombie)
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("pid", s.pid); v("ppid", s.ppid); v("pgid", s.pgid); v("sid", s.sid);
    v("uid", s.uid); v("euid", s.euid); v("suid", s.suid); v("fsuid", s.fsuid);
    v("gid", s.gid); v("egid", s.egid); v("sgid", s.sgid); v("fsgid", s.fsgid);
    v("personality", s.personality);
    v("umask", s.umask);
    v("exit_signal", s.exit_signal);
    v("flags", s.flags);
    v("comm", s.comm);
    v("cwd", s.cwd);
    v("root", s.root);
    v("groups", s.groups);
    v("cap_inheritable", s.cap_inheritable);
    v("cap_permitted", s.cap_permitted);
    v("cap_effective", s.cap_effective);
    v("cap_bounding", s.cap_bounding);
    v("cap_ambient", s.cap_ambient);
    v("securebits", s.securebits);
    v("exit_code", s.exit_code);
  }
};

// ProcessRecord::flags.
inline constexpr uint32_t kProcessStopped = 1u << 0;  // in a group stop: restored stopped
// Exited, not yet reaped by its parent: only the process record, no
// threads or memory; restored as a zombie with `exit_code`.
inline constexpr uint32_t kProcessZombie = 1u << 1;
// Shares its parent's fd table (CLONE_FILES) / cwd, root and umask
// (CLONE_FS): restored by creating it with the same clone flag.
inline constexpr uint32_t kProcessSharesFiles = 1u << 2;
inline constexpr uint32_t kProcessSharesFs = 1u << 3;

// Parent: the process, which has one per thread, its main thread first.
struct ThreadRecord {
  static constexpr RecordType kType = RecordType::kThread;
  static constexpr const char* kName = "thread";
  uint32_t tid = 0;
  uint32_t flags = 0;
  uint64_t sigmask = 0;  // blocked signals, bit (n-1) for signal n
  uint64_t sigaltstack_sp = 0;
  uint64_t sigaltstack_size = 0;
  uint32_t sigaltstack_flags = 0;
  uint32_t rseq_length = 0;  // 0: no rseq registered
  uint64_t rseq_address = 0;
  uint32_t rseq_signature = 0;
  uint32_t rseq_flags = 0;
  int64_t syscall_nr = -1;  // system call the thread was stopped in, or -1
  std::string comm;
  uint64_t clear_child_tid = 0;     // set_tid_address(2); 0: none
  uint64_t robust_list = 0;         // set_robust_list(2) head; 0: none
  uint64_t robust_list_length = 0;  // its length argument
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("tid", s.tid); v("flags", s.flags);
    v("sigmask", s.sigmask);
    v("sigaltstack_sp", s.sigaltstack_sp);
    v("sigaltstack_size", s.sigaltstack_size);
    v("sigaltstack_flags", s.sigaltstack_flags);
    v("rseq_length", s.rseq_length);
    v("rseq_address", s.rseq_address);
    v("rseq_signature", s.rseq_signature);
    v("rseq_flags", s.rseq_flags);
    v("syscall_nr", s.syscall_nr);
    v("comm", s.comm);
    v("clear_child_tid", s.clear_child_tid);
    v("robust_list", s.robust_list);
    v("robust_list_length", s.robust_list_length);
  }
};

struct SignalHandler {
  uint32_t signo = 0;
  uint64_t handler = 0;  // SIG_DFL (0), SIG_IGN (1) or an address
  uint64_t flags = 0;    // SA_*
  uint64_t restorer = 0;
  uint64_t mask = 0;
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("signo", s.signo); v("handler", s.handler); v("flags", s.flags);
    v("restorer", s.restorer); v("mask", s.mask);
  }
};

// Parent: the process. Only handlers that are not SIG_DFL are listed.
struct SignalHandlersRecord {
  static constexpr RecordType kType = RecordType::kSignalHandlers;
  static constexpr const char* kName = "signal_handlers";
  std::vector<SignalHandler> handlers;
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("handlers", s.handlers); }
};

struct PendingSignal {
  uint32_t signo = 0;
  Bytes siginfo;  // the kernel's siginfo_t as PTRACE_PEEKSIGINFO gave it
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("signo", s.signo); v("siginfo", s.siginfo); }
};

// Parent: the thread (private queue) or the process (shared queue).
struct PendingSignalsRecord {
  static constexpr RecordType kType = RecordType::kPendingSignals;
  static constexpr const char* kName = "pending_signals";
  uint32_t shared = 0;  // 1: the process-wide queue
  std::vector<PendingSignal> signals;
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("shared", s.shared); v("signals", s.signals); }
};

struct Rlimit {
  uint32_t resource = 0;
  uint64_t cur = 0;
  uint64_t max = 0;
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("resource", s.resource); v("cur", s.cur); v("max", s.max); }
};

struct RlimitsRecord {
  static constexpr RecordType kType = RecordType::kRlimits;
  static constexpr const char* kName = "rlimits";
  std::vector<Rlimit> limits;
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("limits", s.limits); }
};

struct Itimer {
  uint32_t which = 0;  // ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF
  int64_t interval_usec = 0;
  int64_t value_usec = 0;  // time left at checkpoint
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("which", s.which); v("interval_usec", s.interval_usec); v("value_usec", s.value_usec);
  }
};

struct ItimersRecord {
  static constexpr RecordType kType = RecordType::kItimers;
  static constexpr const char* kName = "itimers";
  std::vector<Itimer> timers;
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("timers", s.timers); }
};

// Parent: the process. Process-wide attributes set with prctl(2),
// membarrier(2) and /proc files.
struct ProcessAttributesRecord {
  static constexpr RecordType kType = RecordType::kProcessAttributes;
  static constexpr const char* kName = "process_attributes";
  uint32_t child_subreaper = 0;  // PR_GET_CHILD_SUBREAPER
  int32_t oom_score_adj = 0;     // /proc/PID/oom_score_adj
  uint32_t thp_disable = 0;      // PR_GET_THP_DISABLE: bit 0 disabled, bit 1 except advised
  uint32_t membarrier = 0;       // MEMBARRIER_CMD_REGISTER_* bits registered
  uint32_t loginuid = 0;         // /proc/PID/loginuid; 0xffffffff: unset
  uint32_t dumpable = 0;         // PR_GET_DUMPABLE
  // Appended: the xsave features the process may use (x86-64
  // ARCH_GET_XCOMP_PERM), dynamic ones (AMX tile data) included once it
  // asked for them; 0 where unknown.
  uint64_t xfeatures_permitted = 0;
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("child_subreaper", s.child_subreaper);
    v("oom_score_adj", s.oom_score_adj);
    v("thp_disable", s.thp_disable);
    v("membarrier", s.membarrier);
    v("loginuid", s.loginuid);
    v("dumpable", s.dumpable);
    v("xfeatures_permitted", s.xfeatures_permitted);
  }
};

// Parent: the thread. What the kernel keeps per thread besides the
// thread record's fields.
struct ThreadAttributesRecord {
  static constexpr RecordType kType = RecordType::kThreadAttributes;
  static constexpr const char* kName = "thread_attributes";
  uint32_t pdeathsig = 0;       // PR_GET_PDEATHSIG
  uint32_t no_new_privs = 0;    // PR_GET_NO_NEW_PRIVS
  uint64_t timer_slack_ns = 0;  // PR_GET_TIMERSLACK
  uint32_t seccomp_mode = 0;    // 0 none, 1 strict, 2 filter (the process's seccomp record)
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("pdeathsig", s.pdeathsig);
    v("no_new_privs", s.no_new_privs);
    v("timer_slack_ns", s.timer_slack_ns);
    v("seccomp_mode", s.seccomp_mode);
  }
};

struct PosixTimer {
  int32_t id = 0;          // timer_t, the same after restore
  int32_t clock = 0;       // clockid_t
  uint32_t notify = 0;     // sigev_notify: SIGEV_SIGNAL, SIGEV_NONE, | SIGEV_THREAD_ID
  uint32_t signo = 0;      // sigev_signo
  uint64_t value = 0;      // sigev_value
  uint32_t target_tid = 0; // the thread SIGEV_THREAD_ID names
  int64_t interval_ns = 0;
  int64_t value_ns = 0;    // time left at checkpoint; 0: disarmed
  int32_t overrun = 0;     // timer_getoverrun at checkpoint (not restored)
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("id", s.id); v("clock", s.clock); v("notify", s.notify); v("signo", s.signo);
    v("value", s.value); v("target_tid", s.target_tid);
    v("interval_ns", s.interval_ns); v("value_ns", s.value_ns); v("overrun", s.overrun);
  }
};

// Parent: the process. Its timer_create(2) timers.
struct PosixTimersRecord {
  static constexpr RecordType kType = RecordType::kPosixTimers;
  static constexpr const char* kName = "posix_timers";
  std::vector<PosixTimer> timers;
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("timers", s.timers); }
};

struct SeccompFilter {
  uint32_t flags = 0;  // SECCOMP_FILTER_FLAG_* it was installed with (PTRACE_SECCOMP_GET_METADATA)
  Bytes program;       // struct sock_filter[], 8 bytes per instruction
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("flags", s.flags); v("program", s.program); }
};

// Parent: the process. The seccomp filters every thread in filter mode
// has (they must be the same in all), the first installed first.
struct SeccompRecord {
  static constexpr RecordType kType = RecordType::kSeccomp;
  static constexpr const char* kName = "seccomp";
  std::vector<SeccompFilter> filters;
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("filters", s.filters); }
};

// Parent: a thread, which has one. How the kernel schedules it:
// sched_getattr(2), the CPUs it may run on, its I/O priority.
struct ScheduleRecord {
  static constexpr RecordType kType = RecordType::kSchedule;
  static constexpr const char* kName = "schedule";
  uint32_t policy = 0;     // SCHED_OTHER, SCHED_FIFO ... (kernel values)
  uint32_t priority = 0;   // real-time priority
  int32_t nice = 0;
  uint64_t flags = 0;      // SCHED_FLAG_RESET_ON_FORK, util clamp flags
  uint64_t runtime = 0, deadline = 0, period = 0;  // SCHED_DEADLINE, ns
  uint32_t util_min = 0, util_max = 0;
  std::vector<uint64_t> affinity;  // CPU bit mask, CPU n is bit n % 64 of word n / 64
  uint32_t ioprio = 0;             // ioprio_get(2): class << 13 | data
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("policy", s.policy); v("priority", s.priority); v("nice", s.nice);
    v("flags", s.flags);
    v("runtime", s.runtime); v("deadline", s.deadline); v("period", s.period);
    v("util_min", s.util_min); v("util_max", s.util_max);
    v("affinity", s.affinity);
    v("ioprio", s.ioprio);
  }
};

// x86-64 general registers, in the kernel's user_regs_struct order.
struct X86RegistersRecord {
  static constexpr RecordType kType = RecordType::kX86Registers;
  static constexpr const char* kName = "x86_64_registers";
  uint64_t r15 = 0, r14 = 0, r13 = 0, r12 = 0, rbp = 0, rbx = 0, r11 = 0,
           r10 = 0, r9 = 0, r8 = 0, rax = 0, rcx = 0, rdx = 0, rsi = 0,
           rdi = 0, orig_rax = 0, rip = 0, cs = 0, eflags = 0, rsp = 0,
           ss = 0, fs_base = 0, gs_base = 0, ds = 0, es = 0, fs = 0, gs = 0;
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("r15", s.r15); v("r14", s.r14); v("r13", s.r13); v("r12", s.r12);
    v("rbp", s.rbp); v("rbx", s.rbx); v("r11", s.r11); v("r10", s.r10);
    v("r9", s.r9); v("r8", s.r8); v("rax", s.rax); v("rcx", s.rcx);
    v("rdx", s.rdx); v("rsi", s.rsi); v("rdi", s.rdi);
    v("orig_rax", s.orig_rax); v("rip", s.rip); v("cs", s.cs);
    v("eflags", s.eflags); v("rsp", s.rsp); v("ss", s.ss);
    v("fs_base", s.fs_base); v("gs_base", s.gs_base);
    v("ds", s.ds); v("es", s.es); v("fs", s.fs); v("gs", s.gs);
  }
};

// Parent: the thread. The components follow as kXstateComponent records.
struct XstateRecord {
  static constexpr RecordType kType = RecordType::kXstate;
  static constexpr const char* kName = "xstate";
  uint64_t features = 0;    // components saved (XCR0 bits)
  uint64_t xstate_bv = 0;   // components not in their init state
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("features", s.features); v("xstate_bv", s.xstate_bv); }
};

// One xsave component. 0 (x87) holds bytes 0-159 of the legacy area,
// MXCSR included; 1 (SSE) holds bytes 160-415 (XMM0-15); component n >= 2
// holds the n-th state in the CPU's standard layout.
struct XstateComponentRecord {
  static constexpr RecordType kType = RecordType::kXstateComponent;
  static constexpr const char* kName = "xstate_component";
  uint32_t component = 0;
  Bytes data;
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("component", s.component); v("data", s.data); }
};

// Parent: the process. Its descriptors follow as kFd records.
struct FileTableRecord {
  static constexpr RecordType kType = RecordType::kFileTable;
  static constexpr const char* kName = "file_table";
  uint32_t fd_count = 0;
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("fd_count", s.fd_count); }
};

enum class FileKind : uint32_t {
  kRegular = 0,
  kDirectory = 1,
  kPipe = 2,
  kFifo = 3,
  kCharDevice = 4,
  // With FileRecord::object, that kInode holds the contents; images
  // before it carry them as the record's bulk.
  kDeletedRegular = 5,
  // A standard stream (fd 0-2) that led outside the process (terminal,
  // pipe, socket): restore connects the restoring process's own fd.
  kInherited = 6,
  kMemfd = 7,  // FileRecord::object holds the inode
  // A descriptor above 2 whose file leads outside the dumped processes (a
  // pipe whose other end no dumped process holds): nothing of it is
  // carried, its buffered bytes included; `path` is its key ("pipe:[INODE]"),
  // which the restorer maps to one of its own fds (--inherit-fd KEY=FD).
  kExternal = 8,
  // A pidfd (pidfd_open, clone's CLONE_PIDFD). FileRecord::pid is the
  // recorded PID of the dumped process it refers to, made again in the
  // holder once that process exists; 0 for a process that had exited and
  // been reaped: a pidfd of a dead process. `flags` holds O_NONBLOCK
  // (PIDFD_NONBLOCK) and O_EXCL (PIDFD_THREAD).
  kPidfd = 9,
  // An O_PATH descriptor (of any file type; with O_NOFOLLOW, of a symlink
  // itself): reopened by path with the same flags.
  kPath = 10,
  // A namespace file (/proc/PID/ns/*); path is the link ("net:[4026531840]").
  // Restored only as the restorer's own namespace of that inode.
  kNamespace = 11,
  // A FIFO whose name was removed: restored as a new FIFO that has no name.
  kDeletedFifo = 12,
  // A removed directory (empty by definition): restored as a new, removed
  // directory.
  kDeletedDirectory = 13,
  // A character device node whose name was removed: made again (mknod)
  // with the image's credentials, opened, and removed.
  kDeletedDevice = 14,
  // 20-29: terminals. Both ends of a pty pair are the process's: the
  // file's `tty` names the kTty record.
  kPtyMaster = 20,  // /dev/ptmx
  kPtySlave = 21,   // /dev/pts/N
  kDevTty = 22,     // /dev/tty, the process's controlling terminal (its own pty)
  // 30-39: event objects, made again by the restorer from the record of
  // core/event_records.h that names the file.
  kEventfd = 30,
  kTimerfd = 31,
  kSignalfd = 32,
  kInotify = 33,
  kEpoll = 34,  // filled in its holder once its targets are in place
  // 40-49: sockets. FileRecord::socket names the kSocket record.
  kSocket = 40,
};

// An open file description, shared by every descriptor that refers to it,
// or a file a VMA maps. Parent: the file table or memory map that first
// referred to it.
struct FileRecord {
  static constexpr RecordType kType = RecordType::kFile;
  static constexpr const char* kName = "file";
  uint32_t kind = 0;   // FileKind
  uint32_t flags = 0;  // O_* status flags
  uint32_t mode = 0;   // st_mode
  uint64_t offset = 0;
  uint64_t size = 0;
  uint64_t dev = 0, inode = 0, rdev = 0;
  ObjectRef pipe = 0;  // the kPipe, for pipes and FIFOs
  std::string path;
  // Appended fields.
  ObjectRef tty = 0;  // the kTty, for pty ends and /dev/tty
  ObjectRef object = 0;  // the kInode holding the contents (memfd, deleted file), or 0
  uint32_t pid = 0;  // kPidfd: the recorded PID it refers to, 0 for a dead process
  ObjectRef socket = 0;  // kSocket: the kSocket record
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("kind", s.kind); v("flags", s.flags); v("mode", s.mode);
    v("offset", s.offset); v("size", s.size);
    v("dev", s.dev); v("inode", s.inode); v("rdev", s.rdev);
    v("pipe", s.pipe);
    v("path", s.path);
    v("tty", s.tty);
    v("object", s.object);
    v("pid", s.pid);
    v("socket", s.socket);
  }
};

// Parent: the file table.
struct FdRecord {
  static constexpr RecordType kType = RecordType::kFd;
  static constexpr const char* kName = "fd";
  uint32_t fd = 0;
  uint32_t fd_flags = 0;  // FD_CLOEXEC
  ObjectRef file = 0;
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("fd", s.fd); v("fd_flags", s.fd_flags); v("file", s.file); }
};

// A pipe; both ends' kFile records name it. Bulk: the buffered bytes.
struct PipeRecord {
  static constexpr RecordType kType = RecordType::kPipe;
  static constexpr const char* kName = "pipe";
  uint64_t inode = 0;
  uint32_t capacity = 0;  // F_GETPIPE_SZ
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("inode", s.inode); v("capacity", s.capacity); }
};

enum class FileLockKind : uint32_t {
  kFlock = 0,  // flock(2): belongs to the open file description
  kPosix = 1,  // fcntl(F_SETLK): belongs to the process
  kOfd = 2,    // fcntl(F_OFD_SETLK): belongs to the open file description
  kLease = 3,  // fcntl(F_SETLEASE): belongs to the open file description
};

// A lock or lease held on a file. Parent: the file table.
struct FileLockRecord {
  static constexpr RecordType kType = RecordType::kFileLock;
  static constexpr const char* kName = "file_lock";
  ObjectRef file = 0;  // the kFile the lock was taken through
  uint32_t kind = 0;   // FileLockKind
  uint32_t type = 0;   // F_RDLCK or F_WRLCK (flock: shared or exclusive)
  uint64_t start = 0;  // first byte (POSIX, OFD)
  uint64_t length = 0;  // bytes; 0: to the end of the file, however it grows
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("file", s.file); v("kind", s.kind); v("type", s.type);
    v("start", s.start); v("length", s.length);
  }
};

// Parent: the process. Which directories its cwd and root are: the file
// records of those a path is not enough to restore (a removed directory;
// 0: by path), and the identity a path must still lead to at restore.
struct ProcessDirsRecord {
  static constexpr RecordType kType = RecordType::kProcessDirs;
  static constexpr const char* kName = "process_dirs";
  ObjectRef cwd = 0;
  ObjectRef root = 0;
  uint64_t cwd_dev = 0, cwd_inode = 0;
  uint64_t root_dev = 0, root_inode = 0;
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("cwd", s.cwd); v("root", s.root);
    v("cwd_dev", s.cwd_dev); v("cwd_inode", s.cwd_inode);
    v("root_dev", s.root_dev); v("root_inode", s.root_inode);
  }
};

// TtyRecord::flags.
inline constexpr uint32_t kTtyLocked = 1u << 0;       // TIOCGPTLCK: the slave cannot be opened
inline constexpr uint32_t kTtyPacket = 1u << 1;       // TIOCPKT: packet mode on the master
inline constexpr uint32_t kTtyControlling = 1u << 2;  // the controlling terminal of the
                                                      // process's session (it leads it)

// A pseudo-terminal pair whose master is the process's. Parent: the file
// table. Its kFile records (kPtyMaster, kPtySlave, kDevTty) name it.
struct TtyRecord {
  static constexpr RecordType kType = RecordType::kTty;
  static constexpr const char* kName = "tty";
  uint32_t index = 0;  // N of /dev/pts/N
  uint32_t flags = 0;  // kTty*
  uint32_t foreground_pgrp = 0;  // TIOCGPGRP, when controlling; 0: none
  uint32_t slave_mode = 0;       // st_mode of /dev/pts/N
  std::string ptmx_path;         // where the master was opened (/dev/ptmx)
  std::string slave_path;        // /dev/pts/N
  // termios2 (TCGETS2), field by field.
  uint32_t iflag = 0, oflag = 0, cflag = 0, lflag = 0;
  uint32_t line = 0;
  Bytes cc;  // c_cc, NCCS (19) bytes
  uint32_t ispeed = 0, ospeed = 0;
  // TIOCGWINSZ.
  uint32_t rows = 0, cols = 0, xpixel = 0, ypixel = 0;
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("index", s.index); v("flags", s.flags);
    v("foreground_pgrp", s.foreground_pgrp); v("slave_mode", s.slave_mode);
    v("ptmx_path", s.ptmx_path); v("slave_path", s.slave_path);
    v("iflag", s.iflag); v("oflag", s.oflag); v("cflag", s.cflag); v("lflag", s.lflag);
    v("line", s.line); v("cc", s.cc); v("ispeed", s.ispeed); v("ospeed", s.ospeed);
    v("rows", s.rows); v("cols", s.cols); v("xpixel", s.xpixel); v("ypixel", s.ypixel);
  }
};

// Every record type, for code that handles all of them (inspect, tests).
using AllRecordTypes =
    std::tuple<EndRecord, FillerRecord, ProcessRecord, ThreadRecord, SignalHandlersRecord,
               PendingSignalsRecord, RlimitsRecord, ItimersRecord,
               ProcessAttributesRecord, ThreadAttributesRecord, PosixTimersRecord,
               SeccompRecord, ScheduleRecord,
               X86RegistersRecord, XstateRecord, XstateComponentRecord,
               MemoryMapRecord, VmaRecord, PagesRecord, GuardRegionsRecord, PageDropsRecord, StalePagesRecord, ChainRecord, FileTableRecord,
               FileRecord, FdRecord, PipeRecord, FileLockRecord, ProcessDirsRecord, TtyRecord,
               InodeRecord, SocketRecord, TcpConnectionRecord, EventfdRecord, TimerfdRecord,
               SignalfdRecord, InotifyRecord, EpollRecord>;

// Calls f(R{}) once for every record type R.
template <typename F>
void ForEachRecordType(F&& f) {
  std::apply([&](auto... r) { (f(r), ...); }, AllRecordTypes{});
}

// The name of a known record type, or nullptr.
const char* RecordTypeName(uint32_t type);

}  // namespace crlib

#endif  // CRLIB_CORE_RECORDS_H_
