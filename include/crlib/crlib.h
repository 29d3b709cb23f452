/* crlib — checkpoint/restart for Linux processes. The stable C ABI.
 *
 * Conventions, true of every function below unless its comment says
 * otherwise:
 *  - Functions return an int status: CRLIB_OK (0) or another non-negative
 *    success value, or a negative CRLIB_E_* code. The values never change.
 *  - `error`, when not NULL, receives a newly allocated crlib_error on
 *    failure (and NULL on success); the caller frees it with
 *    crlib_error_free. Passing NULL is always allowed.
 *  - Options structs begin with their size; initialize them with their
 *    _INIT macro (or memset to 0 and set `size`), so a newer library can
 *    tell which fields an older caller knows. NULL options mean defaults.
 *  - Functions are thread-safe: they may be called from several threads at
 *    once. Operations on different processes run independently.
 *  - Paths and strings are borrowed for the duration of the call only.
 */
#ifndef CRLIB_CRLIB_H_
#define CRLIB_CRLIB_H_

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "crlib/export.h"
#include "crlib/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Versions ----------------------------------------------------------- */

/* Run-time version, CRLIB_VERSION_NUMBER of the library actually loaded.
 * Compare with the compile-time CRLIB_VERSION_NUMBER to detect a mismatch. */
CRLIB_EXPORT unsigned crlib_version(void);

/* Run-time version as "MAJOR.MINOR.PATCH"; static storage, never NULL. */
CRLIB_EXPORT const char *crlib_version_string(void);

/* ---- Status codes (stable values; new ones are only ever added) --------- */

enum {
  CRLIB_OK = 0,
  /* crlib_checkpoint_self: returned in the process that took the image. */
  CRLIB_CHECKPOINTED = 1,
  /* crlib_checkpoint_self: returned in a process restored from the image. */
  CRLIB_RESTORED = 2,

  CRLIB_E_INVALID_ARGUMENT = -1,   /* a NULL path, a bad option, ... */
  CRLIB_E_NOT_FOUND = -2,          /* no such process, image or file */
  CRLIB_E_PERMISSION = -3,         /* ptrace or another call was refused */
  CRLIB_E_UNSUPPORTED = -4,        /* the process holds something crlib cannot save */
  CRLIB_E_NOT_CHECKPOINTABLE = -5, /* the process holds a crlib_nocr_enter mark */
  CRLIB_E_BAD_IMAGE = -6,          /* corrupt, truncated or unknown image */
  CRLIB_E_INCOMPATIBLE = -7,       /* image needs CPU features, kernel or resources missing here */
  CRLIB_E_BUSY = -8,               /* a PID the image needs is in use */
  CRLIB_E_IO = -9,                 /* reading or writing a file failed */
  CRLIB_E_NO_MEMORY = -10,
  CRLIB_E_CANCELLED = -11,         /* the progress callback asked to stop */
  CRLIB_E_INTERNAL = -12           /* a bug in crlib; the message says where */
};

/* A short constant name for a status code ("CRLIB_E_BUSY"); never NULL. */
CRLIB_EXPORT const char *crlib_status_name(int status);

/* ---- Errors ------------------------------------------------------------- */

/* Opaque. Owned by the caller once returned; not shared between threads
 * unless the caller synchronizes. */
typedef struct crlib_error crlib_error;

/* The CRLIB_E_* code (negative). 0 for a NULL error. */
CRLIB_EXPORT int crlib_error_code(const crlib_error *error);
/* The errno of the system call that failed, or 0 if none did. */
CRLIB_EXPORT int crlib_error_errno(const crlib_error *error);
/* One line naming what failed, e.g. "restore of /tmp/a.img: pid 4242 is in
 * use". Valid until crlib_error_free; "" for a NULL error, never NULL. */
CRLIB_EXPORT const char *crlib_error_message(const crlib_error *error);
/* Frees an error; NULL is fine. */
CRLIB_EXPORT void crlib_error_free(crlib_error *error);

/* ---- Statistics and progress -------------------------------------------- */

