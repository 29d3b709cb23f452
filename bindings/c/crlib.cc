// The C ABI over the C++ library. This is the one place where internal
// statuses become C status codes (ToC below).
#include "crlib/crlib.h"

#include <cerrno>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/context.h"
#include "core/status.h"
#include "cr/checkpoint.h"
#include "sys/nocr.h"
#include "cr/restore.h"
#include "cr/self_checkpoint.h"

struct crlib_error {
  int code;
  int sys_errno;
  std::string message;
};

struct crlib_lazy {
  std::unique_ptr<crlib::LazyPages> pages;
};

namespace {

using crlib::Context;

int CodeOf(const absl::Status& st) {
  if (crlib::NotCheckpointableReason(st)) return CRLIB_E_NOT_CHECKPOINTABLE;
  // A failed system call: its errno says more than the canonical code
  // absl derives from it.
  switch (crlib::StatusErrno(st)) {
    case 0: break;
    case EPERM:
    case EACCES: return CRLIB_E_PERMISSION;
    case ENOENT:
    case ESRCH: return CRLIB_E_NOT_FOUND;
    case ENOMEM: return CRLIB_E_NO_MEMORY;
    case EEXIST:
    case EBUSY: return CRLIB_E_BUSY;
    default: return CRLIB_E_IO;
  }
  switch (st.code()) {
    case absl::StatusCode::kOk: return CRLIB_OK;
    case absl::StatusCode::kInvalidArgument: return CRLIB_E_INVALID_ARGUMENT;
    case absl::StatusCode::kNotFound: return CRLIB_E_NOT_FOUND;
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated: return CRLIB_E_PERMISSION;
    case absl::StatusCode::kUnimplemented: return CRLIB_E_UNSUPPORTED;
    case absl::StatusCode::kDataLoss: return CRLIB_E_BAD_IMAGE;
    case absl::StatusCode::kFailedPrecondition: return CRLIB_E_INCOMPATIBLE;
    case absl::StatusCode::kAlreadyExists: return CRLIB_E_BUSY;
    case absl::StatusCode::kResourceExhausted: return CRLIB_E_NO_MEMORY;
    case absl::StatusCode::kCancelled: return CRLIB_E_CANCELLED;
    default: return CRLIB_E_INTERNAL;
  }
}

// Turns a status into the return value and, if asked, an error object.
int ToC(const absl::Status& st, crlib_error** error) {
  if (error) *error = nullptr;
  const int code = CodeOf(st);
  if (code == CRLIB_OK) return CRLIB_OK;
  if (error) {
    *error = new (std::nothrow) crlib_error{code, crlib::StatusErrno(st), std::string(st.message())};
  }
  return code;
}

// The arguments every operation takes: an image path, and options from a
// caller's struct, which may be older (smaller) than ours: fields past its
// `size` keep their defaults.
// `*name` becomes the image's name for messages: its path, or "fd N".
template <typename T>
absl::Status ReadArguments(const char* path, const T* from, T* to, std::string* name) {
  if (from != nullptr) {
    const size_t size = from->size;
    if (size < sizeof(size_t) || size > (1u << 16)) {
      return absl::InvalidArgumentError(
          absl::StrCat("options size ", size, " is not a sizeof of the options struct"));
    }
    memcpy(to, from, std::min(size, sizeof(T)));
    to->size = sizeof(T);
  }
  if (to->image_fd < -1) return absl::InvalidArgumentError(absl::StrCat("image_fd ", to->image_fd));
  if (path != nullptr && *path != '\0') {
    *name = path;
  } else if (to->image_fd >= 0) {
    *name = absl::StrCat("fd ", to->image_fd);
  } else {
    return absl::InvalidArgumentError("image path is NULL or empty, and no image_fd is given");
  }
  return absl::OkStatus();
}

void ConnectProgress(Context* ctx, crlib_progress_fn fn, void* user) {
  if (fn == nullptr) return;
  ctx->set_progress([fn, user](crlib::Phase phase, uint64_t done, uint64_t total) {
    return fn(static_cast<int>(phase), done, total, user) == 0;
  });
}

void FillStats(const Context& ctx, crlib_stats* out) {
  if (out == nullptr || out->size < sizeof(crlib_stats::size)) return;
  crlib_stats s = CRLIB_STATS_INIT;
  const crlib::Stats& in = ctx.stats();
  s.image_bytes = in.bytes;
  s.pages_scanned = in.pages_scanned;
  s.pages_stored = in.pages_stored;
  s.pages_zero = in.pages_zero;
  s.records = in.records;
  s.frozen_ns = in.frozen_ns;
  s.total_ns = in.total_ns;
  s.pages_mapped = in.pages_mapped;
  const size_t n = std::min(out->size, sizeof(crlib_stats));
  memcpy(out, &s, n);
  out->size = n;
}

// The arguments of both checkpoint calls, checked, and the image options
// they ask for.
absl::StatusOr<crlib::Options> CheckpointArguments(const char* path,
                                                   const crlib_checkpoint_options* options,
                                                   crlib_checkpoint_options* o, std::string* name) {
  CRLIB_RETURN_IF_ERROR(ReadArguments(path, options, o, name));
  if (o->flags &
      ~unsigned{CRLIB_CHECKPOINT_KILL | CRLIB_CHECKPOINT_COMPRESS | CRLIB_CHECKPOINT_MAPPABLE |
                CRLIB_CHECKPOINT_TRACK | CRLIB_CHECKPOINT_TCP_ESTABLISHED}) {
    return absl::InvalidArgumentError(absl::StrCat("unknown checkpoint flags 0x", absl::Hex(o->flags)));
  }
  crlib::Options image;
  if (o->flags & CRLIB_CHECKPOINT_COMPRESS) {
    if (o->compression_level < 0 || o->compression_level > 19) {
      return absl::InvalidArgumentError(
          absl::StrCat("compression level ", o->compression_level, " is not in 1..19"));
    }
    image.compression_level = o->compression_level == 0 ? 1 : o->compression_level;
  }
  image.mappable = (o->flags & CRLIB_CHECKPOINT_MAPPABLE) != 0;
  CRLIB_RETURN_IF_ERROR(crlib::CheckOptions(image));
  return image;
}

}  // namespace

