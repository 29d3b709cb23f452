#include "files/socket_capture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "files/file_capture.h"
#include "files/socket_options.h"
#include "sys/kernel.h"
#include "sys/proc.h"
#include "sys/sock_diag.h"
#include "sys/unique_fd.h"

namespace crlib {
namespace {

// The largest datagram we peek whole; a larger one is refused.
constexpr size_t kMaxDatagram = 4 << 20;
// More queued bytes than any socket buffer holds: a peek that does not
// move along the queue, which must not run on forever.
constexpr size_t kMaxQueue = 256 << 20;

int IntOption(int sock, int level, int name) {
  int value = 0;
  socklen_t len = sizeof(value);
  if (getsockopt(sock, level, name, &value, &len) != 0) return -1;
  return value;
}

Bytes AddressBytes(const sockaddr_storage& addr, socklen_t len) {
  const auto* p = reinterpret_cast<const uint8_t*>(&addr);
  return Bytes(p, p + std::min<size_t>(len, sizeof(addr)));
}

absl::Status Refuse(int fd, const std::string& link, const std::string& what,
                    const std::string& why) {
  return absl::UnimplementedError(
      absl::StrFormat("fd %d (%s, %s) is not supported: %s", fd, link, what, why));
}

// The messages queued to be read on `sock`, peeked in order without
// consuming them: SO_PEEK_OFF moves our peek along the queue (and is put
// back as the process had it). Descriptors in flight are refused: the
// peek hands us copies, which we close.
absl::Status PeekQueue(int sock, bool stream, int fd, const std::string& link,
                       SocketCapture* out) {
  const int saved = IntOption(sock, SOL_SOCKET, SO_PEEK_OFF);
  int zero = 0;
  if (setsockopt(sock, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof(zero)) != 0) {
    return Errno("setsockopt(SO_PEEK_OFF) on fd %d (%s)", fd, out->what);
  }
  absl::Cleanup put_back = [&] {
    setsockopt(sock, SOL_SOCKET, SO_PEEK_OFF, &saved, sizeof(saved));
  };
  Bytes buffer(stream ? 1 << 16 : kMaxDatagram);
  SocketMessage* stream_message = nullptr;
  for (;;) {
    sockaddr_storage from{};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 253) + CMSG_SPACE(sizeof(ucred))];
    iovec iov{buffer.data(), buffer.size()};
    msghdr m{};
    m.msg_name = &from;
    m.msg_namelen = sizeof(from);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof(control);
    const ssize_t n =
        recvmsg(sock, &m, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC | (stream ? 0 : MSG_TRUNC));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0) return Errno("peek at the queue of fd %d (%s)", fd, out->what);
    if (out->data.size() > kMaxQueue) {
      return absl::InternalError(absl::StrFormat(
          "peeking at the queue of fd %d (%s) does not come to its end", fd, out->what));
    }
    bool in_flight = false;
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      in_flight = true;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int received;
        memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        close(received);
      }
    }
    if (in_flight || (m.msg_flags & MSG_CTRUNC)) {
      return Refuse(fd, link, out->what,
                    "file descriptors are in flight in its queue (SCM_RIGHTS), which are not "
                    "carried");
    }
    if (stream) {
      if (n == 0) break;  // the peer shut down its sending side: end of stream
      if (stream_message == nullptr) {
        out->record.queue.push_back({});
        stream_message = &out->record.queue.back();
      }
      stream_message->length += static_cast<uint64_t>(n);
      out->data.insert(out->data.end(), buffer.begin(), buffer.begin() + n);
      continue;
    }
    if (static_cast<size_t>(n) > buffer.size()) {
      return Refuse(fd, link, out->what,
                    absl::StrFormat("a queued datagram of %d bytes, more than the %d crlib reads",
                                    n, buffer.size()));
    }
    // A datagram socket reads 0 for an empty datagram, and at the end once
    // shut down for reading; a peeked empty datagram is skipped next time.
    if (n == 0 && (out->record.shutdown & 1) &&
        (out->record.queue.empty() || out->record.queue.back().length != 0)) {
      break;
    }
    SocketMessage message{.length = static_cast<uint64_t>(n)};
    if (m.msg_namelen > sizeof(sa_family_t)) message.sender = AddressBytes(from, m.msg_namelen);
    out->record.queue.push_back(std::move(message));
    out->data.insert(out->data.end(), buffer.begin(), buffer.begin() + n);
  }
  return absl::OkStatus();
}

