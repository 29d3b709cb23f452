// Asking the kernel about sockets through NETLINK_SOCK_DIAG: what no
// getsockopt tells, such as a UNIX socket's peer and the connections that
// wait on a listener.
#ifndef CRLIB_SYS_SOCK_DIAG_H_
#define CRLIB_SYS_SOCK_DIAG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace crlib::sys {

struct UnixSocketDiag {
  uint32_t type = 0;   // SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
  uint32_t state = 0;  // TCP_ESTABLISHED, TCP_LISTEN, TCP_CLOSE ...
  uint64_t inode = 0;
  uint64_t peer = 0;  // the peer's inode, 0: none
  // The bound name: sun_path's bytes (a leading NUL for an abstract
  // name), empty when unbound.
  std::string name;
  // The socket file a path name made: its inode and device, 0 if none.
  uint64_t vfs_inode = 0, vfs_dev = 0;
  // A listener's connections waiting to be accepted: the inodes of the
  // sockets that connected, in the order accept(2) would take them.
  std::vector<uint64_t> pending;
  // Listener: connections waiting and the backlog. Others: bytes to read
  // and bytes sent that the peer has not read.
  uint32_t rqueue = 0, wqueue = 0;
  uint32_t shutdown = 0;  // RCV_SHUTDOWN (1) | SEND_SHUTDOWN (2)
};

// The UNIX socket with sockfs inode `inode`, in crlib's network namespace.
// NotFound when there is none (closed, or of another namespace).
absl::StatusOr<UnixSocketDiag> QueryUnixSocket(uint64_t inode);

}  // namespace crlib::sys

#endif  // CRLIB_SYS_SOCK_DIAG_H_
