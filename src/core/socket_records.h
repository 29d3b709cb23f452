// The records of sockets: one per socket an open file refers to, with its
// address, its peer, its options and its queued data. Part of
// core/records.h, which includes it; docs/FORMAT.md has one table per type.
#ifndef CRLIB_CORE_SOCKET_RECORDS_H_
#define CRLIB_CORE_SOCKET_RECORDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/codec.h"
#include "core/record_types.h"

namespace crlib {

// SocketRecord::flags.
// Bound to a path whose name was removed since: bound again at restore
// and its name removed again.
inline constexpr uint32_t kSocketNameRemoved = 1u << 0;
// A connection waiting on a listener of the image to be accepted: `peer`
// is the listener's inode, `pending_index` its place in the queue.
inline constexpr uint32_t kSocketPending = 1u << 1;
// Connected (a datagram socket) to a bound socket no dumped process holds:
// connected again at restore to `peer_name`.
inline constexpr uint32_t kSocketPeerOutside = 1u << 2;

// A socket option whose value differs from a new socket's of the same
// family, type and protocol: set again at restore.
struct SocketOption {
  uint32_t level = 0;  // SOL_SOCKET, SOL_TCP, ...
  uint32_t name = 0;   // SO_RCVBUF, ...
  Bytes value;         // as getsockopt gave it
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("level", s.level); v("name", s.name); v("value", s.value); }
};

// A message in a socket's receive queue; its bytes are in the record's
// bulk, message after message. A stream socket's queue is one message.
struct SocketMessage {
  uint64_t length = 0;
  Bytes sender;  // the sender's address (recvfrom's), empty when unnamed or for streams
  template <typename S, typename V>
  static void Fields(S& s, V& v) { v("length", s.length); v("sender", s.sender); }
};

// A socket (AF_UNIX, AF_INET, AF_INET6). Parent: the file table. Its
// kFile record (kind kSocket) names it; a socket has exactly one open
// file description. Bulk: the receive queue's bytes (`queue`).
struct SocketRecord {
  static constexpr RecordType kType = RecordType::kSocket;
  static constexpr const char* kName = "socket";
  uint32_t family = 0, type = 0, protocol = 0;
  uint32_t state = 0;     // the kernel's sk_state (TCP_ESTABLISHED, TCP_LISTEN, TCP_CLOSE ...)
  uint64_t inode = 0;     // sockfs inode (identity)
  uint64_t peer = 0;      // AF_UNIX: the peer's inode (the listener's when kSocketPending), or 0
  uint32_t flags = 0;     // kSocket*
  uint32_t shutdown = 0;  // RCV_SHUTDOWN (1) | SEND_SHUTDOWN (2)
  uint32_t backlog = 0;   // listen(2)'s, for a listening socket
  uint32_t pending_index = 0;  // kSocketPending: 0 for the first connection to be accepted
  Bytes name;       // the bound address, a sockaddr as getsockname gives it; empty: unbound
  Bytes peer_name;  // the address connected to (getpeername), or empty
  // A socket bound to a path: the socket file's owner and mode.
  uint32_t file_uid = 0, file_gid = 0, file_mode = 0;
  std::vector<SocketOption> options;
  std::vector<SocketMessage> queue;  // receive queue, oldest first
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("family", s.family); v("type", s.type); v("protocol", s.protocol); v("state", s.state);
    v("inode", s.inode); v("peer", s.peer); v("flags", s.flags); v("shutdown", s.shutdown);
    v("backlog", s.backlog); v("pending_index", s.pending_index);
    v("name", s.name); v("peer_name", s.peer_name);
    v("file_uid", s.file_uid); v("file_gid", s.file_gid); v("file_mode", s.file_mode);
    v("options", s.options); v("queue", s.queue);
  }
};

}  // namespace crlib

#endif  // CRLIB_CORE_SOCKET_RECORDS_H_
