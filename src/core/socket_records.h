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

// TcpConnectionRecord::options: what the two ends agreed on at the
// handshake (TCP_INFO's tcpi_options).
inline constexpr uint32_t kTcpTimestamps = 1u << 0;
inline constexpr uint32_t kTcpSack = 1u << 1;
inline constexpr uint32_t kTcpWindowScale = 1u << 2;

// An established TCP connection, read in TCP repair mode (`crlib dump
// --tcp-established`). Parent: its socket record, whose queue holds the
// bytes received and not yet read. Bulk: the send queue, bytes sent but
// not acknowledged first, then the ones not sent yet.
struct TcpConnectionRecord {
  static constexpr RecordType kType = RecordType::kTcpConnection;
  static constexpr const char* kName = "tcp_connection";
  uint32_t send_seq = 0;      // sequence number after the send queue's last byte (write_seq)
  uint32_t receive_seq = 0;   // next sequence number expected from the peer (rcv_nxt)
  uint32_t send_length = 0;   // bytes in the send queue
  uint32_t unsent_length = 0; // of which not sent yet
  uint32_t mss = 0;           // TCP_MAXSEG
  uint32_t options = 0;       // kTcp*
  uint32_t send_wscale = 0, receive_wscale = 0;
  uint32_t timestamp = 0;     // TCP_TIMESTAMP: the connection's clock
  // TCP_REPAIR_WINDOW.
  uint32_t send_wl1 = 0, send_window = 0, max_window = 0, receive_window = 0, receive_wup = 0;
  // The nftables table that drops the connection's packets until it is
  // restored ("inet crlib_..."); restore deletes it.
  std::string filter;
  template <typename S, typename V>
  static void Fields(S& s, V& v) {
    v("send_seq", s.send_seq); v("receive_seq", s.receive_seq);
    v("send_length", s.send_length); v("unsent_length", s.unsent_length);
    v("mss", s.mss); v("options", s.options);
    v("send_wscale", s.send_wscale); v("receive_wscale", s.receive_wscale);
    v("timestamp", s.timestamp);
    v("send_wl1", s.send_wl1); v("send_window", s.send_window); v("max_window", s.max_window);
    v("receive_window", s.receive_window); v("receive_wup", s.receive_wup);
    v("filter", s.filter);
  }
};

}  // namespace crlib

#endif  // CRLIB_CORE_SOCKET_RECORDS_H_
