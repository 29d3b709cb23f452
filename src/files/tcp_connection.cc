#include "files/tcp_connection.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "files/socket_options.h"
#include "sys/nft.h"

namespace crlib {
namespace {

// The nft match of one direction of a connection: "ip saddr A ip daddr B
// tcp sport P tcp dport Q". A v4-mapped IPv6 address is IPv4 on the wire.
std::string Match(const Bytes& from, const Bytes& to) {
  auto parse = [](const Bytes& b, std::string* addr, int* port, bool* v6) {
    sockaddr_storage s{};
    memcpy(&s, b.data(), std::min(b.size(), sizeof(s)));
    char text[INET6_ADDRSTRLEN] = "";
    if (s.ss_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(&s);
      inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
      *port = ntohs(in->sin_port);
      *v6 = false;
    } else {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&s);
      *port = ntohs(in6->sin6_port);
      if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
        inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], text, sizeof(text));
        *v6 = false;
      } else {
        inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
        *v6 = true;
      }
    }
    *addr = text;
  };
  std::string a, b;
  int p = 0, q = 0;
  bool v6 = false;
  parse(from, &a, &p, &v6);
  parse(to, &b, &q, &v6);
  const char* ip = v6 ? "ip6" : "ip";
  return absl::StrFormat("%s saddr %s %s daddr %s tcp sport %d tcp dport %d", ip, a, ip, b, p, q);
}

absl::Status SetInt(int sock, int level, int name, int value, const char* label,
                    const std::string& what) {
  if (setsockopt(sock, level, name, &value, sizeof(value)) != 0) {
    return Errno("setsockopt(%s) on %s", label, what);
  }
  return absl::OkStatus();
}

absl::StatusOr<int> GetInt(int sock, int level, int name, const char* label,
                           const std::string& what) {
  int value = 0;
  socklen_t len = sizeof(value);
  if (getsockopt(sock, level, name, &value, &len) != 0) {
    return Errno("getsockopt(%s) on %s", label, what);
  }
  return value;
}

// Peeks `size` bytes of the queue repair mode points at.
absl::StatusOr<Bytes> PeekRepairQueue(int sock, int queue, size_t size, const std::string& what) {
  CRLIB_RETURN_IF_ERROR(SetInt(sock, IPPROTO_TCP, TCP_REPAIR_QUEUE, queue, "TCP_REPAIR_QUEUE", what));
  Bytes data(size);
  if (size == 0) return data;
  const ssize_t n = recv(sock, data.data(), size, MSG_PEEK | MSG_DONTWAIT);
  if (n != static_cast<ssize_t>(size)) {
    return absl::InternalError(absl::StrFormat(
        "peeked %d of the %d bytes in the %s queue of %s", n, size,
        queue == TCP_SEND_QUEUE ? "send" : "receive", what));
  }
  return data;
}

