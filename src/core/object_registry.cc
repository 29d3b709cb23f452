#include "core/object_registry.h"

namespace crlib {

ObjectRegistry::Entry ObjectRegistry::Intern(const KernelIdentity& id,
                                             const std::function<bool(ObjectRef)>& same) {
  std::vector<ObjectRef>& refs = map_[id];
  for (ObjectRef ref : refs) {
    if (!same || same(ref)) return {ref, false};
  }
  ObjectRef ref = NewRef();
  refs.push_back(ref);
  ++count_;
  return {ref, true};
}

ObjectRef ObjectRegistry::Find(const KernelIdentity& id) const {
  auto it = map_.find(id);
  return it == map_.end() || it->second.empty() ? 0 : it->second.front();
}

}  // namespace crlib
