"""The Python binding (bindings/python/crlib) with real python3 processes.

Run by meson with PYTHONPATH=bindings/python, CRLIB_LIBRARY=<libcrlib.so>
and CRLIB_BIN=<crlib>. Each scenario runs a python3 child from a script
written to a temporary directory, so its descriptors are only 0-2.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

import crlib

CRLIB_BIN = os.environ.get("CRLIB_BIN", "crlib")

# A program with live state that snapshots itself: a dict keyed by str
# (hashes depend on the per-process secret), a generator mid-way, a closure.
SELF_PROGRAM = textwrap.dedent("""
    import os, sys, crlib
    def say(line):
        os.write(1, (line + "\\n").encode())
    table = {"key%d" % i: i * i for i in range(50000)}
    def counter():
        n = 0
        def step():
            nonlocal n
            n += 1
            return n
        return step
    step = counter()
    gen = (i * 3 for i in range(1000))
    [next(gen) for _ in range(10)]
    step(); step()
    r = crlib.checkpoint_self(sys.argv[1], mappable=sys.argv[2:] == ["mappable"])
    if r == crlib.CHECKPOINTED:
        say("CHECKPOINTED pid %d" % os.getpid())
        sys.exit(0)
    assert r == crlib.RESTORED, r
    ok = (len(table) == 50000 and table["key777"] == 777 * 777 and next(gen) == 30
          and step() == 3)
    say("RESTORED pid %d %s" % (os.getpid(), "state-ok" if ok else "state-BAD"))
    sys.exit(42 if ok else 1)
""")

# Holds a nocr mark until SIGTERM; prints MARKED once it holds it.
NOCR_PROGRAM = textwrap.dedent("""
    import os, signal, time, crlib
    with crlib.nocr("compacting the heap"):
        os.write(1, b"MARKED\\n")
        while True:
            time.sleep(0.05)
""")

# Counts until SIGUSR1, then prints the count (and writes a line into the
# pipe end at fd argv[1], when given) and exits 7.
COUNTER_PROGRAM = textwrap.dedent("""
    import os, signal, sys, time
    go = False
    def on_usr1(s, f):
        global go
        go = True
    signal.signal(signal.SIGUSR1, on_usr1)
    count = 0
    os.write(1, b"READY\\n")
    while not go:
        count += 1
        time.sleep(0.01)
    os.write(1, ("COUNT %d\\n" % count).encode())
    if len(sys.argv) > 1:
        os.write(int(sys.argv[1]), b"external\\n")
    os._exit(7)
