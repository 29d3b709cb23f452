#include "files/socket_restore.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/udp.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "sys/proc.h"
#include "core/status.h"
#include "files/socket_options.h"
#include "files/tcp_connection.h"
#include "sys/unique_fd.h"

namespace crlib {
namespace {

constexpr uint32_t kRcvShutdown = 1, kSendShutdown = 2;

bool IsUnix(const SocketRecord& r) { return r.family == AF_UNIX; }
bool IsListener(const SocketRecord& r) { return r.state == TCP_LISTEN; }

// The path of a UNIX name, "" for an abstract one or none.
std::string UnixPath(const Bytes& name) {
  constexpr size_t off = offsetof(sockaddr_un, sun_path);
  if (name.size() <= off || name[off] == 0) return "";
  return std::string(reinterpret_cast<const char*>(name.data()) + off,
                     strnlen(reinterpret_cast<const char*>(name.data()) + off, name.size() - off));
}

std::string What(const SocketImage& s) {
  const SocketRecord& r = s.record;
  std::string what = absl::StrCat(SocketKindText(r.family, r.type, r.protocol), " socket");
  if (!r.name.empty()) absl::StrAppend(&what, " bound to ", SocketAddressText(r.name));
  return what;
}

const sockaddr* Addr(const Bytes& b) { return reinterpret_cast<const sockaddr*>(b.data()); }
socklen_t Len(const Bytes& b) { return static_cast<socklen_t>(b.size()); }

// Whether the connection between `a` and `b` (peers of each other) is
// one ends of a pair make again: mutual UNIX peers.
bool MutualPeers(const SocketRecord& a, const SocketRecord& b) {
  return IsUnix(a) && IsUnix(b) && a.peer == b.inode && b.peer == a.inode &&
         !(a.flags & kSocketPending) && !(b.flags & kSocketPending);
}


// The Internet checksum of `data`, folded, starting from `sum`.
uint32_t ChecksumAdd(uint32_t sum, const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i + 1 < size; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (size & 1) sum += static_cast<uint32_t>(p[size - 1] << 8);
  return sum;
}

uint16_t ChecksumFold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  const auto folded = static_cast<uint16_t>(~sum);
  return htons(folded == 0 ? 0xffff : folded);
}

// Puts a queued UDP datagram back on the receive queue of the socket
// bound to `to`, with its original source address and port, which some
// other socket may still hold: as a raw IP packet (CAP_NET_RAW, as the
// image's credentials must have), delivered through the loopback. A
// receiver bound to any address gets it on the loopback address.
absl::Status InjectDatagram(const Bytes& to, const Bytes& from, const uint8_t* data, size_t size,
                            const std::string& what) {
  sockaddr_storage dst{}, src{};
  memcpy(&dst, to.data(), std::min(to.size(), sizeof(dst)));
  memcpy(&src, from.data(), std::min(from.size(), sizeof(src)));
  // A v4-mapped source on an IPv6 socket came as IPv4.
  auto v4_of = [](const sockaddr_storage& a, in_addr* out, uint16_t* port) {
    if (a.ss_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(&a);
      *out = in->sin_addr;
      *port = in->sin_port;
      return true;
    }
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a);
    if (!IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) return false;
    memcpy(&out->s_addr, &in6->sin6_addr.s6_addr[12], 4);
    *port = in6->sin6_port;
    return true;
  };
  udphdr udp{};
  udp.len = htons(static_cast<uint16_t>(sizeof(udp) + size));
  in_addr src4{}, dst4{};
  uint16_t src_port = 0, dst_port = 0;
  const bool v4 = v4_of(src, &src4, &src_port);
  Bytes packet;
  sockaddr_storage next{};
  socklen_t next_len = 0;
  int family = AF_INET;
  if (v4) {
    if (dst.ss_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&dst);
      dst_port = in6->sin6_port;
      if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) memcpy(&dst4.s_addr, &in6->sin6_addr.s6_addr[12], 4);
    } else {
      v4_of(dst, &dst4, &dst_port);
    }
    if (dst4.s_addr == htonl(INADDR_ANY)) dst4.s_addr = htonl(INADDR_LOOPBACK);
    udp.source = src_port;
    udp.dest = dst_port;
    iphdr ip{};
    ip.version = 4;
    ip.ihl = 5;
    ip.ttl = 64;
    ip.protocol = IPPROTO_UDP;
    ip.tot_len = htons(static_cast<uint16_t>(sizeof(ip) + sizeof(udp) + size));
    ip.saddr = src4.s_addr;
    ip.daddr = dst4.s_addr;
    packet.resize(sizeof(ip) + sizeof(udp) + size);
    memcpy(packet.data(), &ip, sizeof(ip));
    memcpy(packet.data() + sizeof(ip), &udp, sizeof(udp));  // no checksum: optional in IPv4
    memcpy(packet.data() + sizeof(ip) + sizeof(udp), data, size);
    auto* n = reinterpret_cast<sockaddr_in*>(&next);
    n->sin_family = AF_INET;
    n->sin_addr = dst4;
    next_len = sizeof(*n);
  } else {
    family = AF_INET6;
    const auto* s6 = reinterpret_cast<const sockaddr_in6*>(&src);
    const auto* d6 = reinterpret_cast<const sockaddr_in6*>(&dst);
    in6_addr daddr = d6->sin6_addr;
    if (IN6_IS_ADDR_UNSPECIFIED(&daddr)) daddr = in6addr_loopback;
    udp.source = s6->sin6_port;
    udp.dest = d6->sin6_port;
    ip6_hdr ip{};
    ip.ip6_flow = htonl(6u << 28);
    ip.ip6_plen = udp.len;
    ip.ip6_nxt = IPPROTO_UDP;
    ip.ip6_hlim = 64;
    ip.ip6_src = s6->sin6_addr;
    ip.ip6_dst = daddr;
    // The pseudo-header: addresses, length, next header.
    uint32_t sum = ChecksumAdd(0, &ip.ip6_src, 16);
    sum = ChecksumAdd(sum, &ip.ip6_dst, 16);
    sum += ntohs(udp.len) + IPPROTO_UDP;
    sum = ChecksumAdd(sum, &udp, sizeof(udp));
    sum = ChecksumAdd(sum, data, size);
    udp.check = ChecksumFold(sum);
    packet.resize(sizeof(ip) + sizeof(udp) + size);
    memcpy(packet.data(), &ip, sizeof(ip));
    memcpy(packet.data() + sizeof(ip), &udp, sizeof(udp));
    memcpy(packet.data() + sizeof(ip) + sizeof(udp), data, size);
    auto* n = reinterpret_cast<sockaddr_in6*>(&next);
    n->sin6_family = AF_INET6;
    n->sin6_addr = daddr;
    next_len = sizeof(*n);
  }
  sys::UniqueFd raw(socket(family, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW));
  if (raw.fd < 0) return Errno("a raw socket to queue a UDP datagram on %s again", what);
  if (family == AF_INET6) {
    int on = 1;
    constexpr int kIpv6Hdrincl = 36;  // IPV6_HDRINCL (4.5), not in every libc
    if (setsockopt(raw.fd, IPPROTO_IPV6, kIpv6Hdrincl, &on, sizeof(on)) != 0) {
      return Errno("setsockopt(IPV6_HDRINCL)");
    }
  }
  if (sendto(raw.fd, packet.data(), packet.size(), 0, reinterpret_cast<sockaddr*>(&next), next_len) !=
      static_cast<ssize_t>(packet.size())) {
    return Errno("sending a %d-byte UDP datagram to %s again", size, what);
  }
  return absl::OkStatus();
}

