// Established TCP connections (`crlib dump --tcp-established`, as in
// CRIU): the peer must still be there, so the connection is held still
// between the dump and the restore. Its packets are dropped both ways by
// an nftables table of crlib's own, set up before anything is read, and
// the socket goes into TCP repair mode, in which it is read (sequence
// numbers, queues, options, window) and in which its close when the
// dumped process is killed sends nothing. The restore makes it again in
// repair mode and deletes the table: the peer's retransmissions then reach
// it, as if the network had been slow.
#ifndef CRLIB_FILES_TCP_CONNECTION_H_
#define CRLIB_FILES_TCP_CONNECTION_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/records.h"
#include "sys/unique_fd.h"

namespace crlib {

struct TcpConnectionCapture {
  TcpConnectionRecord record;
  Bytes send_queue;     // sent and not acknowledged, then not sent
  Bytes receive_queue;  // received, not read
};

// The connections one dump holds still. Unless Keep() is called (the
// dump is complete and kills the processes), its destructor lets them go
// as they were: repair mode off, the packet filter deleted.
class TcpFreeze {
 public:
  explicit TcpFreeze(bool allowed) : allowed_(allowed) {}
  TcpFreeze(const TcpFreeze&) = delete;
  TcpFreeze& operator=(const TcpFreeze&) = delete;
  ~TcpFreeze();

  // Whether established connections may be dumped (--tcp-established).
  bool allowed() const { return allowed_; }

  // Holds the established connection `sock` (our descriptor on it, sockfs
  // inode `inode`) still and reads it; `local` and `remote` are its
  // addresses. A socket several fds or processes hold is read once.
  absl::StatusOr<TcpConnectionCapture> Capture(int sock, uint64_t inode, const Bytes& local,
                                               const Bytes& remote, const std::string& what);

  // The processes are killed: their connections stay held for the
  // restore, which deletes the filter.
  void Keep() { kept_ = true; }

  // The processes run on (or the dump failed): repair mode off, the
  // filter deleted, before they run. Idempotent.
  void Release();

 private:
  const bool allowed_;
  bool kept_ = false;
  std::string table_;  // "crlib_<random>", once made
  std::vector<sys::UniqueFd> sockets_;  // ours, in repair mode
  std::map<uint64_t, TcpConnectionCapture> captured_;  // by sockfs inode
};

// Makes connection `tcp` of socket `socket` again (bound, connected,
// queues, options, window), in repair mode and out of it. CAP_NET_ADMIN.
absl::StatusOr<int> MakeTcpConnection(const SocketRecord& socket, const TcpConnectionRecord& tcp,
                                      const Bytes& send_queue, const Bytes& receive_queue,
                                      const std::string& what);

// Deletes the packet filter of a dump's connections; none left is fine.
absl::Status ReleaseTcpFilter(const std::string& table);

}  // namespace crlib

#endif  // CRLIB_FILES_TCP_CONNECTION_H_
