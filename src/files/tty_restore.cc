#include "files/tty_restore.h"

#include <asm/termbits.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/strings/str_format.h"
#include "core/status.h"

namespace crlib {
namespace {

// More ptys than any machine holds open; a bound on the allocation loop.
constexpr size_t kMaxPtyHeld = 4096;

absl::Status InUse(const TtyRecord& tty) {
  return absl::AlreadyExistsError(absl::StrFormat(
      "pty %d (%s) is in use here; the image's terminal needs that index", tty.index,
      tty.slave_path));
}

}  // namespace

absl::Status CheckTerminals(const ProcessImage& image) {
  for (const auto& [ref, tty] : image.ttys) {
    struct stat st;
    if (stat(tty.slave_path.c_str(), &st) == 0) return InUse(tty);
    if (stat(tty.ptmx_path.c_str(), &st) != 0) {
      return Errno("stat %s, to open pty %d again", tty.ptmx_path, tty.index);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int> OpenPtyPair(const TtyRecord& tty, bool any_index) {
  // devpts gives each new master the lowest free index: open masters
  // until the image's comes, hold the lower ones meanwhile.
  std::vector<int> held;
  auto release = [&] {
    for (int fd : held) close(fd);
  };
  int master = -1;
  while (master < 0) {
    int fd = open(tty.ptmx_path.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
      absl::Status st = Errno("open %s for pty %d", tty.ptmx_path, tty.index);
      release();
      return st;
    }
    unsigned index = 0;
    if (ioctl(fd, TIOCGPTN, &index) != 0) {
      absl::Status st = Errno("ioctl(TIOCGPTN) on %s", tty.ptmx_path);
      close(fd);
      release();
      return st;
    }
    if (index == tty.index || any_index) {
      master = fd;
    } else {
      held.push_back(fd);
      if (index > tty.index || held.size() > kMaxPtyHeld) {
        release();
        return InUse(tty);
      }
    }
  }
  release();
  termios2 t{};
  t.c_iflag = tty.iflag;
  t.c_oflag = tty.oflag;
  t.c_cflag = tty.cflag;
  t.c_lflag = tty.lflag;
  t.c_line = static_cast<cc_t>(tty.line);
  std::memcpy(t.c_cc, tty.cc.data(), std::min<size_t>(tty.cc.size(), NCCS));
  t.c_ispeed = tty.ispeed;
  t.c_ospeed = tty.ospeed;
  winsize ws{};
  ws.ws_row = static_cast<unsigned short>(tty.rows);
  ws.ws_col = static_cast<unsigned short>(tty.cols);
  ws.ws_xpixel = static_cast<unsigned short>(tty.xpixel);
  ws.ws_ypixel = static_cast<unsigned short>(tty.ypixel);
  int unlock = 0;
  int packet = (tty.flags & kTtyPacket) ? 1 : 0;
  // The master's ioctls act on the slave's termios and window size.
  struct {
    unsigned long request;
    const char* name;
    const void* arg;
  } steps[] = {{TIOCSPTLCK, "TIOCSPTLCK", &unlock},
               {TCSETS2, "TCSETS2", &t},
               {TIOCSWINSZ, "TIOCSWINSZ", &ws},
               {TIOCPKT, "TIOCPKT", &packet}};
  for (const auto& step : steps) {
    if (ioctl(master, step.request, step.arg) != 0) {
      absl::Status st = Errno("ioctl(%s) on the master of pty %d", step.name, tty.index);
      close(master);
      return st;
    }
  }
  return master;
}

absl::StatusOr<int> OpenPtySlave(int master, const TtyRecord& tty, int flags) {
  int fd = ioctl(master, TIOCGPTPEER, flags | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return Errno("ioctl(TIOCGPTPEER) for %s", tty.slave_path);
  if (fchmod(fd, tty.slave_mode & 07777) != 0) {
    absl::Status st = Errno("fchmod of %s to %04o", tty.slave_path, tty.slave_mode & 07777);
    close(fd);
    return st;
  }
  return fd;
}

absl::Status FinishPtyPair(int master, const TtyRecord& tty) {
  if (!(tty.flags & kTtyLocked)) return absl::OkStatus();
  int lock = 1;
  if (ioctl(master, TIOCSPTLCK, &lock) != 0) {
    return Errno("ioctl(TIOCSPTLCK) on the master of pty %d", tty.index);
  }
  return absl::OkStatus();
}

absl::Status RestoreControllingTerminal(Tracee* t, const ProcessImage& image, uint64_t scratch) {
  const TtyRecord* tty = nullptr;
  ObjectRef tty_ref = 0;
  for (const auto& [ref, rec] : image.ttys) {
    if (rec.flags & kTtyControlling) {
      tty = &rec;
      tty_ref = ref;
    }
  }
  if (tty == nullptr) return absl::OkStatus();
  // The slave through the process's own master (TIOCGPTPEER), never by a
  // path from the image: this runs with the restorer's rights.
  std::optional<uint32_t> master;
  uint64_t above = 3;
  for (const FdRecord& rec : image.fds) {
    above = std::max<uint64_t>(above, rec.fd + 1);
    const FileRecord& f = image.files.at(rec.file).record;
    if (f.tty == tty_ref && static_cast<FileKind>(f.kind) == FileKind::kPtyMaster) master = rec.fd;
  }
  if (!master) {
    return absl::DataLossError(absl::StrFormat(
        "the controlling terminal, pty %d, has no master fd in the image", tty->index));
  }
  auto remote_path = [&](const std::string& path) {
    return t->WriteMemory(scratch, path.c_str(), path.size() + 1);
  };
  // A locked pair's slave does not open (EIO): unlocked for that moment.
  const uint64_t lock_at = scratch + 512;
  auto set_lock = [&](int lock) -> absl::Status {
    if (!(tty->flags & kTtyLocked)) return absl::OkStatus();
    CRLIB_RETURN_IF_ERROR(t->WriteMemory(lock_at, &lock, sizeof(lock)));
    return t->CheckedSyscall("ioctl(TIOCSPTLCK) on the controlling terminal's master", SYS_ioctl,
                             {*master, TIOCSPTLCK, lock_at})
        .status();
  };
  CRLIB_RETURN_IF_ERROR(set_lock(0));
  absl::StatusOr<int64_t> peer =
      t->CheckedSyscall("ioctl(TIOCGPTPEER) for the controlling terminal", SYS_ioctl,
                        {*master, TIOCGPTPEER,
                         static_cast<uint64_t>(O_RDWR | O_NOCTTY | O_CLOEXEC)});
  CRLIB_RETURN_IF_ERROR(set_lock(1));
  CRLIB_RETURN_IF_ERROR(peer.status());
  const int64_t opened_slave = *peer;
  // Above every fd of the image: the number it got may be one of the
  // /dev/tty fds still to open.
  absl::StatusOr<int64_t> slave = t->CheckedSyscall(
      "fcntl(F_DUPFD_CLOEXEC) of the controlling terminal", SYS_fcntl,
      {static_cast<uint64_t>(opened_slave), F_DUPFD_CLOEXEC, above});
  (void)t->Syscall(SYS_close, {static_cast<uint64_t>(opened_slave)});
  CRLIB_RETURN_IF_ERROR(slave.status());
  const auto fd = static_cast<uint64_t>(*slave);
  absl::Status st = [&]() -> absl::Status {
    CRLIB_RETURN_IF_ERROR(
        t->CheckedSyscall("ioctl(TIOCSCTTY)", SYS_ioctl, {fd, TIOCSCTTY, 0}).status());
    // Only the process's own group can be the foreground here; another
    // one (of processes outside the image) stays not carried.
    if (tty->foreground_pgrp != 0 && tty->foreground_pgrp == image.process.pgid) {
      const int pgrp = static_cast<int>(tty->foreground_pgrp);
      CRLIB_RETURN_IF_ERROR(t->WriteMemory(scratch, &pgrp, sizeof(pgrp)));
      CRLIB_RETURN_IF_ERROR(
          t->CheckedSyscall("ioctl(TIOCSPGRP)", SYS_ioctl, {fd, TIOCSPGRP, scratch}).status());
    }
    // /dev/tty opens the controlling terminal just set.
    CRLIB_RETURN_IF_ERROR(remote_path("/dev/tty"));
    for (const FdRecord& rec : image.fds) {
      const FileRecord& f = image.files.at(rec.file).record;
      if (static_cast<FileKind>(f.kind) != FileKind::kDevTty) continue;
      const int flags = static_cast<int>(f.flags) & ~(O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC);
      CRLIB_ASSIGN_OR_RETURN(
          int64_t opened,
          t->CheckedSyscall("open /dev/tty", SYS_openat,
                            {static_cast<uint64_t>(AT_FDCWD), scratch,
                             static_cast<uint64_t>(flags | O_CLOEXEC)}));
      absl::Status placed =
          t->CheckedSyscall("dup3 of /dev/tty", SYS_dup3,
                            {static_cast<uint64_t>(opened), rec.fd,
                             (rec.fd_flags & FD_CLOEXEC) ? static_cast<uint64_t>(O_CLOEXEC) : 0})
              .status();
      if (static_cast<uint32_t>(opened) != rec.fd) {
        (void)t->Syscall(SYS_close, {static_cast<uint64_t>(opened)});
      }
      CRLIB_RETURN_IF_ERROR(placed);
    }
    return absl::OkStatus();
  }();
  (void)t->Syscall(SYS_close, {fd});
  return st;
}

}  // namespace crlib
