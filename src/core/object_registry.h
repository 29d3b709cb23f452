// Maps a kernel object's identity to the ObjectRef it has in the image, so
// an object shared by several tasks (a file description, a pipe, an mm) is
// written once and referenced by the rest — linux-cr's objhash.
#ifndef CRLIB_CORE_OBJECT_REGISTRY_H_
#define CRLIB_CORE_OBJECT_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "core/records.h"

namespace crlib {

enum class ObjectKind : uint32_t {
  kProcess,
  kThread,
  kMemoryMap,
  kFileTable,
  kFile,  // an open file description
  kPipe,
  kInode,  // a file on disk, by (dev, inode)
  kTty,    // a pseudo-terminal pair, by (devpts device, index)
  kCarriedInode,  // an inode whose contents the image carries, by (dev, inode)
};

// The kernel's identity of an object. Where the kernel gives no unique id
// (an open file description), `a`/`b` are a hash key (e.g. dev and inode)
// and the caller confirms a match with kcmp(2) through Intern's `same`.
struct KernelIdentity {
  ObjectKind kind;
  uint64_t a = 0;
  uint64_t b = 0;
  bool operator==(const KernelIdentity&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const KernelIdentity& k) {
    return H::combine(std::move(h), k.kind, k.a, k.b);
  }
};

// Not thread-safe; owned by one Context.
class ObjectRegistry {
 public:
  struct Entry {
    ObjectRef ref;
    bool inserted;  // true: first sighting, the caller writes the record
  };

  // The ref of the object with this identity, registering it if new. With
  // `same`, objects that share the key are told apart by asking `same(ref)`
  // for each candidate (typically a kcmp(2) against a representative).
  Entry Intern(const KernelIdentity& id,
               const std::function<bool(ObjectRef)>& same = nullptr);

  // A fresh ref for an object no other task can share.
  ObjectRef NewRef() { return ++last_ref_; }

  // The ref already registered for `id`, or 0. Without `same`, the first.
  ObjectRef Find(const KernelIdentity& id) const;

  size_t size() const { return count_; }

 private:
  absl::flat_hash_map<KernelIdentity, std::vector<ObjectRef>> map_;
  ObjectRef last_ref_ = 0;
  size_t count_ = 0;
};

}  // namespace crlib

#endif  // CRLIB_CORE_OBJECT_REGISTRY_H_