class SocketMaker {
 public:
  SocketMaker(const ProcessImage& image, const std::set<ObjectRef>& refs, const SocketMaking& how)
      : image_(image), refs_(refs), original_alive_(how.original_alive), check_only_(how.check_only) {
    for (ObjectRef ref : refs) by_inode_[image.sockets.at(ref).record.inode] = ref;
  }
  ~SocketMaker() {
    for (auto& [ref, fd] : fds_) close(fd);
  }

  absl::StatusOr<std::map<ObjectRef, int>> Make() {
    CRLIB_RETURN_IF_ERROR(Create());
    for (ObjectRef ref : refs_) CRLIB_RETURN_IF_ERROR(CheckName(ref));
    if (check_only_) {
      for (auto& [client, server] : accepted_) {
        CRLIB_ASSIGN_OR_RETURN(fds_[server], NewSocket(S(server).record));
      }
    } else {
      // Names first (a listener must listen, a datagram socket be bound
      // before anyone connects to it), then connections: accepted pairs
      // through their listener before the connections that still wait on
      // it, in the order they were queued.
      for (ObjectRef ref : refs_) CRLIB_RETURN_IF_ERROR(Bind(ref));
      for (ObjectRef ref : refs_) CRLIB_RETURN_IF_ERROR(Listen(ref));
      for (auto& [client, server] : accepted_) CRLIB_RETURN_IF_ERROR(Accept(client, server));
      CRLIB_RETURN_IF_ERROR(ConnectPending());
      // Queued datagrams before connections: a connected datagram socket
      // takes messages from its peer only, and some came before it connected.
      for (ObjectRef ref : refs_) CRLIB_RETURN_IF_ERROR(Queue(ref));
      for (ObjectRef ref : refs_) CRLIB_RETURN_IF_ERROR(Connect(ref));
      for (ObjectRef ref : refs_) CRLIB_RETURN_IF_ERROR(Shutdown(ref));
      feeders_.clear();  // a peer that had closed closes now: its end sees it
      for (const std::string& path : removed_names_) {
        if (unlink(path.c_str()) != 0) return Errno("unlink of the removed socket name %s", path);
      }
      removed_names_.clear();
    }
    std::map<ObjectRef, int> out;
    out.swap(fds_);
    return out;
  }