absl::Status CaptureUnix(int sock, int fd, const std::string& link, uint64_t inode,
                         SocketCapture* out) {
  SocketRecord& r = out->record;
  absl::StatusOr<sys::UnixSocketDiag> diag = sys::QueryUnixSocket(inode);
  if (absl::IsNotFound(diag.status())) {
    return Refuse(fd, link, out->what, "it is not in crlib's network namespace");
  }
  if (!diag.ok()) return diag.status();
  r.state = diag->state;
  r.peer = diag->peer;
  r.shutdown = diag->shutdown;
  out->pending = diag->pending;
  if (diag->state == TCP_LISTEN) r.backlog = diag->wqueue;
  else out->unread_sent = diag->wqueue;
  if (!diag->name.empty()) {
    sockaddr_storage addr{};
    auto* un = reinterpret_cast<sockaddr_un*>(&addr);
    un->sun_family = AF_UNIX;
    const size_t len = std::min(diag->name.size(), sizeof(un->sun_path));
    memcpy(un->sun_path, diag->name.data(), len);
    r.name = AddressBytes(addr, static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len));
    const bool abstract = diag->name[0] == '\0';
    const std::string path(diag->name.c_str());
    absl::StrAppend(&out->what, abstract ? " bound to abstract @" : " bound to ",
                    abstract ? std::string(diag->name.data() + 1, diag->name.size() - 1) : path);
    if (!abstract) {
      if (path.empty() || path[0] != '/') {
        return Refuse(fd, link, out->what, "it is bound to a relative path");
      }
      struct stat st;
      auto same_file = [&] {
        return S_ISSOCK(st.st_mode) && st.st_ino == diag->vfs_inode &&
               st.st_dev == sys::UserDev(diag->vfs_dev);
      };
      if (diag->vfs_inode != 0 && stat(path.c_str(), &st) == 0 && same_file()) {
        r.file_uid = st.st_uid;
        r.file_gid = st.st_gid;
        r.file_mode = st.st_mode;
      } else if (diag->vfs_inode != 0) {
        // An accepted connection reports its listener's name but owns no
        // file; only a socket that made the file lost it.
        r.flags |= kSocketNameRemoved;
        absl::StrAppend(&out->what, ", since removed");
        if (lstat(path.c_str(), &st) == 0) {
          return Refuse(fd, link, out->what,
                        "its name was removed and another file now has its path, so restore "
                        "could not bind it again");
        }
      }
    }
  }
  sockaddr_storage peer{};
  socklen_t peer_len = sizeof(peer);
  if (getpeername(sock, reinterpret_cast<sockaddr*>(&peer), &peer_len) == 0) {
    r.peer_name = AddressBytes(peer, peer_len);
  }
  if (diag->state != TCP_LISTEN) {
    const bool stream = r.type == SOCK_STREAM;
    CRLIB_RETURN_IF_ERROR(PeekQueue(sock, stream, fd, link, out));
    if (stream && out->data.size() != diag->rqueue) {
      return absl::DataLossError(absl::StrFormat(
          "fd %d (%s): peeked %d bytes of its queue, the kernel counts %d", fd, out->what,
          out->data.size(), diag->rqueue));
    }
  }
  return absl::OkStatus();
}

const char* TcpStateName(int state) {
  switch (state) {
    case TCP_ESTABLISHED: return "established";
    case TCP_SYN_SENT: return "connecting (SYN sent)";
    case TCP_SYN_RECV: return "SYN received";
    case TCP_FIN_WAIT1: return "closing (FIN-WAIT-1)";
    case TCP_FIN_WAIT2: return "half-closed (FIN-WAIT-2)";
    case TCP_TIME_WAIT: return "TIME-WAIT";
    case TCP_CLOSE: return "closed";
    case TCP_CLOSE_WAIT: return "half-closed by the peer (CLOSE-WAIT)";
    case TCP_LAST_ACK: return "closing (LAST-ACK)";
    case TCP_LISTEN: return "listening";
    case TCP_CLOSING: return "closing (CLOSING)";
  }
  return "in an unknown state";
}

