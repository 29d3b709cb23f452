// Checkpoint of a process's file descriptors and of the files its memory
// maps, by kind: regular (deleted ones with their contents), directories,
// pipes and FIFOs (with their buffered bytes), character devices.
#ifndef CRLIB_FILES_FILE_CAPTURE_H_
#define CRLIB_FILES_FILE_CAPTURE_H_

#include <sys/types.h>

#include <map>
#include <optional>
#include <set>
#include <utility>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/context.h"
#include "core/records.h"
#include "files/carried_inode.h"
#include "files/socket_capture.h"

namespace crlib {

struct FdInfo {
  int fd = -1;
  std::string link;  // readlink of /proc/PID/fd/N
  FileRecord file;
  uint32_t fd_flags = 0;
  // Locks and leases on its open file description (POSIX locks too: the
  // kernel lists them with the description they were taken through).
  std::vector<FileLockRecord> locks;
  int tty_index = -1;  // N of /dev/pts/N, for the ends of a pty pair and /dev/tty
  // What tells this description from others of its inode, where the
  // kernel gives more than the inode (an eventfd's "eventfd-id": every
  // eventfd shares one anonymous inode); 0: the inode alone. Only narrows
  // the registry's search: kcmp still decides.
  uint64_t identity = 0;
  // A socket, as read; a standard stream's that could not be read keeps
  // why (ClassifySockets refuses it unless it is the restorer's stream).
  std::optional<SocketCapture> socket;
  absl::Status socket_error;
};

// Looks at every descriptor of stopped process `pid` but those in
// `skip_fds`, without changing anything. Fails with NotCheckpointableError
// if the process holds a nocr mark (sys/nocr.h), else with Unimplemented
// naming the first unsupported descriptor ("fd 5 (socket:[1234], netlink
// protocol 0) is not supported: ..."). A pidfd is carried when it refers to one of
// `pidfd_targets` (the PIDs, in our PID namespace, of the dumped
// processes) or to a process that has exited and been reaped.
// Established TCP connections are held still and read through `tcp`
// when it allows them (see files/tcp_connection.h), refused otherwise.
absl::StatusOr<std::vector<FdInfo>> ScanFds(pid_t pid, const std::set<pid_t>& pidfd_targets,
                                            absl::Span<const int> skip_fds = {},
                                            TcpFreeze* tcp = nullptr);

// Decides, once every process of the dumped tree is scanned, which of
// their anonymous pipe ends lead outside it: a pipe is internal when the
// tree holds both its ends, in any of its processes. An end whose other
// end is outside becomes FileKind::kInherited at fd 0-2 (reconnected to
// the restorer's own standard stream) and FileKind::kExternal above
// (given by the restorer, --inherit-fd), with the key "pipe:[INODE]" as
// its path; when any fd above 2 has the pipe, its fds 0-2 are external
// too (a dup of stdout at fd 3 is one description, one key); its buffered bytes belong to the pipe outside and are not
// carried. FIFOs are reopened by path and stay as they are.
absl::Status ClassifyPipeEnds(absl::Span<std::vector<FdInfo>* const> tree);

// The inode behind a memfd or deleted file descriptor, whose contents the
// image carries; nullopt for other kinds.
std::optional<CarriedInodeSource> CarriedInodeOfFd(pid_t pid, const FdInfo& info);

// Writes the file table, its files, pipes, fds and locks under `process`,
// and a removed cwd's directory.
// For each open file description written, a (pid, fd) that holds it: how
// the descriptors of the next process are matched to it (kcmp), so that a
// description several processes share is written once.
using DescriptionHolders = std::map<ObjectRef, std::pair<pid_t, int>>;

absl::Status WriteFileTable(Context* ctx, pid_t pid, const std::vector<FdInfo>& fds,
                            ObjectRef process, DescriptionHolders* holders);

// The ref of the file record for a mapped or executable file at `path`
// (identified by dev/inode), writing the record under `parent` the first
// time.
absl::StatusOr<ObjectRef> InternMappedFile(Context* ctx, const std::string& path, uint64_t dev,
                                           uint64_t inode, ObjectRef parent);

// The files family's writer of the objects memory refers to (mapped
// files, carried inodes), for Context::set_objects.
class FileObjectWriter final : public SharedObjectWriter {
 public:
  absl::StatusOr<ObjectRef> InternFile(Context* ctx, const std::string& path, uint64_t dev,
                                       uint64_t inode, ObjectRef parent) override {
    return InternMappedFile(ctx, path, dev, inode, parent);
  }
  absl::StatusOr<ObjectRef> InternCarriedInode(Context* ctx, const CarriedInodeSource& source,
                                               ObjectRef parent) override {
    return ::crlib::InternCarriedInode(ctx, source, parent);
  }
};

}  // namespace crlib

#endif  // CRLIB_FILES_FILE_CAPTURE_H_