  SocketMaker(const SocketMaker&) = delete;
  SocketMaker& operator=(const SocketMaker&) = delete;

 private:
  const SocketImage& S(ObjectRef ref) const { return image_.sockets.at(ref); }
  // The socket of the image with sockfs inode `inode` among ours, or 0.
  ObjectRef ByInode(uint64_t inode) const {
    auto it = by_inode_.find(inode);
    return it == by_inode_.end() ? 0 : it->second;
  }
  // The listener among ours bound to `name`, or 0.
  ObjectRef ListenerNamed(const Bytes& name) const {
    for (ObjectRef ref : refs_) {
      if (IsListener(S(ref).record) && S(ref).record.name == name) return ref;
    }
    return 0;
  }
  // The socket among ours bound to `name` (a datagram's sender), or 0.
  ObjectRef BoundTo(const Bytes& name) const {
    for (ObjectRef ref : refs_) {
      const SocketRecord& r = S(ref).record;
      if (r.name == name && !accepted_server_.contains(ref) && !paired_.contains(ref)) return ref;
    }
    return 0;
  }

  absl::StatusOr<int> NewSocket(const SocketRecord& r) {
    int fd = socket(static_cast<int>(r.family), static_cast<int>(r.type) | SOCK_CLOEXEC,
                    static_cast<int>(r.protocol));
    if (fd < 0) return Errno("socket(%d, %d, %d)", r.family, r.type, r.protocol);
    return fd;
  }

  absl::Status Create() {
    for (ObjectRef ref : refs_) {
      if (fds_.contains(ref) || accepted_server_.contains(ref)) continue;
      const SocketRecord& r = S(ref).record;
      const ObjectRef peer = IsUnix(r) && !(r.flags & kSocketPending) ? ByInode(r.peer) : 0;
      if (peer && MutualPeers(r, S(peer).record)) {
        // An accepted connection whose listener is ours is made through
        // it, so that its server end has the listener's name.
        for (auto [server, client] : {std::pair{ref, peer}, std::pair{peer, ref}}) {
          const ObjectRef listener = ListenerNamed(S(server).record.name);
          if (listener && !S(server).record.name.empty() && listener != server) {
            CRLIB_ASSIGN_OR_RETURN(fds_[client], NewSocket(S(client).record));
            accepted_.emplace_back(client, server);
            accepted_server_.insert(server);
            peer_of_[client] = server;
            peer_of_[server] = client;
            break;
          }
        }
        if (fds_.contains(ref) || fds_.contains(peer)) continue;
        int pair[2];
        if (socketpair(AF_UNIX, static_cast<int>(r.type) | SOCK_CLOEXEC, 0, pair) != 0) {
          return Errno("socketpair for %s", What(S(ref)));
        }
        fds_[ref] = pair[0];
        fds_[peer] = pair[1];
        paired_.insert(ref);
        paired_.insert(peer);
        peer_of_[ref] = peer;
        peer_of_[peer] = ref;
        continue;
      }
      if (IsUnix(r) && r.type != SOCK_DGRAM && r.state == TCP_ESTABLISHED && r.peer == 0) {
        // A connection whose peer had closed: a pair whose other end
        // feeds the queue and then goes.
        int pair[2];
        if (socketpair(AF_UNIX, static_cast<int>(r.type) | SOCK_CLOEXEC, 0, pair) != 0) {
          return Errno("socketpair for %s", What(S(ref)));
        }
        fds_[ref] = pair[0];
        feeders_[ref] = sys::UniqueFd(pair[1]);
        paired_.insert(ref);
        continue;
      }
      if (S(ref).tcp && !check_only_) {
        // An established connection comes back whole, in repair mode.
        const SocketImage& s = S(ref);
        CRLIB_ASSIGN_OR_RETURN(fds_[ref], MakeTcpConnection(r, *s.tcp, s.send_queue, s.data, What(s)));
        made_whole_.insert(ref);
        continue;
      }
      CRLIB_ASSIGN_OR_RETURN(fds_[ref], NewSocket(r));
    }
    for (auto& [ref, fd] : fds_) {
      CRLIB_RETURN_IF_ERROR(SetSocketOptions(fd, S(ref).record.options, What(S(ref))));
    }
    return absl::OkStatus();
  }

