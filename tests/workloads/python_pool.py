#!/usr/bin/python3
"""A multiprocessing.Pool in the middle of work, for tests/task/tree_test.cc.

Kernel state: a tree of python3 processes made by fork (the 'fork' start
method: four workers, children of this one, which also runs the pool's
three handler threads), the pipes between them that carry tasks and
results, and the POSIX semaphores multiprocessing keeps in shared memory
(/dev/shm files unlinked at once). Work is in flight at any moment: tasks
in the pipes and in the workers.

A task is a small proof of work: the smallest nonce n for which
sha256(b"i:n") starts with 12 zero bits, a few ms of hashing, checked with
one hash. The feed is throttled: at most 8 tasks are out at once, one more
each time the main thread takes a result, which it does every 20 ms until
SIGUSR1. READY after the first 20 results. On SIGUSR1 the feed stops, the
tasks out finish, and every result is checked: all indices in order, every
nonce a proof, every result from one of the four original workers (a pool
replaces a worker that died, which would hide a lost process) and those
four still alive. Then OK, or FAIL <what> with exit status 1.

Lines go out with os.write, so no buffered text can be lost or doubled
across a checkpoint.
"""
import hashlib
import multiprocessing
import os
import signal
import sys
import threading
import time

BITS = 12
IN_FLIGHT = 8
WORKERS = 4
READY_AFTER = 20

go = False


def on_usr1(signum, frame):
    global go
    go = True


def say(line):
    os.write(1, (line + "\n").encode())


def fail(what):
    say("FAIL " + what)
    sys.exit(1)


def proves(i, n):
    digest = hashlib.sha256(b"%d:%d" % (i, n)).digest()
    return int.from_bytes(digest[:4], "big") >> (32 - BITS) == 0


def solve(i):
    n = 0
    while not proves(i, n):
        n += 1
    return i, n, os.getpid()


def main():
    signal.signal(signal.SIGUSR1, on_usr1)
    slots = threading.Semaphore(IN_FLIGHT)

    def feed():  # runs in the pool's task handler thread
        i = 0
        while True:
            slots.acquire()
            if go:
                return
            yield i
            i += 1

    pool = multiprocessing.get_context("fork").Pool(WORKERS)
    workers = {p.pid for p in pool._pool}
    results = []
    for i, n, pid in pool.imap(solve, feed()):
        results.append((i, n, pid))
        slots.release()
        if len(results) == READY_AFTER:
            say("READY %d" % os.getpid())
        if not go:
            time.sleep(0.02)
    if len(results) < READY_AFTER:
        fail("the feed stopped after %d results" % len(results))
    now = {p.pid for p in pool._pool}
    pool.close()
    pool.join()

    for k, (i, n, pid) in enumerate(results):
        if i != k:
            fail("result %d is for task %d" % (k, i))
        if not proves(i, n):
            fail("task %d: nonce %d is no proof" % (i, n))
        if pid not in workers:
            fail("task %d was solved by %d, not one of the workers %s" % (i, pid, sorted(workers)))
    if now != workers:
        fail("the pool's workers were %s, now %s" % (sorted(workers), sorted(now)))
    say("OK %d tasks by %d workers" % (len(results), len({r[2] for r in results})))


if __name__ == "__main__":
    main()