// Sends `data` into the queue repair mode points at (the receive queue
// takes it as received from the peer; the send queue as sent).
absl::Status FillRepairQueue(int sock, const uint8_t* data, size_t size, const std::string& what) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = send(sock, data + done, size - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Errno("queueing %d bytes on %s again", size - done, what);
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

TcpFreeze::~TcpFreeze() {
  if (!kept_) Release();  // else the killed processes' connections wait for the restore
}

void TcpFreeze::Release() {
  for (sys::UniqueFd& sock : sockets_) {
    int off = 0;
    setsockopt(sock.fd, IPPROTO_TCP, TCP_REPAIR, &off, sizeof(off));
  }
  sockets_.clear();
  captured_.clear();
  if (!table_.empty()) (void)ReleaseTcpFilter(table_);
  table_.clear();
}

absl::StatusOr<TcpConnectionCapture> TcpFreeze::Capture(int sock, uint64_t inode,
                                                        const Bytes& local, const Bytes& remote,
                                                        const std::string& what) {
  if (auto it = captured_.find(inode); it != captured_.end()) return it->second;
  // First no packet in or out, then read: nothing the peer sends after
  // the read may be acknowledged and lost.
  std::string script;
  if (table_.empty()) {
    uint64_t token = 0;
    if (getrandom(&token, sizeof(token), 0) != sizeof(token)) return Errno("getrandom");
    const std::string table = absl::StrFormat("crlib_%016x", token);
    script = absl::StrFormat(
        "add table inet %s\n"
        "add chain inet %s in { type filter hook input priority -300; policy accept; }\n"
        "add chain inet %s out { type filter hook output priority -300; policy accept; }\n",
        table, table, table);
    table_ = table;
  }
  absl::StrAppend(&script, "add rule inet ", table_, " in ", Match(remote, local), " drop\n",
                  "add rule inet ", table_, " out ", Match(local, remote), " drop\n");
  if (absl::Status st = sys::RunNft(script); !st.ok()) {
    if (sockets_.empty()) table_.clear();  // the transaction made nothing
    return Annotate(st, absl::StrCat("holding ", what, " still"));
  }
  int on = 1;
  if (setsockopt(sock, IPPROTO_TCP, TCP_REPAIR, &on, sizeof(on)) != 0) {
    return Errno("setsockopt(TCP_REPAIR) on %s", what);
  }
  sockets_.emplace_back(fcntl(sock, F_DUPFD_CLOEXEC, 0));
  if (sockets_.back().fd < 0) return Errno("fcntl(F_DUPFD) of %s", what);

  TcpConnectionCapture out;
  TcpConnectionRecord& r = out.record;
  r.filter = table_;
  tcp_info info{};
  socklen_t info_len = sizeof(info);
  if (getsockopt(sock, IPPROTO_TCP, TCP_INFO, &info, &info_len) != 0) {
    return Errno("getsockopt(TCP_INFO) on %s", what);
  }
  if (info.tcpi_options & TCPI_OPT_TIMESTAMPS) r.options |= kTcpTimestamps;
  if (info.tcpi_options & TCPI_OPT_SACK) r.options |= kTcpSack;
  if (info.tcpi_options & TCPI_OPT_WSCALE) {
    r.options |= kTcpWindowScale;
    r.send_wscale = info.tcpi_snd_wscale;
    r.receive_wscale = info.tcpi_rcv_wscale;
  }
  CRLIB_ASSIGN_OR_RETURN(int mss, GetInt(sock, IPPROTO_TCP, TCP_MAXSEG, "TCP_MAXSEG", what));
  r.mss = static_cast<uint32_t>(mss);
  if (r.options & kTcpTimestamps) {
    CRLIB_ASSIGN_OR_RETURN(int ts, GetInt(sock, IPPROTO_TCP, TCP_TIMESTAMP, "TCP_TIMESTAMP", what));
    r.timestamp = static_cast<uint32_t>(ts);
  }
  tcp_repair_window window{};
  socklen_t window_len = sizeof(window);
  if (getsockopt(sock, IPPROTO_TCP, TCP_REPAIR_WINDOW, &window, &window_len) != 0) {
    return Errno("getsockopt(TCP_REPAIR_WINDOW) on %s", what);
  }
  r.send_wl1 = window.snd_wl1;
  r.send_window = window.snd_wnd;
  r.max_window = window.max_window;
  r.receive_window = window.rcv_wnd;
  r.receive_wup = window.rcv_wup;
  int inq = 0, outq = 0, unsent = 0;
  if (ioctl(sock, SIOCINQ, &inq) != 0 || ioctl(sock, SIOCOUTQ, &outq) != 0 ||
      ioctl(sock, SIOCOUTQNSD, &unsent) != 0) {
    return Errno("ioctl(SIOCINQ/SIOCOUTQ) on %s", what);
  }
  r.send_length = static_cast<uint32_t>(outq);
  r.unsent_length = static_cast<uint32_t>(unsent);
  // A peek offset of the process's own would move our peek: 0 for us,
  // then back.
  const int peek_off = GetInt(sock, SOL_SOCKET, SO_PEEK_OFF, "SO_PEEK_OFF", what).value_or(-1);
  if (peek_off > 0) CRLIB_RETURN_IF_ERROR(SetInt(sock, SOL_SOCKET, SO_PEEK_OFF, 0, "SO_PEEK_OFF", what));
  absl::Status read = [&]() -> absl::Status {
    CRLIB_ASSIGN_OR_RETURN(out.receive_queue,
                           PeekRepairQueue(sock, TCP_RECV_QUEUE, static_cast<size_t>(inq), what));
    CRLIB_ASSIGN_OR_RETURN(int rcv_nxt, GetInt(sock, IPPROTO_TCP, TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ", what));
    r.receive_seq = static_cast<uint32_t>(rcv_nxt);
    CRLIB_ASSIGN_OR_RETURN(out.send_queue,
                           PeekRepairQueue(sock, TCP_SEND_QUEUE, static_cast<size_t>(outq), what));
    CRLIB_ASSIGN_OR_RETURN(int write_seq, GetInt(sock, IPPROTO_TCP, TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ", what));
    r.send_seq = static_cast<uint32_t>(write_seq);
    return SetInt(sock, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE, "TCP_REPAIR_QUEUE", what);
  }();
  if (peek_off > 0) (void)SetInt(sock, SOL_SOCKET, SO_PEEK_OFF, peek_off, "SO_PEEK_OFF", what);
  CRLIB_RETURN_IF_ERROR(read);
  captured_.emplace(inode, out);
  return out;
}

absl::StatusOr<int> MakeTcpConnection(const SocketRecord& socket, const TcpConnectionRecord& tcp,
                                      const Bytes& send_queue, const Bytes& receive_queue,
                                      const std::string& what) {
  sys::UniqueFd sock(::socket(static_cast<int>(socket.family), SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
  if (sock.fd < 0) return Errno("socket for %s", what);
  const int s = sock.fd;
  CRLIB_RETURN_IF_ERROR(Annotate(SetInt(s, IPPROTO_TCP, TCP_REPAIR, 1, "TCP_REPAIR", what),
                                 "TCP repair mode needs CAP_NET_ADMIN"));
  if (send_queue.size() != tcp.send_length || tcp.unsent_length > tcp.send_length) {
    return absl::DataLossError(absl::StrFormat("the send queue of %s holds %d bytes, not %d",
                                               what, send_queue.size(), tcp.send_length));
  }
  // Sequence numbers where the queues begin: filling them brings each to
  // where the connection was.
  CRLIB_RETURN_IF_ERROR(SetInt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE, "TCP_REPAIR_QUEUE", what));
  CRLIB_RETURN_IF_ERROR(SetInt(s, IPPROTO_TCP, TCP_QUEUE_SEQ,
                               static_cast<int>(tcp.receive_seq - receive_queue.size()),
                               "TCP_QUEUE_SEQ", what));
  CRLIB_RETURN_IF_ERROR(SetInt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, "TCP_REPAIR_QUEUE", what));
  CRLIB_RETURN_IF_ERROR(SetInt(s, IPPROTO_TCP, TCP_QUEUE_SEQ,
                               static_cast<int>(tcp.send_seq - tcp.send_length), "TCP_QUEUE_SEQ", what));
  // In repair mode bind takes the port next to its listener, and connect
  // sends nothing: the connection is established at once.
  if (bind(s, reinterpret_cast<const sockaddr*>(socket.name.data()),
           static_cast<socklen_t>(socket.name.size())) != 0) {
    return Errno("bind of %s", what);
  }
  if (connect(s, reinterpret_cast<const sockaddr*>(socket.peer_name.data()),
              static_cast<socklen_t>(socket.peer_name.size())) != 0) {
    return Errno("connect of %s in repair mode", what);
  }
  std::vector<tcp_repair_opt> options = {{TCPOPT_MAXSEG, tcp.mss}};
  if (tcp.options & kTcpWindowScale) {
    options.push_back({TCPOPT_WINDOW, tcp.send_wscale | (tcp.receive_wscale << 16)});
  }
  if (tcp.options & kTcpSack) options.push_back({TCPOPT_SACK_PERMITTED, 0});
  if (tcp.options & kTcpTimestamps) options.push_back({TCPOPT_TIMESTAMP, 0});
  if (setsockopt(s, IPPROTO_TCP, TCP_REPAIR_OPTIONS, options.data(),
                 static_cast<socklen_t>(options.size() * sizeof(tcp_repair_opt))) != 0) {
    return Errno("setsockopt(TCP_REPAIR_OPTIONS) on %s", what);
  }
  if (tcp.options & kTcpTimestamps) {
    CRLIB_RETURN_IF_ERROR(SetInt(s, IPPROTO_TCP, TCP_TIMESTAMP, static_cast<int>(tcp.timestamp),
                                 "TCP_TIMESTAMP", what));
  }
  CRLIB_RETURN_IF_ERROR(SetInt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE, "TCP_REPAIR_QUEUE", what));
  CRLIB_RETURN_IF_ERROR(FillRepairQueue(s, receive_queue.data(), receive_queue.size(), what));
  const size_t sent = tcp.send_length - tcp.unsent_length;
  CRLIB_RETURN_IF_ERROR(SetInt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, "TCP_REPAIR_QUEUE", what));
  CRLIB_RETURN_IF_ERROR(FillRepairQueue(s, send_queue.data(), sent, what));
  // The window last: its checks compare it with the receive queue's end.
  tcp_repair_window window{.snd_wl1 = tcp.send_wl1, .snd_wnd = tcp.send_window,
                           .max_window = tcp.max_window, .rcv_wnd = tcp.receive_window,
                           .rcv_wup = tcp.receive_wup};
  if (setsockopt(s, IPPROTO_TCP, TCP_REPAIR_WINDOW, &window, sizeof(window)) != 0) {
    return Errno("setsockopt(TCP_REPAIR_WINDOW) on %s", what);
  }
  CRLIB_RETURN_IF_ERROR(SetInt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE, "TCP_REPAIR_QUEUE", what));
  CRLIB_RETURN_IF_ERROR(SetInt(s, IPPROTO_TCP, TCP_REPAIR, 0, "TCP_REPAIR", what));
  // What was not sent yet goes out the usual way (the filter holds it
  // until the restore deletes it).
  size_t done = sent;
  while (done < send_queue.size()) {
    const ssize_t n = send(s, send_queue.data() + done, send_queue.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Errno("sending the %d unsent bytes of %s", send_queue.size() - done, what);
    done += static_cast<size_t>(n);
  }
  return sock.release();
}

absl::Status ReleaseTcpFilter(const std::string& table) {
  if (table.empty()) return absl::OkStatus();
  // "destroy" (nft 1.0.8) would not fail on a missing table; Debian 12's
  // nft has only "delete", which does: make it first, then delete it.
  return sys::RunNft(absl::StrFormat("add table inet %s\ndelete table inet %s\n", table, table));
}

}  // namespace crlib