  // Whether `ref` takes its name with bind(2): not an end made by
  // socketpair (whose names are not carried) nor an accepted server end.
  bool OwnsName(ObjectRef ref) const {
    return !S(ref).record.name.empty() && !paired_.contains(ref) &&
           !accepted_server_.contains(ref);
  }

  // A path the socket binds must be free, or a socket file nobody is
  // bound to any more (the dumped process's own, left when it died).
  absl::Status CheckName(ObjectRef ref) {
    if (!OwnsName(ref) || !IsUnix(S(ref).record)) return absl::OkStatus();
    const SocketRecord& r = S(ref).record;
    const std::string path = UnixPath(r.name);
    if (path.empty()) return absl::OkStatus();
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) {
      if (errno != ENOENT) return Errno("lstat %s, the name of %s", path, What(S(ref)));
      const std::string dir = path.substr(0, std::max<size_t>(path.find_last_of('/'), 1));
      if (faccessat(AT_FDCWD, dir.c_str(), W_OK | X_OK, AT_EACCESS) != 0) {
        return Errno("binding %s in %s", What(S(ref)), dir);
      }
      return absl::OkStatus();
    }
    if (!S_ISSOCK(st.st_mode)) {
      return absl::AlreadyExistsError(absl::StrFormat(
          "%s cannot be bound again: %s is now a file that is not a socket", What(S(ref)), path));
    }
    if (original_alive_) return absl::OkStatus();  // the original's own
    // Someone bound there answers a connect; a stale file refuses it.
    sys::UniqueFd probe(socket(AF_UNIX, static_cast<int>(r.type) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (probe.fd < 0) return Errno("socket to probe %s", path);
    if (connect(probe.fd, Addr(r.name), Len(r.name)) == 0 || errno == EAGAIN) {
      return absl::AlreadyExistsError(absl::StrFormat(
          "%s cannot be bound again: a live socket is bound to %s (does the dumped process "
          "still run?)",
          What(S(ref)), path));
    }
    if (errno != ECONNREFUSED) return Errno("probing %s, the name of %s", path, What(S(ref)));
    if (check_only_) return absl::OkStatus();  // the restore will replace it
    if (unlink(path.c_str()) != 0) return Errno("unlink of the stale socket file %s", path);
    return absl::OkStatus();
  }

  absl::Status Bind(ObjectRef ref) {
    if (!OwnsName(ref) || made_whole_.contains(ref)) return absl::OkStatus();
    const SocketRecord& r = S(ref).record;
    if (bind(fds_.at(ref), Addr(r.name), Len(r.name)) != 0) {
      if (errno != EADDRINUSE || r.protocol != IPPROTO_TCP) return Errno("bind of %s", What(S(ref)));
      return ExplainAddressInUse(ref);
    }
    const std::string path = IsUnix(r) ? UnixPath(r.name) : "";
    if (path.empty()) return absl::OkStatus();
    if (r.flags & kSocketNameRemoved) {
      removed_names_.push_back(path);
      return absl::OkStatus();
    }
    // Owner and mode as they were: bind made the file with our umask.
    if (r.file_mode && chmod(path.c_str(), r.file_mode & 07777) != 0) {
      return Errno("chmod %s to %04o", path, r.file_mode & 07777);
    }
    if (r.file_mode && (r.file_uid != geteuid() || r.file_gid != getegid()) &&
        lchown(path.c_str(), r.file_uid, r.file_gid) != 0) {
      return Errno("chown %s to %d:%d", path, r.file_uid, r.file_gid);
    }
    return absl::OkStatus();
  }

  // Why a TCP socket's address is in use: the dumped process's own
  // connections left in TIME-WAIT when it was killed keep the port from a
  // listener that did not set SO_REUSEADDR (both sides need it), and
  // nothing may take a port those connections hold; or another socket.
  absl::Status ExplainAddressInUse(ObjectRef ref) {
    const SocketRecord& r = S(ref).record;
    sockaddr_storage addr{};
    memcpy(&addr, r.name.data(), std::min(r.name.size(), sizeof(addr)));
    const int port = ntohs(addr.ss_family == AF_INET
                               ? reinterpret_cast<const sockaddr_in*>(&addr)->sin_port
                               : reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
    int time_wait = 0, other = 0;
    for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
      absl::StatusOr<std::string> text = sys::ReadFile(table);
      if (!text.ok()) continue;
      for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
        // "  sl  local_address rem_address   st ...": ADDR:PORT in hex.
        std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
        if (f.size() < 4 || f[0] == "sl") continue;
        const size_t colon = f[1].rfind(':');
        unsigned long local_port = 0, state = 0;
        if (colon == absl::string_view::npos ||
            !absl::SimpleHexAtoi(f[1].substr(colon + 1), &local_port) ||
            !absl::SimpleHexAtoi(f[3], &state) || static_cast<int>(local_port) != port) {
          continue;
        }
        ++(state == TCP_TIME_WAIT ? time_wait : other);
      }
    }
    if (time_wait > 0 && other == 0) {
      return absl::UnavailableError(absl::StrFormat(
          "bind of %s: %d connections in TIME-WAIT hold port %d (the dumped process's, closed "
          "when it was killed), and the socket did not set SO_REUSEADDR; retry once they are "
          "gone (net.ipv4.tcp_fin_timeout)",
          What(S(ref)), time_wait, port));
    }
    return absl::AlreadyExistsError(
        absl::StrFormat("bind of %s: another socket has port %d", What(S(ref)), port));
  }