typedef struct crlib_stats {
  size_t size;            /* set by the caller: sizeof(crlib_stats) */
  uint64_t image_bytes;   /* bytes written (checkpoint) or read (restore) */
  uint64_t pages_scanned; /* memory pages looked at */
  uint64_t pages_stored;  /* pages written to / loaded from the image */
  uint64_t pages_zero;    /* pages found all zero and not stored */
  uint64_t records;       /* image records */
  int64_t frozen_ns;      /* time the process was stopped (checkpoint) */
  int64_t total_ns;       /* time of the whole call */
  /* Restore: of pages_stored, those mapped from the image file rather than
   * copied (CRLIB_CHECKPOINT_MAPPABLE). Absent for a caller built before
   * this field (a smaller `size`). */
  uint64_t pages_mapped;
} crlib_stats;
#define CRLIB_STATS_INIT {sizeof(crlib_stats), 0, 0, 0, 0, 0, 0, 0, 0}

enum {
  /* The process is being stopped. A live dump reports it too while it
   * copies the memory of the still running process, `done` counting
   * bytes copied (`total` 0): cancelling then leaves it untouched. */
  CRLIB_PHASE_FREEZE = 1,
  CRLIB_PHASE_STATE = 2,   /* registers, signals, files, memory map */
  CRLIB_PHASE_MEMORY = 3,  /* pages; `done` and `total` count bytes */
  CRLIB_PHASE_DONE = 4     /* the image is complete / the process runs */
};

/* Called from the thread that made the call, between steps. Return 0 to go
 * on, non-zero to cancel: the operation is undone (the process resumes, no
 * image; or nothing restored) and fails with CRLIB_E_CANCELLED. `total` is
 * 0 when unknown. Must not call back into crlib. */
typedef int (*crlib_progress_fn)(int phase, uint64_t done, uint64_t total, void *user_data);

/* ---- Checkpoint --------------------------------------------------------- */

enum {
  /* Kill the process once its image is complete (default: it runs on). Not
   * allowed for crlib_checkpoint_self. */
  CRLIB_CHECKPOINT_KILL = 1u << 0,
  /* Store pages zstd-compressed (smaller, slower; not mappable). */
  CRLIB_CHECKPOINT_COMPRESS = 1u << 1,
  /* Store pages raw and page-aligned, so that a restore from the image file
   * maps them instead of copying them (time in mappings, not in bytes; the
   * copies of one image share its pages in the page cache). The image file
   * is created read-only (mode 0400): a restore maps only an image file
   * nobody may write. Not with CRLIB_CHECKPOINT_COMPRESS. `crlib dump
   * --mappable`. A library older than this flag refuses it
   * (CRLIB_E_INVALID_ARGUMENT). Value fixed: 1u << 2. */
  CRLIB_CHECKPOINT_MAPPABLE = 1u << 2,
  /* Keep tracking the process's writes after the checkpoint (it runs on:
   * not with CRLIB_CHECKPOINT_KILL), for a later checkpoint that names this
   * image as its parent_image. The process keeps a userfaultfd at a high
   * descriptor for it. `crlib dump --track`; docs/CHECKPOINT.md,
   * "Incremental dumps". Not for crlib_checkpoint_self. A library older
   * than this flag refuses it (CRLIB_E_INVALID_ARGUMENT). Value fixed:
   * 1u << 3. */
  CRLIB_CHECKPOINT_TRACK = 1u << 3,
  /* Carry established TCP connections: their packets are dropped (an
   * nftables table of crlib's) and the sockets read in TCP repair mode;
   * the restore makes them again and deletes the table. The peers must
   * still be there. Without it such a connection is refused
   * (CRLIB_E_UNSUPPORTED). Needs CAP_NET_ADMIN and nft(8). `crlib dump
   * --tcp-established`; docs/CHECKPOINT.md, "Sockets". Value fixed:
   * 1u << 4. */
  CRLIB_CHECKPOINT_TCP_ESTABLISHED = 1u << 4
};

