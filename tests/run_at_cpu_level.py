#!/usr/bin/env python3
"""Runs one registered ctest again at another CPU kernel level.

usage: run_at_cpu_level.py LEVEL DISTILL CTEST BUILD_DIR TEST_NAME

Asks `DISTILL --version` whether this machine runs LEVEL (the binary refuses a
level the CPU lacks, in one line); if not, prints that line and exits 77, the
copy's skip code. Otherwise takes TEST_NAME's command, environment and working
folder from `ctest --show-only=json-v1` and runs it with DISTILL_CPU_KERNELS =
LEVEL set after the test's own environment, exiting with its status.
"""
import json
import os
import subprocess
import sys

SKIP = 77


def main():
    if len(sys.argv) != 6:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    level, distill, ctest, build_dir, name = sys.argv[1:]
    probe = subprocess.run([distill, "--version"], env=dict(os.environ, DISTILL_CPU_KERNELS=level),
                           capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"skipped: {name} at cpu level {level}: {probe.stderr.strip() or probe.stdout.strip()}")
        return SKIP
    print(probe.stdout.strip().splitlines()[-1])
    listing = subprocess.run([ctest, "--test-dir", build_dir, "--show-only=json-v1"], capture_output=True,
                             text=True, check=True)
    tests = [t for t in json.loads(listing.stdout)["tests"] if t["name"] == name]
    if len(tests) != 1 or "command" not in tests[0]:
        print(f"run_at_cpu_level: no test named {name} in {build_dir}", file=sys.stderr)
        return 2
    test = tests[0]
    props = {p["name"]: p["value"] for p in test.get("properties", [])}
    env = dict(os.environ)
    for entry in props.get("ENVIRONMENT", []):
        key, _, value = entry.partition("=")
        env[key] = value
    env["DISTILL_CPU_KERNELS"] = level
    cwd = props.get("WORKING_DIRECTORY", os.getcwd())  # ctest's default: the folder of the test
    print(f"running {name} with DISTILL_CPU_KERNELS={level}: {' '.join(test['command'])}", flush=True)
    return subprocess.run(test["command"], env=env, cwd=cwd).returncode


if __name__ == "__main__":
    sys.exit(main())