  absl::Status Listen(ObjectRef ref) {
    const SocketRecord& r = S(ref).record;
    if (!IsListener(r)) return absl::OkStatus();
    if (listen(fds_.at(ref), static_cast<int>(r.backlog)) != 0) {
      if (errno == EADDRINUSE && r.protocol == IPPROTO_TCP) return ExplainAddressInUse(ref);
      return Errno("listen on %s", What(S(ref)));
    }
    return absl::OkStatus();
  }

  absl::Status Accept(ObjectRef client, ObjectRef server) {
    const ObjectRef listener = ListenerNamed(S(server).record.name);
    const SocketRecord& l = S(listener).record;
    if (connect(fds_.at(client), Addr(l.name), Len(l.name)) != 0) {
      return Errno("connect of %s to its listener %s", What(S(client)), SocketAddressText(l.name));
    }
    int accepted = accept4(fds_.at(listener), nullptr, nullptr, SOCK_CLOEXEC);
    if (accepted < 0) return Errno("accept on %s", What(S(listener)));
    fds_[server] = accepted;
    return SetSocketOptions(accepted, S(server).record.options, What(S(server)));
  }

  absl::Status ConnectPending() {
    std::vector<ObjectRef> pending;
    for (ObjectRef ref : refs_) {
      if (S(ref).record.flags & kSocketPending) pending.push_back(ref);
    }
    std::sort(pending.begin(), pending.end(), [&](ObjectRef a, ObjectRef b) {
      return std::pair(S(a).record.peer, S(a).record.pending_index) <
             std::pair(S(b).record.peer, S(b).record.pending_index);
    });
    for (ObjectRef ref : pending) {
      const ObjectRef listener = ByInode(S(ref).record.peer);
      if (!listener) {
        return absl::DataLossError(absl::StrFormat("%s waits on listener %d, which the image lacks",
                                                   What(S(ref)), S(ref).record.peer));
      }
      const SocketRecord& l = S(listener).record;
      if (connect(fds_.at(ref), Addr(l.name), Len(l.name)) != 0) {
        return Errno("connect of %s to %s, where it waited to be accepted", What(S(ref)),
                     SocketAddressText(l.name));
      }
    }
    return absl::OkStatus();
  }

