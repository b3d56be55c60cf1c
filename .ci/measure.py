"""Runs a command and prints its wall time and the peak memory of its whole process tree.

  python3 .ci/measure.py make test

Memory is the sum of the resident sets of the command and every process it started, sampled
every quarter second: the test suite's programs run as child processes beside pytest, so the
largest single process (what `/usr/bin/time -v` reports) would understate what the machine
needs. Exits with the command's own status.
"""

import os
import subprocess
import sys
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(root):
    """Resident bytes of `root` and all its descendants, from /proc."""
    children, rss = {}, {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # The process ended while we looked.
            continue
        children.setdefault(int(fields[1]), []).append(int(pid))
        rss[int(pid)] = int(fields[21]) * PAGE
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack += children.get(pid, [])
    return total


def main(command):
    start = time.monotonic()
    process = subprocess.Popen(command)
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_rss(process.pid))
        time.sleep(0.25)
    minutes, seconds = divmod(time.monotonic() - start, 60)
    print(f"measured: {' '.join(command)}: {int(minutes)} min {seconds:.0f} s, "
          f"peak memory {peak / 2**30:.1f} GiB (the process tree's resident sets, summed)", flush=True)
    return process.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
