#!/usr/bin/env python3
"""Prints the suite's closing line from meson's testlog.json and fails the
run if any test was skipped: a skipped test checks nothing on CI.

gtest binaries count each test case; other tests count once."""
import json
import re
import sys

passed = failed = skipped = 0
with open(sys.argv[1]) as log:
    for line in log:
        entry = json.loads(line)
        result = entry.get("result")
        out = entry.get("stdout", "") or ""
        cases = re.search(r"\[==========\] (\d+) tests? from .* ran", out)
        ok = re.search(r"\[  PASSED  \] (\d+) test", out)
        skip = re.search(r"\[  SKIPPED \] (\d+) test", out)
        bad = re.search(r"\[  FAILED  \] (\d+) test", out)
        if cases:
            passed += int(ok.group(1)) if ok else 0
            skipped += int(skip.group(1)) if skip else 0
            failed += int(bad.group(1)) if bad else 0
            if result not in ("OK", "EXPECTEDFAIL") and not bad:
                failed += 1  # crashed or timed out mid-run
        elif result == "SKIP":
            skipped += 1
        elif result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        else:
            failed += 1
print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed or skipped else 0)