typedef struct crlib_checkpoint_options {
  size_t size;                 /* sizeof(crlib_checkpoint_options) */
  unsigned flags;              /* CRLIB_CHECKPOINT_* */
  int compression_level;       /* 1..19 with CRLIB_CHECKPOINT_COMPRESS; 0: default (1) */
  crlib_progress_fn progress;  /* may be NULL */
  void *progress_user_data;
  crlib_stats *stats;          /* filled on success when not NULL */
  /* When not -1, the image is written to this descriptor (a pipe, socket,
   * FIFO or file, at its current offset), which stays the caller's; the
   * image path may then be NULL and only names the image in messages. A
   * stream has no commit: its reader knows the image is whole from its end
   * record, so a failed checkpoint leaves a truncated stream behind. */
  int image_fd;
  /* Bytes of data (holes not counted) a deleted open or mapped file may
   * hold for the image to carry it; above, the checkpoint is refused and
   * the process runs on. 0: the default, 1 GiB. crlib_checkpoint only. */
  unsigned long long deleted_file_limit;
  /* When not NULL: an image of this process from a checkpoint with
   * CRLIB_CHECKPOINT_TRACK (or with a parent_image itself). Only the pages
   * written since go into this image, which names that one as its parent;
   * a restore needs both, and follows the chain. Run on, the process stays
   * tracked. An image of another process, or one without tracking, is
   * CRLIB_E_INVALID_ARGUMENT. `crlib dump --parent`. crlib_checkpoint only;
   * absent for a caller built before this field (a smaller `size`). */
  const char *parent_image;
} crlib_checkpoint_options;
#define CRLIB_CHECKPOINT_OPTIONS_INIT \
  {sizeof(crlib_checkpoint_options), 0, 0, NULL, NULL, NULL, -1, 0, NULL}

/* Checkpoints process `pid` and all its descendants, the whole tree (the
 * caller must be allowed to ptrace each), into `image_path` (or
 * options->image_fd). The image file is created mode 0600, owned by the
 * caller, and appears under that name only once complete (an existing FIFO
 * or device there is written as a stream); on failure no file is left and
 * every process runs on untouched. With CRLIB_CHECKPOINT_KILL all of them
 * are killed once the image is complete, the children first. Returns
 * CRLIB_OK. */
CRLIB_EXPORT int crlib_checkpoint(pid_t pid, const char *image_path,
                                  const crlib_checkpoint_options *options, crlib_error **error);

/* Checkpoints the calling process, all its threads, and its child
 * processes and their descendants, into `image_path`. Returns
 * CRLIB_CHECKPOINTED in the calling process once the image is complete,
 * and CRLIB_RESTORED when the same call returns inside a process restored
 * from that image (`crlib restore --image PATH` or crlib_restore), any
 * number of times; its children come back with it, with their PIDs, as
 * its children. The calling thread is captured inside this call; the
 * other threads and processes wherever they are. A helper process (a fork
 * of the caller) does the work and is not part of the image, so the
 * caller is never left stopped or traced, on success or failure; its
 * SIGCHLD is delivered to the caller and reaped by this call. Under
 * Yama's ptrace_scope 1, without CAP_SYS_PTRACE, the helper may trace the
 * other processes only if each has allowed it with
 * prctl(PR_SET_PTRACER, <PID of the caller>). Fails with
 * CRLIB_E_NOT_CHECKPOINTABLE while this process holds a crlib_nocr_enter
 * mark. The progress callback
 * is called only before and after the process is stopped. */
CRLIB_EXPORT int crlib_checkpoint_self(const char *image_path,
                                       const crlib_checkpoint_options *options,
                                       crlib_error **error);

/* ---- Restore ------------------------------------------------------------ */

