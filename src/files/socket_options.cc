#include "files/socket_options.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "sys/unique_fd.h"

namespace crlib {
namespace {

enum Applies : uint8_t { kAll, kInet, kTcp, kUdp, kIp4, kIp6, kUdp4, kUdp6 };

struct OptionSpec {
  int level;
  int name;
  const char* label;
  Applies applies;
};

// Options a program sets and relies on. Order matters at restore:
// IPV6_V6ONLY and SO_REUSE* before bind (restore binds after all of them).
// Left out on purpose: SO_BINDTODEVICE (interface names are the
// machine's), multicast memberships (not readable back), SO_ATTACH_FILTER
// (not readable), SO_TIMESTAMPING (its getsockopt layout changed).
constexpr OptionSpec kOptions[] = {
    {SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR", kAll},
    {SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT", kInet},
    {SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE", kInet},
    {SOL_SOCKET, SO_BROADCAST, "SO_BROADCAST", kInet},
    {SOL_SOCKET, SO_OOBINLINE, "SO_OOBINLINE", kInet},
    {SOL_SOCKET, SO_DONTROUTE, "SO_DONTROUTE", kInet},
    {SOL_SOCKET, SO_PRIORITY, "SO_PRIORITY", kAll},
    {SOL_SOCKET, SO_RCVLOWAT, "SO_RCVLOWAT", kAll},
    {SOL_SOCKET, SO_PASSCRED, "SO_PASSCRED", kAll},
    {SOL_SOCKET, SO_PASSSEC, "SO_PASSSEC", kAll},
    {SOL_SOCKET, SO_MARK, "SO_MARK", kAll},
    {SOL_SOCKET, SO_TIMESTAMP, "SO_TIMESTAMP", kAll},
    {SOL_SOCKET, SO_TIMESTAMPNS, "SO_TIMESTAMPNS", kAll},
    {SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", kAll},
    {SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF", kAll},
    {SOL_SOCKET, SO_LINGER, "SO_LINGER", kAll},
    {SOL_SOCKET, SO_RCVTIMEO, "SO_RCVTIMEO", kAll},
    {SOL_SOCKET, SO_SNDTIMEO, "SO_SNDTIMEO", kAll},
    {SOL_SOCKET, SO_PEEK_OFF, "SO_PEEK_OFF", kAll},
    {IPPROTO_IP, IP_TOS, "IP_TOS", kIp4},
    {IPPROTO_IP, IP_TTL, "IP_TTL", kIp4},
    {IPPROTO_IP, IP_FREEBIND, "IP_FREEBIND", kIp4},
    {IPPROTO_IP, IP_TRANSPARENT, "IP_TRANSPARENT", kIp4},
    {IPPROTO_IP, IP_PKTINFO, "IP_PKTINFO", kIp4},
    {IPPROTO_IP, IP_RECVERR, "IP_RECVERR", kIp4},
    {IPPROTO_IP, IP_RECVTOS, "IP_RECVTOS", kIp4},
    {IPPROTO_IP, IP_RECVTTL, "IP_RECVTTL", kIp4},
    {IPPROTO_IP, IP_MTU_DISCOVER, "IP_MTU_DISCOVER", kIp4},
    {IPPROTO_IP, IP_MULTICAST_TTL, "IP_MULTICAST_TTL", kUdp4},
    {IPPROTO_IP, IP_MULTICAST_LOOP, "IP_MULTICAST_LOOP", kUdp4},
    {IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, "IP_BIND_ADDRESS_NO_PORT", kIp4},
    {IPPROTO_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY", kIp6},
    {IPPROTO_IPV6, IPV6_UNICAST_HOPS, "IPV6_UNICAST_HOPS", kIp6},
    {IPPROTO_IPV6, IPV6_TCLASS, "IPV6_TCLASS", kIp6},
    {IPPROTO_IPV6, IPV6_RECVPKTINFO, "IPV6_RECVPKTINFO", kIp6},
    {IPPROTO_IPV6, IPV6_RECVERR, "IPV6_RECVERR", kIp6},
    {IPPROTO_IPV6, IPV6_MTU_DISCOVER, "IPV6_MTU_DISCOVER", kIp6},
    {IPPROTO_IPV6, IPV6_MULTICAST_HOPS, "IPV6_MULTICAST_HOPS", kUdp6},
    {IPPROTO_IPV6, IPV6_MULTICAST_LOOP, "IPV6_MULTICAST_LOOP", kUdp6},
    {IPPROTO_IPV6, IPV6_FREEBIND, "IPV6_FREEBIND", kIp6},
    {IPPROTO_IPV6, IPV6_TRANSPARENT, "IPV6_TRANSPARENT", kIp6},
    {IPPROTO_TCP, TCP_NODELAY, "TCP_NODELAY", kTcp},
    {IPPROTO_TCP, TCP_CORK, "TCP_CORK", kTcp},
    {IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE", kTcp},
    {IPPROTO_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL", kTcp},
    {IPPROTO_TCP, TCP_KEEPCNT, "TCP_KEEPCNT", kTcp},
    {IPPROTO_TCP, TCP_DEFER_ACCEPT, "TCP_DEFER_ACCEPT", kTcp},
    {IPPROTO_TCP, TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT", kTcp},
    {IPPROTO_TCP, TCP_FASTOPEN, "TCP_FASTOPEN", kTcp},
    {IPPROTO_TCP, TCP_NOTSENT_LOWAT, "TCP_NOTSENT_LOWAT", kTcp},
    {IPPROTO_TCP, TCP_WINDOW_CLAMP, "TCP_WINDOW_CLAMP", kTcp},
    {IPPROTO_TCP, TCP_LINGER2, "TCP_LINGER2", kTcp},
    {IPPROTO_TCP, TCP_SYNCNT, "TCP_SYNCNT", kTcp},
    {IPPROTO_TCP, TCP_CONGESTION, "TCP_CONGESTION", kTcp},
    {IPPROTO_UDP, UDP_SEGMENT, "UDP_SEGMENT", kUdp},
    {IPPROTO_UDP, UDP_GRO, "UDP_GRO", kUdp},
};

bool AppliesTo(Applies a, uint32_t family, uint32_t protocol) {
  const bool inet = family == AF_INET || family == AF_INET6;
  switch (a) {
    case kAll: return true;
    case kInet: return inet;
    case kTcp: return inet && protocol == IPPROTO_TCP;
    case kUdp: return inet && protocol == IPPROTO_UDP;
    // An IPv6 socket takes IPv4 options too (for v4-mapped traffic), but
    // they are the IPv6 ones that matter; each family its own.
    case kIp4: return family == AF_INET;
    case kIp6: return family == AF_INET6;
    // Multicast is for datagrams: TCP refuses the options (EINVAL).
    case kUdp4: return family == AF_INET && protocol == IPPROTO_UDP;
    case kUdp6: return family == AF_INET6 && protocol == IPPROTO_UDP;
  }
  return false;
}

// getsockopt into `out`; false when the kernel does not have it here.
bool Get(int sock, const OptionSpec& o, Bytes* out) {
  uint8_t value[64] = {};
  socklen_t len = sizeof(value);
  if (getsockopt(sock, o.level, o.name, value, &len) != 0) return false;
  out->assign(value, value + len);
  return true;
}

}  // namespace

std::string SocketKindText(uint32_t family, uint32_t type, uint32_t protocol) {
  const char* type_name = type == SOCK_STREAM      ? "stream"
                          : type == SOCK_DGRAM     ? "datagram"
                          : type == SOCK_SEQPACKET ? "seqpacket"
                                                   : "raw";
  if (family == AF_UNIX) return absl::StrCat("UNIX ", type_name);
  if (family != AF_INET && family != AF_INET6) {
    return absl::StrFormat("family %d %s", family, type_name);
  }
  const char* six = family == AF_INET6 ? "6" : "";
  if (type == SOCK_STREAM && protocol == IPPROTO_TCP) return absl::StrCat("TCP", six);
  if (type == SOCK_DGRAM && protocol == IPPROTO_UDP) return absl::StrCat("UDP", six);
  if (type == SOCK_DGRAM && (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6)) {
    return absl::StrCat("ICMP", six, " echo");
  }
  return absl::StrFormat("IPv%d %s protocol %d", family == AF_INET6 ? 6 : 4, type_name, protocol);
}

std::string SocketAddressText(const Bytes& addr) {
  if (addr.size() < sizeof(sa_family_t)) return "(unnamed)";
  sockaddr_storage s{};
  memcpy(&s, addr.data(), std::min(addr.size(), sizeof(s)));
  if (s.ss_family == AF_UNIX) {
    constexpr size_t off = offsetof(sockaddr_un, sun_path);
    const char* path = reinterpret_cast<const sockaddr_un*>(&s)->sun_path;
    if (addr.size() <= off) return "(unnamed)";
    if (path[0] != 0) return std::string(path, strnlen(path, addr.size() - off));
    return absl::StrCat("@", std::string(path + 1, addr.size() - off - 1));
  }
  char text[INET6_ADDRSTRLEN] = "?";
  if (s.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&s);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
    return absl::StrCat(text, ":", ntohs(in->sin_port));
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&s);
  inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
  return absl::StrCat("[", text, "]:", ntohs(in6->sin6_port));
}

std::string SocketOptionName(uint32_t level, uint32_t name) {
  for (const OptionSpec& o : kOptions) {
    if (static_cast<uint32_t>(o.level) == level && static_cast<uint32_t>(o.name) == name) {
      return o.label;
    }
  }
  return absl::StrFormat("option %d of level %d", name, level);
}

absl::StatusOr<std::vector<SocketOption>> ChangedSocketOptions(int sock, uint32_t family,
                                                               uint32_t type, uint32_t protocol) {
  sys::UniqueFd fresh(socket(static_cast<int>(family), static_cast<int>(type) | SOCK_CLOEXEC,
                             static_cast<int>(protocol)));
  if (fresh.fd < 0) {
    return Errno("socket(%d, %d, %d) to compare options with", family, type, protocol);
  }
  std::vector<SocketOption> out;
  for (const OptionSpec& o : kOptions) {
    if (!AppliesTo(o.applies, family, protocol)) continue;
    Bytes value, initial;
    if (!Get(sock, o, &value)) continue;
    if (Get(fresh.fd, o, &initial) && initial == value) continue;
    out.push_back({.level = static_cast<uint32_t>(o.level), .name = static_cast<uint32_t>(o.name),
                   .value = std::move(value)});
  }
  return out;
}

absl::Status SetSocketOptions(int sock, absl::Span<const SocketOption> options,
                              const std::string& what) {
  for (const SocketOption& o : options) {
    const std::string name = SocketOptionName(o.level, o.name);
    Bytes value = o.value;
    const bool buffer = o.level == SOL_SOCKET && (o.name == SO_RCVBUF || o.name == SO_SNDBUF);
    if (buffer && value.size() == sizeof(int)) {
      // The kernel reports twice what was asked (room for its overhead).
      int size;
      memcpy(&size, value.data(), sizeof(size));
      size /= 2;
      memcpy(value.data(), &size, sizeof(size));
    }
    int rc = setsockopt(sock, static_cast<int>(o.level), static_cast<int>(o.name), value.data(),
                        static_cast<socklen_t>(value.size()));
    if (rc != 0) return Errno("setsockopt(%s) on %s", name, what);
    if (!buffer) continue;
    uint8_t now[sizeof(int)] = {};
    socklen_t len = sizeof(now);
    if (getsockopt(sock, static_cast<int>(o.level), static_cast<int>(o.name), now, &len) == 0 &&
        memcmp(now, o.value.data(), sizeof(now)) != 0) {
      // Above net.core.[rw]mem_max: what only CAP_NET_ADMIN may ask, as
      // the process did (the FORCE variant fails for anyone else).
      const int force = o.name == SO_RCVBUF ? SO_RCVBUFFORCE : SO_SNDBUFFORCE;
      if (setsockopt(sock, SOL_SOCKET, force, value.data(), static_cast<socklen_t>(value.size())) !=
          0) {
        return Errno("setsockopt(%s) beyond the system's limit on %s", name, what);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace crlib
