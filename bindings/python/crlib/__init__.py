"""crlib for Python: checkpoint and restore processes, this one included.

A thin ctypes layer over libcrlib's stable C ABI (include/crlib/crlib.h); no
compiled extension. The library is loaded from $CRLIB_LIBRARY (a path) if
set, else found on the normal loader path as libcrlib.so.0.

    import crlib
    if crlib.checkpoint_self("/tmp/app.img") == crlib.RESTORED:
        print("running again from the image")

    with crlib.nocr("writing the journal"):
        ...  # any checkpoint of this process fails meanwhile

Every failure raises crlib.Error, with .code (a CRLIB_E_* value, see
Error.name), .errno (0 if no system call failed) and the message.
"""

import ctypes
import contextlib
import os

__all__ = [
    "CHECKPOINTED", "RESTORED", "Error", "Stats", "checkpoint", "checkpoint_self",
    "restore", "nocr", "version", "LazyPages",
]

OK = 0
CHECKPOINTED = 1
RESTORED = 2

# Status codes, as in crlib.h (stable values).
E_INVALID_ARGUMENT = -1
E_NOT_FOUND = -2
E_PERMISSION = -3
E_UNSUPPORTED = -4
E_NOT_CHECKPOINTABLE = -5
E_BAD_IMAGE = -6
E_INCOMPATIBLE = -7
E_BUSY = -8
E_IO = -9
E_NO_MEMORY = -10
E_CANCELLED = -11
E_INTERNAL = -12

_CHECKPOINT_KILL = 1 << 0
_CHECKPOINT_COMPRESS = 1 << 1
_CHECKPOINT_MAPPABLE = 1 << 2
_RESTORE_TRUST_IMAGE = 1 << 0
_RESTORE_PID_NAMESPACE = 1 << 2
_RESTORE_COPY_PAGES = 1 << 3
_RESTORE_LAZY = 1 << 4


class Error(Exception):
    """A crlib call failed. .code is the CRLIB_E_* value, .name its name."""

    def __init__(self, code, message, errno=0):
        super().__init__(message)
        self.code = code
        self.errno = errno
        self.name = _lib().crlib_status_name(code).decode()
        self.message = message

    def __str__(self):
        return "%s (%s)" % (self.message, self.name)


class _Stats(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("image_bytes", ctypes.c_uint64),
        ("pages_scanned", ctypes.c_uint64),
        ("pages_stored", ctypes.c_uint64),
        ("pages_zero", ctypes.c_uint64),
        ("records", ctypes.c_uint64),
        ("frozen_ns", ctypes.c_int64),
        ("total_ns", ctypes.c_int64),
        ("pages_mapped", ctypes.c_uint64),
    ]


_PROGRESS = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_uint64, ctypes.c_uint64,
                             ctypes.c_void_p)


class _CheckpointOptions(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("flags", ctypes.c_uint),
        ("compression_level", ctypes.c_int),
        ("progress", _PROGRESS),
        ("progress_user_data", ctypes.c_void_p),
        ("stats", ctypes.POINTER(_Stats)),
    ]


class _InheritFd(ctypes.Structure):
    _fields_ = [("key", ctypes.c_char_p), ("fd", ctypes.c_int)]


class _RestoreOptions(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_size_t),
        ("flags", ctypes.c_uint),
        ("progress", _PROGRESS),
        ("progress_user_data", ctypes.c_void_p),
        ("stats", ctypes.POINTER(_Stats)),
        ("image_fd", ctypes.c_int),
        ("inherit_fds", ctypes.POINTER(_InheritFd)),
        ("inherit_fds_count", ctypes.c_size_t),
        ("lazy", ctypes.POINTER(ctypes.c_void_p)),
    ]


class Stats:
    """What an operation did: image_bytes, pages_scanned, pages_stored,
    pages_zero, records, frozen_ns, total_ns, pages_mapped (restore)."""

    def __init__(self, raw):
        for name, _ in _Stats._fields_[1:]:
            setattr(self, name, getattr(raw, name))

    def __repr__(self):
        return "Stats(%s)" % ", ".join(
            "%s=%d" % (n, getattr(self, n)) for n, _ in _Stats._fields_[1:])