enum {
  /* Restore whatever credentials (uids, gids, groups, capabilities) the
   * image claims. Without it an image grants no more than the owner of the
   * image file has: one owned by uid U may claim only U, U's groups and no
   * capability; one writable by group or others nothing; one owned by root
   * anything. See docs/SECURITY.md. Value fixed: 1u << 0. */
  CRLIB_RESTORE_TRUST_IMAGE = 1u << 0,
  /* Check only: read and verify the whole image (page data included) and
   * run every check a restore makes before it creates anything — CPU and
   * xsave features, page size, vDSO layout, credentials against the image
   * file's owner, PID and TIDs free, locked memory, rlimits, every file
   * opened with the image's credentials — then stop. Nothing is created;
   * `*pid` receives the PID the image would have. `crlib restore --check`.
   * Value fixed: 1u << 1. */
  CRLIB_RESTORE_CHECK_ONLY = 1u << 1,
  /* Restore the tree inside a new PID namespace, where its recorded PIDs
   * are free by construction: the caller's child is a minimal init (PID 1
   * there), which creates the root and then reaps orphans until the root
   * exits, and exits with the root's status (its exit code, or 128 +
   * signal). The same image may so be restored any number of times at
   * once, each copy in its own namespace, even while the original runs.
   * Needs CAP_SYS_ADMIN (clone3 with CLONE_NEWPID). /proc is still the
   * caller's: /proc/self is right inside, but /proc/<getpid()> (the inner
   * PID) names another process or none. `crlib restore --pid-ns`. With
   * CRLIB_RESTORE_CHECK_ONLY, the PIDs are not checked. A library older
   * than this flag refuses it (CRLIB_E_INVALID_ARGUMENT). Value fixed:
   * 1u << 2. */
  CRLIB_RESTORE_PID_NAMESPACE = 1u << 2,
  /* Copy the pages of a mappable image (CRLIB_CHECKPOINT_MAPPABLE) instead
   * of mapping them from the image file, so that the restored memory never
   * depends on the file. Without it a mappable image file that nobody may
   * write and no process has open for writing is mapped; one that does
   * not qualify is copied. `crlib restore --copy-pages`. A library older
   * than this flag refuses it (CRLIB_E_INVALID_ARGUMENT). Value fixed:
   * 1u << 3. */
  CRLIB_RESTORE_COPY_PAGES = 1u << 3,
  /* Lazy restore: the process runs as soon as everything but its memory
   * is restored; its private anonymous pages come in on first touch and,
   * meanwhile, in the background, served by a thread of this library
   * (userfaultfd) until every one is in. `options->lazy` receives the
   * handle to wait for that (crlib_lazy_wait); the image (its path, or a
   * dup of `image_fd`) stays open until then. Pages of file mappings and
   * locked mappings are written before the process runs. From a stream
   * (a pipe, a socket) every page is read before the process runs: a later
   * pages record may replace any page, so none is final before the end.
   * Images of one process only (a tree: CRLIB_E_UNSUPPORTED, nothing
   * created). `crlib restore --lazy`. Value fixed: 1u << 4. */
  CRLIB_RESTORE_LAZY = 1u << 4
};

/* The pages of a lazy restore on their way in (CRLIB_RESTORE_LAZY).
 * Opaque; thread-safe. */
typedef struct crlib_lazy crlib_lazy;

/* Blocks until every page of the lazily restored process is in it (and in
 * any child it forked meanwhile), or the processes have exited: then
 * CRLIB_OK. Serving failed (an image cut short, changed or corrupt: never
 * a wrong page) the processes were killed: the error. May be called again
 * and from several threads; returns the same each time. */
CRLIB_EXPORT int crlib_lazy_wait(crlib_lazy *lazy, crlib_error **error);

/* A descriptor that becomes readable once crlib_lazy_wait would no longer
 * block, for a poll loop; owned by `lazy`. -1 for NULL. */
CRLIB_EXPORT int crlib_lazy_fd(const crlib_lazy *lazy);

/* Waits as crlib_lazy_wait (a process must never be left without its
 * pages), then frees `lazy`. NULL is fine. */
CRLIB_EXPORT void crlib_lazy_free(crlib_lazy *lazy);

/* One of the caller's descriptors given to the restored process for an
 * external fd of the image: `key` as `crlib inspect` shows it (e.g.
 * "pipe:[123456]"), `fd` the caller's descriptor. */
typedef struct crlib_inherit_fd {
  const char *key;
  int fd;
} crlib_inherit_fd;

