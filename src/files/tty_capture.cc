#include "files/tty_capture.h"

#include <asm/termbits.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <map>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/image_writer.h"
#include "core/status.h"
#include "sys/proc.h"

namespace crlib {
namespace {

constexpr unsigned kPtySlaveMajorFirst = 136;  // UNIX98_PTY_SLAVE_MAJOR
constexpr unsigned kPtySlaveMajorLast = 143;   // + UNIX98_PTY_MAJOR_COUNT - 1
const dev_t kDevTtyRdev = makedev(5, 0);
const dev_t kPtmxRdev = makedev(5, 2);

bool IsPtySlave(dev_t rdev) {
  return major(rdev) >= kPtySlaveMajorFirst && major(rdev) <= kPtySlaveMajorLast;
}

uint32_t PtySlaveIndex(dev_t rdev) { return (major(rdev) - kPtySlaveMajorFirst) * 256 + minor(rdev); }

// The process's controlling terminal (0: none) and foreground group, from
// /proc/PID/stat (proc(5) fields 7 and 8).
struct ControllingTerminal {
  dev_t rdev = 0;
  int64_t foreground = 0;
};

absl::StatusOr<ControllingTerminal> ReadControllingTerminal(pid_t pid) {
  CRLIB_ASSIGN_OR_RETURN(std::vector<std::string> stat, sys::ReadStatFields(pid));
  ControllingTerminal out;
  uint64_t tty_nr = 0;
  if (stat.size() < 6 || !absl::SimpleAtoi(stat[4], &tty_nr) ||
      !absl::SimpleAtoi(stat[5], &out.foreground)) {
    return absl::DataLossError(absl::StrFormat("/proc/%d/stat: no tty_nr or tpgid", pid));
  }
  // The kernel's new_encode_dev().
  out.rdev = makedev((tty_nr >> 8) & 0xfff, (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00));
  return out;
}

absl::Status RefuseOutside(const FdInfo& info, const std::string& what) {
  return absl::UnimplementedError(absl::StrFormat(
      "fd %d (%s) is not supported: %s; only fds 0-2 may lead to a terminal outside the "
      "process (restore connects the restorer's own)",
      info.fd, info.link, what));
}

// Bytes queued for reading on the terminal end `fd` (FIONREAD): they
// cannot be read without taking them from the process.
absl::Status RefuseQueued(pid_t pid, const FdInfo& info, uint32_t index) {
  CRLIB_ASSIGN_OR_RETURN(sys::UniqueFd fd, sys::TakeFd(pid, info.fd));
  int queued = 0;
  if (ioctl(fd.fd, FIONREAD, &queued) != 0) {
    return Errno("ioctl(FIONREAD) on fd %d (%s) of pid %d", info.fd, info.link, pid);
  }
  if (queued == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrFormat(
      "fd %d (%s): %d bytes wait to be read on pty %d, and a terminal's queue cannot be read "
      "without consuming it; read them before the dump",
      info.fd, info.link, queued, index));
}

}  // namespace

absl::Status ClassifyTerminals(pid_t pid, std::vector<FdInfo>* fds) {
  // Masters first: a slave or /dev/tty is ours only if its master is.
  std::map<uint32_t, int> masters;  // pty index -> fd
  // An O_PATH descriptor or a removed node is reopened as such, never as
  // a terminal (files/file_capture.cc).
  auto reopened_as_is = [](const FdInfo& info) {
    return info.file.kind == static_cast<uint32_t>(FileKind::kPath) ||
           info.file.kind == static_cast<uint32_t>(FileKind::kDeletedDevice);
  };
  for (FdInfo& info : *fds) {
    if (!S_ISCHR(info.file.mode) || info.file.rdev != kPtmxRdev || reopened_as_is(info)) continue;
    CRLIB_ASSIGN_OR_RETURN(sys::UniqueFd fd, sys::TakeFd(pid, info.fd));
    unsigned index = 0;
    if (ioctl(fd.fd, TIOCGPTN, &index) != 0) {
      return Errno("ioctl(TIOCGPTN) on fd %d (%s) of pid %d", info.fd, info.link, pid);
    }
    info.file.kind = static_cast<uint32_t>(FileKind::kPtyMaster);
    info.tty_index = static_cast<int>(index);
    masters.emplace(index, info.fd);
  }
  CRLIB_ASSIGN_OR_RETURN(ControllingTerminal ctty, ReadControllingTerminal(pid));
  const bool ctty_ours = IsPtySlave(ctty.rdev) && masters.contains(PtySlaveIndex(ctty.rdev));
  if (ctty_ours && getsid(pid) != pid) {
    return absl::UnimplementedError(absl::StrFormat(
        "pid %d: its controlling terminal is its own pty %d, but it does not lead its session "
        "(%d), which a single process restore cannot recreate",
        pid, PtySlaveIndex(ctty.rdev), getsid(pid)));
  }
  for (FdInfo& info : *fds) {
    if (!S_ISCHR(info.file.mode) || reopened_as_is(info)) continue;
    const dev_t rdev = info.file.rdev;
    if (rdev == kPtmxRdev) {
      CRLIB_RETURN_IF_ERROR(RefuseQueued(pid, info, static_cast<uint32_t>(info.tty_index)));
    } else if (IsPtySlave(rdev)) {
      const uint32_t index = PtySlaveIndex(rdev);
      if (masters.contains(index)) {
        info.file.kind = static_cast<uint32_t>(FileKind::kPtySlave);
        info.tty_index = static_cast<int>(index);
        CRLIB_RETURN_IF_ERROR(RefuseQueued(pid, info, index));
      } else if (info.fd <= 2) {
        info.file.kind = static_cast<uint32_t>(FileKind::kInherited);
      } else {
        return RefuseOutside(info, "a terminal whose master is outside the process");
      }
    } else if (rdev == kDevTtyRdev) {
      if (ctty_ours) {
        info.file.kind = static_cast<uint32_t>(FileKind::kDevTty);
        info.tty_index = static_cast<int>(PtySlaveIndex(ctty.rdev));
      } else if (info.fd <= 2) {
        info.file.kind = static_cast<uint32_t>(FileKind::kInherited);
      } else {
        return RefuseOutside(info, ctty.rdev == 0
                                       ? "/dev/tty of a process without a controlling terminal"
                                       : "/dev/tty, and the controlling terminal is outside the "
                                         "process");
      }
    } else if (info.fd > 2) {
      // Any other terminal (a console, a serial line) leads outside.
      CRLIB_ASSIGN_OR_RETURN(sys::UniqueFd fd, sys::TakeFd(pid, info.fd));
      termios2 t;
      if (ioctl(fd.fd, TCGETS2, &t) == 0) return RefuseOutside(info, "a terminal");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ObjectRef> InternTty(Context* ctx, pid_t pid, const std::vector<FdInfo>& fds,
                                    const FdInfo& info, ObjectRef table) {
  const auto index = static_cast<uint32_t>(info.tty_index);
  auto entry = ctx->registry().Intern({ObjectKind::kTty, 0, index});
  if (!entry.inserted) return entry.ref;
  const FdInfo* master = nullptr;
  for (const FdInfo& f : fds) {
    if (f.tty_index == info.tty_index &&
        f.file.kind == static_cast<uint32_t>(FileKind::kPtyMaster)) {
      master = &f;
    }
  }
  if (master == nullptr) {
    return absl::InternalError(absl::StrFormat("pty %d has no master fd in pid %d", index, pid));
  }
  // A master's ioctls act on its slave's termios and window size.
  CRLIB_ASSIGN_OR_RETURN(sys::UniqueFd fd, sys::TakeFd(pid, master->fd));
  auto ask = [&](unsigned long request, const char* name, void* out) -> absl::Status {
    if (ioctl(fd.fd, request, out) != 0) {
      return Errno("ioctl(%s) on the master of pty %d (fd %d of pid %d)", name, index, master->fd,
                   pid);
    }
    return absl::OkStatus();
  };
  termios2 t{};
  winsize ws{};
  int locked = 0, packet = 0;
  CRLIB_RETURN_IF_ERROR(ask(TCGETS2, "TCGETS2", &t));
  CRLIB_RETURN_IF_ERROR(ask(TIOCGWINSZ, "TIOCGWINSZ", &ws));
  CRLIB_RETURN_IF_ERROR(ask(TIOCGPTLCK, "TIOCGPTLCK", &locked));
  CRLIB_RETURN_IF_ERROR(ask(TIOCGPKT, "TIOCGPKT", &packet));
  TtyRecord rec;
  rec.index = index;
  rec.ptmx_path = master->link;
  rec.slave_path = absl::StrCat("/dev/pts/", index);
  struct stat slave{};
  if (stat(rec.slave_path.c_str(), &slave) != 0) return Errno("stat %s", rec.slave_path);
  rec.slave_mode = slave.st_mode;
  if (locked) rec.flags |= kTtyLocked;
  if (packet) rec.flags |= kTtyPacket;
  CRLIB_ASSIGN_OR_RETURN(ControllingTerminal ctty, ReadControllingTerminal(pid));
  if (IsPtySlave(ctty.rdev) && PtySlaveIndex(ctty.rdev) == index) {
    rec.flags |= kTtyControlling;
    if (ctty.foreground > 0) rec.foreground_pgrp = static_cast<uint32_t>(ctty.foreground);
  }
  rec.iflag = t.c_iflag;
  rec.oflag = t.c_oflag;
  rec.cflag = t.c_cflag;
  rec.lflag = t.c_lflag;
  rec.line = t.c_line;
  rec.cc.assign(t.c_cc, t.c_cc + NCCS);
  rec.ispeed = t.c_ispeed;
  rec.ospeed = t.c_ospeed;
  rec.rows = ws.ws_row;
  rec.cols = ws.ws_col;
  rec.xpixel = ws.ws_xpixel;
  rec.ypixel = ws.ws_ypixel;
  CRLIB_RETURN_IF_ERROR(ctx->writer()->Write(rec, entry.ref, table));
  return entry.ref;
}

}  // namespace crlib