  // Datagram sockets connected to one side (not a pair), and IP sockets.
  absl::Status Connect(ObjectRef ref) {
    const SocketRecord& r = S(ref).record;
    if (paired_.contains(ref) || peer_of_.contains(ref) || (r.flags & kSocketPending) ||
        IsListener(r) || r.state != TCP_ESTABLISHED || made_whole_.contains(ref)) {
      return absl::OkStatus();
    }
    Bytes to = r.peer_name;
    if (IsUnix(r) && !(r.flags & kSocketPeerOutside)) {
      const ObjectRef peer = ByInode(r.peer);
      if (!peer) {
        return absl::DataLossError(absl::StrFormat("%s is connected to socket %d, which the image lacks",
                                                   What(S(ref)), r.peer));
      }
      to = S(peer).record.name;
    }
    if (to.empty()) return absl::OkStatus();
    if (connect(fds_.at(ref), Addr(to), Len(to)) != 0) {
      return Errno("connect of %s to %s", What(S(ref)), SocketAddressText(to));
    }
    return absl::OkStatus();
  }

  // The queued messages of `ref`, sent to it again: through its peer, or
  // from the socket that sent each (by its name), or from a socket of no
  // name.
  absl::Status Queue(ObjectRef ref) {
    const SocketImage& s = S(ref);
    const SocketRecord& r = s.record;
    if (r.queue.empty() || made_whole_.contains(ref)) return absl::OkStatus();
    int through = -1;  // the peer's end
    if (auto f = feeders_.find(ref); f != feeders_.end()) through = f->second.fd;
    if (auto p = peer_of_.find(ref); p != peer_of_.end()) through = fds_.at(p->second);
    const bool stream = r.type == SOCK_STREAM;
    if (r.protocol == IPPROTO_UDP) {
      size_t at = 0;
      for (const SocketMessage& m : r.queue) {
        CRLIB_RETURN_IF_ERROR(InjectDatagram(r.name, m.sender, s.data.data() + at, m.length, What(s)));
        at += m.length;
      }
      return WaitForQueue(ref);
    }
    if (through < 0 && stream) {
      return absl::DataLossError(absl::StrFormat("%s has queued bytes and no peer to send them",
                                                 What(s)));
    }
    sys::UniqueFd anonymous;
    size_t at = 0;
    for (const SocketMessage& m : r.queue) {
      const uint8_t* data = s.data.data() + at;
      at += m.length;
      int from = through;
      bool to_name = false;
      if (from < 0) {
        // A datagram socket with a name, sent to by name.
        if (const ObjectRef sender = m.sender.empty() ? 0 : BoundTo(m.sender)) {
          from = fds_.at(sender);
        } else if (!m.sender.empty()) {
          return absl::FailedPreconditionError(absl::StrFormat(
              "a datagram queued on %s came from %s, which is not among the restored sockets",
              What(s), SocketAddressText(m.sender)));
        } else {
          if (anonymous.fd < 0) {
            CRLIB_ASSIGN_OR_RETURN(int fd, NewSocket(r));
            anonymous = sys::UniqueFd(fd);
          }
          from = anonymous.fd;
        }
        to_name = true;
      }
      size_t done = 0;
      do {
        const ssize_t n = to_name ? sendto(from, data + done, m.length - done, MSG_DONTWAIT | MSG_NOSIGNAL,
                                           Addr(r.name), Len(r.name))
                                  : send(from, data + done, m.length - done, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Errno("queueing %d bytes on %s again", m.length, What(s));
        done += static_cast<size_t>(n);
      } while (stream && done < m.length);
    }
    return absl::OkStatus();
  }

  // Datagrams sent through the loopback arrive asynchronously (softirq):
  // the queue must be whole before the process may read it.
  absl::Status WaitForQueue(ObjectRef ref) {
    const SocketImage& s = S(ref);
    int peek_off = -1;
    socklen_t len = sizeof(peek_off);
    getsockopt(fds_.at(ref), SOL_SOCKET, SO_PEEK_OFF, &peek_off, &len);
    for (int attempt = 0; attempt < 1000; ++attempt) {
      // Count the queued datagrams by peeking along them.
      int zero = 0;
      setsockopt(fds_.at(ref), SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof(zero));
      size_t count = 0;
      char byte;
      // MSG_TRUNC: UDP moves the peek offset past the whole datagram.
      while (recv(fds_.at(ref), &byte, 0, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC) >= 0) {
        if (++count > s.record.queue.size()) break;
      }
      setsockopt(fds_.at(ref), SOL_SOCKET, SO_PEEK_OFF, &peek_off, sizeof(peek_off));
      if (count == s.record.queue.size()) return absl::OkStatus();
      if (count > s.record.queue.size()) break;
      usleep(1000);
    }
    return absl::InternalError(absl::StrFormat(
        "the %d datagrams queued on %s again did not all arrive", s.record.queue.size(), What(s)));
  }

  absl::Status Shutdown(ObjectRef ref) {
    const SocketRecord& r = S(ref).record;
    if (IsListener(r) || !(r.shutdown & (kRcvShutdown | kSendShutdown)) || made_whole_.contains(ref)) {
      return absl::OkStatus();
    }
    if (feeders_.contains(ref)) return absl::OkStatus();  // the feeder's close does it
    const int how = (r.shutdown & kRcvShutdown) && (r.shutdown & kSendShutdown) ? SHUT_RDWR
                    : (r.shutdown & kRcvShutdown)                                ? SHUT_RD
                                                                                 : SHUT_WR;
    if (shutdown(fds_.at(ref), how) != 0 && errno != ENOTCONN) {
      return Errno("shutdown of %s", What(S(ref)));
    }
    return absl::OkStatus();
  }

  const ProcessImage& image_;
  const std::set<ObjectRef>& refs_;
  const bool original_alive_;
  const bool check_only_;
  std::map<uint64_t, ObjectRef> by_inode_;
  std::map<ObjectRef, int> fds_;
  std::set<ObjectRef> paired_;           // ends made by socketpair
  std::set<ObjectRef> accepted_server_;  // server ends made by accept
  std::vector<std::pair<ObjectRef, ObjectRef>> accepted_;  // (client, server)
  std::map<ObjectRef, ObjectRef> peer_of_;  // each end of a pair or accepted connection: the other
  std::map<ObjectRef, sys::UniqueFd> feeders_;  // the other end of a closed peer's pair
  std::vector<std::string> removed_names_;
  std::set<ObjectRef> made_whole_;  // established TCP connections, made by MakeTcpConnection
};

}  // namespace

