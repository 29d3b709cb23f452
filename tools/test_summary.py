#!/usr/bin/env python3
"""Prints the suite's closing line from meson's testlog.json and fails the
run if any test was skipped: a skipped test checks nothing on CI.

One exception: a gtest case that skipped because this machine lacks a CPU
or kernel feature it needs (tests/hardware.h decides that before the test
starts, and its skip reason starts with "hardware: ") does not fail the
run; it is named in a loud NOT EXERCISED line, so the summary says what
was not checked here. Its count stays in the closing line's skips.

gtest binaries count each test case; other tests count once."""
import json
import re
import sys

HARDWARE = "hardware: "


def skip_reasons(out):
    """(test name, first line of its skip message) of each skipped gtest
    case in a gtest binary's output. gtest prints a skip as
    "[ RUN      ] NAME", "FILE:LINE: Skipped", the message, then
    "[  SKIPPED ] NAME (N ms)"."""
    reasons = []
    block = []
    for line in out.splitlines():
        if line.startswith("[ RUN      ] "):
            block = []
            continue
        done = re.match(r"\[  SKIPPED \] (\S+) \(\d+ ms\)$", line)
        if not done:
            block.append(line)
            continue
        marks = [i for i, text in enumerate(block) if text.endswith(": Skipped")]
        message = [text for text in block[marks[-1] + 1:] if text.strip()] if marks else []
        reasons.append((done.group(1), message[0] if message else ""))
    return reasons


passed = failed = skipped = 0
not_exercised = []  # (test binary, case, reason)
refused_skips = []
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
            reasons = skip_reasons(out)
            for case, reason in reasons:
                if reason.startswith(HARDWARE):
                    not_exercised.append((entry.get("name", "?"), case, reason[len(HARDWARE):]))
                else:
                    refused_skips.append(f"{case}: {reason or '(no reason given)'}")
            # Skips counted but not found in the output: none may pass.
            for _ in range((int(skip.group(1)) if skip else 0) - len(reasons)):
                refused_skips.append(f"{entry.get('name', '?')}: a skip whose reason was not found")
        elif result == "SKIP":
            skipped += 1
            refused_skips.append(f"{entry.get('name', '?')}: the whole test skipped")
        elif result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        else:
            failed += 1
for test, case, reason in not_exercised:
    print(f"NOT EXERCISED on this machine: {test}: {case}: {reason}")
for what in refused_skips:
    print(f"skipped, which fails the run: {what}")
print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed or refused_skips else 0)