/* Fields are only ever appended; `size` says which a caller knows. Choices
 * that are yes or no are bits of `flags` (CRLIB_RESTORE_*), not fields. */
typedef struct crlib_restore_options {
  size_t size;                 /* sizeof(crlib_restore_options) */
  unsigned flags;              /* CRLIB_RESTORE_*; unknown bits are refused */
  crlib_progress_fn progress;  /* may be NULL */
  void *progress_user_data;
  crlib_stats *stats;          /* filled on success when not NULL */
  /* When not -1, the image is read from this descriptor (at its current
   * offset), which stays the caller's; the image path may then be NULL.
   * A stream is read once: an image cut short is found while its pages
   * load, and the half-built process is killed then. */
  int image_fd;
  /* The image's external fds (above 2, leading outside the dumped
   * processes: a pipe whose other end none of them held), each given one
   * of the caller's descriptors: `inherit_fds_count` entries. The
   * restored process gets a dup of it (the caller's open file
   * description, shared). An external fd with no entry, an entry whose
   * key the image lacks, or a descriptor not open for the recorded access
   * fails before anything is created. `crlib restore --inherit-fd KEY=FD`.
   * A caller built before these fields (a smaller `size`) gives none. */
  const crlib_inherit_fd *inherit_fds;
  size_t inherit_fds_count;
  /* With CRLIB_RESTORE_LAZY: receives the handle of the pages on their
   * way in, which the caller frees with crlib_lazy_free; required then.
   * NULL on failure. */
  crlib_lazy **lazy;
} crlib_restore_options;
#define CRLIB_RESTORE_OPTIONS_INIT \
  {sizeof(crlib_restore_options), 0, NULL, NULL, NULL, -1, NULL, 0, NULL}

/* Restores the process tree in the image at `image_path`, every process
 * with its recorded PID, and lets it run: the root a child of the calling
 * process, each other process a child of its recorded parent. `*pid`
 * receives the PID of the caller's child, which the caller reaps with
 * waitpid: the root; or, with CRLIB_RESTORE_PID_NAMESPACE, the init of
 * the new namespace (its PID as the caller sees it), which exits with the
 * root's status once the root exits; the root's PID as the caller sees it
 * is then the one in /proc/INIT/task/INIT/children. Everything is checked
 * before anything is created; a failure after that kills every process
 * made so far, so nothing is left running. Needs CAP_SYS_ADMIN (the PIDs
 * are chosen), and without CRLIB_RESTORE_PID_NAMESPACE every PID and TID
 * of the image free in the caller's PID namespace (else CRLIB_E_BUSY).
 * The processes get the image's credentials, and their files are opened
 * with them (a file their user cannot open fails the restore);
 * credentials the image's owner could not grant fail with
 * CRLIB_E_PERMISSION unless CRLIB_RESTORE_TRUST_IMAGE. Returns CRLIB_OK. */
CRLIB_EXPORT int crlib_restore(const char *image_path, const crlib_restore_options *options,
                               pid_t *pid, crlib_error **error);

/* ---- "Not checkpointable now" marks ------------------------------------- */

/* Marks this process as not checkpointable, with a reason (cut to 200
 * bytes; NULL means "(no reason given)"). Marks nest and may be held by
 * several threads: until the last is left, any checkpoint of this process
 * -- crlib_checkpoint_self, crlib_checkpoint or `crlib dump` from outside --
 * fails with CRLIB_E_NOT_CHECKPOINTABLE and the reason of the most recent
 * mark still held. The mark is a descriptor on a memfd named
 * "crlib-nocr:REASON", visible in /proc/PID/fd without attaching; closing
 * it behind crlib's back drops the mark. Returns CRLIB_OK, or
 * CRLIB_E_NO_MEMORY / CRLIB_E_IO if the descriptor could not be made. */
CRLIB_EXPORT int crlib_nocr_enter(const char *reason);

/* Leaves the mark entered last. CRLIB_E_INVALID_ARGUMENT if none is held. */
CRLIB_EXPORT int crlib_nocr_leave(void);

#ifdef __cplusplus
}
#endif

#endif /* CRLIB_CRLIB_H_ */
