#include "files/socket_restore.h"

#include <fcntl.h>
#include <netinet/in.h>
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
#include "core/status.h"
#include "files/socket_options.h"
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

std::string NameText(const SocketRecord& r, const Bytes& name) {
  constexpr size_t off = offsetof(sockaddr_un, sun_path);
  if (IsUnix(r)) {
    if (name.size() <= off) return "(unnamed)";
    if (name[off] != 0) return UnixPath(name);
    return absl::StrCat("@", std::string(reinterpret_cast<const char*>(name.data()) + off + 1,
                                         name.size() - off - 1));
  }
  return "an IP address";
}

std::string What(const SocketImage& s) {
  const SocketRecord& r = s.record;
  std::string what = absl::StrFormat("socket %d (family %d, type %d)", r.inode, r.family, r.type);
  if (!r.name.empty()) absl::StrAppend(&what, " bound to ", NameText(r, r.name));
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

class SocketMaker {
 public:
  SocketMaker(const ProcessImage& image, const std::set<ObjectRef>& refs, bool original_alive)
      : image_(image), refs_(refs), original_alive_(original_alive) {
    for (ObjectRef ref : refs) by_inode_[image.sockets.at(ref).record.inode] = ref;
  }
  ~SocketMaker() {
    for (auto& [ref, fd] : fds_) close(fd);
  }

  absl::StatusOr<std::map<ObjectRef, int>> Make() {
    CRLIB_RETURN_IF_ERROR(Create());
    for (ObjectRef ref : refs_) CRLIB_RETURN_IF_ERROR(CheckName(ref));
    if (original_alive_) {
      for (auto& [client, server] : accepted_) {
        CRLIB_ASSIGN_OR_RETURN(fds_[server], NewSocket(S(server).record));
      }
    }
    if (!original_alive_) {
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
    if (unlink(path.c_str()) != 0) return Errno("unlink of the stale socket file %s", path);
    return absl::OkStatus();
  }

  absl::Status Bind(ObjectRef ref) {
    if (!OwnsName(ref)) return absl::OkStatus();
    const SocketRecord& r = S(ref).record;
    if (bind(fds_.at(ref), Addr(r.name), Len(r.name)) != 0) {
      return Errno("bind of %s", What(S(ref)));
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

  absl::Status Listen(ObjectRef ref) {
    const SocketRecord& r = S(ref).record;
    if (!IsListener(r)) return absl::OkStatus();
    if (listen(fds_.at(ref), static_cast<int>(r.backlog)) != 0) {
      return Errno("listen on %s", What(S(ref)));
    }
    return absl::OkStatus();
  }

  absl::Status Accept(ObjectRef client, ObjectRef server) {
    const ObjectRef listener = ListenerNamed(S(server).record.name);
    const SocketRecord& l = S(listener).record;
    if (connect(fds_.at(client), Addr(l.name), Len(l.name)) != 0) {
      return Errno("connect of %s to its listener %s", What(S(client)), NameText(l, l.name));
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
                     NameText(l, l.name));
      }
    }
    return absl::OkStatus();
  }

  // Datagram sockets connected to one side (not a pair), and IP sockets.
  absl::Status Connect(ObjectRef ref) {
    const SocketRecord& r = S(ref).record;
    if (paired_.contains(ref) || accepted_server_.contains(ref) || (r.flags & kSocketPending) ||
        IsListener(r) || r.state != TCP_ESTABLISHED) {
      return absl::OkStatus();
    }
    for (auto& [client, server] : accepted_) {
      if (client == ref) return absl::OkStatus();
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
      return Errno("connect of %s to %s", What(S(ref)), NameText(r, to));
    }
    return absl::OkStatus();
  }

  // The queued messages of `ref`, sent to it again: through its peer, or
  // from the socket that sent each (by its name), or from a socket of no
  // name.
  absl::Status Queue(ObjectRef ref) {
    const SocketImage& s = S(ref);
    const SocketRecord& r = s.record;
    if (r.queue.empty()) return absl::OkStatus();
    int through = -1;  // the peer's end
    if (auto f = feeders_.find(ref); f != feeders_.end()) through = f->second.fd;
    if (through < 0 && (paired_.contains(ref) || accepted_server_.contains(ref))) {
      through = fds_.at(ByInode(r.peer));
    }
    for (auto& [client, server] : accepted_) {
      if (client == ref) through = fds_.at(server);
    }
    const bool stream = r.type == SOCK_STREAM;
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
              What(s), NameText(r, m.sender)));
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

  absl::Status Shutdown(ObjectRef ref) {
    const SocketRecord& r = S(ref).record;
    if (IsListener(r) || !(r.shutdown & (kRcvShutdown | kSendShutdown))) return absl::OkStatus();
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
  std::map<uint64_t, ObjectRef> by_inode_;
  std::map<ObjectRef, int> fds_;
  std::set<ObjectRef> paired_;           // ends made by socketpair
  std::set<ObjectRef> accepted_server_;  // server ends made by accept
  std::vector<std::pair<ObjectRef, ObjectRef>> accepted_;  // (client, server)
  std::map<ObjectRef, sys::UniqueFd> feeders_;  // the other end of a closed peer's pair
  std::vector<std::string> removed_names_;
};

}  // namespace

absl::StatusOr<std::map<ObjectRef, int>> MakeSockets(const ProcessImage& image,
                                                     const std::set<ObjectRef>& refs,
                                                     bool original_alive) {
  SocketMaker maker(image, refs, original_alive);
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
