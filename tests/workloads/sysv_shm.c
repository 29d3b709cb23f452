/* Two SysV shared memory segments attached with shmat: one with a key,
 * kept ("SHMID <id>" is printed for the test), one removed with IPC_RMID
 * while attached. After restore both are attached at their addresses with
 * their contents, the kept one still under its id and key (shmdt works,
 * a second shmat sees the same memory), the removed one still marked
 * for destruction. The kept segment is removed at the end. */
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>

#include "workload.h"

enum { kKeptSeed = 0x5e6d, kGoneSeed = 0x90e0 };
#define kKeptSize (3 * 4096)
#define kGoneSize (5 * 4096)

int main(int argc, char** argv) {
  wl_install_handler();
  /* "partial": the kept segment's last page unmapped, which crlib refuses. */
  const int partial = argc > 1 && strcmp(argv[1], "partial") == 0;
  const key_t key = (key_t)(0x7c000000 | (getpid() & 0xffffff));
  int kept = shmget(key, kKeptSize, IPC_CREAT | IPC_EXCL | 0640);
  if (kept < 0) return wl_fail("shmget kept: %s", strerror(errno));
  int gone = shmget(IPC_PRIVATE, kGoneSize, IPC_CREAT | 0600);
  if (gone < 0) return wl_fail("shmget gone: %s", strerror(errno));
  unsigned char* k = shmat(kept, NULL, 0);
  unsigned char* g = shmat(gone, NULL, 0);
  if (k == (void*)-1 || g == (void*)-1) return wl_fail("shmat: %s", strerror(errno));
  wl_fill(k, 4096, kKeptSeed, 0); /* the rest stays zero */
  wl_fill(g, kGoneSize, kGoneSeed, 0);
  if (shmctl(gone, IPC_RMID, NULL) != 0) return wl_fail("IPC_RMID: %s", strerror(errno));
  if (partial && munmap(k + 2 * 4096, 4096) != 0) return wl_fail("munmap: %s", strerror(errno));
  wl_say("SHMID %d", kept);

  wl_ready();
  wl_wait_nap();

  long bad = wl_mismatch(k, 4096, kKeptSeed, 0);
  if (bad >= 0) return wl_fail("kept segment differs at %ld", bad);
  bad = wl_mismatch(g, kGoneSize, kGoneSeed, 0);
  if (bad >= 0) return wl_fail("removed segment differs at %ld", bad);
  struct shmid_ds ds;
  if (shmctl(kept, IPC_STAT, &ds) != 0) return wl_fail("IPC_STAT kept: %s", strerror(errno));
  if (ds.shm_perm.__key != key || ds.shm_segsz != kKeptSize || (ds.shm_perm.mode & 0777) != 0640) {
    return wl_fail("kept segment is key %#x size %zu mode %o", ds.shm_perm.__key, ds.shm_segsz,
                   ds.shm_perm.mode & 0777);
  }
  if (ds.shm_nattch != 1) return wl_fail("kept segment has %lu attachments", (unsigned long)ds.shm_nattch);
  if (shmctl(gone, IPC_STAT, &ds) != 0) return wl_fail("IPC_STAT removed: %s", strerror(errno));
  if (!(ds.shm_perm.mode & SHM_DEST)) return wl_fail("removed segment is no longer marked removed");
  unsigned char* again = shmat(kept, NULL, 0);
  if (again == (void*)-1) return wl_fail("second shmat: %s", strerror(errno));
  again[5000] = 0x42;
  if (k[5000] != 0x42) return wl_fail("the kept segment's attachments are not one memory");
  if (shmdt(again) != 0 || shmdt(k) != 0) return wl_fail("shmdt: %s", strerror(errno));
  if (shmdt(g) != 0) return wl_fail("shmdt removed: %s", strerror(errno));
  if (shmctl(kept, IPC_RMID, NULL) != 0) return wl_fail("IPC_RMID kept: %s", strerror(errno));
  wl_say("OK SysV shared memory");
  return 0;
}