""")


class BindingTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="crlib-python-")
        self.children = []

    def tearDown(self):
        for p in self.children:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def start(self, program, *args, out="out.txt", pass_fds=()):
        script = self.path("program.py")
        with open(script, "w") as f:
            f.write(program)
        out_file = open(self.path(out), "ab")
        p = subprocess.Popen([sys.executable, script] + list(args), stdin=subprocess.DEVNULL,
                             stdout=out_file, stderr=subprocess.STDOUT, start_new_session=True,
                             pass_fds=pass_fds)
        out_file.close()
        self.children.append(p)
        return p

    def read(self, name="out.txt"):
        with open(self.path(name)) as f:
            return f.read()

    def wait_for_output(self, text, p, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.read():
                return
            if p.poll() is not None:
                self.fail("child ended (%s) before %r:\n%s" % (p.returncode, text, self.read()))
            time.sleep(0.01)
        self.fail("no %r after %d s:\n%s" % (text, timeout, self.read()))

    def test_version(self):
        self.assertRegex(crlib.version(), r"^\d+\.\d+\.\d+$")

    def test_python_snapshots_itself_and_is_restored_twice(self):
        image = self.path("self.img")
        p = self.start(SELF_PROGRAM, image)
        self.assertEqual(p.wait(timeout=60), 0, self.read())
        self.assertIn("CHECKPOINTED pid %d" % p.pid, self.read())
        self.assertTrue(os.path.exists(image))
        for round in range(2):
            r = subprocess.run([CRLIB_BIN, "restore", "--image", image], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 42, "round %d: %s%s\n%s" % (round, r.stdout, r.stderr,
                                                                      self.read()))
            self.assertEqual(self.read().count("RESTORED pid %d state-ok" % p.pid), round + 1,
                             self.read())

    def test_mappable_self_image_is_restored_by_mapping(self):
        image = self.path("self.img")
        p = self.start(SELF_PROGRAM, image, "mappable")
        self.assertEqual(p.wait(timeout=60), 0, self.read())
        self.assertEqual(os.stat(image).st_mode & 0o7777, 0o400)
        r = subprocess.run([CRLIB_BIN, "restore", "--stats", "--image", image],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 42, "%s%s\n%s" % (r.stdout, r.stderr, self.read()))
        mapped = [int(w.strip("(")) for w in r.stderr.split() if w.startswith("(")]
        self.assertTrue(mapped and mapped[-1] > 0, r.stderr)
        self.assertNotIn("copied", r.stderr)

    def test_restore_api_returns_the_pid(self):
        image = self.path("counter.img")
        p = self.start(COUNTER_PROGRAM)
        self.wait_for_output("READY", p)
        stats = crlib.checkpoint(p.pid, image, kill=True)
        self.assertGreater(stats.image_bytes, 0)
        self.assertGreater(stats.pages_stored, 0)
        self.assertEqual(p.wait(timeout=10), -signal.SIGKILL)
        pid = crlib.restore(image)
        self.assertEqual(pid, p.pid)
        time.sleep(0.1)
        os.kill(pid, signal.SIGUSR1)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 7, self.read())
        self.assertRegex(self.read(), r"COUNT \d+")

    def test_lazy_restore_returns_while_pages_come_in(self):
        image = self.path("counter.img")
        p = self.start(COUNTER_PROGRAM)
        self.wait_for_output("READY", p)
        crlib.checkpoint(p.pid, image, kill=True)
        self.assertEqual(p.wait(timeout=10), -signal.SIGKILL)
        pid, pages = crlib.restore(image, lazy=True)
        self.assertEqual(pid, p.pid)
        with pages:
            self.assertGreaterEqual(pages.fileno(), 0)
            pages.wait()  # every page in
            pages.wait()  # and again: the same answer
        time.sleep(0.1)
        os.kill(pid, signal.SIGUSR1)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 7, self.read())
        self.assertRegex(self.read(), r"COUNT \d+")

    def test_restore_in_a_pid_namespace_returns_the_init(self):
        image = self.path("counter.img")
        p = self.start(COUNTER_PROGRAM)
        self.wait_for_output("READY", p)
        crlib.checkpoint(p.pid, image)  # it runs on: its PID stays taken
        with self.assertRaises(crlib.Error) as e:
            crlib.restore(image)
        self.assertEqual(e.exception.code, crlib.E_BUSY)
        init = crlib.restore(image, pid_namespace=True)
        self.assertNotEqual(init, p.pid)
        with open("/proc/%d/task/%d/children" % (init, init)) as f:
            root = [int(pid) for pid in f.read().split()]
        self.assertEqual(len(root), 1)
        with open("/proc/%d/status" % root[0]) as f:
            nspid = [line.split()[1:] for line in f if line.startswith("NSpid:")][0]
        self.assertEqual(int(nspid[-1]), p.pid)
        time.sleep(0.1)
        os.kill(root[0], signal.SIGUSR1)
        _, status = os.waitpid(init, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 7, self.read())  # the root's
        self.assertIsNone(p.poll())

    def test_nocr_refuses_every_path(self):
        image = self.path("nocr.img")
        p = self.start(NOCR_PROGRAM)
        self.wait_for_output("MARKED", p)
        # From this process, through the library.
        with self.assertRaises(crlib.Error) as e:
            crlib.checkpoint(p.pid, image)
        self.assertEqual(e.exception.code, crlib.E_NOT_CHECKPOINTABLE)
        self.assertEqual(e.exception.name, "CRLIB_E_NOT_CHECKPOINTABLE")
        self.assertIn("compacting the heap", str(e.exception))
        # From outside, with the command line tool.
        r = subprocess.run([CRLIB_BIN, "dump", "--pid", str(p.pid), "--image", image],
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertRegex(r.stderr, r"^crlib: error: .*not checkpointable.*compacting the heap")
        self.assertFalse(os.path.exists(image))
        self.assertIsNone(p.poll(), "the marked process was killed")
        # By itself: a marked process cannot snapshot itself either.
        with crlib.nocr("in a test"):
            with self.assertRaises(crlib.Error) as e:
                crlib.checkpoint_self(self.path("me.img"))
            self.assertEqual(e.exception.code, crlib.E_NOT_CHECKPOINTABLE)
            self.assertIn("in a test", e.exception.message)
        self.assertFalse(os.path.exists(self.path("me.img")))

    def test_restore_gives_an_external_pipe(self):
        image = self.path("external.img")
        r, w = os.pipe()
        key = "pipe:[%d]" % os.fstat(r).st_ino
        try:
            p = self.start(COUNTER_PROGRAM, str(w), pass_fds=(w,))
            self.wait_for_output("READY", p)
            crlib.checkpoint(p.pid, image, kill=True)
            self.assertEqual(p.wait(timeout=10), -signal.SIGKILL)
            with self.assertRaises(crlib.Error) as e:
                crlib.restore(image)
            self.assertEqual(e.exception.code, crlib.E_INCOMPATIBLE)
            self.assertIn("--inherit-fd '%s=FD'" % key, e.exception.message)
            pid = crlib.restore(image, inherit_fds={key: w})
            self.assertEqual(pid, p.pid)
            time.sleep(0.1)
            os.kill(pid, signal.SIGUSR1)
            _, status = os.waitpid(pid, 0)
            self.assertEqual(os.waitstatus_to_exitcode(status), 7, self.read())
            self.assertEqual(os.read(r, 100), b"external\n")
        finally:
            os.close(r)
            os.close(w)

    def test_errors_carry_code_and_message(self):
        with self.assertRaises(crlib.Error) as e:
            crlib.restore(self.path("missing.img"))
        self.assertEqual(e.exception.code, crlib.E_NOT_FOUND)
        self.assertIn("missing.img", e.exception.message)
        with self.assertRaises(crlib.Error) as e:
            crlib.checkpoint(2 ** 22 + 12345, self.path("x.img"))
        self.assertEqual(e.exception.code, crlib.E_NOT_FOUND)


if __name__ == "__main__":
    unittest.main(verbosity=2)
