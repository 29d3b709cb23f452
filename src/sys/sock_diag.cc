#include "sys/sock_diag.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_format.h"
#include "core/status.h"
#include "sys/unique_fd.h"

namespace crlib::sys {

absl::StatusOr<UnixSocketDiag> QueryUnixSocket(uint64_t inode) {
  UniqueFd nl(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (nl.fd < 0) return Errno("socket(NETLINK_SOCK_DIAG)");
  struct {
    nlmsghdr header;
    unix_diag_req request;
  } message{};
  message.header.nlmsg_len = sizeof(message);
  message.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  message.header.nlmsg_flags = NLM_F_REQUEST;
  message.header.nlmsg_seq = 1;
  message.request.sdiag_family = AF_UNIX;
  message.request.udiag_states = ~0u;
  message.request.udiag_ino = static_cast<uint32_t>(inode);
  message.request.udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER |
                               UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN;
  message.request.udiag_cookie[0] = message.request.udiag_cookie[1] = ~0u;  // no cookie check
  sockaddr_nl kernel{.nl_family = AF_NETLINK};
  if (sendto(nl.fd, &message, sizeof(message), 0, reinterpret_cast<sockaddr*>(&kernel),
             sizeof(kernel)) != static_cast<ssize_t>(sizeof(message))) {
    return Errno("sendto(NETLINK_SOCK_DIAG) for socket %d", inode);
  }
  // One answer: the socket, or an error. A listener with a long queue
  // answers with one pending inode per connection: size for the largest.
  std::vector<uint8_t> buffer(1 << 20);
  const ssize_t n = recv(nl.fd, buffer.data(), buffer.size(), 0);
  if (n < 0) return Errno("recv(NETLINK_SOCK_DIAG) for socket %d", inode);
  const auto* h = reinterpret_cast<const nlmsghdr*>(buffer.data());
  if (!NLMSG_OK(h, static_cast<size_t>(n))) {
    return absl::DataLossError(absl::StrFormat("a short sock_diag answer for socket %d", inode));
  }
  if (h->nlmsg_type == NLMSG_ERROR) {
    const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
    if (e->error == -ENOENT) {
      return absl::NotFoundError(absl::StrFormat(
          "no UNIX socket %d in crlib's network namespace", inode));
    }
    return ErrnoError(-e->error, absl::StrFormat("sock_diag of UNIX socket %d", inode));
  }
  if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || h->nlmsg_len < NLMSG_LENGTH(sizeof(unix_diag_msg))) {
    return absl::DataLossError(absl::StrFormat("an unexpected sock_diag answer for socket %d", inode));
  }
  const auto* msg = static_cast<const unix_diag_msg*>(NLMSG_DATA(h));
  UnixSocketDiag out;
  out.type = msg->udiag_type;
  out.state = msg->udiag_state;
  out.inode = msg->udiag_ino;
  if (out.inode != inode) {
    return absl::DataLossError(absl::StrFormat("sock_diag answered for socket %d, not %d",
                                               out.inode, inode));
  }
  int left = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(*msg)));
  for (const rtattr* a = reinterpret_cast<const rtattr*>(msg + 1); RTA_OK(a, left);
       a = RTA_NEXT(a, left)) {
    const auto* data = static_cast<const uint8_t*>(RTA_DATA(a));
    const size_t len = RTA_PAYLOAD(a);
    switch (a->rta_type) {
      case UNIX_DIAG_NAME:
        out.name.assign(reinterpret_cast<const char*>(data), len);
        break;
      case UNIX_DIAG_VFS:
        if (len >= sizeof(unix_diag_vfs)) {
          unix_diag_vfs vfs;
          memcpy(&vfs, data, sizeof(vfs));
          out.vfs_inode = vfs.udiag_vfs_ino;
          out.vfs_dev = vfs.udiag_vfs_dev;
        }
        break;
      case UNIX_DIAG_PEER:
        if (len >= sizeof(uint32_t)) {
          uint32_t peer;
          memcpy(&peer, data, sizeof(peer));
          out.peer = peer;
        }
        break;
      case UNIX_DIAG_ICONS:
        for (size_t i = 0; i + sizeof(uint32_t) <= len; i += sizeof(uint32_t)) {
          uint32_t pending;
          memcpy(&pending, data + i, sizeof(pending));
          out.pending.push_back(pending);
        }
        break;
      case UNIX_DIAG_RQLEN:
        if (len >= sizeof(unix_diag_rqlen)) {
          unix_diag_rqlen q;
          memcpy(&q, data, sizeof(q));
          out.rqueue = q.udiag_rqueue;
          out.wqueue = q.udiag_wqueue;
        }
        break;
      case UNIX_DIAG_SHUTDOWN:
        if (len >= 1) out.shutdown = data[0];
        break;
      default:
        break;
    }
  }
  return out;
}

}  // namespace crlib::sys