absl::StatusOr<std::map<ObjectRef, int>> MakeSockets(const ProcessImage& image,
                                                     const std::set<ObjectRef>& refs,
                                                     const SocketMaking& how) {
  SocketMaker maker(image, refs, how);
  return maker.Make();
}

ObjectRef SocketGroupAnchor(const ProcessImage& image, ObjectRef socket) {
  // Union of the sockets linked by a peer (pairs, waiting connections,
  // datagram connections, queued datagrams' senders): the smallest ref.
  std::map<uint64_t, ObjectRef> by_inode;
  std::map<Bytes, ObjectRef> by_name;
  for (const auto& [ref, s] : image.sockets) {
    by_inode[s.record.inode] = ref;
    if (!s.record.name.empty()) by_name.emplace(s.record.name, ref);
  }
  std::map<ObjectRef, ObjectRef> parent;
  std::function<ObjectRef(ObjectRef)> find = [&](ObjectRef r) {
    auto it = parent.find(r);
    if (it == parent.end() || it->second == r) return r;
    return it->second = find(it->second);
  };
  auto join = [&](ObjectRef a, ObjectRef b) {
    a = find(a);
    b = find(b);
    if (a != b) parent[std::max(a, b)] = std::min(a, b);
  };
  for (const auto& [ref, s] : image.sockets) {
    if (auto p = by_inode.find(s.record.peer); s.record.peer && p != by_inode.end()) {
      join(ref, p->second);
    }
    for (const SocketMessage& m : s.record.queue) {
      if (auto n = by_name.find(m.sender); !m.sender.empty() && n != by_name.end()) {
        join(ref, n->second);
      }
    }
    // An accepted end has its listener's name.
    if (auto n = by_name.find(s.record.name); !s.record.name.empty() && n != by_name.end()) {
      join(ref, n->second);
    }
  }
  return find(socket);
}

}  // namespace crlib
