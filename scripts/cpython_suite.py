#!/usr/bin/env python3
"""CPython's own tests of its extension modules, under glibc and under
`dynload run`: every test case must end the same way under both loaders
(a test that fails under plain glibc on this machine is not dynload's to
fix, but it must fail identically).

Runs `python3 -m test` (the pyenv CPython 3.11 on PATH, which ships its test
suite) with JUnit output, once plainly and once under
`target/release/dynload run`, and compares the outcome of every test case.

    python3 scripts/cpython_suite.py [--dynload PATH] [--json OUT] [TEST ...]

Exit status 0 when both runs agree, 1 otherwise.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

# The test modules that exercise extension modules (the list, and
# more that load C extensions with their own dependencies).
DEFAULT_TESTS = [
    "test_json", "test_sqlite3", "test_ctypes", "test_decimal", "test_hashlib",
    "test_zlib", "test_array", "test_struct", "test_datetime", "test_pickle",
    "test_csv", "test_unicodedata", "test_capi", "test_import",
    "test_ssl", "test_lzma", "test_bz2", "test_threading_local", "test_select",
    "test_math", "test_cmath", "test_bisect", "test_heapq", "test_statistics",
]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def outcomes(junit_path):
    """{test case id: outcome} from a JUnit file written by `-m test`."""
    result = {}
    for case in ET.parse(junit_path).getroot().iter("testcase"):
        name = "%s.%s" % (case.get("classname", ""), case.get("name", ""))
        kind = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                kind = child.tag
                break
        result[name] = kind
    return result


def run(tests, python, prefix, label):
    with tempfile.TemporaryDirectory() as tmp:
        junit = os.path.join(tmp, "junit.xml")
        cmd = prefix + [python, "-m", "test", "-j2", "--junit-xml", junit] + tests
        start = time.monotonic()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        elapsed = time.monotonic() - start
        if not os.path.exists(junit):
            sys.stdout.write(proc.stdout[-4000:])
            raise SystemExit("%s: no JUnit output (exit status %d)" % (label, proc.returncode))
        found = outcomes(junit)
    counts = {}
    for kind in found.values():
        counts[kind] = counts.get(kind, 0) + 1
    print("%-8s %4.0f s  exit %d  %s" % (label, elapsed, proc.returncode,
                                       ", ".join("%d %s" % (n, k) for k, n in sorted(counts.items()))))
    return found, counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dynload", default=os.path.join(ROOT, "target", "release", "dynload"))
    ap.add_argument("--json", help="write the counts to this file")
    ap.add_argument("tests", nargs="*", default=DEFAULT_TESTS)
    args = ap.parse_args()
    python = subprocess.run(["python3", "-c", "import sys; print(sys.executable)"],
                            stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
    glibc, glibc_counts = run(args.tests, python, [], "glibc")
    under, dynload_counts = run(args.tests, python, [args.dynload, "run", "--"], "dynload")
    differ = sorted(k for k in set(glibc) | set(under) if glibc.get(k) != under.get(k))
    for k in differ[:50]:
        print("  %s: glibc %s, dynload %s" % (k, glibc.get(k, "absent"), under.get(k, "absent")))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": python, "tests": args.tests, "glibc": glibc_counts,
                       "dynload": dynload_counts, "differences": differ}, f, indent=1)
    if differ or len(glibc) < 1000:
        print("FAIL: %d test cases differ (%d cases run)" % (len(differ), len(glibc)))
        return 1
    print("OK: %d test cases, the same outcome under glibc and dynload" % len(glibc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