extern "C" {

unsigned crlib_version(void) { return CRLIB_VERSION_NUMBER; }

const char* crlib_version_string(void) { return CRLIB_VERSION_STRING; }

const char* crlib_status_name(int status) {
  switch (status) {
    case CRLIB_OK: return "CRLIB_OK";
    case CRLIB_CHECKPOINTED: return "CRLIB_CHECKPOINTED";
    case CRLIB_RESTORED: return "CRLIB_RESTORED";
    case CRLIB_E_INVALID_ARGUMENT: return "CRLIB_E_INVALID_ARGUMENT";
    case CRLIB_E_NOT_FOUND: return "CRLIB_E_NOT_FOUND";
    case CRLIB_E_PERMISSION: return "CRLIB_E_PERMISSION";
    case CRLIB_E_UNSUPPORTED: return "CRLIB_E_UNSUPPORTED";
    case CRLIB_E_NOT_CHECKPOINTABLE: return "CRLIB_E_NOT_CHECKPOINTABLE";
    case CRLIB_E_BAD_IMAGE: return "CRLIB_E_BAD_IMAGE";
    case CRLIB_E_INCOMPATIBLE: return "CRLIB_E_INCOMPATIBLE";
    case CRLIB_E_BUSY: return "CRLIB_E_BUSY";
    case CRLIB_E_IO: return "CRLIB_E_IO";
    case CRLIB_E_NO_MEMORY: return "CRLIB_E_NO_MEMORY";
    case CRLIB_E_CANCELLED: return "CRLIB_E_CANCELLED";
    case CRLIB_E_INTERNAL: return "CRLIB_E_INTERNAL";
    default: return "CRLIB_UNKNOWN_STATUS";
  }
}

int crlib_error_code(const crlib_error* error) { return error ? error->code : 0; }

int crlib_error_errno(const crlib_error* error) { return error ? error->sys_errno : 0; }

const char* crlib_error_message(const crlib_error* error) {
  return error ? error->message.c_str() : "";
}

void crlib_error_free(crlib_error* error) { delete error; }

int crlib_checkpoint(pid_t pid, const char* image_path, const crlib_checkpoint_options* options,
                     crlib_error** error) {
  crlib_checkpoint_options o = CRLIB_CHECKPOINT_OPTIONS_INIT;
  std::string name;
  absl::StatusOr<crlib::Options> image_options = CheckpointArguments(image_path, options, &o, &name);
  if (!image_options.ok()) return ToC(image_options.status(), error);
  Context ctx(*image_options);
  ConnectProgress(&ctx, o.progress, o.progress_user_data);
  crlib::CheckpointOptions co;
  co.leave_running = !(o.flags & CRLIB_CHECKPOINT_KILL);
  co.image_fd = o.image_fd;
  if (o.deleted_file_limit != 0) co.deleted_file_limit = o.deleted_file_limit;
  co.track = (o.flags & CRLIB_CHECKPOINT_TRACK) != 0;
  co.tcp_established = (o.flags & CRLIB_CHECKPOINT_TCP_ESTABLISHED) != 0;
  if (o.parent_image != nullptr) co.parent_image = o.parent_image;
  absl::Status st = crlib::CheckpointProcess(&ctx, pid, name, co);
  if (st.ok()) FillStats(ctx, o.stats);
  return ToC(crlib::Annotate(st, absl::StrCat("checkpoint of pid ", pid)), error);
}

int crlib_checkpoint_self(const char* image_path, const crlib_checkpoint_options* options,
                          crlib_error** error) {
  crlib_checkpoint_options o = CRLIB_CHECKPOINT_OPTIONS_INIT;
  std::string name;
  absl::StatusOr<crlib::Options> image_options = CheckpointArguments(image_path, options, &o, &name);
  if (image_options.ok() && (o.flags & CRLIB_CHECKPOINT_KILL)) {
    image_options =
        absl::InvalidArgumentError("CRLIB_CHECKPOINT_KILL is not allowed for a self-checkpoint");
  }
  if (image_options.ok() && ((o.flags & CRLIB_CHECKPOINT_TRACK) || o.parent_image != nullptr)) {
    image_options = absl::InvalidArgumentError(
        "incremental dumps (CRLIB_CHECKPOINT_TRACK, parent_image) are not supported for a "
        "self-checkpoint");
  }
  if (image_options.ok() && (o.flags & CRLIB_CHECKPOINT_TCP_ESTABLISHED)) {
    // The caller keeps its connections and runs on: a restored copy could
    // not have them too.
    image_options = absl::InvalidArgumentError(
        "CRLIB_CHECKPOINT_TCP_ESTABLISHED is not supported for a self-checkpoint");
  }
  if (!image_options.ok()) return ToC(image_options.status(), error);
  Context ctx(*image_options);
  ConnectProgress(&ctx, o.progress, o.progress_user_data);
  absl::StatusOr<crlib::SelfResult> r = crlib::CheckpointSelf(&ctx, name, o.image_fd);
  if (!r.ok()) return ToC(crlib::Annotate(r.status(), "self-checkpoint"), error);
  ToC(absl::OkStatus(), error);
  if (*r == crlib::SelfResult::kRestored) return CRLIB_RESTORED;
  FillStats(ctx, o.stats);
  return CRLIB_CHECKPOINTED;
}

int crlib_restore(const char* image_path, const crlib_restore_options* options, pid_t* pid,
                  crlib_error** error) {
  crlib_restore_options o = CRLIB_RESTORE_OPTIONS_INIT;
  std::string name;
  absl::Status st = ReadArguments(image_path, options, &o, &name);
  if (st.ok() && (o.flags & ~unsigned{CRLIB_RESTORE_TRUST_IMAGE | CRLIB_RESTORE_CHECK_ONLY |
                                      CRLIB_RESTORE_PID_NAMESPACE | CRLIB_RESTORE_COPY_PAGES |
                                      CRLIB_RESTORE_LAZY})) {
    st = absl::InvalidArgumentError(absl::StrCat("unknown restore flags 0x", absl::Hex(o.flags)));
  }
  const bool lazy = (o.flags & CRLIB_RESTORE_LAZY) && !(o.flags & CRLIB_RESTORE_CHECK_ONLY);
  if (st.ok() && lazy && o.lazy == nullptr) {
    st = absl::InvalidArgumentError("CRLIB_RESTORE_LAZY without options->lazy for its handle");
  }
  if (lazy && o.lazy != nullptr) *o.lazy = nullptr;
  crlib::RestoreOptions ro{.image_fd = o.image_fd,
                           .trust_image = (o.flags & CRLIB_RESTORE_TRUST_IMAGE) != 0,
                           .pid_namespace = (o.flags & CRLIB_RESTORE_PID_NAMESPACE) != 0,
                           .copy_pages = (o.flags & CRLIB_RESTORE_COPY_PAGES) != 0};
  if (st.ok() && o.inherit_fds_count > 0 && o.inherit_fds == nullptr) {
    st = absl::InvalidArgumentError("inherit_fds is NULL but inherit_fds_count is not 0");
  }
  for (size_t i = 0; st.ok() && i < o.inherit_fds_count; ++i) {
    const crlib_inherit_fd& given = o.inherit_fds[i];
    if (given.key == nullptr || given.fd < 0) {
      st = absl::InvalidArgumentError(absl::StrCat("inherit_fds[", i, "] has no key or no fd"));
    } else if (!ro.inherit_fds.emplace(given.key, given.fd).second) {
      st = absl::InvalidArgumentError(absl::StrCat("inherit_fds gives key ", given.key, " twice"));
    }
  }
  if (!st.ok()) return ToC(st, error);
  if (o.flags & CRLIB_RESTORE_CHECK_ONLY) {
    absl::StatusOr<crlib::RestoreCheckReport> r = crlib::CheckRestore(name, ro);
    if (!r.ok()) return ToC(crlib::Annotate(r.status(), absl::StrCat("restore check of ", name)), error);
    if (pid) *pid = r->pid;
    return ToC(absl::OkStatus(), error);
  }
  Context ctx;
  ConnectProgress(&ctx, o.progress, o.progress_user_data);
  std::unique_ptr<crlib::LazyPages> pages;
  absl::StatusOr<pid_t> restored = crlib::RestoreProcess(&ctx, name, ro, lazy ? &pages : nullptr);
  if (!restored.ok()) {
    return ToC(crlib::Annotate(restored.status(), absl::StrCat("restore of ", name)), error);
  }
  if (pid) *pid = *restored;
  if (lazy) *o.lazy = new crlib_lazy{std::move(pages)};
  FillStats(ctx, o.stats);
  return ToC(absl::OkStatus(), error);
}

int crlib_lazy_wait(crlib_lazy* lazy, crlib_error** error) {
  if (lazy == nullptr) return ToC(absl::InvalidArgumentError("crlib_lazy_wait: lazy is NULL"), error);
  return ToC(lazy->pages->Wait(), error);
}

int crlib_lazy_fd(const crlib_lazy* lazy) { return lazy ? lazy->pages->done_fd() : -1; }

void crlib_lazy_free(crlib_lazy* lazy) { delete lazy; }

int crlib_nocr_enter(const char* reason) {
  absl::Status st = crlib::NoCrEnter(reason ? reason : "");
  return ToC(st, nullptr);
}

int crlib_nocr_leave(void) {
  return ToC(crlib::NoCrLeave(), nullptr);
}

}  // extern "C"