_handle = None


def _lib():
    global _handle
    if _handle is not None:
        return _handle
    path = os.environ.get("CRLIB_LIBRARY") or "libcrlib.so.0"
    lib = ctypes.CDLL(path, use_errno=True)
    err_p = ctypes.POINTER(ctypes.c_void_p)
    lib.crlib_version_string.restype = ctypes.c_char_p
    lib.crlib_status_name.restype = ctypes.c_char_p
    lib.crlib_status_name.argtypes = [ctypes.c_int]
    lib.crlib_error_errno.argtypes = [ctypes.c_void_p]
    lib.crlib_error_message.argtypes = [ctypes.c_void_p]
    lib.crlib_error_message.restype = ctypes.c_char_p
    lib.crlib_error_free.argtypes = [ctypes.c_void_p]
    lib.crlib_error_free.restype = None
    lib.crlib_checkpoint.argtypes = [ctypes.c_int, ctypes.c_char_p,
                                     ctypes.POINTER(_CheckpointOptions), err_p]
    lib.crlib_checkpoint_self.argtypes = [ctypes.c_char_p, ctypes.POINTER(_CheckpointOptions),
                                          err_p]
    lib.crlib_restore.argtypes = [ctypes.c_char_p, ctypes.POINTER(_RestoreOptions),
                                  ctypes.POINTER(ctypes.c_int), err_p]
    lib.crlib_lazy_wait.argtypes = [ctypes.c_void_p, err_p]
    lib.crlib_lazy_fd.argtypes = [ctypes.c_void_p]
    lib.crlib_lazy_free.argtypes = [ctypes.c_void_p]
    lib.crlib_lazy_free.restype = None
    lib.crlib_nocr_enter.argtypes = [ctypes.c_char_p]
    lib.crlib_nocr_leave.argtypes = []
    _handle = lib
    return lib


def _check(status, err):
    """Raises Error for a negative status, freeing the error object."""
    if status >= 0:
        return status
    lib = _lib()
    if err.value:
        message = lib.crlib_error_message(err).decode(errors="replace")
        errno = lib.crlib_error_errno(err)
        lib.crlib_error_free(err)
    else:
        message, errno = lib.crlib_status_name(status).decode(), 0
    raise Error(status, message, errno)


def _sized(cls):
    """A C struct that begins with its size, as the C API's _INIT does."""
    value = cls()
    value.size = ctypes.sizeof(cls)
    return value


def _checkpoint_options(stats, compress, mappable):
    o = _sized(_CheckpointOptions)
    if mappable:
        o.flags |= _CHECKPOINT_MAPPABLE
    if compress:
        o.flags |= _CHECKPOINT_COMPRESS
        o.compression_level = 0 if compress is True else int(compress)
    o.stats = ctypes.pointer(stats)
    return o


def version():
    """The loaded library's version, "MAJOR.MINOR.PATCH"."""
    return _lib().crlib_version_string().decode()


def checkpoint_self(path, compress=False, mappable=False):
    """Writes an image of this process (all threads) to `path`.

    Returns CHECKPOINTED here, and RESTORED when the process is restored
    from the image (`crlib restore --image PATH`); the same image restores
    any number of times. `compress`: True or a zstd level 1..19.
    `mappable`: pages raw and page-aligned, so that a restore maps them from
    the (read-only) image file instead of copying them.
    """
    stats = _sized(_Stats)
    o = _checkpoint_options(stats, compress, mappable)
    err = ctypes.c_void_p()
    return _check(_lib().crlib_checkpoint_self(os.fsencode(path), ctypes.byref(o),
                                               ctypes.byref(err)), err)


