// Checkpoint of sockets: UNIX (stream, datagram, seqpacket), TCP and UDP
// over IPv4 and IPv6. Each socket is read through a descriptor of our own
// on it (pidfd_getfd), without changing it: its address, peer, options,
// shutdown state and the messages queued to be read (peeked).
#ifndef CRLIB_FILES_SOCKET_CAPTURE_H_
#define CRLIB_FILES_SOCKET_CAPTURE_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/records.h"
#include "files/tcp_connection.h"

namespace crlib {

struct FdInfo;

struct SocketCapture {
  SocketRecord record;
  Bytes data;  // the queued messages' bytes, one after the other
  // A UNIX listener's connections waiting to be accepted: the inodes of
  // the sockets that connected, in accept order.
  std::vector<uint64_t> pending;
  uint32_t unread_sent = 0;  // UNIX: bytes this socket sent that its peer has not read
  std::string what;  // "UNIX stream bound to /run/x.sock", for messages
  std::optional<TcpConnectionCapture> tcp;  // an established TCP connection
};

// Reads socket `fd` (sockfs inode `inode`) of stopped process `pid`.
// Unimplemented, naming the fd and the socket, for what is not carried:
// another network namespace, a family or protocol crlib does not restore,
// descriptors in flight (SCM_RIGHTS), a TCP connection that is not
// established, or an established one without `tcp` allowing it (which
// holds it still: files/tcp_connection.h).
absl::StatusOr<SocketCapture> CaptureSocket(pid_t pid, int fd, const std::string& link,
                                            uint64_t inode, TcpFreeze* tcp);

// Decides, once every process of the tree is scanned, what each socket
// descriptor becomes (FdInfo::file.kind): a UNIX socket whose peer is in
// the tree, or that waits on a listener in it, or that has no peer, is
// restored (kSocket); a stream whose peer is outside is external
// ("socket:[INODE]", --inherit-fd), as a pipe is; a datagram socket
// connected to a bound socket outside is connected again to its name. A
// socket only standard streams (fds 0-2) hold and that leads outside is
// the restorer's own stream (kInherited), as before sockets were carried.
absl::Status ClassifySockets(absl::Span<std::vector<FdInfo>* const> tree);

}  // namespace crlib

#endif  // CRLIB_FILES_SOCKET_CAPTURE_H_