absl::Status CaptureInet(int sock, int fd, const std::string& link, TcpFreeze* freeze,
                         SocketCapture* out) {
  SocketRecord& r = out->record;
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (getsockname(sock, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return Errno("getsockname of fd %d (%s)", fd, out->what);
  }
  const auto port = [&] {
    return addr.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&addr)->sin_port
                                     : reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port;
  }();
  if (port != 0) {
    r.name = AddressBytes(addr, len);
    absl::StrAppend(&out->what, " ", SocketAddressText(r.name));
  }
  sockaddr_storage peer{};
  socklen_t peer_len = sizeof(peer);
  if (getpeername(sock, reinterpret_cast<sockaddr*>(&peer), &peer_len) == 0) {
    r.peer_name = AddressBytes(peer, peer_len);
    absl::StrAppend(&out->what, " to ", SocketAddressText(r.peer_name));
  }
  if (r.protocol == IPPROTO_TCP) {
    tcp_info info{};
    socklen_t info_len = sizeof(info);
    if (getsockopt(sock, IPPROTO_TCP, TCP_INFO, &info, &info_len) != 0) {
      return Errno("getsockopt(TCP_INFO) on fd %d (%s)", fd, out->what);
    }
    r.state = info.tcpi_state;
    if (r.state == TCP_LISTEN) {
      // For a listener, TCP_INFO counts the accept queue and its limit.
      r.backlog = info.tcpi_sacked;
      if (info.tcpi_unacked > 0) {
        return Refuse(fd, link, out->what,
                      absl::StrFormat("%d connections wait to be accepted on it, which are not "
                                      "carried",
                                      info.tcpi_unacked));
      }
      return absl::OkStatus();
    }
    if (r.state == TCP_CLOSE) return absl::OkStatus();  // made, perhaps bound: nothing more
    if (r.state != TCP_ESTABLISHED) {
      return Refuse(fd, link, out->what,
                    absl::StrCat("a TCP connection ", TcpStateName(r.state),
                                 ", which is not carried (only established ones are)"));
    }
    if (freeze == nullptr || !freeze->allowed()) {
      return Refuse(fd, link, out->what,
                    "an established TCP connection, carried only with --tcp-established "
                    "(CRLIB_CHECKPOINT_TCP_ESTABLISHED), since its peer must still be there at "
                    "restore");
    }
    CRLIB_ASSIGN_OR_RETURN(out->tcp, freeze->Capture(sock, r.inode, r.name, r.peer_name, out->what));
    if (!out->tcp->receive_queue.empty()) {
      r.queue.push_back({.length = out->tcp->receive_queue.size()});
      out->data = out->tcp->receive_queue;
    }
    return absl::OkStatus();
  }
  // UDP, and ICMP echo ("ping") sockets: connected or not, with a queue.
  r.state = r.peer_name.empty() ? TCP_CLOSE : TCP_ESTABLISHED;
  if (IntOption(sock, IPPROTO_UDP, UDP_CORK) > 0) {
    return Refuse(fd, link, out->what, "it is corked (UDP_CORK), with data not yet sent");
  }
  int queued = 0;
  if (ioctl(sock, SIOCINQ, &queued) != 0) return Errno("ioctl(SIOCINQ) on fd %d", fd);
  CRLIB_RETURN_IF_ERROR(PeekQueue(sock, /*stream=*/false, fd, link, out));
  if (r.protocol != IPPROTO_UDP && !r.queue.empty()) {
    return Refuse(fd, link, out->what,
                  "ICMP echo replies are queued on it, which restore cannot queue again");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SocketCapture> CaptureSocket(pid_t pid, int fd, const std::string& link,
                                            uint64_t inode, TcpFreeze* tcp) {
  CRLIB_ASSIGN_OR_RETURN(sys::UniqueFd sock, sys::TakeFd(pid, fd));
  SocketCapture out;
  SocketRecord& r = out.record;
  r.inode = inode;
  r.family = static_cast<uint32_t>(IntOption(sock.fd, SOL_SOCKET, SO_DOMAIN));
  r.type = static_cast<uint32_t>(IntOption(sock.fd, SOL_SOCKET, SO_TYPE));
  r.protocol = static_cast<uint32_t>(IntOption(sock.fd, SOL_SOCKET, SO_PROTOCOL));
  switch (r.family) {
    case AF_UNIX:
      out.what = SocketKindText(r.family, r.type, r.protocol);
      break;
    case AF_INET:
    case AF_INET6: {
      out.what = SocketKindText(r.family, r.type, r.protocol);
      const bool tcp = r.type == SOCK_STREAM && r.protocol == IPPROTO_TCP;
      const bool udp = r.type == SOCK_DGRAM && r.protocol == IPPROTO_UDP;
      const bool ping = r.type == SOCK_DGRAM && (r.protocol == IPPROTO_ICMP || r.protocol == IPPROTO_ICMPV6);
      if (!tcp && !udp && !ping) {
        return Refuse(fd, link, out.what, "only TCP, UDP and ICMP echo sockets of IP are carried");
      }
      break;
    }
    case AF_NETLINK:
      return Refuse(fd, link, absl::StrFormat("netlink protocol %d", r.protocol),
                    "netlink sockets are not carried");
    case AF_PACKET:
      return Refuse(fd, link, "packet socket", "packet sockets are not carried");
    default:
      return Refuse(fd, link, absl::StrFormat("family %d", r.family),
                    "only UNIX, IPv4 and IPv6 sockets are carried");
  }
  // A socket of another network namespace would come back in ours.
  sys::UniqueFd ns(ioctl(sock.fd, SIOCGSKNS));
  struct stat sock_ns, own_ns;
  if (ns.fd < 0 || fstat(ns.fd, &sock_ns) != 0) return Errno("ioctl(SIOCGSKNS) on fd %d", fd);
  if (stat("/proc/self/ns/net", &own_ns) != 0) return Errno("stat /proc/self/ns/net");
  if (sock_ns.st_ino != own_ns.st_ino || sock_ns.st_dev != own_ns.st_dev) {
    return Refuse(fd, link, out.what,
                  absl::StrFormat("it is in network namespace net:[%d], not crlib's own",
                                  sock_ns.st_ino));
  }
  if (r.family == AF_UNIX) {
    CRLIB_RETURN_IF_ERROR(CaptureUnix(sock.fd, fd, link, inode, &out));
  } else {
    CRLIB_RETURN_IF_ERROR(CaptureInet(sock.fd, fd, link, tcp, &out));
  }
  CRLIB_ASSIGN_OR_RETURN(r.options, ChangedSocketOptions(sock.fd, r.family, r.type, r.protocol));
  return out;
}

absl::Status ClassifySockets(absl::Span<std::vector<FdInfo>* const> tree) {
  std::map<uint64_t, bool> sockets;  // by inode: whether an fd above 2 holds it
  std::map<uint64_t, std::pair<uint64_t, uint32_t>> pending;  // client -> (listener, index)
  for (const std::vector<FdInfo>* fds : tree) {
    for (const FdInfo& info : *fds) {
      if (!S_ISSOCK(info.file.mode)) continue;
      sockets[info.file.inode] |= info.fd > 2;
      if (info.socket && info.socket->record.state == TCP_LISTEN) {
        for (size_t i = 0; i < info.socket->pending.size(); ++i) {
          pending[info.socket->pending[i]] = {info.file.inode, static_cast<uint32_t>(i)};
        }
      }
    }
  }
  for (std::vector<FdInfo>* fds : tree) {
    for (FdInfo& info : *fds) {
      if (!S_ISSOCK(info.file.mode)) continue;
      const bool above_std = sockets[info.file.inode];
      auto inherit_or_refuse = [&](absl::Status why) {
        if (above_std) return why;
        info.file.kind = static_cast<uint32_t>(FileKind::kInherited);
        info.socket.reset();
        return absl::OkStatus();
      };
      if (!info.socket) {
        CRLIB_RETURN_IF_ERROR(inherit_or_refuse(info.socket_error));
        continue;
      }
      SocketRecord& r = info.socket->record;
      const std::string& what = info.socket->what;
      info.file.kind = static_cast<uint32_t>(FileKind::kSocket);
      if (r.family != AF_UNIX) {
        // An IP socket at fd 0-2 only (inetd's way) stays the restorer's stream.
        if (!above_std && !r.peer_name.empty()) CRLIB_RETURN_IF_ERROR(inherit_or_refuse({}));
        continue;
      }
      // A connection not yet accepted has no peer with an inode (the
      // listener's embryo socket has none): its listener lists it.
      if (auto p = pending.find(r.inode); p != pending.end()) {
        if (info.socket->unread_sent > 0) {
          return absl::UnimplementedError(absl::StrFormat(
              "fd %d (%s, %s) is not supported: it sent data (%d bytes queued) on a connection "
              "its listener has not accepted yet, which only accepting could read",
              info.fd, info.link, what, info.socket->unread_sent));
        }
        r.flags |= kSocketPending;
        r.peer = p->second.first;
        r.pending_index = p->second.second;
        continue;
      }
      if (r.peer == 0 || sockets.contains(r.peer)) continue;  // no peer, or one in the tree
      const std::string outside = absl::StrFormat(
          "fd %d (%s, %s) leads to a socket outside the dumped processes", info.fd, info.link,
          what);
      if (r.type == SOCK_DGRAM && r.peer_name.size() > offsetof(sockaddr_un, sun_path)) {
        r.flags |= kSocketPeerOutside;  // connected again by name
        r.peer = 0;
        continue;
      }
      if (!above_std) {
        CRLIB_RETURN_IF_ERROR(inherit_or_refuse({}));
        continue;
      }
      if (r.type == SOCK_DGRAM) {
        return absl::UnimplementedError(
            absl::StrCat(outside, " that has no name to connect to again"));
      }
      // The restorer gives one of its own (--inherit-fd socket:[INODE]=FD).
      info.file.kind = static_cast<uint32_t>(FileKind::kExternal);
      info.file.path = absl::StrCat("socket:[", info.file.inode, "]");
      info.socket.reset();
    }
  }
  return absl::OkStatus();
}

}  // namespace crlib
