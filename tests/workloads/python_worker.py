#!/usr/bin/python3
"""A warmed-up Python interpreter, for tests/task/checkpoint_test.cc.

Live objects of several kinds -- a dict of 100k entries with str keys (their
hashes depend on the per-process hash secret, which lives in memory), a
class instance, a generator stopped mid-iteration, a closure with state --
and a checksum over them. It prints READY, waits for SIGUSR1 in a loop of
time.sleep(0.05), then checks every object (continuing the generator and
calling the closure) and prints OK, or FAIL <what> with exit status 1.

Lines go out with os.write, so no buffered text can be lost or doubled
across a checkpoint.
"""
import os
import signal
import sys
import time

go = False


def on_usr1(signum, frame):
    global go
    go = True


def say(line):
    os.write(1, (line + "\n").encode())


def fail(what):
    say("FAIL " + what)
    sys.exit(1)


class Account:
    def __init__(self, owner, entries):
        self.owner = owner
        self.entries = list(entries)

    def balance(self):
        return sum(self.entries)


def fibonacci():
    a, b = 0, 1
    while True:
        yield a
        a, b = b, a + b


def make_counter(start):
    count = start

    def step(by=1):
        nonlocal count
        count += by
        return count

    return step


def checksum(table):
    total = 0
    for key, value in table.items():
        total = (total * 1000003 + hash(key) % 1000000007 + value) % (1 << 61)
    return total


def expected_fibonacci(n):
    out, a, b = [], 0, 1
    for _ in range(n):
        out.append(a)
        a, b = b, a + b
    return out


def main():
    signal.signal(signal.SIGUSR1, on_usr1)

    table = {"key-%d" % i: i * i % 99991 for i in range(100000)}
    account = Account("crlib", range(1000))
    fib = fibonacci()
    first = [next(fib) for _ in range(50)]
    counter = make_counter(41)
    counter()
    blob = bytearray(os.urandom(1 << 20))
    before = (checksum(table), account.balance(), sum(blob), hash("key-12345"))

    say("READY %d" % os.getpid())
    while not go:
        time.sleep(0.05)

    after = (checksum(table), account.balance(), sum(blob), hash("key-12345"))
    if after != before:
        fail("checksums %r, were %r" % (after, before))
    if len(table) != 100000 or table.get("key-31337") != 31337 * 31337 % 99991:
        fail("dict lookups")
    if account.owner != "crlib" or len(account.entries) != 1000 or not isinstance(account, Account):
        fail("class instance")
    more = [next(fib) for _ in range(50)]
    if first + more != expected_fibonacci(100):
        fail("generator did not continue where it stopped")
    if counter() != 43 or counter(10) != 53:
        fail("closure state")
    say("OK python %d.%d, checksum %d" % (sys.version_info[0], sys.version_info[1], before[0]))


if __name__ == "__main__":
    main()