def checkpoint(pid, path, kill=False, compress=False, mappable=False):
    """Writes an image of process `pid` to `path`; it runs on unless `kill`.
    `compress` and `mappable` as for checkpoint_self. Returns a Stats."""
    stats = _sized(_Stats)
    o = _checkpoint_options(stats, compress, mappable)
    if kill:
        o.flags |= _CHECKPOINT_KILL
    err = ctypes.c_void_p()
    _check(_lib().crlib_checkpoint(int(pid), os.fsencode(path), ctypes.byref(o), ctypes.byref(err)), err)
    return Stats(stats)


class LazyPages:
    """The pages of a lazy restore on their way in (restore(..., lazy=True)).
    wait() blocks until every page is in, raising Error if serving failed
    (the processes were then killed); fileno() becomes readable then, for
    select/poll. close() (or leaving a `with` block) waits, then frees."""

    def __init__(self, handle):
        self._handle = handle

    def wait(self):
        err = ctypes.c_void_p()
        _check(_lib().crlib_lazy_wait(self._handle, ctypes.byref(err)), err)

    def fileno(self):
        return _lib().crlib_lazy_fd(self._handle)

    def close(self):
        if self._handle:
            _lib().crlib_lazy_free(self._handle)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


def restore(path, trust_image=False, inherit_fds=None, pid_namespace=False, copy_pages=False,
            lazy=False):
    """Restores the process tree in the image at `path`, each process with
    its recorded PID, the root a child of this process, and returns the PID
    of that child (reap it with os.waitpid). With `pid_namespace` the tree
    is restored in a new PID namespace (its PIDs are free there, so an
    image restores any number of times at once; needs CAP_SYS_ADMIN) and
    the PID returned is the namespace's init, which exits with the root's
    status; the root's PID seen from here is in
    /proc/INIT/task/INIT/children (`crlib restore --pid-ns`). Unless
    `trust_image`, credentials the image file's owner could not grant are
    refused (E_PERMISSION; docs/SECURITY.md). `inherit_fds` maps the key of
    each external fd of the image (e.g. "pipe:[123456]", as `crlib inspect`
    shows it) to one of this process's descriptors, which the restored
    process gets a dup of (`crlib restore --inherit-fd KEY=FD`). The pages
    of a mappable image are mapped from its file unless `copy_pages`
    (`crlib restore --copy-pages`). With `lazy` (an image of one process)
    it returns as soon as the process runs, while its memory still comes
    in, as (pid, LazyPages) (`crlib restore --lazy`; docs/CHECKPOINT.md,
    "Lazy restore")."""
    stats = _sized(_Stats)
    o = _sized(_RestoreOptions)
    o.stats = ctypes.pointer(stats)
    o.image_fd = -1
    given = [_InheritFd(os.fsencode(key), int(fd)) for key, fd in (inherit_fds or {}).items()]
    if given:
        o.inherit_fds = (_InheritFd * len(given))(*given)
        o.inherit_fds_count = len(given)
    if trust_image:
        o.flags |= _RESTORE_TRUST_IMAGE
    if pid_namespace:
        o.flags |= _RESTORE_PID_NAMESPACE
    if copy_pages:
        o.flags |= _RESTORE_COPY_PAGES
    handle = ctypes.c_void_p()
    if lazy:
        o.flags |= _RESTORE_LAZY
        o.lazy = ctypes.pointer(handle)
    pid = ctypes.c_int(0)
    err = ctypes.c_void_p()
    _check(_lib().crlib_restore(os.fsencode(path), ctypes.byref(o), ctypes.byref(pid),
                                ctypes.byref(err)), err)
    if lazy:
        return pid.value, LazyPages(handle.value)
    return pid.value


@contextlib.contextmanager
def nocr(reason):
    """While inside, any checkpoint of this process fails with
    E_NOT_CHECKPOINTABLE and `reason`. Nests."""
    lib = _lib()
    r = lib.crlib_nocr_enter(str(reason).encode())
    if r < 0:
        raise Error(r, "crlib_nocr_enter(%r) failed" % (reason,))
    try:
        yield
    finally:
        lib.crlib_nocr_leave()
